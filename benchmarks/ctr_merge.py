"""Merge per-seed CTR result files into one mean ± std table (Markdown) and JSON.

Example (the README's ML-1M-CTR table)::

    python benchmarks/ctr_merge.py benchmarks/results/ctr_ml-1m-ctr_fm-reg1e-5_dsmlp-batchmeansq.json \
        benchmarks/results/ctr_ml-1m-ctr_baselines-6epochs.json \
        benchmarks/results/ctr_ml-1m-ctr_baselines-6epochs_seeds12.json \
        benchmarks/results/ctr_ml-1m-ctr_dsmlp.json benchmarks/results/ctr_ml-1m-ctr_dsmlp_seeds12.json \
        benchmarks/results/ctr_ml-1m-ctr_dsmlp-batchmeansq_seeds12.json --label "dsmlp (KD batch_mean_sq)=batchmeansq" \
        --out benchmarks/results/ctr_ml-1m-ctr_3seeds.json \
        --models lr fm deepfm dcnv2 mlp dsmlp "dsmlp (KD batch_mean_sq)"

A later file's run replaces an earlier one's for the same (dataset, row, seed).

A run's row name is its model, or NAME when its file name contains the KEY of a ``--label NAME=KEY``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from core.cli import add_verbosity_args, configure_from_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, write_results


def main(argv: list[str] | None = None) -> int:
    """Read the files, group runs by (dataset, row name), print and write mean ± std over seeds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbosity_args(parser)
    parser.add_argument("files", nargs="+", help="benchmarks/ctr.py result JSON files")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=KEY", help="rename runs by file")
    parser.add_argument("--models", nargs="*", help="keep only these row names")
    parser.add_argument("--out", required=True, help="merged JSON")
    args = parser.parse_args(argv)
    configure_from_args(args)
    labels = [tuple(x.split("=", 1)) for x in args.label]
    groups: dict[tuple[str, str], dict[int, dict]] = {}
    for file in args.files:
        for run in json.loads(Path(file).read_text())["runs"]:
            name = next((n for n, key in labels if key in Path(file).name and run["model"] == "dsmlp"), run["model"])
            if args.models and name not in args.models:
                continue
            groups.setdefault((run["dataset"], name), {})[run["seed"]] = {**run, "file": file}
    rows = []
    for (dataset, name), by_seed in groups.items():
        runs = [by_seed[s] for s in sorted(by_seed)]
        auc = [r["auc"] for r in runs]
        loss = [r["logloss"] for r in runs]
        rows.append(
            {
                "dataset": dataset,
                "model": name,
                "seeds": ",".join(str(r["seed"]) for r in runs),
                "auc": statistics.mean(auc),
                "auc_std": statistics.stdev(auc) if len(auc) > 1 else 0.0,
                "logloss": statistics.mean(loss),
                "logloss_std": statistics.stdev(loss) if len(loss) > 1 else 0.0,
                "epochs": runs[0]["epochs_run"],
                "params": runs[0].get("serving_parameters"),
                "files": sorted({r["file"] for r in runs}),
            }
        )
    if args.models:
        rows.sort(key=lambda r: (r["dataset"], args.models.index(r["model"])))
    columns = ["dataset", "model", "seeds", "auc", "auc_std", "logloss", "logloss_std", "epochs", "params"]
    print_table(rows, columns, title="CTR, mean ± std over seeds")
    print(write_results("ctr_merged", {"rows": rows}, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
