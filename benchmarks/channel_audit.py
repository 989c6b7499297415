"""Channel-encoder audit presets: the public setting (``full``) and the reduced CPU plan run here (``cpu``).

``python benchmarks/channel_audit.py --preset full --part synthetic-c4`` trains one part of the audit with
``evals.channel_audit.run_audit`` and writes ``benchmarks/results/channel_audit_<preset>_<part>.json`` through
``benchmarks.common.write_results`` (command, commit, versions, machine). ``--list`` prints every part's plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import print_table, write_results
from evals.channel_audit import ENCODERS, run_audit

ALL = list(ENCODERS)
# part -> run_audit keyword arguments; "full" is the public code's setting (300 epochs, 20 seeds)
PRESETS: dict[str, dict[str, dict]] = {
    "full": {
        "synthetic-c4": {"benchmark": "synthetic", "encoders": ALL, "channels": [4], "seeds": 20, "epochs": 300},
        "synthetic-c8": {"benchmark": "synthetic", "encoders": ALL, "channels": [8], "seeds": 20, "epochs": 300},
        "synthetic-c16": {"benchmark": "synthetic", "encoders": ALL, "channels": [16], "seeds": 20, "epochs": 300},
        "synthetic-c4-pooled": {
            "benchmark": "synthetic",
            "encoders": ALL,
            "channels": [4],
            "seeds": 20,
            "epochs": 300,
            "bins_fit": "pooled",
        },
        "etth1-standard": {"benchmark": "etth1", "encoders": ALL, "seeds": 20, "epochs": 300, "split": "standard"},
        "etth1-public": {"benchmark": "etth1", "encoders": ALL, "seeds": 20, "epochs": 300, "split": "public"},
    },
    "cpu": {
        "synthetic-c4": {
            "benchmark": "synthetic",
            "encoders": ["sum", "linear", "linear-ortho", "mlp", "concat", "linear-ppe"],
            "channels": [4],
            "seeds": 3,
            "epochs": 8,
        },
        "synthetic-c4-ci": {"benchmark": "synthetic", "encoders": ["ci"], "channels": [4], "seeds": 1, "epochs": 8},
        "synthetic-c16": {
            "benchmark": "synthetic",
            "encoders": ["linear", "linear-ppe"],
            "channels": [16],
            "seeds": 1,
            "epochs": 8,
        },
        "etth1-standard": {
            "benchmark": "etth1",
            "encoders": ["sum", "linear", "mlp", "concat", "linear-ppe"],
            "seeds": 2,
            "epochs": 3,
            "split": "standard",
        },
        "etth1-public": {
            "benchmark": "etth1",
            "encoders": ["linear", "sum", "linear-ppe"],
            "seeds": 1,
            "epochs": 3,
            "split": "public",
        },
    },
}


def main() -> int:
    """Run one preset part (or list them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--part", help="one of the preset's parts (see --list)")
    parser.add_argument("--list", action="store_true", help="print the parts of every preset")
    args = parser.parse_args()
    if args.list or not args.part:
        for preset, parts in PRESETS.items():
            for part, plan in parts.items():
                print(f"{preset:<5} {part:<20} {plan}")
        return 0
    if args.part not in PRESETS[args.preset]:
        print(f"error: --part: {args.part!r} is not a part of {args.preset}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    plan = dict(PRESETS[args.preset][args.part])
    plan["seeds"] = list(range(plan["seeds"]))
    plan.setdefault("channels", [7])
    report = run_audit(**plan)
    path = write_results(f"channel_audit_{args.preset}_{args.part}", report)
    columns = ["C", "encoder", "seeds", "mean", "std", "mean_diff", "t_p", "wilcoxon_p", "d_z"]
    print_table(report["table"], columns, title=f"{args.part}: {report['metric']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
