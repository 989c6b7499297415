"""Pure metric functions for ranking, catalogue and CTR evaluation, on numpy arrays or torch tensors.

A leaf module: it imports nothing of ours, so `recsys` and `mllm` may use it freely.

Ranking metrics take ``hits``, a boolean matrix ``(n_users, K)`` whose entry ``[u, j]`` says whether the
item ranked at position ``j`` (0-based) for user ``u`` is relevant, and ``n_relevant``, the number of
relevant (test) items of each user, which can exceed K. They return one value per user (the evaluator
averages them), as a tensor when ``hits`` is a tensor and as a numpy array otherwise. Definitions:

- HR@K        = 1 if any of the top-K is relevant, else 0.
- Recall@K    = hits@K / n_relevant (the LightGCN / standard definition: the denominator is the user's
                full number of relevant items, *not* min(K, n_relevant), so Recall@K < 1 whenever a user
                has more than K relevant items).
- Precision@K = hits@K / K.
- NDCG@K      = DCG@K / IDCG@K with binary gains, DCG@K = sum_{j<K, hit} 1 / log2(j + 2) and the ideal
                DCG over min(n_relevant, K) relevant items in the first positions.
- MRR@K       = 1 / (1 + position of the first relevant item) if it is within the top K, else 0.

A user with ``n_relevant == 0`` gets 0 on every ranking metric (the evaluator never passes one).

Catalogue metrics take ``recommended``, an integer matrix ``(n_users, K)`` of recommended item indices,
where a negative entry marks an empty slot (a user the model could not score): empty slots recommend
nothing, so they count towards no item and as non-tail slots.

CTR metrics (``roc_auc``, ``log_loss``, ``binary_nll``, ``grouped_auc``) compute in float64 numpy and
return Python floats; they match ``sklearn.metrics.roc_auc_score`` and ``sklearn.metrics.log_loss``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "MetricError",
    "binary_nll",
    "dcg_discounts",
    "gini_index",
    "grouped_auc",
    "hit_rate_at_k",
    "item_coverage",
    "log_loss",
    "long_tail_mask",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "recommendation_counts",
    "roc_auc",
    "tail_share",
    "user_auc",
]


class MetricError(ValueError):
    """Invalid input to a metric or evaluator; the message names the offending argument."""


# -- helpers --------------------------------------------------------------------------------------------


def _to_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)`` so results can go back in the caller's type."""
    if isinstance(x, torch.Tensor):
        return x, False
    try:
        return torch.as_tensor(np.asarray(x)), True
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc


def _back(x: torch.Tensor, was_numpy: bool) -> ArrayLike:
    """Return ``x`` as numpy when the caller passed numpy."""
    return x.detach().cpu().numpy() if was_numpy else x


def _to_numpy(x: Any, name: str, dtype: type | None = None) -> np.ndarray:
    """Any 1-D array-like (torch included) as a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    if arr.ndim == 2 and 1 in arr.shape:  # a column or row vector
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise MetricError(f"{name}: expected a 1-D array, got shape {tuple(arr.shape)}")
    return arr


def _check_hits(hits: Any, k: int | None) -> tuple[torch.Tensor, bool, int]:
    """Validate the relevance matrix and ``k``; returns ``(bool tensor[:, :k], was_numpy, k)``."""
    h, was_numpy = _to_tensor(hits, "hits")
    if h.ndim != 2:
        raise MetricError(f"hits: expected a 2-D (n_users, K) relevance matrix, got shape {tuple(h.shape)}")
    k = h.shape[1] if k is None else int(k)
    if k < 1:
        raise MetricError(f"k: must be >= 1, got {k}")
    if k > h.shape[1]:
        raise MetricError(f"k: {k} exceeds the {h.shape[1]} ranked positions in hits")
    return h[:, :k].bool(), was_numpy, k


def _check_n_relevant(n_relevant: Any, n_users: int, device: torch.device) -> torch.Tensor:
    """Validate per-user relevant counts as a float64 tensor on ``device``."""
    n, _ = _to_tensor(n_relevant, "n_relevant")
    n = n.reshape(-1).to(device=device, dtype=torch.float64)
    if n.numel() != n_users:
        raise MetricError(f"n_relevant: expected {n_users} values (one per row of hits), got {n.numel()}")
    if bool((n < 0).any()):
        raise MetricError("n_relevant: counts must be >= 0")
    return n


def dcg_discounts(k: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The DCG discounts ``1 / log2(j + 2)`` for positions ``j = 0 .. k-1`` (float64)."""
    return 1.0 / torch.log2(torch.arange(k, device=device, dtype=torch.float64) + 2.0)


# -- per-user ranking metrics ---------------------------------------------------------------------------


def hit_rate_at_k(hits: ArrayLike, k: int | None = None) -> ArrayLike:
    """HR@K per user: 1.0 when any of the top-K positions holds a relevant item."""
    h, was_numpy, _ = _check_hits(hits, k)
    return _back(h.any(dim=1).to(torch.float64), was_numpy)


def recall_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int | None = None) -> ArrayLike:
    """Recall@K per user: relevant items in the top K divided by the user's number of relevant items."""
    h, was_numpy, _ = _check_hits(hits, k)
    n = _check_n_relevant(n_relevant, h.shape[0], h.device)
    found = h.sum(dim=1).to(torch.float64)
    if bool((found > n).any()):
        raise MetricError("n_relevant: some user has more hits in the top K than relevant items")
    return _back(torch.where(n > 0, found / n.clamp(min=1.0), torch.zeros_like(found)), was_numpy)


def precision_at_k(hits: ArrayLike, k: int | None = None) -> ArrayLike:
    """Precision@K per user: relevant items in the top K divided by K."""
    h, was_numpy, k = _check_hits(hits, k)
    return _back(h.sum(dim=1).to(torch.float64) / k, was_numpy)


def ndcg_at_k(hits: ArrayLike, n_relevant: ArrayLike, k: int | None = None) -> ArrayLike:
    """NDCG@K per user with binary gains; the ideal DCG places min(n_relevant, K) hits first."""
    h, was_numpy, k = _check_hits(hits, k)
    n = _check_n_relevant(n_relevant, h.shape[0], h.device)
    discounts = dcg_discounts(k, h.device)
    dcg = (h.to(torch.float64) * discounts).sum(dim=1)
    ideal_cumulative = torch.cat([torch.zeros(1, dtype=torch.float64, device=h.device), discounts.cumsum(0)])
    n_ideal = n.clamp(max=k).long()
    idcg = ideal_cumulative[n_ideal]
    return _back(torch.where(idcg > 0, dcg / idcg.clamp(min=1e-300), torch.zeros_like(dcg)), was_numpy)


def mrr_at_k(hits: ArrayLike, k: int | None = None) -> ArrayLike:
    """MRR@K per user: reciprocal (1-based) rank of the first relevant item in the top K, else 0."""
    h, was_numpy, k = _check_hits(hits, k)
    any_hit = h.any(dim=1)
    first = h.to(torch.int8).argmax(dim=1).to(torch.float64)  # argmax returns the first maximum
    return _back(torch.where(any_hit, 1.0 / (first + 1.0), torch.zeros_like(first)), was_numpy)


def ranking_metrics(hits: ArrayLike, n_relevant: ArrayLike, ks: tuple[int, ...] | list[int]) -> dict[str, ArrayLike]:
    """Per-user ranking metrics for each K: ``hr@K``, ``recall@K``, ``precision@K``, ``ndcg@K``, ``mrr@K``."""
    out: dict[str, ArrayLike] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at_k(hits, k)
        out[f"recall@{k}"] = recall_at_k(hits, n_relevant, k)
        out[f"precision@{k}"] = precision_at_k(hits, k)
        out[f"ndcg@{k}"] = ndcg_at_k(hits, n_relevant, k)
        out[f"mrr@{k}"] = mrr_at_k(hits, k)
    return out


# -- catalogue metrics ----------------------------------------------------------------------------------


def _check_recommended(recommended: Any, n_items: int) -> torch.Tensor:
    """Validate a ``(n_users, K)`` matrix of item indices (negative = empty slot) as a long tensor."""
    r, _ = _to_tensor(recommended, "recommended")
    if r.ndim != 2:
        raise MetricError(f"recommended: expected a 2-D (n_users, K) matrix, got shape {tuple(r.shape)}")
    if r.dtype.is_floating_point or r.dtype == torch.bool:
        raise MetricError(f"recommended: expected integer item indices, got dtype {r.dtype}")
    if n_items < 1:
        raise MetricError(f"n_items: must be >= 1, got {n_items}")
    r = r.long()
    if r.numel() and int(r.max()) >= n_items:
        raise MetricError(f"recommended: item index {int(r.max())} is out of range for n_items={n_items}")
    return r


def recommendation_counts(recommended: ArrayLike, n_items: int) -> ArrayLike:
    """How many times each item is recommended across users (length ``n_items``; empty slots skipped)."""
    r = _check_recommended(recommended, n_items)
    flat = r.reshape(-1)
    counts = torch.bincount(flat[flat >= 0], minlength=n_items)
    return _back(counts, not isinstance(recommended, torch.Tensor))


def item_coverage(recommended: ArrayLike, n_items: int) -> float:
    """Item coverage: distinct items recommended to at least one user, divided by ``n_items``."""
    counts = torch.as_tensor(recommendation_counts(recommended, n_items))
    return float((counts > 0).sum().item()) / n_items


def gini_index(counts: ArrayLike) -> float:
    """Gini index of non-negative counts (0 = perfectly even, -> 1 = all on one item; 0 if all zero).

    With counts sorted ascending x_1 <= ... <= x_n: G = sum_i (2i - n - 1) x_i / (n * sum_i x_i).
    """
    x = _to_numpy(counts, "counts", dtype=np.float64)
    if x.size == 0:
        raise MetricError("counts: empty")
    if (x < 0).any():
        raise MetricError("counts: must be non-negative")
    total = x.sum()
    if total == 0:
        return 0.0
    x = np.sort(x)
    n = x.size
    weights = 2.0 * np.arange(1, n + 1, dtype=np.float64) - n - 1.0
    return float((weights * x).sum() / (n * total))


def long_tail_mask(item_popularity: ArrayLike, head_share: float = 0.8) -> np.ndarray:
    """Boolean mask of long-tail items: all but the most popular head holding ``head_share`` of interactions.

    The head is the smallest set of most popular items (ties broken by lower item index) whose
    interactions reach ``head_share`` of the total; every other item, including never-seen ones, is tail.
    """
    pop = _to_numpy(item_popularity, "item_popularity", dtype=np.float64)
    if not 0.0 < head_share <= 1.0:
        raise MetricError(f"head_share: must be in (0, 1], got {head_share}")
    if (pop < 0).any():
        raise MetricError("item_popularity: counts must be non-negative")
    tail = np.ones(pop.size, dtype=bool)
    total = pop.sum()
    if total == 0:
        return tail
    order = np.argsort(-pop, kind="stable")
    cumulative = np.cumsum(pop[order])
    # head size: first position where the cumulative share reaches head_share (tolerant of rounding)
    n_head = int(np.searchsorted(cumulative, head_share * total * (1 - 1e-12), side="left")) + 1
    tail[order[: min(n_head, pop.size)]] = False
    return tail


def tail_share(recommended: ArrayLike, tail_mask: ArrayLike, per_user: bool = False) -> ArrayLike | float:
    """Share of recommended slots that hold a long-tail item (empty slots count as non-tail).

    Returns the overall share (a float) or, with ``per_user=True``, each user's share of their K slots.
    """
    mask, _ = _to_tensor(tail_mask, "tail_mask")
    mask = mask.reshape(-1).bool()
    r = _check_recommended(recommended, mask.numel())
    mask = mask.to(r.device)
    k = r.shape[1]
    is_tail = torch.zeros_like(r, dtype=torch.float64)
    valid = r >= 0
    is_tail[valid] = mask[r[valid]].to(torch.float64)
    shares = is_tail.sum(dim=1) / max(k, 1)
    if per_user:
        return _back(shares, not isinstance(recommended, torch.Tensor))
    return float(shares.mean().item()) if shares.numel() else 0.0


# -- CTR metrics ----------------------------------------------------------------------------------------


def _binary_labels(labels: Any, n: int | None = None, name: str = "labels") -> np.ndarray:
    """Validate 0/1 labels (bool, int or float) as float64."""
    y = _to_numpy(labels, name)
    if y.dtype == bool:
        y = y.astype(np.float64)
    y = y.astype(np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise MetricError(f"{name}: expected binary 0/1 labels, got values {np.unique(y)[:5].tolist()}")
    if n is not None and y.size != n:
        raise MetricError(f"{name}: {y.size} labels for {n} scores")
    return y


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` ascending, with tied values sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # boundaries of runs of equal values
    new_run = np.empty(x.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    run_id = np.cumsum(new_run) - 1
    run_starts = np.flatnonzero(new_run)
    run_ends = np.append(run_starts[1:], x.size)  # exclusive
    average = (run_starts + 1 + run_ends) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = average[run_id]
    return ranks


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with tied scores averaged, as sklearn computes it."""
    s = _to_numpy(scores, "scores", dtype=np.float64)
    y = _binary_labels(labels, s.size)
    if np.isnan(s).any():
        raise MetricError("scores: contains NaN")
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise MetricError("labels: AUC needs both positive and negative labels")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: ArrayLike, probabilities: ArrayLike, eps: float | None = None) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps] (natural log), as sklearn's.

    ``eps`` defaults to the machine epsilon of the probabilities' float dtype (float64 for other dtypes),
    which is what ``sklearn.metrics.log_loss`` uses.
    """
    p_raw = probabilities.detach().cpu().numpy() if isinstance(probabilities, torch.Tensor) else probabilities
    p_raw = np.asarray(p_raw)
    if eps is None:
        eps = float(np.finfo(p_raw.dtype if p_raw.dtype in (np.float16, np.float32) else np.float64).eps)
    p = _to_numpy(p_raw, "probabilities", dtype=np.float64)
    y = _binary_labels(labels, p.size)
    if p.size == 0:
        raise MetricError("probabilities: empty")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise MetricError("probabilities: must lie in [0, 1] (for logits: binary_nll(from_logits=True))")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def binary_nll(labels: ArrayLike, values: ArrayLike, from_logits: bool = False, reduction: str = "mean") -> float:
    """Negative log-likelihood of binary labels under probabilities, or logits when ``from_logits``.

    Logits use the stable form softplus(z) - y * z; probabilities are clipped like ``log_loss``.
    ``reduction`` is ``"mean"`` or ``"sum"``.
    """
    if reduction not in ("mean", "sum"):
        raise MetricError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    if not from_logits:
        mean = log_loss(labels, values)
        return mean if reduction == "mean" else mean * _to_numpy(labels, "labels").size
    z = _to_numpy(values, "values", dtype=np.float64)
    y = _binary_labels(labels, z.size)
    if z.size == 0:
        raise MetricError("values: empty")
    if np.isnan(z).any():
        raise MetricError("values: contains NaN")
    losses = np.logaddexp(0.0, z) - y * z
    return float(losses.mean() if reduction == "mean" else losses.sum())


def grouped_auc(groups: ArrayLike, labels: ArrayLike, scores: ArrayLike, weighting: str = "impressions") -> float:
    """Grouped AUC (gAUC): per-group (e.g. per-user) AUC averaged with weights = the group's impressions.

    Groups whose labels are all positive or all negative have no AUC and are skipped (the usual gAUC
    convention); raises MetricError when no group has both classes. ``weighting="uniform"`` gives every
    group weight 1 (UAUC, see :func:`user_auc`).
    """
    if weighting not in ("impressions", "uniform"):
        raise MetricError(f"weighting: expected 'impressions' or 'uniform', got {weighting!r}")
    g = _to_numpy(groups, "groups")
    s = _to_numpy(scores, "scores", dtype=np.float64)
    y = _binary_labels(labels, s.size)
    if g.size != s.size:
        raise MetricError(f"groups: {g.size} group ids for {s.size} scores")
    order = np.argsort(g, kind="stable")
    g_sorted = g[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    ends = np.r_[starts[1:], g.size]
    weighted, total_weight = 0.0, 0.0
    for start, end in zip(starts, ends, strict=True):
        idx = order[start:end]
        positives = y[idx].sum()
        if positives == 0 or positives == idx.size:
            continue
        weight = idx.size if weighting == "impressions" else 1.0
        weighted += weight * roc_auc(y[idx], s[idx])
        total_weight += weight
    if total_weight == 0:
        raise MetricError("labels: no group has both positive and negative labels, so gAUC is undefined")
    return weighted / total_weight


def user_auc(users: ArrayLike, labels: ArrayLike, scores: ArrayLike) -> float:
    """UAUC as CoLLM/TALLRec report it: the unweighted mean of per-user AUCs over users with both labels."""
    return grouped_auc(users, labels, scores, weighting="uniform")
