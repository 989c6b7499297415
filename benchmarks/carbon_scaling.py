"""Carbon re-ranking headline under min-max, log and rank PCF scaling, and the uncertainty-aware variants.

Through the toolkit's commands (each recorded in the JSON, each step skipped when its output exists):

1. ``python -m agents.pcf label`` twice on the Amazon Office titles: the hierarchical estimator (labels with
   intervals and plausibility flags) and the old kNN estimator.
2. ``python -m recsys.train`` for each model on the Office interactions (the files' own split).
3. ``python -m recsys.carbon sweep --pcf-scale all --uncertainty all`` on the hierarchical labels, and
   ``--pcf-scale all`` on the kNN labels: the headline (carbon cut at <= 5% NDCG@10 loss) side by side.

Writes ``benchmarks/results/carbon_scaling.json``. Example::

    python benchmarks/carbon_scaling.py --models bpr,lightgcn --model-epochs bpr=60,lightgcn=60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.carbon import run
from benchmarks.common import print_table, write_results

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def label_summary(path: Path) -> dict[str, Any]:
    """How many labels, how many flagged implausible, the median interval ratio and the PCF range."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    values = sorted(r["pcf_kg"] for r in records)
    ratios = sorted(r["pcf_high_kg"] / r["pcf_low_kg"] for r in records if "pcf_low_kg" in r)
    flags: dict[str, int] = {}
    for r in records:
        for flag in r.get("flags", []):
            flags[flag] = flags.get(flag, 0) + 1
    return {
        "labels": len(records),
        "implausible": sum(1 for r in records if r.get("plausible") is False),
        "flags": flags,
        "methods": {m: sum(1 for r in records if r["method"] == m) for m in {r["method"] for r in records}},
        "pcf_min_kg": values[0],
        "pcf_median_kg": values[len(values) // 2],
        "pcf_max_kg": values[-1],
        "median_interval_ratio": ratios[len(ratios) // 2] if ratios else None,
    }


def main() -> None:
    """Label, train, sweep; print the headline table and write the results JSON."""
    office = DEFAULT_DATA / "amazon_office_rechorus"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon_office_rechorus")
    parser.add_argument("--catalog", default=str(office / "Office.text"))
    parser.add_argument("--id-map", default=str(office / "Office.item2index"))
    parser.add_argument("--models", type=lambda s: s.split(","), default=["bpr", "lightgcn"])
    parser.add_argument(
        "--model-epochs",
        type=lambda s: {k: int(v) for k, v in (pair.split("=") for pair in s.split(","))},
        default={},
        help="per-model epoch caps, e.g. bpr=60,lightgcn=60",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    parser.add_argument("--work-dir", default="runs/carbon_scaling")
    parser.add_argument("--out", help="results JSON (default benchmarks/results/carbon_scaling.json)")
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    commands: list[str] = []
    labels = {}
    for estimator in ("hierarchical", "knn"):
        out = work / f"labels_{estimator}.jsonl"
        command = [sys.executable, "-m", "agents.pcf", "label", "--catalog", args.catalog, "--out", str(out)]
        command += ["--store", str(work / "store"), "--no-progress", "--estimator", estimator]
        command += ["--embedder", args.embedder]
        commands.append(" ".join(command))
        if not (work / f"labels_{estimator}.done").is_file():
            seconds[f"label_{estimator}"] = run(command, work / f"label_{estimator}.log")
            (work / f"labels_{estimator}.done").write_text("ok\n")
        labels[estimator] = out
    checkpoints = []
    for model in args.models:
        out = work / f"ckpt_{model}"
        command = [sys.executable, "-m", "recsys.train", "--model", model, "--dataset", args.dataset]
        command += ["--split", "given", "--seed", str(args.seed), "--out", str(out)]
        if model in args.model_epochs:
            command += ["--epochs", str(args.model_epochs[model])]
        commands.append(" ".join(command))
        if not (out / "model.safetensors").is_file():
            seconds[f"train_{model}"] = run(command, work / f"train_{model}.log")
        checkpoints += ["--checkpoint", str(out)]
    reports = {}
    for estimator, uncertainty in (("hierarchical", "all"), ("knn", "none")):
        out = work / f"sweep_{estimator}"
        command = [sys.executable, "-m", "recsys.carbon", "sweep", *checkpoints, "--labels", str(labels[estimator])]
        command += ["--out", str(out), "--id-map", args.id_map, "--pcf-scale", "all", "--uncertainty", uncertainty]
        command += ["--quiet"]
        commands.append(" ".join(command))
        if not (out / "carbon_sweep.json").is_file():
            seconds[f"sweep_{estimator}"] = run(command, work / f"sweep_{estimator}.log")
        reports[estimator] = json.loads((out / "carbon_sweep.json").read_text())
    rows = []
    for estimator, report in reports.items():
        for res in report["results"]:
            h = res["headline"]
            rows.append(
                {
                    "labels": estimator,
                    "model": res["model"],
                    "pcf_scale": res["pcf_scale"],
                    "uncertainty": res["uncertainty"],
                    "ndcg@10_lambda0": round(h["baseline_ndcg@10"], 4),
                    "lambda": h["lambda"],
                    "ndcg_loss_pct": round(h["ndcg_loss_pct"], 1),
                    "carbon_cut_pct": round(h["carbon_reduction_pct"], 1),
                    "allowed_items": res["labels"]["n_labelled_items"],
                }
            )
    columns = list(rows[0])
    print_table(rows, columns, title="carbon cut at <= 5% NDCG@10 loss")
    payload = {
        "dataset": args.dataset,
        "commands": commands,
        "seconds": seconds,
        "labels": {estimator: label_summary(path) for estimator, path in labels.items()},
        "table": rows,
        "sweeps": {estimator: {"results": r["results"], "plots": r["plots"]} for estimator, r in reports.items()},
        "data_kind": "real: Amazon Office (ReChorus split), labels estimated from the Carbon Catalogue",
    }
    path = write_results("carbon_scaling", payload, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
