"""The full-ranking evaluator against a slow pure-Python reference, hand cases and protocol invariants."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import evals.ranking as ranking
from evals.metrics import MetricError
from evals.ranking import evaluate_full_ranking, evaluate_sampled_ranking

REPO_ROOT = Path(__file__).resolve().parents[2]
KS = (1, 3, 5)


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    """A binary user x item matrix from per-user item lists."""
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def _fixed_scores(scores: np.ndarray):
    """A score_fn that looks up a fixed (n_users, n_items) score matrix."""
    table = torch.as_tensor(scores, dtype=torch.float64)

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return table[users.cpu()].clone()

    return score_fn


def _reference(scores: np.ndarray, test: sp.csr_matrix, mask: sp.csr_matrix, ks, tail: np.ndarray) -> dict:
    """Slow reference: per user, sort candidates by (score desc, relevant last) and count by hand.

    Relevant items tied with irrelevant ones go after them (pessimistic); items that are masked or scored
    -inf/NaN are not candidates, so a relevant one among them is never found.
    """
    n_users, n_items = test.shape
    out: dict[str, list[float]] = {}
    recommended: dict[int, list[list[int]]] = {k: [] for k in ks}
    for user in range(n_users):
        relevant = set(test.indices[test.indptr[user] : test.indptr[user + 1]].tolist())
        if not relevant:
            continue
        masked = set(mask.indices[mask.indptr[user] : mask.indptr[user + 1]].tolist())
        candidates = [
            i
            for i in range(n_items)
            if i not in masked and not math.isnan(scores[user, i]) and scores[user, i] > -math.inf
        ]
        ranked = sorted(candidates, key=lambda i: (-scores[user, i], i in relevant))
        hit_positions = [pos for pos, item in enumerate(ranked) if item in relevant]
        for k in ks:
            top = [pos for pos in hit_positions if pos < k]
            dcg = sum(1 / math.log2(pos + 2) for pos in top)
            idcg = sum(1 / math.log2(pos + 2) for pos in range(min(len(relevant), k)))
            values = {
                "hr": 1.0 if top else 0.0,
                "recall": len(top) / len(relevant),
                "precision": len(top) / k,
                "ndcg": dcg / idcg,
                "mrr": 1 / (top[0] + 1) if top else 0.0,
            }
            # for catalogue metrics, order ties by item index (the tests feeding these have no ties)
            by_score = sorted(candidates, key=lambda i: (-scores[user, i], i))[:k]
            recommended[k].append(by_score)
            values["tail_share"] = sum(bool(tail[i]) for i in by_score) / k
            for name, value in values.items():
                out.setdefault(f"{name}@{k}", []).append(value)
    result = {key: float(np.mean(values)) for key, values in out.items()}
    for k in ks:
        counts = np.zeros(n_items)
        for items in recommended[k]:
            for i in items:
                counts[i] += 1
        result[f"coverage@{k}"] = float((counts > 0).sum() / n_items)
        x = np.sort(counts)
        n = x.size
        result[f"gini@{k}"] = float(sum((2 * (i + 1) - n - 1) * x[i] for i in range(n)) / (n * x.sum()))
    result["per_user"] = out
    return result


def _random_problem(seed: int, n_users: int = 60, n_items: int = 40, integer_scores: bool = True):
    """Random train/test data with heavy ties, some test items also masked, some unscoreable users."""
    rng = np.random.default_rng(seed)
    train = (rng.random((n_users, n_items)) < 0.25).astype(float)
    test = (rng.random((n_users, n_items)) < 0.12) & (train == 0)
    test[: n_users // 6] |= rng.random((n_users // 6, n_items)) < 0.5  # heavy users: > 8 relevant items
    test[n_users // 6 : n_users // 3] = False
    test[n_users // 3 : n_users // 3 + 3, 0] = True  # one item of each of these users is test and train
    train[n_users // 3 : n_users // 3 + 3, 0] = 1
    if integer_scores:
        scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float64)
    else:
        scores = rng.standard_normal((n_users, n_items))
    scores[-1] = -np.inf  # a user the model cannot score
    scores[-2] = np.nan
    scores[-3, :5] = -np.inf  # some items it cannot score
    test[-3:, :3] = True
    return scores, sp.csr_matrix(test.astype(float)), sp.csr_matrix(train)


@pytest.mark.parametrize("compare_max_relevant", [0, 1000])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_slow_reference_with_many_ties(
    seed: int, compare_max_relevant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0 forces the sort + searchsorted path, 1000 the direct-comparison path: both must be exact
    monkeypatch.setattr(ranking, "_COMPARE_MAX_RELEVANT", compare_max_relevant)
    scores, test, train = _random_problem(seed)
    tail = np.random.default_rng(seed + 10).random(test.shape[1]) < 0.5
    got = evaluate_full_ranking(
        _fixed_scores(scores),
        test,
        train,
        ks=KS,
        batch_size=7,
        tail_mask=tail,
        progress=False,
        return_per_user=True,
    )
    want = _reference(scores, test, train, KS, tail)
    assert got["n_users"] == len(want["per_user"]["hr@1"]) == int((np.diff(test.indptr) > 0).sum())
    for k in KS:
        for name in ("hr", "recall", "precision", "ndcg", "mrr"):
            key = f"{name}@{k}"
            assert got[key] == pytest.approx(want[key], abs=1e-6), key
            np.testing.assert_allclose(got["per_user"][key], want["per_user"][key], atol=1e-6, err_msg=key)
    assert got["hr@5"] > 0  # the data is not degenerate


def test_catalogue_metrics_match_reference_without_ties() -> None:
    scores, test, train = _random_problem(3, integer_scores=False)
    scores[-3:] = np.random.default_rng(0).standard_normal((3, test.shape[1]))  # no -inf rows here
    tail = np.random.default_rng(4).random(test.shape[1]) < 0.3
    got = evaluate_full_ranking(
        _fixed_scores(scores), test, train, ks=KS, batch_size=16, tail_mask=tail, progress=False
    )
    want = _reference(scores, test, train, KS, tail)
    for k in KS:
        for name in ("coverage", "tail_share", "gini", "ndcg", "recall"):
            assert got[f"{name}@{k}"] == pytest.approx(want[f"{name}@{k}"], abs=1e-6), f"{name}@{k}"


def test_hand_case_pessimistic_ties() -> None:
    # One user, 6 items, item 5 is in train (masked). Test items: 1 and 3.
    # scores: item 0: 2, item 1: 1, item 2: 1, item 3: 1, item 4: 0, item 5: 9 (masked)
    # Pessimistic order: 0 (score 2), then the tie group {1, 2, 3} with irrelevant 2 first -> 2, 1, 3
    # (relevant 1 and 3 take the last two slots of the group), then 4.
    # Positions of relevant items: 2 and 3.
    #   K=3: one hit at position 2. HR 1, Recall 1/2, Precision 1/3, MRR 1/3,
    #        NDCG = (1/log2(4)) / (1 + 1/log2(3)) = 0.5 / 1.6309298 = 0.3065736
    scores = np.array([[2.0, 1.0, 1.0, 1.0, 0.0, 9.0]])
    test = _csr([[1, 3]], 6)
    train = _csr([[5]], 6)
    got = evaluate_full_ranking(_fixed_scores(scores), test, train, ks=(3,), progress=False)
    assert got["hr@3"] == 1.0
    assert got["recall@3"] == pytest.approx(0.5)
    assert got["precision@3"] == pytest.approx(1 / 3)
    assert got["mrr@3"] == pytest.approx(1 / 3)
    assert got["ndcg@3"] == pytest.approx(0.3065736, abs=1e-7)
    assert got["protocol"] == "full_ranking"


def test_constant_scorer_scores_zero_and_perfect_scorer_scores_one() -> None:
    n_users, n_items = 30, 500
    rng = np.random.default_rng(0)
    test = _csr([sorted(rng.choice(n_items, size=3, replace=False).tolist()) for _ in range(n_users)], n_items)
    train = _csr([[] for _ in range(n_users)], n_items)
    constant = evaluate_full_ranking(
        lambda users: torch.zeros(len(users), n_items), test, train, ks=(10, 20), progress=False
    )
    for key in ("hr@10", "ndcg@10", "recall@20", "mrr@20", "precision@10"):
        assert constant[key] == 0.0, key
    perfect_scores = test.toarray()  # 1 on each test item, 0 elsewhere: the test items tie with each other
    perfect = evaluate_full_ranking(_fixed_scores(perfect_scores), test, train, ks=(10,), progress=False)
    for key in ("hr@10", "ndcg@10", "recall@10", "mrr@10"):
        assert perfect[key] == pytest.approx(1.0), key
    assert perfect["precision@10"] == pytest.approx(3 / 10)


def test_masked_train_items_never_appear() -> None:
    # Every user's train items are 0..4 and the scorer loves them most; test items are 10+u.
    # With masking, the top-3 is always 5, 6, 7 (next by score), so coverage@3 = 3/20 and the test item
    # (scored below 5..9) is never in the top 5. Marking the train items as "tail" shows none is listed.
    n_users, n_items = 8, 20
    train = _csr([[0, 1, 2, 3, 4]] * n_users, n_items)
    test = _csr([[10 + u] for u in range(n_users)], n_items)
    scores = np.tile(-np.arange(n_items, dtype=float), (n_users, 1))
    scores[:, :5] += 1000.0
    train_as_tail = np.arange(n_items) < 5
    kwargs = dict(ks=(3, 5), tail_mask=train_as_tail, progress=False)
    got = evaluate_full_ranking(_fixed_scores(scores), test, train, **kwargs)
    assert got["tail_share@3"] == 0.0
    assert got["tail_share@5"] == 0.0
    assert got["coverage@3"] == pytest.approx(3 / n_items)
    assert got["coverage@5"] == pytest.approx(5 / n_items)
    assert got["hr@5"] == 0.0
    # without the mask, the loved train items fill the lists
    unmasked = evaluate_full_ranking(_fixed_scores(scores), test, None, **kwargs)
    assert unmasked["tail_share@5"] == 1.0


def test_every_test_user_counts_even_when_unscoreable() -> None:
    # users 0 and 1 have a test item (user 2 has none and does not count); user 1's row is all -inf.
    n_items = 4
    test = _csr([[0], [0], []], n_items)
    train = _csr([[], [], [1]], n_items)
    scores = np.array([[5.0, 1.0, 1.0, 1.0], [-np.inf] * 4, [0.0] * 4])
    got = evaluate_full_ranking(_fixed_scores(scores), test, train, ks=(1,), progress=False, return_per_user=True)
    assert got["n_users"] == 2
    assert got["hr@1"] == pytest.approx(0.5)  # user 0 hits, user 1 counts as zero
    np.testing.assert_array_equal(got["per_user"]["user"], [0, 1])
    np.testing.assert_array_equal(got["per_user"]["hr@1"], [1.0, 0.0])
    assert got["coverage@1"] == pytest.approx(1 / n_items)  # user 1 recommends nothing


def test_tail_share_from_popularity() -> None:
    # popularity [50, 30, 10, 5, 5]: items 0, 1 are the 80% head. Scores put items 2, 1 on top for both.
    test = _csr([[4], [4]], 5)
    scores = np.tile([2.0, 3.0, 4.0, 1.0, 0.0], (2, 1))
    got = evaluate_full_ranking(
        _fixed_scores(scores),
        test,
        None,
        ks=(2,),
        item_popularity=np.array([50, 30, 10, 5, 5]),
        progress=False,
    )
    # top-2 = [2, 1]: one tail item of two slots
    assert got["tail_share@2"] == pytest.approx(0.5)
    # both users recommend the same 2 of 5 items: counts [0, 2, 2, 0, 0], sorted [0, 0, 0, 2, 2]:
    # Gini = ((2*4 - 6) * 2 + (2*5 - 6) * 2) / (5 * 4) = 12 / 20
    assert got["gini@2"] == pytest.approx(0.6)


def test_sampled_ranking_is_prefixed_labelled_and_seeded() -> None:
    scores, test, train = _random_problem(5, n_users=30, n_items=300)
    fn = _fixed_scores(scores)
    a = evaluate_sampled_ranking(fn, test, train, n_negatives=20, seed=3, ks=(5,), progress=False)
    b = evaluate_sampled_ranking(fn, test, train, n_negatives=20, seed=3, ks=(5,), batch_size=4, progress=False)
    assert a["protocol"] == "sampled_20_negatives"
    assert all(key.startswith("sampled20_") for key in a if key != "protocol")
    assert a == b  # the draw does not depend on batching
    full = evaluate_full_ranking(fn, test, train, ks=(5,), progress=False)
    assert a["sampled20_ndcg@5"] > full["ndcg@5"]  # fewer competitors: sampled metrics are inflated
    # with more negatives than items, every unmasked item is a candidate: sampled equals full
    everything = evaluate_sampled_ranking(fn, test, train, n_negatives=1000, ks=(5,), progress=False)
    for name in ("hr", "recall", "precision", "ndcg", "mrr"):
        assert everything[f"sampled1000_{name}@5"] == pytest.approx(full[f"{name}@5"], abs=1e-12)
    assert everything["sampled1000_n_users"] == full["n_users"]


def test_bad_inputs_raise_metric_error() -> None:
    test = _csr([[0], [1]], 3)
    with pytest.raises(MetricError, match="score_fn: returned shape"):
        evaluate_full_ranking(lambda users: torch.zeros(len(users), 2), test, None, ks=(1,), progress=False)
    with pytest.raises(MetricError, match="mask_csr: shape"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), test, _csr([[0]], 3), progress=False)
    with pytest.raises(MetricError, match="test_csr: no user has a test item"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), _csr([[], []], 3), None, progress=False)
    with pytest.raises(MetricError, match="ks: expected"):
        evaluate_full_ranking(lambda u: torch.zeros(len(u), 3), test, None, ks=(0,), progress=False)


def test_single_process_accelerator_gives_the_same_result() -> None:
    accelerate = pytest.importorskip("accelerate")
    scores, test, train = _random_problem(7)
    fn = _fixed_scores(scores)
    plain = evaluate_full_ranking(fn, test, train, ks=KS, progress=False)
    with_acc = evaluate_full_ranking(
        fn, test, train, ks=KS, progress=False, accelerator=accelerate.Accelerator(cpu=True)
    )
    assert with_acc == plain


_TWO_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, scipy.sparse as sp, torch
    from accelerate import Accelerator
    from evals.ranking import evaluate_full_ranking

    rng = np.random.default_rng(0)
    n_users, n_items = 23, 50  # 23 users: batches of 4 (6 batches) and of 5 (5, uneven across 2 processes)
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1) | (np.arange(n_items) == 0)[None, :])
    train = sp.csr_matrix(rng.random((n_users, n_items)) < 0.2)
    table = torch.from_numpy(rng.integers(0, 3, size=(n_users, n_items)).astype(np.float32))
    acc = Accelerator(cpu=True)
    same = True
    for batch_size in (4, 5):
        kwargs = dict(ks=(3, 10), batch_size=batch_size, progress=False, return_per_user=True)
        sharded = evaluate_full_ranking(lambda u: table[u], test, train, accelerator=acc, **kwargs)
        single = evaluate_full_ranking(lambda u: table[u], test, train, **kwargs)
        per_user = single.pop("per_user")
        sharded_per_user = sharded.pop("per_user")
        same = same and sharded == single
        same = same and all(np.array_equal(sharded_per_user[k], per_user[k]) for k in per_user)
    report = {"same": bool(same), "n_users": sharded["n_users"], "processes": acc.num_processes}
    sys.stdout.write(json.dumps({"rank": acc.process_index, **report}) + "\\n")  # one write: no interleaving
    sys.stdout.flush()
    acc.wait_for_everyone()
    torch.distributed.destroy_process_group()  # a group left to interpreter exit can abort in gloo's teardown
    """
)


@pytest.mark.slow
def test_two_processes_gather_to_the_single_process_result(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    script = tmp_path / "two_process_eval.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    # torchrun (not `accelerate launch --cpu`, which runs one process unless MPI is set up); the script's
    # Accelerator(cpu=True) reads the torchrun environment and becomes a 2-process gloo group.
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # one JSON object per rank; parsed by object, not by line, in case the two ranks' writes still land on one line
    reports = [json.loads(match) for match in re.findall(r"\{[^{}]*\}", done.stdout)]
    assert sorted(r["rank"] for r in reports) == [0, 1], done.stdout + done.stderr[-3000:]
    for report in reports:
        assert report == {"rank": report["rank"], "same": True, "n_users": 23, "processes": 2}


@pytest.mark.parametrize("limit", [1, 5, 20])
def test_limited_positions_equal_the_exact_ones_below_the_limit(limit):
    """The top-``limit`` shortcut (users with many relevant items) agrees with the full sort below the limit."""
    from evals.ranking import pessimistic_positions

    gen = torch.Generator().manual_seed(limit)
    scores = torch.randint(0, 12, (16, 300), generator=gen).float()  # many ties
    scores[:, :5] = -torch.inf  # masked items
    relevant = torch.rand(16, 300, generator=gen) < 0.1  # ~30 relevant items per row: the sorting path
    relevant[0] = False  # a user without relevant items in the batch
    exact = pessimistic_positions(scores, relevant)
    limited = pessimistic_positions(scores, relevant, limit=limit)
    assert exact.shape == limited.shape and (relevant.sum(1) > 8).any()
    expected = exact.masked_fill(exact >= limit, 300)
    assert torch.equal(limited, expected)


def test_k_larger_than_the_catalogue_counts_only_real_hits() -> None:
    """K beyond the catalogue: a relevant item that is masked away, and row padding, are never hits."""
    # user 0: items 0, 1 relevant; user 1: item 2 relevant and item 3 relevant but also masked (scored -inf)
    test = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=np.float32))
    mask = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=np.float32))
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    result = evaluate_full_ranking(lambda users: scores[users], test, mask, ks=(3, 10), progress=False)
    assert result["recall@10"] == pytest.approx((1.0 + 0.5) / 2)  # user 1's masked item cannot be found
    assert result["recall@3"] == pytest.approx((1.0 + 0.5) / 2)
    assert result["hr@10"] == pytest.approx(1.0)
