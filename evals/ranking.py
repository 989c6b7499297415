"""Full-catalogue ranking evaluation (and an explicitly labelled sampled-negative variant).

The protocol, following DESIGN.md "Evaluation that cannot lie":

- Every user with at least one test item counts. A user the model cannot score (a score row of NaN or
  ``-inf``) counts as zero on every metric; it never leaves the denominator.
- The user's own train (and valid) items, given by ``mask_csr``, are set to ``-inf`` before ranking. A
  test item that is also masked can never be retrieved (it counts as a miss, not as one item fewer).
- Ties are broken pessimistically: a relevant item tied with irrelevant items is ranked after all of
  them. Relevant items tied with each other take the last positions of their tie group in some order
  (metrics do not depend on which), so a constant scorer scores ~0 and a scorer that gives every relevant
  item the same top score still scores 1. Exactly: if the user's relevant items, sorted by score
  descending, are r_0, r_1, ..., the t-th one sits at 0-based position
      t + #{unmasked irrelevant items j : score_j >= score(r_t)},
  which is computed exactly and vectorised, either by direct comparison (few relevant items per user) or
  by one sort of each score row plus ``torch.searchsorted``.
- Ranking metrics (HR, Recall, Precision, NDCG, MRR) come from those positions. The catalogue metrics
  (coverage, tail share, Gini) need the recommended lists themselves and use ``torch.topk`` order, where
  ties are ordered arbitrarily; slots with score ``-inf`` (nothing left to recommend) are empty.
- With an ``accelerator`` of several processes, users are sharded by accelerate's data loader and
  per-user rows are gathered with ``accelerator.gather_for_metrics``; the result equals a single process's.

Sampled-negative metrics (``evaluate_sampled_ranking``) rank each user's test items among a few random
negatives. Krichene & Rendle (KDD 2020) showed they do not even preserve the order of models, so they
are opt-in only, and every key carries a ``sampled<N>_`` prefix and the result a ``protocol`` label.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from evals.metrics import (
    MetricError,
    gini_index,
    item_coverage,
    long_tail_mask,
    ranking_metrics,
    recommendation_counts,
    tail_share,
)

logger = logging.getLogger(__name__)

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

FULL_RANKING = "full_ranking"
RANKING_METRICS = ("hr", "recall", "precision", "ndcg", "mrr")
# Above this many relevant items per user (in a batch), positions are found by sorting each score row
# rather than by comparing every relevant score with every item; both are exact.
_COMPARE_MAX_RELEVANT = 8

__all__ = [
    "FULL_RANKING",
    "csr_rows_to_dense",
    "evaluate_full_ranking",
    "evaluate_sampled_ranking",
    "pessimistic_positions",
    "sampled_protocol",
]


def sampled_protocol(n_negatives: int) -> str:
    """The protocol label of sampled-negative ranking with ``n_negatives`` negatives per user."""
    return f"sampled_{n_negatives}_negatives"


# -- input checks ---------------------------------------------------------------------------------------


def _as_csr(matrix: Any, name: str) -> sp.csr_matrix:
    """A scipy CSR matrix with sorted, duplicate-free indices (any stored non-zero entry counts)."""
    if not sp.issparse(matrix) and not isinstance(matrix, np.ndarray):
        kind = type(matrix).__name__
        raise MetricError(f"{name}: expected a scipy sparse (n_users, n_items) matrix, got {kind}")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    return csr


def _numpy(x: Any) -> np.ndarray:
    """A numpy copy of an array or tensor."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validate the cut-offs: positive integers, at least one; returned sorted and unique."""
    try:
        values = tuple(sorted({int(k) for k in ks}))
    except (TypeError, ValueError) as exc:
        raise MetricError(f"ks: expected positive integers, got {ks!r}") from exc
    if not values or values[0] < 1:
        raise MetricError(f"ks: expected at least one positive integer, got {ks!r}")
    return values


def _resolve_tail_mask(
    n_items: int, tail_mask: Any, item_popularity: Any, mask_csr: sp.csr_matrix | None
) -> np.ndarray:
    """The long-tail mask: given, or from popularity (given, else the masked = training interactions)."""
    if tail_mask is not None:
        mask = _numpy(tail_mask).reshape(-1).astype(bool)
        if mask.size != n_items:
            raise MetricError(f"tail_mask: {mask.size} entries for {n_items} items")
        return mask
    if item_popularity is None:
        if mask_csr is None:
            return np.ones(n_items, dtype=bool)
        item_popularity = np.asarray((mask_csr > 0).sum(axis=0)).ravel()
    pop = _numpy(item_popularity).astype(np.float64).reshape(-1)
    if pop.size != n_items:
        raise MetricError(f"item_popularity: {pop.size} entries for {n_items} items")
    return long_tail_mask(pop)


# -- the core: pessimistic positions of relevant items --------------------------------------------------


def _nan_to_minus_inf(scores: torch.Tensor) -> torch.Tensor:
    """A new tensor with NaN scores at -inf (never retrieved); +-inf stay as they are."""
    return torch.nan_to_num(scores, nan=-math.inf, posinf=math.inf, neginf=-math.inf)


def _count_true(mask: torch.Tensor) -> torch.Tensor:
    """True entries per row of a bool ``(B, N)`` matrix, as int64: summed as bytes into int32, which on a CPU
    is about 1.6x faster than ``bool.sum`` (it accumulates in int64); rows have far fewer than 2^31 items."""
    return mask.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()


def pessimistic_positions(scores: torch.Tensor, relevant: torch.Tensor, limit: int | None = None) -> torch.Tensor:
    """0-based positions of each user's relevant items under pessimistic tie-breaking.

    ``scores``: float ``(B, N)`` with excluded items already ``-inf``. ``relevant``: bool ``(B, N)``.
    Returns a long ``(B, M)`` matrix, M = max relevant per row, ascending per row; a relevant item scored
    ``-inf``/NaN and the padding get position ``N`` (never retrieved). With ``limit``, positions below it
    are exact and any position at or beyond it is reported as ``N`` (what metrics at cut-offs <= limit
    need; it replaces a sort of each row by a top-``limit`` selection).
    """
    n_rows, n_items = scores.shape
    scores = _nan_to_minus_inf(scores)
    n_relevant = _count_true(relevant)
    m = int(n_relevant.max().item()) if n_rows else 0
    if m == 0:
        return torch.full((n_rows, 0), n_items, dtype=torch.long, device=scores.device)
    # relevant scores, padded with -inf, sorted descending: r_0 >= r_1 >= ...
    rows, cols = relevant.nonzero(as_tuple=True)
    starts = torch.cumsum(n_relevant, 0) - n_relevant
    slots = torch.arange(rows.numel(), device=scores.device) - starts[rows]
    rel_scores = torch.full((n_rows, m), -torch.inf, dtype=scores.dtype, device=scores.device)
    rel_scores[rows, slots] = scores[rows, cols]
    rel_scores = rel_scores.sort(dim=1, descending=True).values
    irrelevant = scores.masked_fill(relevant, -torch.inf)
    if m <= _COMPARE_MAX_RELEVANT:
        # one pass over the row per relevant slot: O(B * N) memory whatever the catalogue size
        at_least = torch.stack([_count_true(irrelevant >= rel_scores[:, t : t + 1]) for t in range(m)], dim=1)
    elif limit is not None and limit < n_items:
        # only the `limit` best irrelevant scores can push a relevant item to a position below `limit`
        best = torch.topk(irrelevant, limit, dim=1).values.flip(1).contiguous()  # ascending
        at_least = limit - torch.searchsorted(best, rel_scores.contiguous(), side="left")
        positions = torch.arange(m, device=scores.device).unsqueeze(0) + at_least
        beyond = (at_least >= limit) | (positions >= limit) | (rel_scores == -torch.inf)
        return positions.masked_fill(beyond, n_items)
    else:
        ascending = irrelevant.sort(dim=1).values
        at_least = n_items - torch.searchsorted(ascending, rel_scores.contiguous(), side="left")
    positions = torch.arange(m, device=scores.device).unsqueeze(0) + at_least
    return positions.masked_fill(rel_scores == -torch.inf, n_items)


def _hits_from_positions(positions: torch.Tensor, width: int, n_items: int) -> torch.Tensor:
    """Boolean ``(B, width)`` relevance matrix: True where a relevant item sits at that position.

    Position ``n_items`` marks "never retrieved" (and row padding); it is no hit even when ``width`` (the
    largest K) exceeds the catalogue.
    """
    hits = torch.zeros((positions.shape[0], width), dtype=torch.bool, device=positions.device)
    rows, slots = ((positions < width) & (positions < n_items)).nonzero(as_tuple=True)
    hits[rows, positions[rows, slots]] = True
    return hits


# -- batching -------------------------------------------------------------------------------------------


def csr_rows_to_dense(csr: sp.csr_matrix, users: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``users`` of a CSR matrix as a dense bool tensor on ``device``."""
    sub = csr[users]
    lengths = np.diff(sub.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(len(users)), lengths)).to(device)
    cols = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
    dense = torch.zeros((len(users), csr.shape[1]), dtype=torch.bool, device=device)
    dense[rows, cols] = True
    return dense


def _user_batches(
    users: np.ndarray, batch_size: int, accelerator: Any, device: torch.device
) -> tuple[Iterator[np.ndarray], int, bool]:
    """Batches of user indices for this process; returns ``(iterator, n_batches, sharded)``."""
    if accelerator is None or accelerator.num_processes <= 1:
        chunks = [users[i : i + batch_size] for i in range(0, len(users), batch_size)]
        return iter(chunks), len(chunks), False
    from accelerate.data_loader import prepare_data_loader

    loader = torch.utils.data.DataLoader(torch.from_numpy(users), batch_size=batch_size, shuffle=False)
    # not registered with the accelerator (so its save_state is unaffected); gather_for_metrics still
    # sees this loader's end and remainder through accelerate's shared GradientState.
    shard = prepare_data_loader(
        loader,
        device,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
        put_on_device=False,
        even_batches=True,
    )
    return (batch.cpu().numpy() for batch in shard), len(shard), True


def _rank_all_users(
    score_fn: ScoreFn,
    test: sp.csr_matrix,
    mask: sp.csr_matrix | None,
    ks: tuple[int, ...],
    batch_size: int,
    tail: np.ndarray | None,
    device: torch.device | str | None,
    progress: bool,
    accelerator: Any,
    candidates: Callable[[np.ndarray], np.ndarray] | None,
    desc: str,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Score and rank every test user; returns users, n_relevant, per-user metric columns, top-K items."""
    n_items = test.shape[1]
    users = np.flatnonzero(np.diff(test.indptr) > 0).astype(np.int64)
    if users.size == 0:
        raise MetricError("test_csr: no user has a test item, so there is nothing to evaluate")
    if batch_size < 1:
        raise MetricError(f"batch_size: must be >= 1, got {batch_size}")
    # compute where asked, else on the accelerator's device, else wherever score_fn returns its scores
    if device is None and accelerator is not None:
        device = accelerator.device
    fixed_device = torch.device(device) if device is not None else None
    k_max = ks[-1]
    names = (*RANKING_METRICS, "tail_share") if tail is not None else RANKING_METRICS
    columns = [f"{name}@{k}" for k in ks for name in names]
    batches, n_batches, sharded = _user_batches(users, batch_size, accelerator, fixed_device or torch.device("cpu"))
    is_main = accelerator is None or accelerator.is_main_process
    got_users, got_rows, got_topk = [], [], []
    for batch_users in tqdm(batches, total=n_batches, desc=desc, disable=not progress or not is_main, leave=False):
        user_t = torch.from_numpy(batch_users).to(fixed_device or "cpu")
        scores = score_fn(user_t)
        if not isinstance(scores, torch.Tensor):
            scores = torch.as_tensor(np.asarray(scores))
        if scores.shape != (len(batch_users), n_items):
            raise MetricError(
                f"score_fn: returned shape {tuple(scores.shape)} for {len(batch_users)} users; "
                f"expected ({len(batch_users)}, {n_items}), one score per item of test_csr"
            )
        device = fixed_device or scores.device
        scores = scores.detach().to(device)
        if not scores.is_floating_point() or scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        # a fresh tensor, so masking in place never touches the model's own buffers
        scores = _nan_to_minus_inf(scores)
        relevant = csr_rows_to_dense(test, batch_users, device)
        if mask is not None:
            scores.masked_fill_(csr_rows_to_dense(mask, batch_users, device), -torch.inf)
        if candidates is not None:
            keep = torch.from_numpy(candidates(batch_users)).to(device)
            scores.masked_fill_(~keep, -torch.inf)
        positions = pessimistic_positions(scores, relevant, limit=k_max)
        hits = _hits_from_positions(positions, k_max, n_items)
        n_relevant = _count_true(relevant)
        per_user = ranking_metrics(hits, n_relevant, ks)
        top_values, top_items = torch.topk(scores, min(k_max, n_items), dim=1)
        top_items = top_items.masked_fill(top_values == -torch.inf, -1)
        if top_items.shape[1] < k_max:
            top_items = torch.nn.functional.pad(top_items, (0, k_max - top_items.shape[1]), value=-1)
        if tail is not None:
            tail_t = torch.from_numpy(tail).to(device)
            for k in ks:
                per_user[f"tail_share@{k}"] = tail_share(top_items[:, :k], tail_t, per_user=True)
        rows = torch.stack([per_user[c].to(device=device, dtype=torch.float64) for c in columns], dim=1)
        if sharded:
            user_t = user_t.to(device)
            user_t, rows, top_items = accelerator.gather_for_metrics((user_t, rows, top_items))
        got_users.append(user_t.cpu().numpy())
        got_rows.append(rows.cpu().numpy())
        got_topk.append(top_items.cpu().numpy())
    all_users = np.concatenate(got_users)
    # sharding pads the last batches with repeated users; keep each user once, in index order
    order_users, first = np.unique(all_users, return_index=True)
    if not np.array_equal(order_users, users):
        raise MetricError(
            f"accelerator: gathered {order_users.size} distinct users but {users.size} test users exist; "
            "per-user rows were lost between processes"
        )
    rows = np.concatenate(got_rows)[first]
    top = np.concatenate(got_topk)[first]
    n_relevant = np.diff(test.indptr)[users]
    return users, n_relevant, {c: rows[:, i] for i, c in enumerate(columns)}, top


def _prepare(test_csr: Any, mask_csr: Any) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """Validate the test and mask matrices (same shape)."""
    test = _as_csr(test_csr, "test_csr")
    mask = None if mask_csr is None else _as_csr(mask_csr, "mask_csr")
    if mask is not None and mask.shape != test.shape:
        raise MetricError(f"mask_csr: shape {mask.shape} differs from test_csr's {test.shape}")
    return test, mask


# -- public evaluators ----------------------------------------------------------------------------------


def evaluate_full_ranking(
    score_fn: ScoreFn,
    test_csr: sp.spmatrix,
    mask_csr: sp.spmatrix | None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    item_popularity: np.ndarray | torch.Tensor | None = None,
    tail_mask: np.ndarray | torch.Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    accelerator: Any = None,
    return_per_user: bool = False,
) -> dict[str, Any]:
    """Full-catalogue ranking metrics averaged over every user with >= 1 test item.

    ``score_fn(users: LongTensor) -> Tensor[len(users), n_items]``; users are on ``device`` (default: the
    accelerator's device, else CPU) and the metrics are computed on ``device`` (default: the accelerator's,
    else the device of the returned scores, so a GPU model is evaluated on the GPU). Returns floats
    ``hr@K``, ``recall@K``, ``precision@K``, ``ndcg@K``, ``mrr@K``, ``coverage@K``, ``tail_share@K``,
    ``gini@K`` for each K, the int ``n_users``, and the string ``protocol`` = ``"full_ranking"`` (keep only
    numeric values when a float-only dict is needed). The long tail is ``tail_mask`` if given, else every
    item outside the most popular head holding 80% of ``item_popularity`` (default: ``mask_csr``'s column
    counts). With ``return_per_user=True`` the result also holds ``per_user``: a dict of numpy arrays
    (``user``, ``n_relevant`` and each per-user metric) for significance tests.
    """
    test, mask = _prepare(test_csr, mask_csr)
    ks = _check_ks(ks)
    n_items = test.shape[1]
    tail = _resolve_tail_mask(n_items, tail_mask, item_popularity, mask)
    users, n_relevant, per_user, top = _rank_all_users(
        score_fn, test, mask, ks, batch_size, tail, device, progress, accelerator, None, "full ranking"
    )
    result: dict[str, Any] = {}
    for k in ks:
        for name in RANKING_METRICS:
            result[f"{name}@{k}"] = float(per_user[f"{name}@{k}"].mean())
        result[f"coverage@{k}"] = item_coverage(top[:, :k], n_items)
        result[f"tail_share@{k}"] = float(per_user[f"tail_share@{k}"].mean())
        result[f"gini@{k}"] = gini_index(recommendation_counts(top[:, :k], n_items))
    result["n_users"] = int(users.size)
    result["protocol"] = FULL_RANKING
    if return_per_user:
        result["per_user"] = {"user": users, "n_relevant": n_relevant, **per_user}
    logger.debug("full ranking over %d users x %d items: %s", users.size, n_items, _summary(result, ks))
    return result


def evaluate_sampled_ranking(
    score_fn: ScoreFn,
    test_csr: sp.spmatrix,
    mask_csr: sp.spmatrix | None,
    n_negatives: int = 100,
    seed: int = 0,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    progress: bool = True,
    accelerator: Any = None,
    return_per_user: bool = False,
) -> dict[str, Any]:
    """Sampled-negative ranking (opt-in only): each user's test items ranked among ``n_negatives`` negatives.

    Negatives are drawn uniformly without replacement from items neither masked nor in the user's test
    set (all of them when fewer remain), with a generator seeded by ``(seed, user)``, so the draw does not
    depend on batching or processes. Same pessimistic ties as full ranking. Every key is prefixed
    ``sampled<N>_`` (``sampled100_ndcg@10``, ..., ``sampled100_n_users``) and ``protocol`` is
    ``"sampled_<N>_negatives"``. Catalogue metrics are not reported: over a sampled list they mean nothing.
    """
    test, mask = _prepare(test_csr, mask_csr)
    ks = _check_ks(ks)
    if int(n_negatives) < 1:
        raise MetricError(f"n_negatives: must be >= 1, got {n_negatives}")
    n_negatives = int(n_negatives)
    n_items = test.shape[1]

    def candidates(batch_users: np.ndarray) -> np.ndarray:
        keep = np.zeros((len(batch_users), n_items), dtype=bool)
        for row, user in enumerate(batch_users):
            positives = test.indices[test.indptr[user] : test.indptr[user + 1]]
            excluded = np.zeros(n_items, dtype=bool)
            excluded[positives] = True
            if mask is not None:
                excluded[mask.indices[mask.indptr[user] : mask.indptr[user + 1]]] = True
            allowed = np.flatnonzero(~excluded)
            rng = np.random.default_rng((int(seed), int(user)))
            if allowed.size > n_negatives:
                allowed = rng.choice(allowed, n_negatives, replace=False)
            chosen = allowed
            keep[row, chosen] = True
            keep[row, positives] = True
        return keep

    users, n_relevant, per_user, _ = _rank_all_users(
        score_fn, test, mask, ks, batch_size, None, device, progress, accelerator, candidates, "sampled"
    )
    prefix = f"sampled{n_negatives}_"
    result: dict[str, Any] = {}
    for k in ks:
        for name in RANKING_METRICS:
            result[f"{prefix}{name}@{k}"] = float(per_user[f"{name}@{k}"].mean())
    result[f"{prefix}n_users"] = int(users.size)
    result["protocol"] = sampled_protocol(n_negatives)
    if return_per_user:
        prefixed = {prefix + column: values for column, values in per_user.items()}
        result["per_user"] = {"user": users, "n_relevant": n_relevant, **prefixed}
    logger.debug("%s over %d users: %s", result["protocol"], users.size, _summary(result, ks, prefix))
    return result


def _summary(result: dict[str, Any], ks: tuple[int, ...], prefix: str = "") -> str:
    """A short log line: NDCG and Recall at the largest K."""
    k = ks[-1]
    ndcg, recall = f"{prefix}ndcg@{k}", f"{prefix}recall@{k}"
    return f"{ndcg}={result[ndcg]:.4f} {recall}={result[recall]:.4f}"
