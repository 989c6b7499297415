"""CTR benchmark: AUC and log-loss of every CTR model (mean ± std over seeds), the BARS anchors, serving cost.

Examples::

    python benchmarks/ctr.py --datasets ml-1m-ctr synthetic-ctr --seeds 0 1 2
    python benchmarks/ctr.py --datasets ml-1m-ctr --seeds 0 --epochs 3 --size cpu-small --threads 1
    python benchmarks/ctr.py --serving-only

``--size paper`` trains the papers' widths (DS-MLP student [1024]x3, parallel and the DNNs [400]x3);
``--size cpu-small`` divides the hidden widths by four (student [256]x3, others [100]x3), for a shared CPU.
DS-MLP's epoch budget is ``teacher_epochs + distill_epochs + epochs`` (finetuning gets ``--epochs``).
Prints a table and writes ``benchmarks/results/ctr_<datasets>.json`` (or ``--out``) with the command, commit
and machine.
Serving cost: samples per second and parameters of the served models (DS-MLP without its teacher) at batch
size 1 and 4096 on this CPU, with the ``--size`` configs on the ML-1M-CTR field layout.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, write_results
from core.cli import add_verbosity_args, configure_from_args
from evals.metrics import log_loss, roc_auc
from recsys.config import build_config
from recsys.ctr import make_synthetic_ctr, prepare_ctr_split, random_split_folds
from recsys.ctr.datasets import SYNTHETIC
from recsys.models import get_model_class
from recsys.models.ctr_layers import build_ctr_model
from recsys.train import TrainConfig, Trainer

logger = logging.getLogger("benchmarks.ctr")

TEACHER_EPOCHS, DISTILL_EPOCHS = 2, 2  # benchmark defaults (the model's own defaults are 5 and 5)
MODELS = ("lr", "fm", "deepfm", "dcnv2", "mlp", "dsmlp")
# BARS (FuxiCTR) published test AUC, https://openbenchmark.github.io/BARS/CTR/ (the anchors).
ANCHORS = {
    "Criteo_x1": {"deepfm": 0.8137, "dcnv2": 0.8142, "finalmlp": 0.8149},
    "Avazu_x1": {"deepfm": 0.7648, "dcnv2": 0.7656, "finalmlp": 0.7666},
    "MovielensLatest_x1": {"deepfm": 0.9685, "dcnv2": 0.9691, "finalmlp": 0.9720},
}
SIZES = {
    "paper": {},
    "cpu-small": {
        "deepfm": {"hidden_units": (100, 100, 100)},
        "dcnv2": {"hidden_units": (100, 100, 100)},
        "mlp": {"hidden_units": (256, 256, 256)},
        "dsmlp": {
            "teacher_hidden": (100, 100, 100),
            "student_hidden": (256, 256, 256),
            "parallel_hidden": (100, 100, 100),
        },
    },
}


def run_one(split: Any, model_name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one model with one seed through the Trainer; test AUC/log-loss at the best validation epoch."""
    cls = get_model_class(model_name)
    options = dict(SIZES[args.size].get(model_name, {}))
    train_values: dict[str, Any] = {**cls.train_defaults, "seed": seed, "save_every_epoch": False}
    if args.epochs:
        train_values["epochs"] = args.epochs
    if model_name == "dsmlp":
        options.update(teacher_epochs=args.teacher_epochs, distill_epochs=args.distill_epochs)
        options["kd_loss"] = args.kd_loss
        if args.kd_weight is not None:
            options["kd_weight"] = args.kd_weight
        train_values["epochs"] = args.teacher_epochs + args.distill_epochs + (args.epochs or 100)
    if args.patience is not None:
        train_values["patience"] = args.patience
    if args.batch_size:
        train_values["batch_size"] = args.batch_size
    if args.embedding_regularizer is not None and model_name != "lr":
        options["embedding_regularizer"] = args.embedding_regularizer
    if args.max_minutes:
        train_values["max_minutes"] = args.max_minutes
    torch.manual_seed(seed)
    model = build_ctr_model(model_name, split.pipeline, options)
    trainer = Trainer(model, split, build_config(TrainConfig, train_values), progress=False)
    result = trainer.fit()
    n_params = (
        model.n_serving_parameters()
        if hasattr(model, "n_serving_parameters")
        else sum(p.numel() for p in model.parameters())
    )
    return {
        "model": model_name,
        "seed": seed,
        "auc": result["auc"],
        "logloss": result["logloss"],
        "valid_auc": result["valid"].get("auc"),
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "seconds": result["seconds"],
        "serving_parameters": n_params,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in trainer.history],
    }


def summarise(runs: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    def mean_std(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    auc, auc_std = mean_std("auc")
    loss, loss_std = mean_std("logloss")
    return {
        "dataset": dataset,
        "model": runs[0]["model"],
        "seeds": len(runs),
        "auc": auc,
        "auc_std": auc_std,
        "logloss": loss,
        "logloss_std": loss_std,
        "params": runs[0]["serving_parameters"],
        "epochs": statistics.fmean(r["epochs_run"] for r in runs),
        "min_per_run": statistics.fmean(r["seconds"] for r in runs) / 60,
    }


@torch.inference_mode()
def serving_cost(
    split: Any, models: tuple[str, ...] = ("dsmlp", "dcnv2", "deepfm"), seconds: float = 2.0, size: str = "paper"
):
    """Samples/s and served parameters at batch 1 and 4096 (``size`` configs, eval mode, this CPU)."""
    rows = []
    for name in models:
        torch.manual_seed(0)
        model = build_ctr_model(name, split.pipeline, SIZES[size].get(name, {})).eval()
        if name == "dsmlp":
            model.phase = "finetuning"  # the served model: two MLP streams, the teacher is not run
        params = (
            model.n_serving_parameters()
            if hasattr(model, "n_serving_parameters")
            else sum(p.numel() for p in model.parameters())
        )
        for batch_size in (1, 4096):
            batch = split.test.batch(slice(0, batch_size))
            model.predict(batch)  # warm-up
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model.predict(batch)
                count += 1
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "model": name,
                    "batch_size": batch_size,
                    "samples_per_s": count * batch_size / elapsed,
                    "ms_per_batch": 1000 * elapsed / count,
                    "params": params,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-1m-ctr", "synthetic-ctr"])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--split-seed", type=int, default=2024)
    parser.add_argument("--epochs", type=int, help="cap on epochs (DS-MLP: finetuning epochs); default 100")
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_EPOCHS)
    parser.add_argument("--distill-epochs", type=int, default=DISTILL_EPOCHS)
    parser.add_argument("--kd-loss", default="per_sample", choices=["per_sample", "batch_mean_sq"])
    parser.add_argument(
        "--kd-weight", type=float, help="DS-MLP's distillation weight (default: the model's, 1.0; 0 = no distillation)"
    )
    parser.add_argument("--patience", type=int)
    parser.add_argument("--batch-size", type=int, help="default: 4096 (FuxiCTR/BARS)")
    parser.add_argument("--embedding-regularizer", type=float, help="override every model's default (paper: 0.01)")
    parser.add_argument("--max-minutes", type=float, help="training time budget per run")
    parser.add_argument("--size", default="paper", choices=sorted(SIZES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscribing a shared CPU)")
    parser.add_argument("--serving-only", action="store_true", help="only measure the serving cost")
    parser.add_argument("--no-serving", action="store_true")
    parser.add_argument("--out", help="result JSON path (default benchmarks/results/ctr_<datasets>.json)")
    add_verbosity_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    runs: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    splits: dict[str, Any] = {}
    for dataset in [] if args.serving_only else args.datasets:
        split = splits[dataset] = prepare_ctr_split(dataset, args.data_dir, seed=args.split_seed)
        for model_name in args.models:
            model_runs = []
            for seed in args.seeds:
                logger.info("%s / %s / seed %d", dataset, model_name, seed)
                run = run_one(split, model_name, seed, args)
                run["dataset"] = dataset
                logger.info("-> auc %.4f logloss %.4f (%.1f min)", run["auc"], run["logloss"], run["seconds"] / 60)
                model_runs.append(run)
                runs.append(run)
            summary.append(summarise(model_runs, dataset))
        if dataset in SYNTHETIC:  # the ceiling: the true logits of the generator on the same test rows
            table, logits = make_synthetic_ctr(SYNTHETIC[dataset])
            test = random_split_folds(len(table), args.split_seed) == 2
            labels = table.frame["label"].to_numpy()[test]
            oracle = {
                "auc": roc_auc(labels, logits[test]),
                "logloss": log_loss(labels, 1 / (1 + np.exp(-logits[test]))),
            }
            summary.append(
                {"dataset": dataset, "model": "oracle (true logits)", **oracle, "auc_std": 0.0, "logloss_std": 0.0}
            )
    rows = [
        {**s, "auc": f"{s['auc']:.4f} ± {s['auc_std']:.4f}", "logloss": f"{s['logloss']:.4f} ± {s['logloss_std']:.4f}"}
        for s in summary
    ]
    rows += [
        {"dataset": f"{dataset} (BARS, published)", "model": model, "auc": f"{auc:.4f}", "seeds": None}
        for dataset, values in ANCHORS.items()
        for model, auc in values.items()
    ]
    print_table(
        rows,
        ["dataset", "model", "seeds", "auc", "logloss", "params", "epochs", "min_per_run"],
        "CTR: test AUC / log-loss",
    )

    serving = []
    if not args.no_serving:
        split = splits.get("ml-1m-ctr") or prepare_ctr_split("ml-1m-ctr", args.data_dir, seed=args.split_seed)
        serving = serving_cost(split, size=args.size)
        print_table(serving, ["model", "batch_size", "samples_per_s", "ms_per_batch", "params"], "Serving cost (CPU)")

    name = f"ctr_serving_{args.size}" if args.serving_only else "ctr_" + "_".join(args.datasets)
    path = write_results(
        name,
        {
            "settings": {k: v for k, v in vars(args).items()},
            "protocol": "random 8:1:1 split (--split-seed), pipeline fitted on train, test at the best valid AUC",
            "summary": summary,
            "anchors_bars_auc": ANCHORS,
            "serving": serving,
            "serving_note": "--size configs on the ml-1m-ctr layout, eval mode, torch threads = --threads",
            "runs": runs,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
