"""RGCD-Rep cold-item evaluation: held-out target items reach no training signal and are scored at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mllm.rgcd.data import cold_start_task, movielens_genre_domains, synthetic_contents, synthetic_two_domain
from mllm.rgcd.errors import RGCDDataError
from mllm.rgcd.pipeline import _cold_metrics, decomposition_labels, fit_decomposition, run_method, tune_method
from mllm.rgcd.two_tower import RGCDTwoTower, TwoTowerConfig

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def tasks():
    data = synthetic_two_domain(n_users=200, n_items_per_domain=60, n_topics=6, seed=4)
    plain = cold_start_task(data, cold_share=0.5, max_cold_interactions=2, seed=0)
    held = cold_start_task(data, cold_share=0.5, max_cold_interactions=2, seed=0, cold_items=0.2)
    return data, plain, held


def test_cold_items_leave_the_training_split_but_keep_their_validation_and_test_interactions(tasks) -> None:
    data, plain, held = tasks
    cold = held.cold_items
    assert cold.size == round(0.2 * np.unique(data.target.items).size) and held.warm_items.size == 60 - cold.size
    assert not np.isin(held.split.train.items, cold).any()
    assert np.isin(plain.split.train.items, cold).sum() > 50  # without the option they are trained on
    assert np.isin(held.split.test.items, cold).sum() > 10 and np.isin(held.split.valid.items, cold).sum() > 10
    # the users' split is untouched: same cold users, same valid/test, and train loses exactly the cold items' rows
    np.testing.assert_array_equal(held.cold_users, plain.cold_users)
    assert held.split.test.n_interactions == plain.split.test.n_interactions
    kept = ~np.isin(plain.split.train.items, cold)
    assert held.split.train.n_interactions == int(kept.sum())
    info = held.info()
    assert info["n_cold_items"] == cold.size
    assert info["cold_item_test"] == int(np.isin(held.split.test.items, cold).sum())
    other = cold_start_task(data, cold_share=0.5, max_cold_interactions=2, seed=0, cold_items=0.2, item_seed=1)
    assert other.cold_items.size == cold.size and not np.array_equal(other.cold_items, cold)
    np.testing.assert_array_equal(other.cold_users, plain.cold_users)  # the item draw leaves the users alone
    with pytest.raises(RGCDDataError, match="cold_items"):
        cold_start_task(data, cold_items=1.0)


def test_no_cold_item_reaches_the_behavioural_or_content_labels_of_the_decomposition(tasks) -> None:
    data, plain, held = tasks
    source, target = synthetic_contents(data, seed=4)
    cold = held.cold_items
    for positives in ("behaviour", "behaviour_cosine", "content"):
        leaked = decomposition_labels(plain, source, target, positives)
        assert leaked[:, cold].sum() > 0  # the same labels without holding the items out do use them
        labels = decomposition_labels(held, source, target, positives)
        assert labels[:, cold].sum() == 0, positives
        assert labels[:, held.warm_items].sum() > 0


def test_the_decomposition_is_trained_without_the_cold_items_content(tasks) -> None:
    data, _, held = tasks
    source, target = synthetic_contents(data, seed=4)
    changed = target.copy()
    changed[held.cold_items] = np.random.default_rng(9).normal(scale=5.0, size=(held.cold_items.size, target.shape[1]))
    _, parts, _ = fit_decomposition(held, source, target, residual=True, seed=0, steps=25)
    _, other, _ = fit_decomposition(held, source, changed, residual=True, seed=0, steps=25)
    warm = held.warm_items
    # the cold items' content changes nothing that was trained: every warm item's parts are identical ...
    np.testing.assert_allclose(parts["source_transferable"], other["source_transferable"], atol=1e-6)
    np.testing.assert_allclose(parts["target_transferable"][warm], other["target_transferable"][warm], atol=1e-6)
    np.testing.assert_allclose(parts["target_residual"][warm], other["target_residual"][warm], atol=1e-6)
    # ... while the cold items' own parts follow their content
    cold = held.cold_items
    assert np.abs(parts["target_transferable"][cold] - other["target_transferable"][cold]).max() > 1e-3


def test_two_tower_gives_cold_items_no_id_vector_and_never_samples_them_as_negatives(tasks) -> None:
    _, _, held = tasks
    split = held.split
    model = RGCDTwoTower(TwoTowerConfig(joint_behaviour=True), split.train.n_users, split.train.n_items)
    model.attach(held.source.to_csr(), None, None, cold_items=held.cold_items)
    model.prepare(split.train)
    with torch.no_grad():
        vectors = model._all_item_vectors()
    assert float(vectors[torch.as_tensor(held.cold_items)].abs().sum()) == 0.0  # no features: nothing to score on
    assert float(vectors[torch.as_tensor(held.warm_items)].abs().sum()) > 0.0
    dataset = model.train_dataset(split.train)
    batch = dataset.__getitems__(list(range(len(dataset))))
    assert len(dataset) == split.train.n_interactions + held.source.n_interactions
    assert not np.isin(batch["neg_items"].numpy(), held.cold_items).any()
    assert not np.isin(batch["pos_items"].numpy(), held.cold_items).any()
    leaky = RGCDTwoTower(TwoTowerConfig(), split.train.n_users, split.train.n_items)
    leaky.attach(None, None, None, cold_items=held.cold_items)
    with pytest.raises(ValueError, match="cold items"):
        leaky.train_dataset(held.split.test)  # interactions on cold items must never be trained on


def test_the_evaluation_scores_the_cold_items_test_interactions(tasks) -> None:
    _, _, held = tasks
    test = held.split.test.to_csr()

    class Oracle:  # ranks each user's test item first
        def eval(self) -> None:
            return None

        def score(self, users: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(test[users.numpy()].toarray(), dtype=torch.float32)

    on_cold = _cold_metrics(Oracle(), held, (10,), group="cold_items")
    on_warm = _cold_metrics(Oracle(), held, (10,), group="warm_items")
    n_cold_test = int(np.isin(held.split.test.items, held.cold_items).sum())
    assert on_cold["n_users"] == n_cold_test and on_cold["hr@10"] == 1.0
    assert on_cold["n_users"] + on_warm["n_users"] == held.split.test.n_interactions


def test_content_methods_rank_cold_items_and_tuning_selects_on_cold_item_validation(tasks) -> None:
    data, _, held = tasks
    source, target = synthetic_contents(data, seed=4)
    contents = {"reasoning": (source, target)}
    content = run_method("student_raw", held, contents, seed=0, epochs=3)
    ids = run_method("shared_id", held, contents, seed=0, epochs=3)
    for result in (content, ids):
        assert {"cold_item", "warm_item", "cold_item_valid"} <= set(result)
    # planted topic vectors let the content method find cold items; IDs score every cold item alike (0)
    assert content["cold_item"]["ndcg@10"] > ids["cold_item"]["ndcg@10"]
    grid = ({"reg_weight": 10.0}, {"reg_weight": 1e-4})
    chosen, runs = tune_method("student_raw", held, contents, grid=grid, seed=0, epochs=2)
    scores = [r["cold_item_valid"]["ndcg@10"] for r in runs]
    assert scores[0] != scores[1] and chosen == grid[int(np.argmax(scores))]
    # an ID model cannot score a cold item (0 at every setting): the tie is broken on the cold users' validation
    chosen, runs = tune_method("shared_id", held, {}, grid=grid, seed=0, epochs=2)
    assert [r["cold_item_valid"]["ndcg@10"] for r in runs] == [0.0, 0.0]
    assert chosen == grid[int(np.argmax([r["cold_valid"]["ndcg@10"] for r in runs]))]


def test_cold_items_on_the_real_movielens_file() -> None:
    data = movielens_genre_domains(DATA / "movielens" / "ml-1m", max_users=80, seed=3, max_target_items=60)
    task = cold_start_task(data, cold_share=0.5, max_cold_interactions=2, seed=0, cold_items=0.25)
    assert task.cold_items.size == 15
    assert not np.isin(task.split.train.items, task.cold_items).any()
    assert np.isin(task.split.test.items, task.cold_items).any()


def test_eval_cli_passes_the_cold_item_share_and_its_seed_to_the_evaluation(tmp_path: Path, monkeypatch) -> None:
    import mllm.rgcd.pipeline as pipeline
    from mllm.rgcd.__main__ import main

    seen: dict = {}

    def record(data, embeddings, **options):
        seen.update(options)
        return {}

    monkeypatch.setattr(pipeline, "evaluate_methods", record)
    args = ["eval", "--data", "synthetic", "--out", str(tmp_path / "r.json"), "--cold-items", "0.3"]
    assert main([*args, "--cold-item-seed", "2"]) == 0
    assert seen["cold_items"] == 0.3 and seen["cold_item_seed"] == 2
