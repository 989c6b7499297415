"""PCF transfer benchmark: the hierarchical estimator beside kNN and the medians, on held-out sectors and catalogues.

Runs the toolkit's own commands (each re-runnable by hand; the JSON records them):

1. ``python -m agents.pcf eval``: grouped 5-fold and leave-one-sector-out on the Carbon Catalogue (held-out
   products described without their sector), with interval coverage and the per-category breakdown.
2. ``python -m agents.pcf transfer``: fit on AGRIBALYSE (2,458 foods), estimate Poore & Nemecek's 43 foods.

Writes ``benchmarks/results/pcf_transfer.json``. Example::

    python benchmarks/pcf_transfer.py --embedder minilm
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.pcf.evaluate import TRANSFER_METHODS
from benchmarks.carbon import run
from benchmarks.common import print_table, write_results


def rows_of(overall: dict[str, Any], part: str) -> list[dict[str, Any]]:
    """Table rows, one per method, of one protocol's overall metrics."""
    rows = []
    for method in TRANSFER_METHODS:
        m = overall.get(method)
        if m is None:
            continue
        rows.append(
            {
                "protocol": part,
                "method": method,
                "med|log10|": round(m["median_abs_log10_error"], 3),
                "mean|log10|": round(m["mean_abs_log10_error"], 3),
                "within_x2": round(m["within_factor_2"], 3),
                "spearman": round(m["spearman"], 3),
                "spearman_in_cat": round(m.get("spearman_within_category", float("nan")), 3),
                "coverage": round(m["interval_coverage"], 3) if "interval_coverage" in m else "",
            }
        )
    return rows


def main() -> None:
    """Run both evaluations and write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--work-dir", default="runs/pcf_transfer", help="logs and raw outputs")
    parser.add_argument("--out", help="results JSON (default benchmarks/results/pcf_transfer.json)")
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    common = ["--embedder", args.embedder, "--k", str(args.k)]
    eval_out, food_out = work / "eval.json", work / "transfer_food.json"
    eval_command = [sys.executable, "-m", "agents.pcf", "eval", "--folds", str(args.folds), "--out", str(eval_out)]
    food_command = [sys.executable, "-m", "agents.pcf", "transfer", "--out", str(food_out)]
    seconds = {
        "eval": run([*eval_command, *common], work / "eval.log"),
        "transfer": run([*food_command, *common], work / "transfer.log"),
    }
    evaluation = json.loads(eval_out.read_text())
    food = json.loads(food_out.read_text())
    rows = []
    for protocol, result in evaluation["transfer"].items():
        rows += rows_of(result["overall"], protocol)
    rows += rows_of(food["overall"], "agribalyse->poore_nemecek")
    columns = [
        "protocol",
        "method",
        "med|log10|",
        "mean|log10|",
        "within_x2",
        "spearman",
        "spearman_in_cat",
        "coverage",
    ]
    print_table(rows, columns, title="PCF estimation under transfer")
    payload = {
        "embedder": args.embedder,
        "k": args.k,
        "folds": args.folds,
        "commands": [" ".join(eval_command + common), " ".join(food_command + common)],
        "seconds": seconds,
        "table": rows,
        "carbon_catalogue": {
            "legacy": {"protocol": evaluation["protocol"], "overall": evaluation["all"]["overall"]},
            "transfer": evaluation["transfer"],
        },
        "food_transfer": food,
        "data_kind": "real: Carbon Catalogue, AGRIBALYSE 3.1, Poore & Nemecek 2018",
    }
    path = write_results(
        "pcf_transfer" if args.embedder == "minilm" else f"pcf_transfer_{args.embedder}", payload, args.out
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
