"""Hand-computed checks of the metric functions in evals.metrics (and sklearn, where it is installed)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from evals.metrics import (
    MetricError,
    binary_nll,
    gini_index,
    grouped_auc,
    hit_rate_at_k,
    item_coverage,
    log_loss,
    long_tail_mask,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    recommendation_counts,
    roc_auc,
    tail_share,
    user_auc,
)

# Three users, four ranked positions each (True = the item at that position is relevant).
#   user 0: hits at positions 0 and 2, 3 relevant items in all
#   user 1: no hit, 2 relevant items
#   user 2: a hit at position 1, 1 relevant item
HITS = np.array(
    [
        [True, False, True, False],
        [False, False, False, False],
        [False, True, False, False],
    ]
)
N_RELEVANT = np.array([3, 2, 1])
LOG2_3 = math.log2(3)  # 1.5849625...

# K = 4 by hand:
#   HR:        [1, 0, 1]
#   Recall:    [2/3, 0, 1/1]
#   Precision: [2/4, 0, 1/4]
#   NDCG:      user 0: DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5;
#                      IDCG over min(3, 4) = 3 hits = 1 + 1/log2(3) + 1/log2(4) = 2.1309298
#                      NDCG = 1.5 / 2.1309298 = 0.7039180
#              user 2: DCG = 1/log2(3) = 0.6309298; IDCG over 1 hit = 1 -> 0.6309298
#   MRR:       [1/1, 0, 1/2]
EXPECTED_K4 = {
    "hr": [1.0, 0.0, 1.0],
    "recall": [2 / 3, 0.0, 1.0],
    "precision": [0.5, 0.0, 0.25],
    "ndcg": [1.5 / (1 + 1 / LOG2_3 + 0.5), 0.0, 1 / LOG2_3],
    "mrr": [1.0, 0.0, 0.5],
}
# K = 2 by hand (only positions 0 and 1 count):
#   HR [1, 0, 1]; Recall [1/3, 0, 1]; Precision [1/2, 0, 1/2]
#   NDCG user 0: DCG = 1; IDCG over min(3, 2) = 2 hits = 1 + 1/log2(3) = 1.6309298 -> 0.6131472
#        user 2: 0.6309298 as above
#   MRR [1, 0, 1/2]
EXPECTED_K2 = {
    "hr": [1.0, 0.0, 1.0],
    "recall": [1 / 3, 0.0, 1.0],
    "precision": [0.5, 0.0, 0.5],
    "ndcg": [1 / (1 + 1 / LOG2_3), 0.0, 1 / LOG2_3],
    "mrr": [1.0, 0.0, 0.5],
}


def test_hand_computed_numbers_are_what_we_think() -> None:
    # guard the constants above against a typo: 0.7039180 and 0.6131472 are the hand results
    assert EXPECTED_K4["ndcg"][0] == pytest.approx(0.7039180, abs=1e-7)
    assert EXPECTED_K2["ndcg"][0] == pytest.approx(0.6131472, abs=1e-7)


@pytest.mark.parametrize(("k", "expected"), [(4, EXPECTED_K4), (2, EXPECTED_K2)])
def test_ranking_metrics_hand_case_numpy(k: int, expected: dict[str, list[float]]) -> None:
    np.testing.assert_allclose(hit_rate_at_k(HITS, k), expected["hr"], atol=1e-12)
    np.testing.assert_allclose(recall_at_k(HITS, N_RELEVANT, k), expected["recall"], atol=1e-12)
    np.testing.assert_allclose(precision_at_k(HITS, k), expected["precision"], atol=1e-12)
    np.testing.assert_allclose(ndcg_at_k(HITS, N_RELEVANT, k), expected["ndcg"], atol=1e-12)
    np.testing.assert_allclose(mrr_at_k(HITS, k), expected["mrr"], atol=1e-12)


def test_ranking_metrics_torch_path_matches_and_stays_torch() -> None:
    metrics = ranking_metrics(torch.from_numpy(HITS), torch.from_numpy(N_RELEVANT), ks=(2, 4))
    for name, values in EXPECTED_K4.items():
        assert isinstance(metrics[f"{name}@4"], torch.Tensor)
        np.testing.assert_allclose(metrics[f"{name}@4"].numpy(), values, atol=1e-12)
    for name, values in EXPECTED_K2.items():
        np.testing.assert_allclose(metrics[f"{name}@2"].numpy(), values, atol=1e-12)
    assert isinstance(ranking_metrics(HITS, N_RELEVANT, ks=(4,))["ndcg@4"], np.ndarray)


def test_recall_divides_by_all_relevant_items_not_min_k() -> None:
    # 30 relevant items, the top 10 are all hits: Recall@10 = 10/30 (not 10/min(10, 30) = 1),
    # while NDCG@10 = 1 because the ideal list also has only 10 slots.
    hits = np.ones((1, 10), dtype=bool)
    assert recall_at_k(hits, [30], 10)[0] == pytest.approx(1 / 3)
    assert ndcg_at_k(hits, [30], 10)[0] == pytest.approx(1.0)
    assert precision_at_k(hits, 10)[0] == pytest.approx(1.0)


def test_user_without_relevant_items_scores_zero_not_nan() -> None:
    hits = np.zeros((1, 5), dtype=bool)
    assert recall_at_k(hits, [0])[0] == 0.0
    assert ndcg_at_k(hits, [0])[0] == 0.0


def test_ranking_metric_input_errors_name_the_argument() -> None:
    with pytest.raises(MetricError, match="k: 5 exceeds"):
        hit_rate_at_k(HITS, 5)
    with pytest.raises(MetricError, match="n_relevant: expected 3"):
        recall_at_k(HITS, [1, 2], 4)
    with pytest.raises(MetricError, match="hits: expected a 2-D"):
        precision_at_k(np.zeros(4, dtype=bool))
    with pytest.raises(MetricError, match="n_relevant: some user has more hits"):
        recall_at_k(HITS, [1, 2, 1], 4)


def test_coverage_counts_and_gini_hand_case() -> None:
    # Three users' top-2 lists over 5 items; -1 is an empty slot (nothing to recommend).
    recommended = np.array([[0, 1], [0, 2], [0, -1]])
    counts = recommendation_counts(recommended, 5)
    np.testing.assert_array_equal(counts, [3, 1, 1, 0, 0])
    # items 0, 1, 2 are recommended: coverage = 3/5
    assert item_coverage(recommended, 5) == pytest.approx(0.6)
    # Gini: sorted counts x = [0, 0, 1, 1, 3], n = 5, weights 2i - n - 1 = [-4, -2, 0, 2, 4]:
    # sum w*x = 0 + 0 + 0 + 2 + 12 = 14; n * sum x = 5 * 5 = 25 -> 14/25 = 0.56
    assert gini_index(counts) == pytest.approx(0.56)
    assert gini_index(torch.tensor([4, 4, 4, 4])) == pytest.approx(0.0)
    # everything on one item of n: (n - 1)/n = 0.8 for n = 5
    assert gini_index([0, 0, 0, 0, 5]) == pytest.approx(0.8)
    assert gini_index([0, 0, 0]) == 0.0
    with pytest.raises(MetricError, match="out of range"):
        item_coverage(recommended, 2)


def test_long_tail_mask_and_tail_share_hand_case() -> None:
    # popularity [50, 30, 10, 5, 5] of 100 interactions: items 0 and 1 hold 80% -> head; the rest is tail
    tail = long_tail_mask(np.array([50, 30, 10, 5, 5]))
    np.testing.assert_array_equal(tail, [False, False, True, True, True])
    # [40, 30, 20, 10]: 40 + 30 = 70 < 80, so the head needs item 2 as well
    np.testing.assert_array_equal(long_tail_mask([40, 30, 20, 10]), [False, False, False, True])
    recommended = np.array([[0, 1], [0, 2], [3, -1]])
    # 6 slots, tail items in them: 2 (user 1) and 3 (user 2) -> 2/6; the empty slot is not tail
    assert tail_share(recommended, tail) == pytest.approx(2 / 6)
    np.testing.assert_allclose(tail_share(recommended, tail, per_user=True), [0.0, 0.5, 0.5])


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Brute force: fraction of (positive, negative) pairs ordered correctly, ties counting 1/2."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def test_auc_hand_cases() -> None:
    # positives 0.35 and 0.8 vs negatives 0.1 and 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # tie: positive 0.5 vs negative 0.5 counts 1/2; the other three pairs are won -> 3.5/4
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == pytest.approx(0.875)
    assert roc_auc(torch.tensor([True, False]), torch.tensor([0.1, 0.9])) == pytest.approx(0.0)
    with pytest.raises(MetricError, match="both positive and negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_auc_matches_brute_force_pairs_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=300)
    scores = rng.integers(0, 6, size=300).astype(np.float64)  # heavy ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)


def test_auc_and_log_loss_match_sklearn() -> None:
    sk_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=500)
    tied_scores = rng.integers(0, 10, size=500) / 10.0
    assert roc_auc(labels, tied_scores) == pytest.approx(sk_metrics.roc_auc_score(labels, tied_scores), abs=1e-12)
    probabilities = rng.random(500)
    probabilities[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]  # exercise the clipping
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn renames y_pred/y_proba across versions
        for dtype in (np.float64, np.float32):
            p = probabilities.astype(dtype)
            assert log_loss(labels, p) == pytest.approx(sk_metrics.log_loss(labels, p), rel=1e-6)


def test_log_loss_and_nll_hand_cases() -> None:
    # -(ln 0.8 + ln(1 - 0.4)) / 2 = (0.2231436 + 0.5108256) / 2 = 0.3669846
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(0.3669846, abs=1e-7)
    # a confident wrong answer is clipped at eps = 2.22e-16 (float64): -ln(eps) = 36.0437
    assert log_loss([0, 1], [1.0, 0.0]) == pytest.approx(-math.log(np.finfo(np.float64).eps))
    # logits z = [0, 2], labels [1, 0]: softplus(0) - 1*0 = ln 2 = 0.6931472;
    # softplus(2) - 0*2 = ln(1 + e^2) = 2.1269280
    assert binary_nll([1, 0], [0.0, 2.0], from_logits=True) == pytest.approx((0.6931472 + 2.1269280) / 2, abs=1e-7)
    assert binary_nll([1, 0], [0.0, 2.0], from_logits=True, reduction="sum") == pytest.approx(2.8200752, abs=1e-7)
    # probabilities and their logits give the same NLL
    z = torch.tensor([-3.0, 0.5, 4.0], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0])
    assert binary_nll(y, torch.sigmoid(z)) == pytest.approx(binary_nll(y, z, from_logits=True), rel=1e-9)
    # huge logits stay finite
    assert math.isfinite(binary_nll([0], [1000.0], from_logits=True))
    with pytest.raises(MetricError, match="probabilities: must lie in"):
        log_loss([1], [1.5])
    with pytest.raises(MetricError, match="labels: expected binary"):
        log_loss([2], [0.5])


def test_grouped_auc_hand_case() -> None:
    # group a: positive 0.9 beats negative 0.1, loses to 0.95 -> AUC 0.5, 3 impressions
    # group b: positive 0.2 loses to negative 0.3 -> AUC 0.0, 2 impressions
    # group c: one impression, only a positive -> skipped
    # gAUC = (3 * 0.5 + 2 * 0.0) / (3 + 2) = 0.3
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([1, 0, 0, 1, 0, 1])
    scores = np.array([0.9, 0.1, 0.95, 0.2, 0.3, 0.5])
    assert grouped_auc(groups, labels, scores) == pytest.approx(0.3)
    with pytest.raises(MetricError, match="gAUC is undefined"):
        grouped_auc([1, 2], [1, 0], [0.3, 0.4])


def test_user_auc_is_the_unweighted_mean_of_per_user_aucs() -> None:
    # same case as above: users a (AUC 0.5) and b (AUC 0.0) count once each -> 0.25; c is skipped
    users = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([1, 0, 0, 1, 0, 1])
    scores = np.array([0.9, 0.1, 0.95, 0.2, 0.3, 0.5])
    assert user_auc(users, labels, scores) == pytest.approx(0.25)
    with pytest.raises(MetricError, match="weighting"):
        grouped_auc(users, labels, scores, weighting="rows")
