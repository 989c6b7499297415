"""`python benchmarks/sequential.py report FILES`: merge quality runs into one table (and JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import print_table, write_results
from benchmarks.sequential_common import (
    ANCHORS,
    ANCHORS_PAYLOAD,
    METRICS,
    PRESETS,
    QUALITY_COLUMNS,
    logger,
)


def _label(run: dict[str, Any]) -> str:
    """The variant's name, with its ranking mask when not the default ("history") and its batching when not
    the default (random batches, each weighing the same): results under different masks are different
    protocols, and under different batching different training recipes, so they never share a row or a mean."""
    settings = []
    mask = run.get("eval_mask", "history")
    if mask != "history":
        settings.append(f"eval_mask {mask}")
    train = run.get("train_config") or {}
    if train.get("length_buckets"):
        settings.append(f"length_buckets {train['length_buckets']}")
    if train.get("target_weighting", "batch") != "batch":
        settings.append(f"target_weighting {train['target_weighting']}")
    return f"{run['model']} ({', '.join(settings)})" if settings else run["model"]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std over seeds) per (preset, model, epochs trained), with the published anchor beside it.

    Seeds trained for different numbers of epochs (say one stopped by a time budget at 23, one capped at 13)
    are different measurements, not samples of one: they get a row each rather than a mean."""
    groups: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["preset"], _label(run), run.get("epochs_run")), []).append(run)
    rows = []
    for (preset, label, _), group in groups.items():
        variant = group[0]["model"]
        row: dict[str, Any] = {"preset": preset, "model": label, "seeds": len(group)}
        for metric in (*METRICS, "epochs_run", "seconds_per_epoch"):
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                row[metric] = float(np.mean(values))
                if len(values) > 1 and metric in METRICS:
                    row[f"{metric}_std"] = float(np.std(values, ddof=1))
        row["budget_stop"] = any(r.get("stopped_by_budget") for r in group)
        anchor = ANCHORS.get((preset, variant))
        if anchor:  # beside every mask: the row's label and the anchor's eval_mask say which protocol is whose
            row["anchor_hr@10"], row["anchor_ndcg@10"] = anchor["hr@10"], anchor["ndcg@10"]
            row["anchor_eval_mask"] = anchor["eval_mask"]
        rows.append(row)
    return rows


def equal_epoch_rows(runs: list[dict[str, Any]], epochs: list[int]) -> list[dict[str, Any]]:
    """Valid NDCG@10 of each run at the given epochs, from its ``valid_curve`` (None where the run had stopped
    earlier or did not evaluate that epoch): variants that time budgets stopped at different epochs compare
    like for like. Runs without a curve (written before curves were recorded) are named and left out."""
    rows = []
    for run in runs:
        curve = run.get("valid_curve")
        if not curve:
            logger.warning(
                "%s %s seed %s has no valid_curve; left out of the equal-epoch table",
                run["preset"],
                run["model"],
                run["seed"],
            )
            continue
        by_epoch = {point["epoch"]: point["ndcg@10"] for point in curve}
        row: dict[str, Any] = {"preset": run["preset"], "model": _label(run), "seed": run["seed"]}
        row.update({f"valid_ndcg@10@{e}": by_epoch.get(e) for e in epochs})
        row["epochs_run"] = run.get("epochs_run")
        rows.append(row)
    return rows


def equal_epoch_means(rows: list[dict[str, Any]], epochs: list[int]) -> list[dict[str, Any]]:
    """Per (preset, model): mean, sample std (two or more seeds) and number of seeds of valid NDCG@10 at each
    epoch, over the seeds whose runs reached it."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["preset"], row["model"]), []).append(row)
    out = []
    for (preset, model), group in groups.items():
        summary: dict[str, Any] = {"preset": preset, "model": model}
        for epoch in epochs:
            values = [r[f"valid_ndcg@10@{epoch}"] for r in group if r.get(f"valid_ndcg@10@{epoch}") is not None]
            summary[f"mean@{epoch}"] = float(np.mean(values)) if values else None
            summary[f"std@{epoch}"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
            summary[f"seeds@{epoch}"] = len(values)
        out.append(summary)
    return out


def _quality_payload(runs: list[dict[str, Any]], presets: list[str]) -> dict[str, Any]:
    return {
        "evaluation": "full_ranking, leave-one-out",
        "summary": summarise(runs),
        "runs": runs,
        "anchors": ANCHORS_PAYLOAD,
        "presets": {p: PRESETS[p] for p in presets},
    }


def report(args: argparse.Namespace) -> int:
    """Merge the runs of several quality JSONs (e.g. one per background process) into one summary table."""
    runs: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()  # (preset, variant and its mask, seed)
    for file in args.files:
        try:
            payload = json.loads(Path(file).read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"{file}: cannot read a quality result ({error})") from None
        if "runs" not in payload:
            raise SystemExit(f"{file}: no 'runs' list; is it a 'quality' result?")
        for run in payload["runs"]:
            key = (run["preset"], _label(run), int(run["seed"]))
            if key in seen:  # the same run in two files: keep the first, say so
                logger.warning("%s: %s seed %d already merged from an earlier file; skipped", file, key[1], key[2])
                continue
            seen.add(key)
            runs.append(run)
    rows = summarise(runs)
    print_table(rows, QUALITY_COLUMNS, title="sequential quality (merged; full ranking, leave-one-out)")
    at_epochs = equal_epoch_rows(runs, args.at_epochs) if args.at_epochs else []
    if at_epochs:
        columns = ["preset", "model", "seed", *(f"valid_ndcg@10@{e}" for e in args.at_epochs), "epochs_run"]
        print_table(at_epochs, columns, title="valid NDCG@10 at equal epochs (runs stopped at different epochs)")
        at_epochs_mean = equal_epoch_means(at_epochs, args.at_epochs)
        columns = ["preset", "model", *(f"{stat}@{e}" for e in args.at_epochs for stat in ("mean", "std", "seeds"))]
        print_table(at_epochs_mean, columns, title="valid NDCG@10 at equal epochs: mean and std over seeds")
    if args.out:
        payload = {"evaluation": "full_ranking, leave-one-out", "summary": rows, "runs": runs}
        if at_epochs:
            payload["at_epochs"] = at_epochs
            payload["at_epochs_mean"] = at_epochs_mean
        payload["merged_from"] = args.files
        payload["anchors"] = ANCHORS_PAYLOAD
        print(f"wrote {write_results('sequential_quality_merged', payload, args.out)}")
    return 0
