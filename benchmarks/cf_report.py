"""Markdown tables of the committed collaborative-filtering results (``benchmarks/results/cf_*.json``).

python benchmarks/cf_report.py            # prints the tables the README shows
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core.cli import add_verbosity_args, configure_from_args

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("recall@20", "ndcg@20", "hr@10", "ndcg@10")


def _load(pattern: str) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in sorted(glob.glob(str(RESULTS / pattern)))]


def _fmt(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def rows_by_model(files: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """All runs of all files, grouped by (library, model)."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for payload in files:
        for run in payload["runs"]:
            grouped.setdefault((run["library"], run["model"]), []).append(run)
    return grouped


def table(files: list[dict[str, Any]], title: str) -> str:
    lines = [f"**{title}**", "", "| library | model | seeds | " + " | ".join(METRICS) + " | best epoch |"]
    lines.append("|---" * (len(METRICS) + 4) + "|")
    for (library, model), runs in sorted(rows_by_model(files).items(), key=lambda kv: (kv[0][0] != "ours", kv[0])):
        cells = [_fmt([r[m] for r in runs if r.get(m) is not None]) for m in METRICS]
        best = ", ".join(str(r.get("best_epoch", r.get("epochs_run", ""))) for r in runs)
        lines.append(f"| {library} | {model} | {len(runs)} | " + " | ".join(cells) + f" | {best} |")
    commands = sorted({f["command"] for f in files})
    lines += ["", "Command(s): " + "; ".join(f"`{c}`" for c in commands), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbosity_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args)
    for title, pattern in (
        ("ML-1M, leave-one-out by time", "cf_ml-1m_loo*_cpu.json"),
        ("ML-1M, leave-one-out by time, LightGCN (H200)", "ml1m_lightgcn_loo_*_h200.json"),
        ("ML-1M, global temporal 80/10/10", "cf_ml-1m_temporal*_cpu.json"),
        ("ML-1M, global temporal 80/10/10, LightGCN (H200)", "ml1m_lightgcn_temporal_*_h200.json"),
        ("ML-100K leave-one-out: ours vs RecBole 1.2.1 on the same files", "cf_ml-100k_loo_peer.json"),
        ("Gowalla (LightGCN split), H200, 7.4-minute budget per model", "cf_gowalla_*_h200.json"),
    ):
        files = [f for f in _load(pattern) if "timing" not in f.get("command", "")]
        if files:
            print(table(files, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
