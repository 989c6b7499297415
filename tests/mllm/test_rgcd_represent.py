"""RGCD-Rep representation stage: decomposition losses on planted data, the store export, the two-tower model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mllm.rgcd.data import cold_start_task, synthetic_contents, synthetic_two_domain
from mllm.rgcd.pipeline import collection_name, export_parts, fit_decomposition, run_method
from mllm.rgcd.represent import behaviour_positives, content_positives, nearest_label_agreement
from retrieval.errors import StoreError
from retrieval.store import VectorStore


@pytest.fixture(scope="module")
def synthetic_task():
    data = synthetic_two_domain(n_users=250, n_items_per_domain=96, n_topics=8, seed=1)
    return data, cold_start_task(data, cold_share=0.5, max_cold_interactions=2, seed=0)


@pytest.fixture(scope="module")
def decomposed(synthetic_task):
    data, task = synthetic_task
    source, target = synthetic_contents(data, seed=1)
    _, parts, diagnostics = fit_decomposition(
        task, source, target, residual=True, positives="behaviour", seed=0, steps=150
    )
    return parts, diagnostics


def test_behaviour_positives_count_only_users_active_in_both_domains() -> None:
    source = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32))  # users x source items
    target = sp.csr_matrix(np.array([[1, 0], [0, 1], [0, 0]], dtype=np.float32))  # user 2 has no target items
    positives = behaviour_positives(source, target, weighting="cosine")
    # co-engagement: (s0,t0) by user 0, (s1,t0) by user 0, (s1,t1) by user 1; cosine-normalised over users 0, 1
    expected = np.array([[1, 0], [1 / np.sqrt(2), 1 / np.sqrt(2)], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(positives, expected, atol=1e-5)
    # lift: s1 is engaged by both users, so its co-engagements are what popularity predicts (PMI 0): only
    # (s0, t0) is co-engaged more than expected, log(2 * 1 / (1 * 1))
    lift = behaviour_positives(source, target, weighting="lift", top_k=5)
    np.testing.assert_allclose(lift, np.array([[np.log(2), 0], [0, 0], [0, 0]], dtype=np.float32), atol=1e-5)
    nearest = content_positives(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)[[2, 0]])
    assert nearest[0, 1] == 1 and nearest[2, 0] == 1


def test_transferable_part_carries_the_shared_topics_and_the_residual_part_does_not(synthetic_task, decomposed):
    data, _ = synthetic_task
    parts, _ = decomposed
    topics_s, topics_t = data.source.item_topics, data.target.item_topics
    chance = 1 / 8
    transferable = nearest_label_agreement(
        parts["source_transferable"], parts["target_transferable"], topics_s, topics_t
    )
    residual = nearest_label_agreement(parts["source_residual"], parts["target_residual"], topics_s, topics_t)
    assert transferable > 0.8
    assert residual < chance + 0.15  # no cross-domain signal in the residual part: about chance
    # the residual part is where the domain lives: a nearest-centroid probe separates the domains better on r

    def domain_probe(a: np.ndarray, b: np.ndarray) -> float:
        centre_a, centre_b = a.mean(0), b.mean(0)
        both = np.concatenate([a, b])
        guess = np.linalg.norm(both - centre_b, axis=1) < np.linalg.norm(both - centre_a, axis=1)
        return float(np.mean(guess == np.r_[np.zeros(len(a)), np.ones(len(b))]))

    on_residual = domain_probe(parts["source_residual"], parts["target_residual"])
    on_transferable = domain_probe(parts["source_transferable"], parts["target_transferable"])
    assert on_residual > 0.95 and on_residual > on_transferable + 0.1


def test_without_behavioural_positives_the_alignment_comes_from_content_only(synthetic_task):
    data, task = synthetic_task
    source, target = synthetic_contents(data, seed=1)
    _, parts, diagnostics = fit_decomposition(
        task, source, target, residual=False, positives="content", seed=0, steps=20
    )
    assert "source_residual" not in parts and diagnostics["positives"] == "content"
    assert parts["source_transferable"].shape == (96, 32)


def test_export_writes_a_collection_per_domain_and_part_with_its_contract(tmp_path: Path, synthetic_task, decomposed):
    data, _ = synthetic_task
    parts, _ = decomposed
    with VectorStore(tmp_path / "store") as store:
        counts = export_parts(store, data, parts, run_tag="t1")
        again = export_parts(store, data, parts, run_tag="t1")  # idempotent upserts
        name = collection_name(data.name, "target", "residual")
        assert counts == again and counts[name] == 96 and len(counts) == 4
        collection = store.collection(name)
        assert collection.embedder_name == "rgcd-rep:residual:t1" and collection.dim == 32
        hit = store.get(name, ids=["target/target/0003"], include_embeddings=True)[0]
        np.testing.assert_allclose(hit["embedding"], parts["target_residual"][3], rtol=1e-5)
        assert hit["metadata"]["part"] == "residual"
        with pytest.raises(StoreError, match="refusing to mix"):
            export_parts(store, data, parts, run_tag="another-run")


def test_two_tower_trains_with_the_trainer_and_reports_cold_and_all_users(synthetic_task):
    data, task = synthetic_task
    source, target = synthetic_contents(data, seed=1)
    contents = {"reasoning": (source, target)}
    result = run_method("full", task, contents, seed=0, epochs=2)
    assert result["cold"]["n_users"] == task.cold_users.size
    assert result["all"]["n_users"] > result["cold"]["n_users"]
    pop = run_method("pop", task, contents, seed=0)
    assert 0 <= pop["cold"]["hr@10"] <= 1 and pop["all"]["ndcg@10"] <= pop["all"]["hr@10"]


def test_two_tower_projects_the_shared_columns_of_both_domains_with_one_matrix() -> None:
    import torch

    from mllm.rgcd.two_tower import RGCDTwoTower, TwoTowerConfig

    rng = np.random.default_rng(0)
    source_csr = sp.csr_matrix(rng.random((5, 4)) > 0.5, dtype=np.float32)  # 5 users x 4 source items
    shared = rng.normal(size=(3, 2)).astype(np.float32)
    # target item 0 and source item 1 share their transferable columns (first 2), residual columns differ
    target_features = np.c_[shared, rng.normal(size=(3, 3))].astype(np.float32)
    source_features = np.c_[rng.normal(size=(4, 2)), rng.normal(size=(4, 3))].astype(np.float32)
    source_features[1, :2] = target_features[0, :2]
    model = RGCDTwoTower(TwoTowerConfig(embedding_dim=6, shared_feature_dim=2), n_users=5, n_items=3)
    model.attach(source_csr, source_features, target_features)
    assert model.shared_projection.in_features == 2
    assert model.source_projection.in_features == 3 and model.target_projection.in_features == 3
    with torch.no_grad():
        for layer in (model.shared_projection, model.source_projection, model.target_projection):
            layer.weight.normal_()
        model.target_projection.weight.zero_()
        model.source_projection.weight.zero_()
        vectors = model._all_item_vectors()
        id_free_target = vectors[0] - model.item_embedding.weight[0]
        id_free_source = vectors[3 + 1] - model.source_item_embedding.weight[1]
    # with the residual projections at zero, aligned items get the same feature vector through the shared matrix
    torch.testing.assert_close(id_free_target, id_free_source)
    assert float(id_free_target.abs().sum()) > 0
    with pytest.raises(ValueError, match="shared_feature_dim"):
        RGCDTwoTower(TwoTowerConfig(shared_feature_dim=8), n_users=5, n_items=3).attach(
            source_csr, source_features, target_features
        )


def test_cold_validation_metrics_score_the_validation_item_and_never_the_test_item(synthetic_task):
    import torch

    _, task = synthetic_task
    valid = task.split.valid.to_csr()

    class Oracle:  # ranks each user's validation item first
        def eval(self) -> None:
            return None

        def score(self, users: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(valid[users.numpy()].toarray(), dtype=torch.float32)

    from mllm.rgcd.pipeline import _cold_metrics

    on_valid = _cold_metrics(Oracle(), task, (10,), on="valid")
    on_test = _cold_metrics(Oracle(), task, (10,), on="test")
    assert on_valid["hr@10"] == 1.0 and on_valid["n_users"] == task.cold_users.size
    assert on_test["hr@10"] < 0.5  # the validation item is masked at test time: the oracle knows nothing else


def test_lift_positives_keep_the_top_k_pairs_per_item_and_are_sparse_on_dense_co_engagement() -> None:
    rng = np.random.default_rng(0)
    source = sp.csr_matrix(rng.random((300, 40)) < 0.5, dtype=np.float32)  # dense: every pair co-engaged
    target = sp.csr_matrix(rng.random((300, 30)) < 0.5, dtype=np.float32)
    assert (behaviour_positives(source, target, weighting="cosine") > 0).all()
    lift = behaviour_positives(source, target, weighting="lift", top_k=3)
    assert (lift > 0).sum() <= 40 * 3 + 30 * 3 and (lift > 0).mean() < 0.25  # the union of both top-3 lists
    assert ((lift > 0).sum(1) >= 1).mean() > 0.9  # most items keep a positive
    from mllm.rgcd.pipeline import effective_positives

    # the dense cosine labels are spread over nearly every target item, the lift labels over a handful
    assert effective_positives(behaviour_positives(source, target, weighting="cosine")) > 25
    assert effective_positives(lift) < 8
    assert effective_positives(np.eye(3, dtype=np.float32)) == pytest.approx(1.0)
    with pytest.raises(Exception, match="weighting"):
        behaviour_positives(source, target, weighting="nope")


def test_tuning_selects_on_the_cold_validation_items(synthetic_task):
    from mllm.rgcd.pipeline import tune_method

    _, task = synthetic_task
    grid = ({"reg_weight": 1e-4}, {"reg_weight": 10.0})
    chosen, runs = tune_method("shared_id", task, {}, grid=grid, seed=0, epochs=2)
    assert len(runs) == 2 and [r["hyperparameters"]["reg_weight"] for r in runs] == [1e-4, 10.0]
    scores = [r["cold_valid"]["ndcg@10"] for r in runs]
    assert chosen == grid[int(np.argmax(scores))]
