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
from agents.pcf.hierarchy import HierarchicalPCF, grouped_folds, reference_attributes
from agents.pcf.reference import ReferenceProduct, SectorStats, product_text

logger = logging.getLogger(__name__)

METHODS = ("sector_median", "knn", "knn_weight", "llm_few_shot", "pipeline")


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


# ---------------------------------------------------------------------------------------- transfer evaluation

TRANSFER_METHODS = (
    "global_median",
    "sector_median",
    "category_median",
    "knn",
    "knn_weight",
    "hierarchical",
    "hierarchical_attributes",
)
TRANSFER_PROTOCOLS = ("grouped_kfold", "leave_one_sector_out")


def plain_text(product: ReferenceProduct) -> str:
    """A held-out product as a target sees it: name, company and detail, without its sector or industry."""
    return product_text(product.name, description=product.detail, brand=product.company)


def within_category_spearman(true: np.ndarray, predicted: np.ndarray, categories: np.ndarray) -> float:
    """Size-weighted mean of the Spearman correlation inside each category with >= 5 products (NaN if none)."""
    from scipy.stats import spearmanr

    total, weight = 0.0, 0
    for category in sorted(set(categories.tolist())):
        rows = categories == category
        if rows.sum() < 5 or np.ptp(predicted[rows]) == 0 or np.ptp(true[rows]) == 0:
            continue
        total += rows.sum() * float(spearmanr(true[rows], predicted[rows]).statistic)
        weight += int(rows.sum())
    return total / weight if weight else math.nan


def transfer_metrics(
    true: np.ndarray,
    predicted: np.ndarray,
    categories: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> dict[str, Any]:
    """error_metrics plus mean |log10 error|, Spearman within category and (with an interval) its coverage."""
    metrics: dict[str, Any] = error_metrics(true, predicted)
    metrics["mean_abs_log10_error"] = float(np.mean(np.abs(np.log10(predicted) - np.log10(true))))
    metrics["spearman_within_category"] = within_category_spearman(true, predicted, categories)
    if low is not None and high is not None:
        metrics["interval_coverage"] = float(np.mean((true >= low) & (true <= high)))
        metrics["median_interval_ratio"] = float(np.median(high / low))
    return metrics


def evaluate_transfer(
    products: Sequence[ReferenceProduct],
    embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    protocol: str = "grouped_kfold",
    n_folds: int = 5,
    k: int = DEFAULT_K,
    seed: int = 0,
    coverage: float = 0.8,
) -> dict[str, Any]:
    """Every transfer method on held-out products under grouped k-fold or leave-one-sector-out.

    ``embeddings`` index the references (their full text); ``query_embeddings`` are the same products as
    targets (``plain_text``: the sector hidden, the classifier must find it). Methods: the global median, the
    true sector's median (an oracle a new product lacks), the predicted category's median, kNN (with and without
    the weight ratio), the hierarchical estimator without attributes and with them (weight column + quantities
    parsed from the name). Reported overall, per true category (with the category-median baseline) and the
    property that the hierarchical estimate is on average no worse than the predicted category's median.
    """
    if protocol not in TRANSFER_PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} unknown; use one of {TRANSFER_PROTOCOLS}")
    sectors = np.array([p.sector for p in products])
    if protocol == "grouped_kfold":
        folds = grouped_folds([p.group for p in products], n_folds, seed)
    else:
        names = sorted(set(sectors.tolist()))
        folds = np.array([names.index(s) for s in sectors])
    n_outer = int(folds.max()) + 1
    true = np.array([p.pcf_kg for p in products])
    predictions = {m: np.full(len(products), np.nan) for m in TRANSFER_METHODS}
    intervals = {m: (np.full(len(products), np.nan), np.full(len(products), np.nan)) for m in TRANSFER_METHODS}
    predicted_category = np.array([""] * len(products), dtype=object)
    flags_outside = np.zeros(len(products), dtype=bool)
    index = MatrixNeighbours(products, embeddings)
    inner_reports = []
    started = time.perf_counter()
    for fold in tqdm(range(n_outer), desc=f"{protocol} folds", unit="fold"):
        test = np.flatnonzero(folds == fold)
        train = folds != fold
        rows = np.flatnonzero(train)
        train_products = [products[i] for i in rows]
        stats = SectorStats.from_products(train_products)
        neighbour_lists = index.search(query_embeddings[test], k=k, allowed=train)
        models = {}
        for method, use_attributes in (("hierarchical", False), ("hierarchical_attributes", True)):
            models[method] = HierarchicalPCF(k=k, coverage=coverage, use_attributes=use_attributes, seed=seed).fit(
                train_products, embeddings[rows], query_embeddings[rows]
            )
        inner_reports.append({"fold": fold, **models["hierarchical"].inner_report})
        target_attributes = [reference_attributes(products[i]) for i in test]
        for method, model in models.items():
            estimates = model.predict(query_embeddings[test], target_attributes)
            for row, estimate in zip(test, estimates, strict=True):
                predictions[method][row] = estimate.pcf_kg
                intervals[method][0][row], intervals[method][1][row] = estimate.low_kg, estimate.high_kg
                if method == "hierarchical":
                    predicted_category[row] = estimate.category
                    predictions["category_median"][row] = model.category_median_kg(estimate.category)
                    flags_outside[row] = not estimate.plausible
        for row, neighbours in zip(test, neighbour_lists, strict=True):
            product = products[row]
            predictions["global_median"][row] = stats.global_median
            predictions["sector_median"][row] = stats.median.get(product.sector, stats.global_median)
            predictions["knn"][row] = knn_estimate(neighbours, None)
            predictions["knn_weight"][row] = knn_estimate(neighbours, product.weight_kg)
    seconds = time.perf_counter() - started
    overall, per_category = {}, {}
    for method, values in predictions.items():
        low, high = intervals[method] if np.isfinite(intervals[method][0]).all() else (None, None)
        overall[method] = transfer_metrics(true, values, sectors, low, high)
        per_category[method] = {}
        for sector in sorted(set(sectors.tolist())):
            rows = sectors == sector
            part_low = low[rows] if low is not None else None
            part_high = high[rows] if high is not None else None
            per_category[method][sector] = transfer_metrics(
                true[rows], values[rows], sectors[rows], part_low, part_high
            )
    errors = {m: np.abs(np.log10(predictions[m]) - np.log10(true)) for m in ("hierarchical", "category_median")}
    fold_property = [
        {
            "fold": int(f),
            "hierarchical": float(errors["hierarchical"][folds == f].mean()),
            "category_median": float(errors["category_median"][folds == f].mean()),
        }
        for f in range(n_outer)
    ]
    return {
        "protocol": protocol if protocol != "grouped_kfold" else f"grouped_{n_folds}_fold",
        "n_products": len(products),
        "n_folds": n_outer,
        "k": k,
        "seed": seed,
        "coverage_target": coverage,
        "query_text": "name, company, detail (sector and industry hidden)",
        "classifier_accuracy": float(np.mean(predicted_category == sectors)),
        "implausible_flag_share": float(flags_outside.mean()),
        "overall": overall,
        "per_category": per_category,
        "property_by_fold": fold_property,
        "inner": inner_reports,
        "seconds": round(seconds, 2),
    }


def format_transfer_table(result: dict[str, Any]) -> str:
    """Overall metrics per method and a per-category table (hierarchical vs the category-median baseline)."""
    header = (
        f"{'method':<25}{'med|log10|':>11}{'mean|log10|':>12}{'within x2':>10}{'spearman':>9}"
        f"{'sp. in cat':>11}{'coverage':>9}"
    )
    lines = [
        f"[transfer] {result['protocol']}, k={result['k']}, classifier accuracy {result['classifier_accuracy']:.3f}, "
        f"interval target {result['coverage_target']:.0%}",
        header,
    ]
    for method, m in result["overall"].items():
        coverage = f"{m['interval_coverage']:>9.3f}" if "interval_coverage" in m else f"{'-':>9}"
        lines.append(
            f"{method:<25}{m['median_abs_log10_error']:>11.3f}{m['mean_abs_log10_error']:>12.3f}"
            f"{m['within_factor_2']:>10.3f}{m['spearman']:>9.3f}{m['spearman_within_category']:>11.3f}{coverage}"
        )
    lines += [
        "",
        f"{'category (mean|log10|, n)':<38}{'cat. median':>12}{'knn':>8}{'hier.':>8}{'hier.+attr':>11}"
        f"{'sp. hier.':>10}{'coverage':>9}",
    ]
    per = result["per_category"]
    for category in per["hierarchical"]:
        h = per["hierarchical"][category]
        lines.append(
            f"{category[:30] + ' (' + str(h['n']) + ')':<38}"
            f"{per['category_median'][category]['mean_abs_log10_error']:>12.3f}"
            f"{per['knn'][category]['mean_abs_log10_error']:>8.3f}{h['mean_abs_log10_error']:>8.3f}"
            f"{per['hierarchical_attributes'][category]['mean_abs_log10_error']:>11.3f}"
            f"{h['spearman']:>10.2f}{h.get('interval_coverage', math.nan):>9.2f}"
        )
    return "\n".join(lines)


def evaluate_external(
    reference: Sequence[ReferenceProduct],
    reference_embeddings: np.ndarray,
    reference_queries: np.ndarray,
    target_names: Sequence[str],
    target_pcf: np.ndarray,
    target_embeddings: np.ndarray,
    k: int = DEFAULT_K,
    coverage: float = 0.8,
    seed: int = 0,
) -> dict[str, Any]:
    """Transfer to a catalogue the estimator never saw: fit on ``reference``, predict every target.

    Methods: the reference's global median, the predicted category's median, kNN, and the hierarchical
    estimator (no attributes: the targets have none). Metrics as in :func:`transfer_metrics`, overall only
    (the targets carry no category of the reference).
    """
    model = HierarchicalPCF(k=k, coverage=coverage, use_attributes=False, seed=seed).fit(
        reference, reference_embeddings, reference_queries
    )
    estimates = model.predict(target_embeddings)
    neighbour_lists = MatrixNeighbours(reference, reference_embeddings).search(target_embeddings, k=k)
    true = np.asarray(target_pcf, dtype=float)
    categories = np.array([e.category for e in estimates])
    predictions = {
        "global_median": np.full(len(true), float(np.median([p.pcf_kg for p in reference]))),
        "category_median": np.array([model.category_median_kg(e.category) for e in estimates]),
        "knn": np.array([knn_estimate(n) for n in neighbour_lists]),
        "hierarchical": np.array([e.pcf_kg for e in estimates]),
    }
    low = np.array([e.low_kg for e in estimates])
    high = np.array([e.high_kg for e in estimates])
    overall = {
        method: transfer_metrics(true, values, categories, *((low, high) if method == "hierarchical" else ()))
        for method, values in predictions.items()
    }
    rows = [
        {
            "name": name,
            "true_kg": float(t),
            "category": e.category,
            "hierarchical_kg": e.pcf_kg,
            "low_kg": e.low_kg,
            "high_kg": e.high_kg,
            "knn_kg": float(predictions["knn"][i]),
            "flags": e.flags,
        }
        for i, (name, t, e) in enumerate(zip(target_names, true, estimates, strict=True))
    ]
    return {
        "protocol": "external_catalogue",
        "n_reference": len(reference),
        "n_targets": len(true),
        "k": k,
        "coverage_target": coverage,
        "inner": model.inner_report,
        "overall": overall,
        "targets": rows,
    }


def format_external_table(result: dict[str, Any]) -> str:
    """The overall metrics of an external-catalogue transfer, one line per method."""
    lines = [
        f"[external] {result['n_reference']} reference products -> {result['n_targets']} targets, k={result['k']}",
        f"{'method':<18}{'med|log10|':>11}{'mean|log10|':>12}{'within x2':>10}{'spearman':>9}{'coverage':>9}",
    ]
    for method, m in result["overall"].items():
        coverage = f"{m['interval_coverage']:>9.3f}" if "interval_coverage" in m else f"{'-':>9}"
        lines.append(
            f"{method:<18}{m['median_abs_log10_error']:>11.3f}{m['mean_abs_log10_error']:>12.3f}"
            f"{m['within_factor_2']:>10.3f}{m['spearman']:>9.3f}{coverage}"
        )
    return "\n".join(lines)
