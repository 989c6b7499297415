"""How good is the PCF estimation: grouped k-fold (or leave-one-group-out) over the reference catalogue.

Folds split by product group (shared PCF-ID stem or name + company), since the Carbon Catalogue repeats a
product across reporting years with the same footprint; a row-level split lets a held-out product find its
own twin and flatters kNN. Reported per method and per sector: median absolute log10 error, share within a
factor of 2, Spearman rank correlation (the ranking of products matters more than the absolute value for
carbon-aware re-ranking), and the median absolute error in kg for comparison with the seed paper.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.pcf.estimate import (
    DEFAULT_K,
    DEFAULT_SIMILARITY_THRESHOLD,
    ChatLike,
    LLMAnswerError,
    MatrixNeighbours,
    PCFEstimator,
    TargetItem,
    build_messages,
    knn_estimate,
    parse_llm_answer,
)
from agents.pcf.reference import ReferenceProduct, SectorStats

logger = logging.getLogger(__name__)

METHODS = ("sector_median", "knn", "knn_weight", "llm_few_shot", "pipeline")


def grouped_folds(groups: Sequence[str], n_folds: int, seed: int = 0) -> np.ndarray:
    """A fold index per row; every group lands whole in one fold (groups shuffled, then dealt round-robin)."""
    unique = sorted(set(groups))
    if n_folds < 2 or n_folds > len(unique):
        raise ValueError(f"--folds must be between 2 and the number of product groups ({len(unique)}), got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[g]: i % n_folds for i, g in enumerate(order)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def error_metrics(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Median |log10 error|, share within a factor of 2, Spearman, median absolute error (kg), n."""
    from scipy.stats import spearmanr

    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    log_error = np.abs(np.log10(predicted) - np.log10(true))
    # Spearman is undefined for a constant prediction (e.g. an LLM that always answers the same number).
    defined = len(true) > 2 and np.ptp(predicted) > 0 and np.ptp(true) > 0
    spearman = float(spearmanr(true, predicted).statistic) if defined else math.nan
    return {
        "n": len(true),
        "median_abs_log10_error": float(np.median(log_error)),
        "within_factor_2": float(np.mean(log_error <= math.log10(2) + 1e-12)),
        "spearman": spearman,
        "median_abs_error_kg": float(np.median(np.abs(predicted - true))),
    }


def target_from_reference(product: ReferenceProduct, with_weight: bool) -> TargetItem:
    """A held-out reference product seen as a target item (its footprint hidden)."""
    category = f"{product.sector} / {product.industry}" if product.industry else product.sector
    return TargetItem(
        item_id=product.ref_id,
        title=product.name,
        category=category,
        description=product.detail,
        brand=product.company,
        weight_kg=product.weight_kg if with_weight else None,
    )


def evaluate(
    products: Sequence[ReferenceProduct],
    embeddings: np.ndarray,
    n_folds: int = 5,
    k: int = DEFAULT_K,
    seed: int = 0,
    llm: ChatLike | None = None,
    llm_name: str = "",
    llm_limit: int | None = 100,
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD,
    with_weight: bool = False,
    leave_one_group_out: bool = False,
) -> dict[str, Any]:
    """Predictions of every method for every held-out product, and their metrics overall and per sector.

    ``embeddings`` are the L2-normalised text embeddings of ``products`` (row i = product i). The LLM methods
    run on a seeded sample of ``llm_limit`` held-out products (all when None); the other methods on all, and
    again on that sample so the comparison is like for like. ``with_weight`` gives the pipeline and the LLM
    the product's weight (the Amazon items it labels usually have none, so the default is without).
    """
    groups = [p.group for p in products]
    n_groups = len(set(groups))
    folds = grouped_folds(groups, n_groups if leave_one_group_out else n_folds, seed)
    n_folds = int(folds.max()) + 1
    index = MatrixNeighbours(products, embeddings)
    true = np.array([p.pcf_kg for p in products])
    predictions = {m: np.full(len(products), np.nan) for m in METHODS}
    llm_rows = np.zeros(len(products), dtype=bool)
    if llm is not None:
        chosen = np.random.default_rng(seed).permutation(len(products))
        llm_rows[chosen[: llm_limit or len(products)]] = True
    llm_valid = np.zeros(len(products), dtype=bool)
    started = time.perf_counter()
    for fold in tqdm(range(n_folds), desc="folds", unit="fold", disable=n_folds < 2):
        test = np.flatnonzero(folds == fold)
        train = folds != fold
        train_products = [products[i] for i in np.flatnonzero(train)]
        stats = SectorStats.from_products(train_products)
        neighbour_lists = index.search(embeddings[test], k=k, allowed=train)
        for row, neighbours in zip(test, neighbour_lists, strict=True):
            product = products[row]
            predictions["sector_median"][row] = stats.median.get(product.sector, stats.global_median)
            predictions["knn"][row] = knn_estimate(neighbours, None)
            predictions["knn_weight"][row] = knn_estimate(neighbours, product.weight_kg)
        asked = [(row, nb) for row, nb in zip(test, neighbour_lists, strict=True) if llm_rows[row]]
        if not asked:
            continue
        estimator = PCFEstimator(stats=stats, llm=llm, similarity_threshold=similarity_threshold, llm_name=llm_name)
        items = [target_from_reference(products[row], with_weight) for row, _ in asked]
        replies = estimator._ask([build_messages(item, nb) for item, (_, nb) in zip(items, asked, strict=True)])
        for item, (row, neighbours), reply in zip(items, asked, replies, strict=True):
            # LLM alone: its parsed number when positive (no range check); otherwise the training median.
            try:
                value = parse_llm_answer(reply)["estimate_kg_co2e"] if isinstance(reply, str) else -1.0
            except LLMAnswerError:
                value = -1.0
            llm_valid[row] = value > 0
            predictions["llm_few_shot"][row] = value if value > 0 else stats.global_median
            best = max(n.similarity for n in neighbours)
            if isinstance(reply, Exception):
                label = estimator.fallback(item, neighbours, f"llm_error: {reply}")
            elif best < similarity_threshold:
                label = estimator.fallback(item, neighbours, f"low_similarity: best {best:.3f}")
            else:
                label = estimator.from_answer(item, neighbours, reply)
            predictions["pipeline"][row] = label.pcf_kg
    seconds = time.perf_counter() - started

    def summarise(mask: np.ndarray) -> dict[str, Any]:
        overall, per_sector = {}, {}
        sectors = sorted({p.sector for p in products})
        for method, values in predictions.items():
            rows = mask & np.isfinite(values)
            if not rows.any():
                continue
            overall[method] = error_metrics(true[rows], values[rows])
            per_sector[method] = {}
            for sector in sectors:
                in_sector = rows & np.array([p.sector == sector for p in products])
                if in_sector.sum() >= 3:
                    per_sector[method][sector] = error_metrics(true[in_sector], values[in_sector])
        return {"overall": overall, "per_sector": per_sector}

    result: dict[str, Any] = {
        "protocol": "leave_one_group_out" if leave_one_group_out else f"grouped_{n_folds}_fold",
        "grouping": "PCF-ID stem or normalised name + company",
        "n_products": len(products),
        "n_groups": n_groups,
        "k": k,
        "seed": seed,
        "similarity_threshold": similarity_threshold,
        "with_weight": with_weight,
        "llm": llm_name or None,
        "seconds": round(seconds, 2),
        "all": summarise(np.ones(len(products), dtype=bool)),
    }
    if llm_rows.any():
        result["llm_subset"] = summarise(llm_rows)
        result["llm_valid_share"] = float(llm_valid[llm_rows].mean())
    return result


def format_table(result: dict[str, Any], part: str = "all") -> str:
    """The overall metrics per method, and Spearman per sector, as aligned text."""
    overall = result[part]["overall"]
    header = f"{'method':<15}{'n':>6}{'med|log10|':>12}{'within x2':>11}{'spearman':>10}{'medAE kg':>12}"
    lines = [f"[{part}] {result['protocol']}, k={result['k']}, llm={result['llm']}", header]
    for method, m in overall.items():
        lines.append(
            f"{method:<15}{m['n']:>6}{m['median_abs_log10_error']:>12.3f}{m['within_factor_2']:>11.3f}"
            f"{m['spearman']:>10.3f}{m['median_abs_error_kg']:>12.1f}"
        )
    per_sector = result[part]["per_sector"]
    methods = list(per_sector)
    sectors = sorted({s for m in methods for s in per_sector[m]})
    lines.append("")
    lines.append(f"{'sector (spearman / med|log10|)':<38}" + "".join(f"{m:>18}" for m in methods))
    for sector in sectors:
        cells = []
        for method in methods:
            m = per_sector[method].get(sector)
            cells.append(f"{m['spearman']:>8.2f} / {m['median_abs_log10_error']:<5.2f}" if m else f"{'-':>18}")
        lines.append(f"{sector[:37]:<38}" + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)
