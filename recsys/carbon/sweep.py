"""The lambda sweep over a trained checkpoint, and its JSON / Markdown / PNG reports.

Protocol (full ranking, as ``recsys.evaluate``): the checkpoint's split is rebuilt from its ``run.json``;
for every user with a test item, the model scores the whole catalogue, the user's train and valid items
(and, under the ``exclude`` policy, unlabelled items) are masked, the top ``n_candidates`` (100) are
taken with pessimistic ties, re-ranked for each lambda, and the top 10 evaluated against the test items
with ``evals.metrics`` (NDCG@10, Recall@10; every test user counts, also one whose test item cannot be
recommended). ``mean_pcf_kg`` is the mean over users (with a non-empty list) of the mean PCF (kg CO2e) of
their recommended list.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from core.io import atomic_write, atomic_write_text
from evals.metrics import ndcg_at_k, recall_at_k
from evals.ranking import csr_rows_to_dense
from recsys.carbon.labels import CarbonError, ItemPCF, align_pcf
from recsys.carbon.rerank import carbon_reduction_at_loss, normalise_pcf, pareto_frontier, rerank, top_candidates
from recsys.evaluate import load_checkpoint

logger = logging.getLogger(__name__)

TOP_K = 10


@torch.no_grad()
def sweep_lambdas(
    score_fn: Any,
    test_csr: Any,
    mask_csr: Any,
    item_pcf: ItemPCF,
    lambdas: Sequence[float],
    n_candidates: int = 100,
    pcf_scale: str = "minmax",
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    progress: bool = True,
    penalty_pcf_kg: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per lambda: ``lambda``, ``ndcg@10``, ``recall@10``, ``mean_pcf_kg``, ``pcf_reduction_pct``.

    ``penalty_pcf_kg`` (per item, e.g. the interval's upper end) replaces ``item_pcf.pcf_kg`` in the
    re-ranking score only; ``mean_pcf_kg`` always reports ``item_pcf.pcf_kg``.
    """
    device = torch.device(device)
    lambdas = [float(x) for x in lambdas]
    if not lambdas or any(not 0.0 <= x <= 1.0 for x in lambdas):
        raise CarbonError(f"lambdas must be in [0, 1], got {lambdas}")
    n_items = test_csr.shape[1]
    if item_pcf.pcf_kg.shape[0] != n_items:
        raise CarbonError(f"PCF vector has {item_pcf.pcf_kg.shape[0]} items, the model scores {n_items}")
    pcf_kg = torch.as_tensor(item_pcf.pcf_kg, dtype=torch.float64, device=device)
    penalty = item_pcf.pcf_kg if penalty_pcf_kg is None else penalty_pcf_kg
    if penalty.shape != item_pcf.pcf_kg.shape:
        raise CarbonError(f"penalty PCF has {penalty.shape[0]} items, the PCF vector {item_pcf.pcf_kg.shape[0]}")
    pcf_norm = normalise_pcf(penalty, pcf_scale).to(device)
    allowed = torch.as_tensor(item_pcf.allowed, device=device)
    users = np.flatnonzero(np.diff(test_csr.indptr) > 0).astype(np.int64)
    if users.size == 0:
        raise CarbonError("the split has no test users; nothing to sweep")
    sums = np.zeros((len(lambdas), 3), dtype=np.float64)  # ndcg, recall, mean pcf
    short_lists = with_lists = 0
    for start in tqdm(range(0, users.size, batch_size), desc="carbon sweep", disable=not progress):
        batch = users[start : start + batch_size]
        scores = score_fn(torch.from_numpy(batch).to(device)).detach().to(device=device, dtype=torch.float64)
        relevant = csr_rows_to_dense(test_csr, batch, device)
        blocked = ~allowed.unsqueeze(0).expand_as(relevant)
        if mask_csr is not None:
            blocked = blocked | csr_rows_to_dense(mask_csr, batch, device)
        scores = scores.masked_fill(blocked, -torch.inf)
        items, top_scores, valid = top_candidates(scores, n_candidates, relevant)
        short_lists += int((valid.sum(dim=1) < TOP_K).sum())
        with_lists += int(valid.any(dim=1).sum())
        n_relevant = relevant.sum(dim=1)
        cand_pcf_norm = pcf_norm[items]
        for row, lam in enumerate(lambdas):
            positions = rerank(top_scores, cand_pcf_norm, lam, TOP_K, valid)
            chosen = items.gather(1, positions)
            slot_valid = valid.gather(1, positions)
            hits = relevant.gather(1, chosen) & slot_valid
            if hits.shape[1] < TOP_K:
                hits = torch.nn.functional.pad(hits, (0, TOP_K - hits.shape[1]), value=False)
            sums[row, 0] += float(ndcg_at_k(hits, n_relevant, TOP_K).sum())
            sums[row, 1] += float(recall_at_k(hits, n_relevant, TOP_K).sum())
            kg = torch.where(slot_valid, pcf_kg[chosen], torch.zeros_like(pcf_kg[chosen]))
            filled = slot_valid.sum(dim=1)
            per_user = kg.sum(dim=1) / filled.clamp(min=1)
            sums[row, 2] += float(per_user[filled > 0].sum())
    if short_lists:
        logger.warning("%d of %d test users have fewer than %d recommendable items", short_lists, users.size, TOP_K)
    means = sums / users.size  # every test user counts in NDCG and Recall (an empty list scores 0) ...
    means[:, 2] = sums[:, 2] / max(with_lists, 1)  # ... while the PCF is averaged over non-empty lists only
    base = [i for i, lam in enumerate(lambdas) if lam == 0.0]
    base_pcf = means[base[0], 2] if base else float("nan")
    rows = []
    for i, lam in enumerate(lambdas):
        reduction = 100.0 * (base_pcf - means[i, 2]) / base_pcf if base and base_pcf > 0 else None
        rows.append(
            {
                "lambda": lam,
                "ndcg@10": float(means[i, 0]),
                "recall@10": float(means[i, 1]),
                "mean_pcf_kg": float(means[i, 2]),
                "pcf_reduction_pct": reduction,
            }
        )
    logger.info("swept %d lambdas over %d test users", len(lambdas), users.size)
    return rows


def sweep_checkpoint(
    checkpoint: str | Path,
    labels: dict[str, float],
    lambdas: Sequence[float],
    missing: str = "exclude",
    id_map: dict[str, str] | None = None,
    n_candidates: int = 100,
    pcf_scale: str = "minmax",
    max_loss: float = 0.05,
    data_dir: str | None = None,
    device: str | None = None,
    batch_size: int = 1024,
    progress: bool = True,
    labels_source: str = "labels",
    penalty: dict[str, float] | None = None,
    variant: str = "none",
) -> dict[str, Any]:
    """Sweep one checkpoint: rows per lambda, the Pareto frontier and the headline figure.

    ``penalty`` (same ids as ``labels``, e.g. the intervals' upper ends) is what the re-ranker penalises;
    ``variant`` names it in the report.
    """
    if 0.0 not in [float(x) for x in lambdas]:
        raise CarbonError("the lambda grid must contain 0 (the baseline that reductions are measured against)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, split, run = load_checkpoint(checkpoint, data_dir)
    model.to(device).eval()
    item_pcf = align_pcf(labels, split.train.item_map, missing=missing, id_map=id_map, source=labels_source)
    penalty_pcf = None
    if penalty is not None:
        penalty_pcf = align_pcf(penalty, split.train.item_map, missing=missing, id_map=id_map, source=labels_source)
        penalty_pcf = penalty_pcf.pcf_kg
    train = split.train.to_csr()
    mask = train if split.valid.n_interactions == 0 else (train + split.valid.to_csr())
    test_csr = split.test.to_csr()
    test_items = test_csr.indices
    unlabelled_test = int((~item_pcf.labelled[test_items]).sum())
    if unlabelled_test:
        logger.warning(
            "%d of %d test interactions are on unlabelled items (%s policy)",
            unlabelled_test,
            test_items.size,
            missing,
        )

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return model.score(users.to(device)).float()

    rows = sweep_lambdas(
        score_fn,
        test_csr,
        mask,
        item_pcf,
        lambdas,
        n_candidates=n_candidates,
        pcf_scale=pcf_scale,
        batch_size=batch_size,
        device=device,
        progress=progress,
        penalty_pcf_kg=penalty_pcf,
    )
    frontier = pareto_frontier([r["ndcg@10"] for r in rows], [r["mean_pcf_kg"] for r in rows])
    for i, row in enumerate(rows):
        row["pareto"] = i in frontier
    return {
        "checkpoint": str(checkpoint),
        "model": model.name,
        "dataset": run.get("dataset", run.get("data_config", {}).get("dataset")),
        "pcf_scale": pcf_scale,
        "uncertainty": variant,
        "protocol": split.protocol,
        "data_config": run.get("data_config"),
        "train_seed": run.get("seed"),
        "n_test_users": int((np.diff(test_csr.indptr) > 0).sum()),
        "labels": {**item_pcf.stats, "missing_policy": missing, "unlabelled_test_interactions": unlabelled_test},
        "rows": rows,
        "pareto_lambdas": [rows[i]["lambda"] for i in frontier],
        "headline": carbon_reduction_at_loss(rows, max_loss),
    }


# -- reports --------------------------------------------------------------------------------------------


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown report: one headline line per model, then each model's sweep table (* = Pareto-optimal)."""
    lines = ["# Carbon-aware re-ranking sweep", ""]
    lines += [
        "| model | dataset | PCF scale | uncertainty | NDCG@10 (lambda 0) | lambda | NDCG@10 loss | carbon reduction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        h = res["headline"]
        lines.append(
            f"| {res['model']} | {res['dataset']} | {res.get('pcf_scale', 'minmax')} | "
            f"{res.get('uncertainty', 'none')} | {h['baseline_ndcg@10']:.4f} | {h['lambda']:.4f} | "
            f"{h['ndcg_loss_pct']:.1f}% | **{h['carbon_reduction_pct']:.1f}%** |"
        )
    lines += [
        "",
        f"Carbon reduction: mean PCF of the top-{TOP_K} lists vs lambda = 0, at <= "
        f"{results[0]['headline']['max_ndcg_loss_pct']:.0f}% NDCG@10 loss.",
        "",
    ]
    for res in results:
        lines += [f"## {res['label']} ({res['dataset']}, {res['protocol']}, {res['n_test_users']} test users)", ""]
        lines += ["| lambda | NDCG@10 | Recall@10 | mean PCF (kg) | reduction | Pareto |", "|---|---|---|---|---|---|"]
        for r in res["rows"]:
            reduction = "" if r["pcf_reduction_pct"] is None else f"{r['pcf_reduction_pct']:.1f}%"
            lines.append(
                f"| {r['lambda']:.4f} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['mean_pcf_kg']:.3f} | "
                f"{reduction} | {'*' if r['pareto'] else ''} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot_frontiers(results: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """PNG: NDCG@10 against mean PCF (left) and against % carbon reduction (right), one curve per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for res in results:
        rows = res["rows"]
        pcf = [r["mean_pcf_kg"] for r in rows]
        ndcg = [r["ndcg@10"] for r in rows]
        (line,) = left.plot(pcf, ndcg, "o-", ms=3, alpha=0.6, label=res["label"])
        front = [r for r in rows if r["pareto"]]
        left.plot([r["mean_pcf_kg"] for r in front], [r["ndcg@10"] for r in front], "s", color=line.get_color(), ms=5)
        reduction = [r["pcf_reduction_pct"] or 0.0 for r in rows]
        right.plot(reduction, ndcg, "o-", ms=3, color=line.get_color(), label=res["label"])
        h = res["headline"]
        right.axhline(h["baseline_ndcg@10"] * (1 - h["max_ndcg_loss_pct"] / 100), color=line.get_color(), ls=":", lw=1)
    left.set_xlabel("mean PCF of top-10 lists (kg CO2e)")
    left.set_ylabel("NDCG@10")
    left.set_title("lambda sweep (squares: Pareto frontier)")
    right.set_xlabel("carbon reduction vs lambda = 0 (%)")
    right.set_ylabel("NDCG@10")
    right.set_title("dotted: 5% NDCG@10 loss")
    left.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)
    return path


def write_reports(results: list[dict[str, Any]], out: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``carbon_sweep.json``, ``carbon_sweep.md`` and one ``pareto_<dataset>.png`` per dataset."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    configs = {(r.get("pcf_scale", "minmax"), r.get("uncertainty", "none")) for r in results}
    checkpoints = {r["model"]: set() for r in results}
    for res in results:
        checkpoints[res["model"]].add(res["checkpoint"])
    for res in results:  # a curve label per checkpoint (and scale / variant), unique even for two runs of one model
        label = (
            res["model"] if len(checkpoints[res["model"]]) == 1 else f"{res['model']} ({Path(res['checkpoint']).name})"
        )
        if len(configs) > 1:
            label += f" [{res.get('pcf_scale', 'minmax')}, {res.get('uncertainty', 'none')}]"
        res["label"] = label
    plots = []
    for dataset in dict.fromkeys(str(r["dataset"]) for r in results):
        group = [r for r in results if str(r["dataset"]) == dataset]
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(dataset).name or dataset)
        plots.append(str(plot_frontiers(group, out / f"pareto_{stem}.png", f"carbon-aware re-ranking: {dataset}")))
    payload = {**meta, "results": results, "plots": plots}
    atomic_write_text(out / "carbon_sweep.json", json.dumps(payload, indent=2, default=str))
    atomic_write_text(out / "carbon_sweep.md", markdown_table(results))
    return {
        "json": str(out / "carbon_sweep.json"),
        "markdown": str(out / "carbon_sweep.md"),
        "plots": plots,
        "headline": {r["label"]: r["headline"] for r in results},
    }
