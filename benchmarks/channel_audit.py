"""Channel-encoder audit presets: the public setting (``full``) and the reduced CPU plan run here (``cpu``).

``python benchmarks/channel_audit.py --preset full --part synthetic-c4`` trains one part of the audit with
``evals.channel_audit.run_audit`` and writes ``benchmarks/results/channel_audit_<preset>_<part>.json`` through
``benchmarks.common.write_results`` (command, commit, versions, machine). ``--list`` prints every part's plan.
``--profile`` times one training step of every encoder (``channel_audit_step_time.json``); ``--plot FILE ...``
draws the NLL per encoder with per-seed points, one panel per C, and the mean validation curves
(``docs/channel_audit_nll.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import print_table, write_results
from evals.channel_audit import ENCODERS, attention_mask_cost, run_audit, step_time

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


PLOT = Path(__file__).resolve().parents[1] / "docs" / "channel_audit_nll.png"
# the paper's tiers at C = 4 (public code): the plot's encoder order
ORDER = ["linear-ppe", "linear", "linear-ortho", "concat", "mlp", "cat", "ci", "sum"]
COLORS = dict(zip(ORDER, [f"C{i}" for i in range(len(ORDER))], strict=True))


def attention_gb(encoder: str, channels: int, batch: int = 32, length: int = 160, heads: int = 4) -> float:
    """Rough GB of attention weights a CPU training step keeps (weights, dropout mask, gradient; three layers)."""
    tokens = length * channels if encoder == "cat" else length
    sequences = batch * channels if encoder == "ci" else batch
    return 3 * 3 * sequences * heads * tokens * tokens * 4 / 1e9


def profile(
    channels: list[int], encoders: list[str], steps: int, dropout: float = 0.1, max_gb: float = 4.0
) -> dict[str, Any]:
    """CPU seconds per training step per (C, encoder), and the attention-mask cost at cat's sequence length.

    A (C, encoder) whose attention would need more than ``max_gb`` is skipped (a row says so): ``cat`` at C = 8
    was killed by the kernel's OOM killer at 9.8 GB on the 24 GB machine this ran on.
    """
    rows = []
    for c in channels:
        for encoder in encoders:
            need = attention_gb(encoder, c)
            if need > max_gb:
                rows.append({"encoder": encoder, "n_channels": c, "skipped": f"attention needs ~{need:.1f} GB"})
                continue
            rows.append(step_time(encoder, c, steps=steps, dropout=dropout))
            print(f"C={c} {encoder}: {rows[-1]['cpu_seconds_per_step']:.3f} CPU s/step", file=sys.stderr, flush=True)
    attention = (
        [attention_mask_cost(c) for c in channels if attention_gb("cat", c) <= max_gb] if "cat" in encoders else []
    )
    return {"rows": rows, "attention_at_cat_length": attention}


def plot(files: list[Path], path: Path) -> None:
    """NLL per encoder with per-seed points (one panel per (benchmark, C, metric)) and mean validation curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple[str, int, str, int], list[dict[str, Any]]] = {}
    for file in files:
        report = json.loads(file.read_text())
        metric = report.get("metric", "valid_nll")
        bench = report.get("benchmark", "synthetic")
        for run in report["runs"]:
            steps = run.get("steps", 0)
            panels.setdefault((bench, run["n_channels"], metric, steps), []).append(run)
    keys = sorted(panels)
    fig, axes = plt.subplots(2, len(keys), figsize=(3.6 * len(keys), 6.4), squeeze=False)
    for col, key in enumerate(keys):
        bench, c, metric, steps = key
        runs = panels[key]
        names = [e for e in ORDER if any(r["encoder"] == e for r in runs)]
        ax = axes[0][col]
        for i, name in enumerate(names):
            values = [r[metric] for r in runs if r["encoder"] == name and metric in r]
            ax.scatter([i] * len(values), values, s=12, alpha=0.6, color=COLORS[name])
            ax.plot([i - 0.3, i + 0.3], [sum(values) / len(values)] * 2, "k-", lw=1.5)
        ax.axhline(3.466, color="grey", ls="--", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_title(f"{bench} C={c}, {steps} steps\n{metric} (points: seeds)", fontsize=8)
        ax = axes[1][col]
        for name in names:
            curves = [r["history"] for r in runs if r["encoder"] == name and r.get("history")]
            if not curves:
                continue
            epochs = [h["epoch"] for h in curves[0]]
            mean = [sum(cv[i]["valid_nll"] for cv in curves) / len(curves) for i in range(len(epochs))]
            ax.plot(epochs, mean, marker=".", ms=3, lw=1, label=name, color=COLORS[name])
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel("validation NLL (mean over seeds)", fontsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)


def main() -> int:
    """Run one preset part (or list them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--part", help="one of the preset's parts (see --list)")
    parser.add_argument("--list", action="store_true", help="print the parts of every preset")
    parser.add_argument("--device", default="cpu", help="torch device for the preset runs (e.g. cuda)")
    parser.add_argument("--profile", action="store_true", help="time a training step of every encoder")
    parser.add_argument("--profile-channels", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--profile-encoders", nargs="+", default=ALL)
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--profile-dropout", type=float, default=0.1, help="0.1 = the audit model")
    parser.add_argument("--profile-max-gb", type=float, default=4.0, help="skip runs whose attention needs more")
    parser.add_argument("--profile-name", default="channel_audit_step_time", help="results/<name>.json")
    parser.add_argument("--plot", nargs="+", type=Path, help="result JSON files to plot")
    parser.add_argument("--plot-out", type=Path, default=PLOT)
    args = parser.parse_args()
    if args.profile:
        torch.set_num_threads(1)
        result = profile(
            args.profile_channels, args.profile_encoders, args.profile_steps, args.profile_dropout, args.profile_max_gb
        )
        path = write_results(args.profile_name, result)
        print_table(result["rows"], list(result["rows"][0]), title="CPU seconds per training step (one thread)")
        print(f"wrote {path}")
        return 0
    if args.plot:
        plot(args.plot, args.plot_out)
        print(f"wrote {args.plot_out}")
        return 0
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
    plan["device"] = args.device
    report = run_audit(**plan)
    path = write_results(f"channel_audit_{args.preset}_{args.part}", report)
    columns = ["C", "encoder", "seeds", "mean", "std", "mean_diff", "t_p", "wilcoxon_p", "d_z"]
    print_table(report["table"], columns, title=f"{args.part}: {report['metric']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
