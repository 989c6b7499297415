"""DINOSAUR: uncertainty-aware candidate retrieval by indexing sampled item embeddings (arXiv 2606.04603).

Each item i is indexed S_i times: once at its point embedding and S_i - 1 times at draws from its embedding
distribution N(v_i, sigma_i^2). A query (optionally a draw of the user embedding) retrieves S * (K + m)
vectors (m = the user's masked history; with at most S copies per item these hold at least K + m distinct
items), which are de-duplicated (each item at its best copy) and stripped of the masked items, leaving K.
With sigma = 0 (or S = 1) this is exactly point retrieval. Neither the model nor the index changes.

Works on any dot-product checkpoint (iALS, BPR-MF, LightGCN): ``dot_product_factors`` reads its user and
item factors. Item variance: the paper's count proxy sigma_i = c / (1 + n_i)^p (``count_sigma``) or the
iALS posterior (``posterior_sigma``: the diagonal of (X^T C^i X + lambda I)^-1 from the last item solve).

``python -m recsys.dinosaur eval --checkpoint DIR --samples 1,2,5,10 --k 10,100,1000 --index exact``
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from core.cli import add_verbosity_args, configure_from_args, run_cli
from evals.metrics import long_tail_mask, ranking_metrics
from retrieval.ann import BACKENDS, ExactIndex, build_index

logger = logging.getLogger(__name__)

N_QUINTILES = 5


class DinosaurError(ValueError):
    """Bad input to DINOSAUR: a checkpoint without dot-product factors, a bad sample count or K."""


# -- factors and variances ------------------------------------------------------------------------------------


def dot_product_factors(model: Any, check_users: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) factor matrices of a dot-product model, checked against ``model.score`` on a few users."""
    with torch.no_grad():
        if hasattr(model, "factors"):
            users, items = model.factors()
        elif hasattr(model, "propagate"):  # LightGCN: the layer-averaged propagated embeddings
            model.eval()
            users, items = model.propagate()
        elif hasattr(model, "user_embedding") and hasattr(model, "item_embedding"):
            users, items = model.user_embedding.weight, model.item_embedding.weight
        else:
            raise DinosaurError(
                f"model {getattr(model, 'name', type(model).__name__)!r} has no user/item factors; DINOSAUR needs a "
                "dot-product model (ials, bpr, lightgcn)"
            )
        users = users.detach().float().cpu()
        items = items.detach().float().cpu()
        probe = torch.arange(min(check_users, users.shape[0]))
        expected = model.score(probe).float().cpu()
    got = users[probe] @ items.T
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise DinosaurError(
            f"model {getattr(model, 'name', '?')!r}: score(u, i) is not <user factor, item factor> "
            f"(max gap {float((got - expected).abs().max()):.3g}); DINOSAUR needs a dot-product model"
        )
    return users.numpy(), items.numpy()


def count_sigma(counts: np.ndarray, c: float = 0.1, p: float = 0.25) -> np.ndarray:
    """The paper's proxy: sigma_i = c / (1 + n_i)^p, n_i the item's training interactions."""
    counts = np.asarray(counts, dtype=np.float64)
    if (counts < 0).any():
        raise DinosaurError("counts must be non-negative")
    return (c / np.power(1.0 + counts, p)).astype(np.float32)


def posterior_sigma(model: Any, scale: float = 1.0, isotropic: bool = False) -> np.ndarray:
    """Per-item std of the iALS posterior: sqrt(diag((X^T C^i X + lambda I)^-1)) x ``scale`` (diagonal or mean)."""
    variance = getattr(model, "item_variance", None)
    if variance is None or not bool((variance > 0).any()):
        raise DinosaurError(
            f"model {getattr(model, 'name', '?')!r} has no posterior variance; "
            "use --variance count, or an ials checkpoint"
        )
    std = scale * np.sqrt(variance.detach().cpu().numpy().astype(np.float64))
    if isotropic:
        std = np.sqrt((std**2).mean(axis=1))
    return std.astype(np.float32)


def item_sigma(
    kind: str, counts: np.ndarray, model: Any = None, c: float = 0.1, p: float = 0.25, scale: float = 1.0
) -> np.ndarray:
    """Item std by ``kind``: "count" (the proxy), "posterior" (diagonal), "posterior-iso", or "zero"."""
    if kind == "count":
        return count_sigma(counts, c, p)
    if kind == "posterior":
        return posterior_sigma(model, scale)
    if kind == "posterior-iso":
        return posterior_sigma(model, scale, isotropic=True)
    if kind == "zero":
        return np.zeros(len(counts), dtype=np.float32)
    raise DinosaurError(f"unknown variance {kind!r}; choose count, posterior, posterior-iso or zero")


def samples_per_item(sigma: np.ndarray, samples: int, adaptive: bool = False) -> np.ndarray:
    """S_i per item: ``samples`` for all, or (adaptive) proportional to the item's std with mean ~``samples``."""
    if samples < 1:
        raise DinosaurError(f"samples must be >= 1, got {samples}")
    n = sigma.shape[0]
    if not adaptive or samples == 1:
        return np.full(n, samples, dtype=np.int64)
    size = sigma if sigma.ndim == 1 else np.sqrt((sigma.astype(np.float64) ** 2).mean(axis=1))
    mean = float(size.mean())
    if mean == 0:
        return np.full(n, samples, dtype=np.int64)
    return np.clip(np.rint(samples * size / mean), 1, 4 * samples).astype(np.int64)


def sample_item_embeddings(
    items: np.ndarray, sigma: np.ndarray, copies: np.ndarray | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, owner item ids): each item's point embedding, then copies - 1 draws from N(v_i, sigma_i^2)."""
    n, dim = items.shape
    copies = np.full(n, copies, dtype=np.int64) if np.isscalar(copies) else np.asarray(copies, dtype=np.int64)
    owners = np.repeat(np.arange(n, dtype=np.int64), copies)
    first = np.concatenate(([0], np.cumsum(copies)[:-1]))
    vectors = items[owners].astype(np.float32, copy=True)
    noisy = np.ones(len(owners), dtype=bool)
    noisy[first] = False  # copy 0 sits at the mean
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((int(noisy.sum()), dim)).astype(np.float32)
    scale = sigma[owners[noisy]]
    vectors[noisy] += noise * (scale[:, None] if scale.ndim == 1 else scale)
    return vectors, owners


def sample_user_embeddings(users: np.ndarray, sigma: np.ndarray, seed: int) -> np.ndarray:
    """One draw per user from N(u, sigma_u^2) (query-time user sampling), seeded."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(users.shape).astype(np.float32)
    return users + noise * (sigma[:, None] if sigma.ndim == 1 else sigma)


# -- retrieval ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Retrieved:
    """K item ids per query (-1 where fewer were found) and the time spent in the index's search."""

    items: np.ndarray
    search_seconds: float
    total_seconds: float


def stable_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, columns) of each row's ``k`` largest scores, descending, equal scores by ascending column.

    The same as ``np.lexsort((columns, -scores))[:, :k]``, at the cost of ``torch.topk``: the k-th value is found
    first, the columns above it are kept, and of those equal to it the leftmost ones fill the remaining places.
    """
    width = scores.shape[1]
    k = min(k, width)
    table = torch.from_numpy(np.ascontiguousarray(scores))
    # one more than k: where the (k+1)-th value is below the k-th, the k taken are the only possible ones
    values, columns = torch.topk(table, min(k + 1, width), dim=1, sorted=True)
    columns = columns[:, :k].clone()
    if k < width:
        crowded = values[:, k - 1] == values[:, k]
        if bool(crowded.any()):  # ties at the k-th value continue past it: keep the leftmost of them
            rows = crowded.nonzero().squeeze(1)
            part, kth = table[rows], values[rows, k - 1 : k]
            take = part > kth
            tied = part == kth
            need = k - take.sum(dim=1, keepdim=True)
            take |= tied & (tied.cumsum(dim=1) <= need)
            columns[rows] = take.nonzero()[:, 1].view(len(rows), k)  # row-major: ascending columns per row
    columns = torch.sort(columns, dim=1).values  # then a stable sort by value keeps equal values in column order
    values = torch.gather(table, 1, columns)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return torch.gather(values, 1, order).numpy(), torch.gather(columns, 1, order).numpy()


def _item_groups(ids: np.ndarray) -> np.ndarray | None:
    """Start positions of each item's copies when the copies of every item are contiguous (else None)."""
    if len(ids) == 0:
        return None
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    if len(np.unique(ids[starts])) != len(starts):
        return None
    return starts


def _retrieve_exact(
    index: ExactIndex,
    queries: np.ndarray,
    k: int,
    masks: Sequence[np.ndarray] | None,
    starts: np.ndarray,
    batch_size: int,
    progress: bool,
) -> Retrieved:
    """Exact search with the de-duplication fused in: every copy's inner product, each item's best copy
    (``np.maximum.reduceat`` over its contiguous copies), masked items out, the stable top ``k`` items.

    The same lists as searching ``S * (k + |mask|)`` neighbours and de-duplicating: an item's rank is that of its
    best copy, ties by position, and the copies of lower ids come first (tested against the generic path).
    """
    n = len(queries)
    out = np.full((n, k), -1, dtype=np.int64)
    group_items = index.ids[starts]
    column = np.full(int(group_items.max()) + 1, -1, dtype=np.int64)
    column[group_items] = np.arange(len(group_items))
    # chunks of whole items, about index.chunk_size vectors each (as many as ExactIndex scores at a time)
    sizes = np.diff(np.append(starts, len(index.vectors)))
    uniform = bool((sizes == sizes[0]).all())
    step = max(1, len(starts) * index.chunk_size // len(index.vectors))
    bounds = [*starts[::step].tolist(), len(index.vectors)]
    tick = time.perf_counter()
    for first in tqdm(range(0, n, batch_size), desc="retrieve", disable=not progress, leave=False):
        batch = _check_queries(queries[first : first + batch_size], index)
        best = np.empty((len(batch), len(starts)), dtype=np.float32)
        done = 0
        for low, high in itertools.pairwise(bounds):
            block = batch @ index.vectors[low:high].T
            local = starts[(starts >= low) & (starts < high)] - low
            if uniform:  # S copies each: a max over the last axis of [queries, items, S]
                best[:, done : done + len(local)] = torch.from_numpy(block).view(len(batch), len(local), -1).amax(2)
            else:
                best[:, done : done + len(local)] = np.maximum.reduceat(block, local, axis=1)
            done += len(local)
        if masks is not None:
            rows = [np.full(len(masks[r]), j) for j, r in enumerate(range(first, first + len(batch)))]
            masked = [masks[r] for r in range(first, first + len(batch))]
            if rows and sum(map(len, masked)):
                items = np.concatenate(masked)
                where = np.where(items < len(column), column[np.minimum(items, len(column) - 1)], -1)
                keep = where >= 0
                best[np.concatenate(rows)[keep], where[keep]] = -np.inf
        values, columns = stable_top_k(best, k)
        found = group_items[columns]
        found[values == -np.inf] = -1
        out[first : first + len(batch), : found.shape[1]] = found
    seconds = time.perf_counter() - tick
    return Retrieved(out, seconds, seconds)


def _check_queries(batch: np.ndarray, index: ExactIndex) -> np.ndarray:
    """Queries as the float32 matrix ExactIndex would search with."""
    batch = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
    if batch.ndim != 2 or batch.shape[1] != index.vectors.shape[1]:
        raise DinosaurError(f"queries of shape {batch.shape} for an index of {index.vectors.shape[1]}-d vectors")
    return batch


def retrieve(
    index: Any,
    queries: np.ndarray,
    k: int,
    max_copies: int,
    masks: Sequence[np.ndarray] | None = None,
    batch_size: int = 256,
    n_vectors: int | None = None,
    progress: bool = False,
    fused: bool = True,
) -> Retrieved:
    """Search max_copies * (k + |mask|) neighbours per query, keep each item's best copy, drop masked, keep k.

    On an ``ExactIndex`` whose items' copies are contiguous (as ``sample_item_embeddings`` lays them out) and
    ``fused``, the same lists come from one pass over all inner products (``_retrieve_exact``), without fetching
    and de-duplicating S * (k + |mask|) neighbours per user; ``fused=False`` forces the generic path."""
    if k < 1:
        raise DinosaurError(f"k must be >= 1, got {k}")
    if fused and isinstance(index, ExactIndex) and n_vectors is None:
        starts = _item_groups(index.ids)
        if starts is not None:
            return _retrieve_exact(index, queries, k, masks, starts, batch_size, progress)
    n = len(queries)
    out = np.full((n, k), -1, dtype=np.int64)
    mask_sizes = np.array([len(m) for m in masks]) if masks is not None else np.zeros(n, dtype=np.int64)
    order = np.argsort(mask_sizes, kind="stable")  # similar fetch sizes per batch
    limit = n_vectors or getattr(getattr(index, "stats", None), "n_vectors", None) or 10**12
    search_seconds = 0.0
    tick = time.perf_counter()
    for start in tqdm(range(0, n, batch_size), desc="retrieve", disable=not progress, leave=False):
        rows = order[start : start + batch_size]
        fetch = int(min(max_copies * (k + int(mask_sizes[rows].max())), limit))
        searched = time.perf_counter()
        _, found = index.search(queries[rows], fetch)
        search_seconds += time.perf_counter() - searched
        for j, row in enumerate(rows):
            ids = found[j]
            ids = ids[ids >= 0]
            _, first = np.unique(ids, return_index=True)
            first.sort()
            distinct = ids[first]  # in order of each item's best copy
            if masks is not None and len(masks[row]):
                distinct = distinct[~np.isin(distinct, masks[row], assume_unique=True)]
            kept = distinct[:k]
            out[row, : len(kept)] = kept
    return Retrieved(out, search_seconds, time.perf_counter() - tick)


# -- metrics ------------------------------------------------------------------------------------------------------


def popularity_quintiles(counts: np.ndarray) -> np.ndarray:
    """Quintile 0 (least popular) .. 4 per item: items sorted by training count (ties by id), five equal groups."""
    order = np.argsort(counts, kind="stable")
    quintile = np.empty(len(counts), dtype=np.int64)
    quintile[order] = np.arange(len(counts)) * N_QUINTILES // len(counts)
    return quintile


def list_metrics(
    lists: np.ndarray, test: sp.csr_matrix, ks: Sequence[int], counts: np.ndarray, tail: np.ndarray | None = None
) -> dict[str, float]:
    """Recall/NDCG@K (full ranking), coverage@K, per-quintile coverage and inclusion, tail-user share."""
    n_users, width = lists.shape
    n_items = len(counts)
    valid = lists >= 0
    safe = np.where(valid, lists, 0)
    rows = np.repeat(np.arange(n_users), width)
    hits = np.asarray(test[rows, safe.ravel()]).reshape(n_users, width) > 0
    hits &= valid
    n_relevant = np.diff(test.indptr)
    per_user = ranking_metrics(torch.from_numpy(hits), torch.from_numpy(n_relevant), [k for k in ks if k <= width])
    quintile = popularity_quintiles(counts)
    quintile_sizes = np.bincount(quintile, minlength=N_QUINTILES)
    tail = long_tail_mask(counts) if tail is None else tail
    out: dict[str, float] = {}
    for k in ks:
        top, ok = safe[:, :k], valid[:, :k]
        out[f"recall@{k}"] = float(per_user[f"recall@{k}"].mean())
        out[f"ndcg@{k}"] = float(per_user[f"ndcg@{k}"].mean())
        shown = np.unique(top[ok])
        out[f"coverage@{k}"] = len(shown) / n_items
        out[f"k_over_catalogue@{k}"] = k / n_items
        shown_quintiles = np.bincount(quintile[shown], minlength=N_QUINTILES)
        user_quintile = np.zeros((n_users, N_QUINTILES), dtype=bool)
        user_quintile[np.repeat(np.arange(n_users), k)[ok.ravel()], quintile[top[ok]]] = True
        for q in range(N_QUINTILES):
            out[f"coverage_q{q}@{k}"] = float(shown_quintiles[q] / quintile_sizes[q])
            out[f"inclusion_q{q}@{k}"] = float(user_quintile[:, q].mean())
        out[f"tail_users@{k}"] = float((tail[top] & ok).any(axis=1).mean())
    return out


# -- baselines at matched coverage ------------------------------------------------------------------------------


def epsilon_greedy_lists(
    point_lists: np.ndarray, epsilon: float, tail_items: np.ndarray, masks: Sequence[np.ndarray], seed: int
) -> np.ndarray:
    """Each of a user's K slots turns random with probability epsilon: that many of the list's last slots get
    random tail items (not masked, not already listed); the point list's top keeps its order."""
    n, k = point_lists.shape
    out = point_lists.copy()
    if epsilon <= 0 or len(tail_items) == 0:
        return out
    rng = np.random.default_rng(seed)
    n_random = rng.binomial(k, min(epsilon, 1.0), size=n)
    for row in np.flatnonzero(n_random):
        cut = k - int(n_random[row])
        banned = np.concatenate([out[row, :cut], masks[row]])
        need = k - cut
        # a few times more draws than needed usually suffice; a full permutation only when they do not
        draw = tail_items[rng.choice(len(tail_items), min(len(tail_items), 4 * need + len(banned)), replace=False)]
        draw = draw[~np.isin(draw, banned)][:need]
        if len(draw) < need:
            draw = rng.permutation(tail_items)
            draw = draw[~np.isin(draw, banned)][:need]
        out[row, cut:] = -1
        out[row, cut : cut + len(draw)] = draw
    return out


def exact_lists(
    users: np.ndarray, items: np.ndarray, k: int, masks: Sequence[np.ndarray], item_bias: np.ndarray | None = None
) -> np.ndarray:
    """Top-k items per user by <u, v> (+ ``item_bias``), masked, by brute force (baselines and tests); equal
    scores in item order."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), 512):
        scores = users[start : start + 512] @ items.T
        if item_bias is not None:
            scores += item_bias[None, :]
        for j in range(len(scores)):
            scores[j, masks[start + j]] = -np.inf
        values, top = stable_top_k(scores, k)
        top[values == -np.inf] = -1
        out[start : start + len(scores), : top.shape[1]] = top
    return out


def _match(
    target: float, make_lists: Any, k: int, grid: Sequence[float], steps: int = 8
) -> tuple[float, np.ndarray, bool]:
    """Smallest knob on ``grid`` (ascending) whose coverage@k reaches ``target`` distinct items, refined by
    bisection against the grid point before it; coverage need not be monotone past it (popularity debiasing
    collapses onto the same tail items when over-weighted). Returns (knob, lists, reached)."""

    def covered(lists: np.ndarray) -> int:
        return len(np.unique(lists[:, :k][lists[:, :k] >= 0]))

    low, high, high_lists = None, None, None
    best = (grid[0], None, -1)
    for value in grid:
        lists = make_lists(value)
        coverage = covered(lists)
        if coverage > best[2]:
            best = (value, lists, coverage)
        if coverage >= target:
            high, high_lists = value, lists
            break
        low = value
    if high is None:  # never reached: the knob of the largest coverage
        return best[0], best[1], False
    if low is None:
        return high, high_lists, True
    for _ in range(steps):
        middle = 0.5 * (low + high)
        lists = make_lists(middle)
        if covered(lists) >= target:
            high, high_lists = middle, lists
        else:
            low = middle
    return high, high_lists, True


# -- the evaluation -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EvalData:
    """What an evaluation needs: factors, training counts, the test matrix and per-user masks of eval users."""

    users: np.ndarray  # [n_eval_users, d] factors of the evaluated users
    items: np.ndarray  # [n_items, d]
    counts: np.ndarray  # [n_items] training interactions
    test: sp.csr_matrix  # [n_eval_users, n_items]
    masks: list[np.ndarray]  # per eval user: items excluded from the ranking (train, and valid for test)
    user_counts: np.ndarray  # [n_eval_users] training interactions of each evaluated user


def eval_data_from_split(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    split: Any,
    which: str = "test",
    max_users: int = 0,
    seed: int = 0,
) -> EvalData:
    """Evaluation users = those with >= 1 ``which`` item (all, or a seeded sample of ``max_users``)."""
    train = split.train.to_csr()
    if which == "test":
        target = split.test.to_csr()
        mask = train + split.valid.to_csr() if split.valid is not None and split.valid.n_interactions else train
    elif which == "valid":
        target, mask = split.valid.to_csr(), train
    else:
        raise DinosaurError(f"which must be 'test' or 'valid', got {which!r}")
    eval_users = np.flatnonzero(np.diff(target.indptr) > 0)
    if max_users and len(eval_users) > max_users:
        eval_users = np.sort(np.random.default_rng(seed).choice(eval_users, max_users, replace=False))
    mask = mask.tocsr()
    return EvalData(
        users=user_factors[eval_users],
        items=item_factors,
        counts=np.asarray(train.sum(axis=0)).ravel(),
        test=target[eval_users],
        masks=[mask.indices[mask.indptr[u] : mask.indptr[u + 1]] for u in eval_users],
        user_counts=np.diff(train.indptr)[eval_users],
    )


def evaluate_dinosaur(
    data: EvalData,
    samples: Sequence[int],
    ks: Sequence[int],
    sigma: np.ndarray,
    backend: str = "exact",
    seed: int = 0,
    adaptive: bool = False,
    user_sigma: np.ndarray | None = None,
    baselines: bool = True,
    match_samples: int | None = None,
    store: Any = None,
    index_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of DINOSAUR per S (and, optionally, of the two baselines at S's coverage) on ``data``."""
    ks = sorted({int(k) for k in ks})
    samples = sorted({int(s) for s in samples})
    if not ks or ks[0] < 1:
        raise DinosaurError(f"--k needs positive values, got {ks}")
    if not samples or samples[0] < 1:
        raise DinosaurError(f"--samples needs values >= 1, got {samples}")
    if ks[-1] > data.items.shape[0]:
        raise DinosaurError(f"K = {ks[-1]} exceeds the catalogue of {data.items.shape[0]} items")
    k_max = ks[-1]
    queries = data.users if user_sigma is None else sample_user_embeddings(data.users, user_sigma, seed + 7919)
    tail = long_tail_mask(data.counts)
    result: dict[str, Any] = {}
    reference: dict[str, float] | None = None
    for s in samples:
        copies = samples_per_item(sigma, s, adaptive)
        vectors, owners = sample_item_embeddings(data.items, sigma, copies, seed + s)
        options = dict(index_options or {})
        if backend == "chroma":
            options.setdefault("collection", f"dinosaur_s{s}")
        index = build_index(backend, vectors, owners, store=store, **options)
        found = retrieve(index, queries, k_max, int(copies.max()), data.masks, progress=progress)
        metrics = list_metrics(found.items, data.test, ks, data.counts, tail)
        n_queries = len(queries)
        timing = {
            "n_vectors": index.stats.n_vectors,
            "build_seconds": index.stats.build_seconds,
            "memory_bytes": index.stats.memory_bytes,
            "search_seconds": found.search_seconds,
            "qps": n_queries / found.search_seconds if found.search_seconds > 0 else None,
            "ms_per_query": 1000 * found.search_seconds / n_queries,
            "retrieve_seconds": found.total_seconds,
            "params": index.stats.params,
        }
        if reference is None:
            reference = timing
        for key in ("build_seconds", "memory_bytes", "ms_per_query"):
            base = reference[key]
            timing[f"{key}_vs_s1"] = timing[key] / base if base else None
        metrics["index"] = timing
        result[f"S={s}"] = metrics
        logger.info("S=%d: %s", s, " ".join(f"coverage@{k} {metrics[f'coverage@{k}']:.4f}" for k in ks))
        if backend == "chroma" and store is not None:
            store.delete_collection(options["collection"])
    if baselines:
        result["baselines"] = _baselines(data, result, samples, ks, tail, seed, match_samples)
    return result


def _baselines(
    data: EvalData,
    result: dict[str, Any],
    samples: Sequence[int],
    ks: Sequence[int],
    tail: np.ndarray,
    seed: int,
    match_samples: int | None,
) -> dict[str, Any]:
    """Epsilon-greedy and popularity-debiased retrieval tuned to DINOSAUR's coverage@K at S = ``match_samples``."""
    target_s = match_samples if match_samples in samples else max(samples)
    k_max = max(ks)
    point = exact_lists(data.users, data.items, k_max, data.masks)
    tail_items = np.flatnonzero(tail)
    log_counts = np.log1p(data.counts).astype(np.float32)
    scale = float(np.abs(data.users @ data.items[: min(len(data.items), 2048)].T).mean()) or 1.0
    out: dict[str, Any] = {
        "matched_to": f"S={target_s}",
        "point_exact": list_metrics(point, data.test, ks, data.counts),
    }
    eps_rows, pop_rows = {}, {}
    beta_grid = [0.0, *np.geomspace(0.01, 4.0, 12)]
    grid_lists: dict[float, np.ndarray] = {}  # popularity-debiased lists at the grid's betas, shared by every K
    for k in ks:
        target = result[f"S={target_s}"][f"coverage@{k}"] * len(data.counts)

        def greedy(eps: float, k: int = k) -> np.ndarray:
            return epsilon_greedy_lists(point[:, :k], eps, tail_items, data.masks, seed)

        def debiased(beta: float, k: int = k) -> np.ndarray:
            if beta not in beta_grid:  # a bisection step, for this K only
                return exact_lists(data.users, data.items, k, data.masks, -beta * scale * log_counts)
            if beta not in grid_lists:  # a grid point: its lists at the largest K; a stable top k is their prefix
                lists = exact_lists(data.users, data.items, k_max, data.masks, -beta * scale * log_counts)
                grid_lists[beta] = lists.astype(np.int32)  # item ids fit; half the memory of the cache
            return grid_lists[beta][:, :k].astype(np.int64)

        eps, lists, reached = _match(target, greedy, k, [0.0, *np.geomspace(0.001, 1.0, 10)])
        eps_rows[f"K={k}"] = {
            "epsilon": eps,
            "reached": reached,
            **list_metrics(lists, data.test, [k], data.counts, tail),
        }
        beta, lists, reached = _match(target, debiased, k, beta_grid)
        pop_rows[f"K={k}"] = {
            "beta": beta * scale,
            "reached": reached,
            **list_metrics(lists, data.test, [k], data.counts, tail),
        }
    out["epsilon_greedy"] = eps_rows
    out["popularity_debiased"] = pop_rows
    return out


# -- CLI -------------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def eval_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Load a checkpoint and its split, evaluate DINOSAUR, write ``--out`` (atomically) and return the result."""
    import json

    from recsys.evaluate import load_checkpoint
    from recsys.models.base import atomic_write_text

    model, split, run = load_checkpoint(args.checkpoint, args.data_dir)
    users, items = dot_product_factors(model)
    data = eval_data_from_split(users, items, split, args.split, args.max_users, args.seed)
    sigma = item_sigma(args.variance, data.counts, model, args.c, args.p, args.posterior_scale)
    user_sigma = None
    if args.user_noise:
        user_sigma = args.user_noise * count_sigma(data.user_counts, args.c, args.p)
    store, tmp = None, None
    if args.index == "chroma":
        from retrieval.store import VectorStore

        if args.store:
            store_path = Path(args.store)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="dinosaur_chroma_")
            store_path = Path(tmp.name)
        store = VectorStore(store_path)
    try:
        result = evaluate_dinosaur(
            data,
            args.samples,
            args.k,
            sigma,
            backend=args.index,
            seed=args.seed,
            adaptive=args.adaptive,
            user_sigma=user_sigma,
            baselines=not args.no_baselines,
            match_samples=args.match_samples,
            store=store,
            progress=not args.quiet,
        )
    finally:
        if store is not None:
            store.close()
        if tmp is not None:
            tmp.cleanup()
    result["meta"] = {
        "checkpoint": str(args.checkpoint),
        "model": model.name,
        "dataset": run.get("dataset"),
        "protocol": split.protocol,
        "split": args.split,
        "n_users_evaluated": len(data.users),
        "n_items": len(data.counts),
        "index": args.index,
        "variance": args.variance,
        "c": args.c,
        "p": args.p,
        "user_noise": args.user_noise,
        "adaptive": args.adaptive,
        "seed": args.seed,
        "evaluation": "full ranking over the catalogue (train and valid items masked), lists from the index",
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=2, default=float))
    return result


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m recsys.dinosaur`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m recsys.dinosaur", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    ev = verbs.add_parser("eval", help="coverage, recall and index cost of DINOSAUR on a trained checkpoint")
    ev.add_argument("--checkpoint", required=True, help="folder written by python -m recsys.train --out")
    ev.add_argument("--samples", type=_int_list, default=[1, 2, 5, 10], help="S values, e.g. 1,2,5,10")
    ev.add_argument("--k", type=_int_list, default=[10, 100, 1000], help="K values, e.g. 10,100,1000")
    ev.add_argument("--index", choices=BACKENDS, default="exact")
    ev.add_argument("--variance", choices=["count", "posterior", "posterior-iso", "zero"], default="count")
    ev.add_argument("--c", type=float, default=0.1, help="count proxy: sigma = c / (1 + n)^p")
    ev.add_argument("--p", type=float, default=0.25)
    ev.add_argument("--posterior-scale", type=float, default=1.0, help="multiplies the posterior std")
    ev.add_argument("--user-noise", type=float, default=0.0, help="> 0: sample each user (count proxy x this)")
    ev.add_argument("--adaptive", action="store_true", help="S_i proportional to the item's std (mean ~ S)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--split", choices=["test", "valid"], default="test")
    ev.add_argument("--max-users", type=int, default=0, help="evaluate a seeded sample of this many users (0: all)")
    ev.add_argument("--match-samples", type=int, default=5, help="baselines are tuned to this S's coverage")
    ev.add_argument("--no-baselines", action="store_true")
    ev.add_argument("--store", help="Chroma store directory for --index chroma (default: a temporary one)")
    ev.add_argument("--data-dir", help="look for the checkpoint's dataset here first")
    ev.add_argument("--out", help="write the result JSON here")
    add_verbosity_args(ev)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: print the result JSON; one clear line and exit 2 on bad input."""
    from retrieval.errors import RetrievalError

    args = build_parser().parse_args(argv)
    configure_from_args(args)
    return run_cli(lambda: eval_checkpoint(args), errors=(DinosaurError, RetrievalError))


if __name__ == "__main__":
    sys.exit(main())
