"""DINOSAUR: point retrieval at zero variance, de-duplication, coverage rising with S, baselines, the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.dinosaur import (
    DinosaurError,
    EvalData,
    count_sigma,
    epsilon_greedy_lists,
    evaluate_dinosaur,
    exact_lists,
    list_metrics,
    main,
    popularity_quintiles,
    retrieve,
    sample_item_embeddings,
    samples_per_item,
    stable_top_k,
)
from recsys.train import train_from_args
from retrieval.ann import ExactIndex, build_index


def _catalogue(n_users: int = 60, n_items: int = 400, dim: int = 8, seed: int = 0) -> EvalData:
    """A head of popular items with large scores for everyone, and a tail of rarely seen items."""
    rng = np.random.default_rng(seed)
    counts = np.floor(1000.0 / np.arange(1, n_items + 1) ** 1.1)
    items = rng.normal(size=(n_items, dim)).astype(np.float32) * 0.3
    items[:, 0] += (np.log1p(counts) / 3).astype(np.float32)  # popular items align with every user
    users = rng.normal(size=(n_users, dim)).astype(np.float32) * 0.3
    users[:, 0] += 2.0
    masks = [np.sort(rng.choice(n_items, size=int(rng.integers(0, 30)), replace=False)) for _ in range(n_users)]
    test = sp.random(n_users, n_items, density=0.02, random_state=seed, format="csr")
    test.data[:] = 1.0
    return EvalData(users, items, counts, test, masks, np.full(n_users, 20))


def test_s1_and_zero_variance_equal_point_retrieval_exactly():
    data = _catalogue()
    point = exact_lists(data.users, data.items, 50, data.masks)
    for samples in (1, 5):
        vectors, owners = sample_item_embeddings(data.items, np.zeros(len(data.items), np.float32), samples, seed=3)
        found = retrieve(ExactIndex(vectors, owners), data.users, 50, samples, data.masks)
        np.testing.assert_array_equal(found.items, point)  # same ids, same order
    brute = data.users @ data.items.T
    for row, mask in enumerate(data.masks):
        brute[row, mask] = -np.inf
    np.testing.assert_array_equal(point, np.argsort(-brute, axis=1, kind="stable")[:, :50])


def test_stable_top_k_is_lexsort_by_score_then_column():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, size=(30, 50)).astype(np.float32)  # many ties at every k-th value
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    for k in (1, 7, 25, 50):
        values, columns = stable_top_k(scores, k)
        expected = np.lexsort((np.broadcast_to(np.arange(50), scores.shape), -scores), axis=1)[:, :k]
        np.testing.assert_array_equal(columns, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, 1))


@pytest.mark.parametrize("adaptive", [False, True])
def test_fused_exact_retrieval_equals_search_then_deduplicate(adaptive):
    data = _catalogue(n_users=50, n_items=300)
    data.items[::7] = 0.0  # items without training data have zero factors: ties at score 0
    sigma = count_sigma(data.counts, c=0.5)
    copies = samples_per_item(sigma, 4, adaptive)
    vectors, owners = sample_item_embeddings(data.items, sigma, copies, seed=1)
    index = ExactIndex(vectors, owners, chunk_size=97)  # several chunks, not aligned with the items
    for k in (10, 120, 290):  # 290: fewer unmasked items than k for users with large masks (-1 slots)
        slow = retrieve(index, data.users, k, int(copies.max()), data.masks, batch_size=16, fused=False).items
        fast = retrieve(index, data.users, k, int(copies.max()), data.masks, batch_size=16).items
        np.testing.assert_array_equal(fast, slow)
    assert (fast == -1).any()


def test_retrieval_returns_k_distinct_unmasked_items():
    data = _catalogue()
    sigma = count_sigma(data.counts, c=1.0)
    vectors, owners = sample_item_embeddings(data.items, sigma, 10, seed=0)
    found = retrieve(ExactIndex(vectors, owners), data.users, 40, 10, data.masks)
    for row, items in enumerate(found.items):
        assert (items >= 0).all() and len(set(items.tolist())) == 40
        assert not np.isin(items, data.masks[row]).any()


def test_sampled_copies_keep_the_mean_first():
    items = np.arange(6, dtype=np.float32).reshape(3, 2)
    vectors, owners = sample_item_embeddings(items, np.array([0.0, 1.0, 2.0], np.float32), np.array([1, 3, 2]), seed=0)
    assert owners.tolist() == [0, 1, 1, 1, 2, 2]
    np.testing.assert_array_equal(vectors[[0, 1, 4]], items)  # copy 0 of each item is its point embedding
    np.testing.assert_array_equal(vectors[0], items[0])
    assert not np.allclose(vectors[2], items[1])


def test_coverage_rises_with_samples_on_a_synthetic_catalogue():
    data = _catalogue()
    sigma = count_sigma(data.counts, c=0.6)
    result = evaluate_dinosaur(data, [1, 2, 5, 10], [10, 50], sigma, seed=0, baselines=False)
    coverage = [result[f"S={s}"]["coverage@50"] for s in (1, 2, 5, 10)]
    assert all(b >= a for a, b in itertools.pairwise(coverage)), coverage
    assert coverage[-1] > coverage[0] + 0.05
    tail = [result[f"S={s}"]["coverage_q0@50"] for s in (1, 10)]
    assert tail[1] > tail[0]
    assert result["S=5"]["index"]["n_vectors"] == 5 * len(data.items)


def test_faiss_index_gives_the_same_lists_as_exact_when_probing_everything():
    data = _catalogue()
    vectors, owners = sample_item_embeddings(data.items, count_sigma(data.counts, c=0.6), 3, seed=1)
    exact = retrieve(ExactIndex(vectors, owners), data.users, 20, 3, data.masks).items
    ivf = build_index("faiss-ivf", vectors, owners, nlist=8, nprobe=8)
    np.testing.assert_array_equal(retrieve(ivf, data.users, 20, 3, data.masks).items, exact)


def test_adaptive_samples_give_uncertain_items_more_copies():
    sigma = count_sigma(np.array([0, 10, 1000, 100000]))
    copies = samples_per_item(sigma, 5, adaptive=True)
    assert copies[0] > copies[-1] >= 1 and np.all(np.diff(copies) <= 0)
    assert samples_per_item(sigma, 5).tolist() == [5, 5, 5, 5]


def test_count_sigma_is_the_papers_formula():
    np.testing.assert_allclose(count_sigma(np.array([0, 15])), [0.1, 0.05], rtol=1e-6)


def test_quintiles_and_list_metrics_by_hand():
    counts = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=float)
    assert popularity_quintiles(counts).tolist() == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    lists = np.array([[0, 9, -1], [1, 0, 2]])
    test = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]], dtype=float))
    metrics = list_metrics(lists, test, [3], counts)
    assert metrics["recall@3"] == pytest.approx((1.0 + 0.5) / 2)
    assert metrics["coverage@3"] == pytest.approx(0.4)
    assert metrics["coverage_q0@3"] == pytest.approx(0.5) and metrics["inclusion_q0@3"] == pytest.approx(0.5)


def test_epsilon_greedy_mixes_in_tail_items_only():
    point = np.tile(np.arange(10), (400, 1))
    tail = np.arange(50, 80)
    mixed = epsilon_greedy_lists(point, 0.3, tail, [np.array([50, 51])] * 400, seed=0)
    replaced = mixed != point
    assert replaced.mean() == pytest.approx(0.3, abs=0.03)  # each slot random with probability epsilon
    for row, changed in zip(mixed, replaced, strict=True):
        cut = 10 - int(changed.sum())
        assert not changed[:cut].any()  # the random slots are the last ones
        assert np.isin(row[cut:], tail).all() and not np.isin(row[cut:], [50, 51]).any()
    np.testing.assert_array_equal(epsilon_greedy_lists(point, 0.0, tail, [np.array([])] * 400, seed=0), point)


def test_baselines_are_matched_to_dinosaur_coverage():
    data = _catalogue()
    result = evaluate_dinosaur(data, [1, 5], [20], count_sigma(data.counts, c=0.6), seed=0, match_samples=5)
    target = result["S=5"]["coverage@20"]
    greedy = result["baselines"]["epsilon_greedy"]["K=20"]
    assert greedy["reached"] and greedy["coverage@20"] >= target
    assert result["baselines"]["point_exact"]["coverage@20"] == pytest.approx(result["S=1"]["coverage@20"])


def test_debiased_baseline_at_every_k_is_the_lists_of_its_beta():
    """The grid's lists are computed once at the largest K and cut for the smaller ones: the same lists."""
    data = _catalogue()
    ks = [5, 20, 60]
    result = evaluate_dinosaur(data, [1, 5], ks, count_sigma(data.counts, c=0.6), seed=0, match_samples=5)
    log_counts = np.log1p(data.counts).astype(np.float32)
    for k in ks:
        row = result["baselines"]["popularity_debiased"][f"K={k}"]
        lists = exact_lists(data.users, data.items, k, data.masks, -row["beta"] * log_counts)
        direct = list_metrics(lists, data.test, [k], data.counts)
        for key in (f"recall@{k}", f"coverage@{k}", f"tail_users@{k}"):
            assert row[key] == pytest.approx(direct[key], abs=1e-6)
    assert len({result["baselines"]["popularity_debiased"][f"K={k}"]["beta"] for k in ks}) > 1


def test_bad_arguments_raise_our_error():
    data = _catalogue()
    with pytest.raises(DinosaurError, match="exceeds the catalogue"):
        evaluate_dinosaur(data, [1], [10_000], np.zeros(len(data.items), np.float32))
    with pytest.raises(DinosaurError, match="samples"):
        samples_per_item(np.zeros(3), 0)


@pytest.mark.slow
def test_cli_on_trained_checkpoints(clustered_dataset_dir, tmp_path, capsys):
    common = ["--dataset", str(clustered_dataset_dir), "--quiet", "--split", "loo"]
    train_from_args(["--model", "ials", "--out", str(tmp_path / "ials"), "--embedding_dim", "8", *common])
    out = tmp_path / "d.json"
    argv = ["eval", "--checkpoint", str(tmp_path / "ials"), "--samples", "1,5", "--k", "5,10", "--quiet"]
    assert main([*argv, "--variance", "posterior", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["S=5"]) >= {"recall@10", "ndcg@10", "coverage@10", "recall@5"}
    assert json.loads(out.read_text())["S=1"]["coverage@5"] == printed["S=1"]["coverage@5"]
    # ItemPop has no factors: one clear line, exit 2
    train_from_args(["--model", "pop", "--out", str(tmp_path / "pop"), *common])
    assert main(["eval", "--checkpoint", str(tmp_path / "pop"), "--quiet"]) == 2
    assert "dot-product" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "ials"])
def test_factors_of_every_dot_product_model_reproduce_its_scores(name):
    import torch

    from recsys.dinosaur import dot_product_factors
    from recsys.models import build_model

    class Train:
        users = np.array([0, 0, 1, 2, 3, 4])
        items = np.array([0, 1, 2, 3, 4, 5])

    torch.manual_seed(0)
    model = build_model(name, 5, 6, {"embedding_dim": 4})
    model.prepare(Train())
    if name == "ials":
        model.item_factors.normal_()
        model.user_factors.normal_()
    model.eval()
    users, items = dot_product_factors(model)
    np.testing.assert_allclose(users @ items.T, model.score(torch.arange(5)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_non_dot_product_model_is_refused():
    from recsys.dinosaur import dot_product_factors
    from recsys.models import build_model

    with pytest.raises(DinosaurError, match="dot-product"):
        dot_product_factors(build_model("pop", 3, 4))


def test_user_sampling_is_seeded_and_vanishes_at_zero_variance():
    from recsys.dinosaur import sample_user_embeddings

    users = np.ones((4, 3), dtype=np.float32)
    sigma = np.full(4, 0.5, dtype=np.float32)
    first, again = sample_user_embeddings(users, sigma, 7), sample_user_embeddings(users, sigma, 7)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, sample_user_embeddings(users, sigma, 8))
    np.testing.assert_array_equal(sample_user_embeddings(users, np.zeros(4, np.float32), 7), users)
    data = _catalogue()
    zero = np.zeros(len(data.items), np.float32)
    plain = evaluate_dinosaur(data, [1], [10], zero, baselines=False)
    noisy = evaluate_dinosaur(data, [1], [10], zero, baselines=False, user_sigma=np.full(60, 2.0, np.float32))
    assert noisy["S=1"]["coverage@10"] > plain["S=1"]["coverage@10"]
