"""Sequential-recommendation benchmark: quality (SASRec, GRU4Rec, GDN, SinkRec and its ablations) beside the
published full-ranking anchors, the cost of sequence length (scaling), and the state-sink diagnostic.

Examples::

    # quality: full protocol (3 seeds; ML-1M under each anchor's preprocessing, two Amazon sets)
    python benchmarks/sequential.py quality --presets ml-1m-recbole ml-1m-hstu beauty sports --seeds 0 1 2
    # what fits a busy 2-core CPU: ml-100k, one seed, an epoch cap and a time budget per run
    python benchmarks/sequential.py quality --presets ml-100k --seeds 0 --epochs 30 --max-minutes 4 --tag cpu
    # scaling of training step time, inference latency and memory with the sequence length
    python benchmarks/sequential.py scaling --lengths 50 100 200 400 800 1600 4096 --tag cpu
    # on a GPU with flash-linear-attention: fla's fused kernel against ours (equality, speed), then scaling with it
    python benchmarks/sequential.py kernels --lengths 64 512 4096 --tag h200
    python benchmarks/sequential.py scaling --kernel fla --tag h200_fla
    # how much of the recurrent state repeated patterns take (GDN vs SinkRec), synthetic or real data
    python benchmarks/sequential.py sink --tag cpu
    python benchmarks/sequential.py sink --preset ml-100k --out benchmarks/results/sequential_sink_cpu_ml100k.json
    # one table from runs done in separate processes
    python benchmarks/sequential.py report benchmarks/results/sequential_quality_*.json

Writes ``benchmarks/results/sequential_<kind>[_<tag>].json`` (updated after every run, so an interrupted
sweep keeps what it finished) and prints a table. Evaluation: leave-one-out (by time; by row order for
data without timestamps), full ranking over all items, the user's train (and valid) items masked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR
from benchmarks.sequential_common import (  # noqa: F401  (re-exported: one module per verb)
    ANCHORS,
    ANCHORS_PAYLOAD,
    METRICS,
    PRESETS,
    QUALITY_COLUMNS,
    VARIANTS,
    _result_name,
    logger,
)
from benchmarks.sequential_kernels import (  # noqa: F401  (re-exported: one module per verb)
    _kernel_run,
    _ours_fla_layout,
    _relative_error,
    kernels,
)
from benchmarks.sequential_quality import (  # noqa: F401  (re-exported: one module per verb)
    TRAIN_OVERRIDES,
    quality,
    quality_in_parallel,
    run_quality,
)
from benchmarks.sequential_report import (  # noqa: F401  (re-exported: one module per verb)
    _label,
    _quality_payload,
    equal_epoch_means,
    equal_epoch_rows,
    report,
    summarise,
)
from benchmarks.sequential_scaling import (  # noqa: F401  (re-exported: one module per verb)
    measure,
    plot_scaling,
    scaling,
)
from benchmarks.sequential_sink import (
    sink,
)
from benchmarks.sequential_softmax import (
    softmax,
)
from core.cli import add_verbosity_args, configure_from_args
from recsys.models.sink_diagnostic import (  # noqa: F401  (re-exported: one module per verb)
    item_genres,
    planted_repetition_dataset,
    sink_share,
)
from recsys.train import EVAL_MASKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    add_verbosity_args(common)
    common.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    common.add_argument("--tag", help="suffix of the result file name (e.g. the machine: cpu, h200)")
    common.add_argument("--out", help="result JSON path (default benchmarks/results/sequential_<kind>_<tag>.json)")
    sub = parser.add_subparsers(dest="kind", required=True)
    q = sub.add_parser("quality", parents=[common], help="HR/NDCG@10/20 per model and preset, anchors beside")
    q.add_argument(
        "--presets", nargs="+", default=["ml-1m-recbole", "ml-1m-hstu", "beauty", "sports"], choices=sorted(PRESETS)
    )
    q.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--data-dir")
    q.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each its own process with --threads (default: the cores / N); resumable: "
        "finished runs are kept in <out>.runs/",
    )
    for key, kind in (
        ("epochs", int),
        ("patience", int),
        ("batch-size", int),
        ("lr", float),
        ("max-minutes", float),
        ("eval-every", int),
    ):
        q.add_argument(f"--{key}", type=kind)
    q.add_argument(
        "--length-buckets",
        type=int,
        help="batches of similar-length windows, sorted within groups of this many batches (0: off, the default)",
    )
    q.add_argument(
        "--target-weighting",
        choices=["batch", "global"],
        help="batch (default): a batch's loss is its targets' mean; global: every target weighs the same in "
        "every batch (for --length-buckets, whose short-window batches would otherwise gain weight)",
    )
    q.add_argument(
        "--eval-mask",
        choices=list(EVAL_MASKS),
        help="items left out of the ranking: history (default: train and valid, RecBole's protocol), input (the "
        "model's input window, HSTU's) or none",
    )
    s = sub.add_parser(
        "scaling", parents=[common], help="train step time, inference latency and memory vs sequence length"
    )
    s.add_argument("--lengths", nargs="+", type=int, default=[50, 100, 200, 400, 800, 1600, 4096])
    s.add_argument("--models", nargs="+", default=["sasrec", "gdn", "sinkrec"], choices=list(VARIANTS))
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--n-items", type=int, default=3000)
    s.add_argument("--repeats", type=int, default=2)
    s.add_argument(
        "--kernel", default="torch", choices=["torch", "fla", "auto"], help="delta-rule kernel of gdn and sinkrec"
    )
    f = sub.add_parser(
        "kernels", parents=[common], help="fla's fused delta-rule kernel vs ours on a GPU: equality and speed"
    )
    f.add_argument("--lengths", nargs="+", type=int, default=[64, 512, 4096])
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--heads", type=int, default=2)
    f.add_argument("--head-dim", type=int, default=32)
    f.add_argument("--repeats", type=int, default=5)
    k = sub.add_parser(
        "sink", parents=[common], help="state share of repeated patterns: GDN vs SinkRec on planted data"
    )
    k.add_argument("--models", nargs="+", default=["gdn", "sinkrec"], choices=list(VARIANTS))
    k.add_argument("--preset", choices=sorted(PRESETS), help="real data instead of the synthetic planted set")
    k.add_argument("--users", type=int, default=300)
    k.add_argument("--length", type=int, default=50)
    k.add_argument("--epochs", type=int, default=15)
    x = sub.add_parser(
        "softmax", parents=[common], help="the full-softmax loss: plain vs our blocked form, time and error"
    )
    x.add_argument("--items", nargs="+", type=int, default=[3123, 12101, 18357], help="catalogue sizes")
    x.add_argument("--rows", type=int, default=6400, help="positions per batch (batch 128 x history 50)")
    x.add_argument("--dim", type=int, default=64)
    x.add_argument("--repeats", type=int, default=3)
    x.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    r = sub.add_parser("report", help="merge several quality JSONs into one table (and optionally one JSON)")
    r.add_argument("files", nargs="+", help="quality result JSONs")
    r.add_argument("--out", help="write the merged JSON here")
    r.add_argument("--at-epochs", nargs="+", type=int, help="also tabulate each run's valid NDCG@10 at these epochs")
    add_verbosity_args(r)
    args = parser.parse_args(argv)
    configure_from_args(args, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    commands = {"quality": quality, "scaling": scaling, "kernels": kernels, "sink": sink, "softmax": softmax}
    return {**commands, "report": report}[args.kind](args)


if __name__ == "__main__":
    sys.exit(main())
