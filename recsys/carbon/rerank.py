"""Carbon-aware re-ranking: normalisation, the lambda score, the lambda grid, Pareto frontiers, the headline.

The re-ranking score of candidate ``i`` of user ``u`` (the seed paper's, arXiv 2606.04550)::

    s(u, i) = (1 - lambda) * rel_norm(u, i) - lambda * pcf_norm(i)

- ``rel_norm``: per-user min-max of the model's relevance over that user's candidate set (the top-N
  unmasked items), so every user's relevance spans [0, 1] whatever the model's score scale; a user whose
  candidates all score the same gets 0 everywhere (no relevance signal, the PCF alone decides).
- ``pcf_norm``: min-max of the PCF over the catalogue's (labelled) items, one scale for every user, so a
  given lambda trades the same kilograms for every user. ``"log"`` min-maxes ``log10(pcf)`` instead: PCFs
  span orders of magnitude, and on the linear scale most items sit near 0 so that only lambdas near 1
  matter (which is why the grid is dense there). ``"rank"`` uses each item's PCF rank share instead, so
  only the order of the labels counts (robust to a few absurd labels, blind to how far apart they are). A
  constant PCF normalises to 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

PCF_SCALES = ("minmax", "log", "rank")


def minmax_per_user(scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise min-max to [0, 1] over ``valid`` entries; constant rows -> 0; invalid entries -> 0."""
    scores = scores.to(torch.float64)
    if valid is None:
        valid = torch.isfinite(scores)
    low = torch.where(valid, scores, torch.full_like(scores, math.inf)).amin(dim=1, keepdim=True)
    high = torch.where(valid, scores, torch.full_like(scores, -math.inf)).amax(dim=1, keepdim=True)
    span = high - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    out = torch.where(span > 0, (scores - low) / safe_span, torch.zeros_like(scores))
    return torch.where(valid, out, torch.zeros_like(out))


def normalise_pcf(pcf_kg: np.ndarray | torch.Tensor, scale: str = "minmax") -> torch.Tensor:
    """Global min-max (``"minmax"``), min-max of log10 (``"log"``) or the rank share (``"rank"``: average rank of
    each finite entry, 0 for the smallest, 1 for the largest) over the finite entries; NaN stays NaN."""
    if scale not in PCF_SCALES:
        raise ValueError(f"pcf scale {scale!r} unknown; use one of {', '.join(PCF_SCALES)}")
    values = torch.as_tensor(np.asarray(pcf_kg, dtype=np.float64))
    finite = torch.isfinite(values)
    if not bool(finite.any()):
        raise ValueError("pcf: no finite value to normalise")
    if scale == "log":
        if bool((values[finite] <= 0).any()):
            raise ValueError("pcf: log scale needs every PCF > 0")
        values = torch.where(finite, torch.log10(values.clamp(min=1e-300)), values)
    if scale == "rank":
        from scipy.stats import rankdata

        ranks = values.clone()
        ranks[finite] = torch.as_tensor(rankdata(values[finite].numpy(), method="average"), dtype=torch.float64)
        values = ranks
    low, high = values[finite].min(), values[finite].max()
    if high > low:
        return (values - low) / (high - low)
    return torch.where(finite, torch.zeros_like(values), values)


def top_candidates(
    scores: torch.Tensor, n_candidates: int, relevant: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's ``n_candidates`` best items: ``(items, scores, valid)``, best first.

    Masked items carry ``-inf`` and come back with ``valid`` False (a user with fewer unmasked items gets
    fewer valid candidates). Ties are broken pessimistically when ``relevant`` is given: among equal
    scores, irrelevant items rank first, so a constant scorer earns nothing.
    """
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, -math.inf), scores)
    n = min(int(n_candidates), scores.shape[1])
    if relevant is not None:
        first = torch.sort(relevant.to(torch.int8), dim=1, stable=True).indices  # irrelevant first
        permuted = scores.gather(1, first)
        by_score = torch.sort(permuted, dim=1, descending=True, stable=True).indices[:, :n]
        items = first.gather(1, by_score)
    else:
        items = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :n]
    top = scores.gather(1, items)
    return items, top, torch.isfinite(top)


def rerank(
    scores_topn: torch.Tensor,
    pcf_norm_topn: torch.Tensor,
    lam: float,
    k: int = 10,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions (into the candidate axis) of each user's top ``k`` by ``(1-lam) rel_norm - lam pcf_norm``.

    ``scores_topn`` are the raw relevance scores of the candidates in relevance order (best first, as from
    ``top_candidates``); they are min-max normalised per user here. ``pcf_norm_topn`` is the already
    globally normalised PCF of each candidate. Ties in the combined score keep the candidate order
    (relevance rank, then pessimistic), so ``lam=0`` returns the relevance order and ``lam=1`` the PCF
    order (ties by relevance). Invalid candidates (``valid`` False) are placed last.
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    if valid is None:
        valid = torch.isfinite(scores_topn) & torch.isfinite(pcf_norm_topn)
    relevance = minmax_per_user(scores_topn, valid)
    pcf = torch.where(valid, pcf_norm_topn.to(torch.float64), torch.zeros_like(relevance))
    combined = (1.0 - float(lam)) * relevance - float(lam) * pcf
    combined = combined.masked_fill(~valid, -math.inf)
    order = torch.sort(combined, dim=1, descending=True, stable=True).indices
    return order[:, : min(int(k), combined.shape[1])]


def lambda_grid(n_points: int = 25, dense_from: float = 0.9, n_dense: int = 16) -> list[float]:
    """``n_points`` lambdas in [0, 1]: evenly spaced below ``dense_from``, ``n_dense`` of them in [dense_from, 1].

    The default (the seed paper's 25 points, dense between 0.90 and 1.00) is 0.0, 0.1, ..., 0.8 and 16
    points from 0.90 to 1.00 in steps of 1/150.
    """
    if not 0 < n_dense < n_points or not 0.0 < dense_from < 1.0:
        raise ValueError("lambda_grid: need 0 < n_dense < n_points and 0 < dense_from < 1")
    coarse = np.linspace(0.0, dense_from, n_points - n_dense, endpoint=False)
    dense = np.linspace(dense_from, 1.0, n_dense)
    return [round(float(x), 6) for x in np.concatenate([coarse, dense])]


def pareto_frontier(ndcg: Sequence[float], pcf: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (maximise NDCG, minimise PCF), ordered by increasing PCF.

    A point is dominated when another has NDCG >= and PCF <= with one of them strict. Of several
    identical points only the first (lowest index) is kept.
    """
    quality = np.asarray(ndcg, dtype=np.float64)
    cost = np.asarray(pcf, dtype=np.float64)
    if quality.shape != cost.shape or quality.ndim != 1:
        raise ValueError(f"pareto_frontier: ndcg and pcf must be 1-D of one length, got {quality.shape}, {cost.shape}")
    if not (np.isfinite(quality).all() and np.isfinite(cost).all()):
        raise ValueError("pareto_frontier: values must be finite")
    order = np.lexsort((np.arange(quality.size), -quality, cost))  # PCF up, NDCG down, index up
    frontier: list[int] = []
    best = -math.inf
    for i in order:
        if quality[i] > best:
            frontier.append(int(i))
            best = quality[i]
    return frontier


def carbon_reduction_at_loss(rows: Sequence[dict[str, Any]], max_loss: float = 0.05) -> dict[str, Any]:
    """The headline: the largest PCF reduction vs lambda = 0 among lambdas losing <= ``max_loss`` of NDCG@10.

    ``rows`` are sweep rows with ``lambda``, ``ndcg@10`` and ``mean_pcf_kg``; one must have lambda 0.
    """
    base = [r for r in rows if r["lambda"] == 0.0]
    if not base:
        raise ValueError("carbon_reduction_at_loss: the sweep has no lambda = 0 row (the baseline)")
    base_ndcg, base_pcf = base[0]["ndcg@10"], base[0]["mean_pcf_kg"]
    floor = (1.0 - max_loss) * base_ndcg
    eligible = [r for r in rows if r["ndcg@10"] >= floor - 1e-12]
    best = max(eligible, key=lambda r: (base_pcf - r["mean_pcf_kg"], -r["lambda"]))
    reduction = 100.0 * (base_pcf - best["mean_pcf_kg"]) / base_pcf if base_pcf > 0 else 0.0
    result = {
        "max_ndcg_loss_pct": 100.0 * max_loss,
        "lambda": best["lambda"],
        "ndcg@10": best["ndcg@10"],
        "ndcg_loss_pct": 100.0 * (base_ndcg - best["ndcg@10"]) / base_ndcg if base_ndcg > 0 else 0.0,
        "mean_pcf_kg": best["mean_pcf_kg"],
        "carbon_reduction_pct": reduction,
        "baseline_ndcg@10": base_ndcg,
        "baseline_mean_pcf_kg": base_pcf,
    }
    if base_ndcg <= 0:
        result["warning"] = "baseline NDCG@10 is 0: any lambda loses nothing, so the headline is meaningless"
        logger.warning(result["warning"])
    return result
