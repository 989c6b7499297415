"""Collaborative-filtering benchmark: our models side by side, the papers' anchors, and RecBole as a peer.

Examples::

    python benchmarks/cf.py --dataset ml-1m --split loo --models pop ease bpr neumf lightgcn --seeds 0 1 2
    python benchmarks/cf.py --dataset gowalla --split given --models bpr lightgcn --seeds 0 --epochs 1000
    python benchmarks/cf.py --dataset ml-1m --split loo --models bpr lightgcn --peer recbole --epochs 20

Prints a table and writes ``benchmarks/results/cf_<dataset>_<split>.json``. Full-ranking evaluation only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, write_results
from core.cli import add_verbosity_args, configure_from_args
from recsys.config import build_config, parse_overrides
from recsys.models import build_model, get_model_class
from recsys.train import DataConfig, TrainConfig, Trainer, prepare_split

logger = logging.getLogger("benchmarks.cf")

# Published anchors (full ranking). Gowalla: LightGCN paper, table 3; BPR-MF as reported in the NGCF paper.
ANCHORS = {
    ("gowalla", "lightgcn"): {"recall@20": 0.1830, "ndcg@20": 0.1554, "source": "LightGCN (He et al. 2020), table 3"},
    ("gowalla", "bpr"): {"recall@20": 0.1291, "ndcg@20": 0.1109, "source": "NGCF (Wang et al. 2019), table 2"},
}
METRICS = ("recall@20", "ndcg@20", "hr@10", "ndcg@10")
RECBOLE_VENV = Path(os.environ.get("RECBOLE_VENV", "/tmp/recbole-venv"))


def run_ours(
    split: Any,
    dataset: str,
    model_name: str,
    seed: int,
    overrides: dict[str, Any],
    model_options: dict[str, Any] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Train one model with one seed; return test metrics, epochs, timings and the learning curve."""
    cls = get_model_class(model_name)
    train_values = {**cls.train_defaults, **{k: v for k, v in overrides.items() if k in TrainConfig.__annotations__}}
    config = build_config(TrainConfig, {**train_values, "seed": seed})
    torch.manual_seed(seed)
    model = build_model(model_name, split.train.n_users, split.train.n_items, dict(model_options or {}))
    run_info = {"dataset": dataset, "protocol": split.protocol, "model": model_name, "seed": seed}
    trainer = Trainer(model, split, config, out_dir=out_dir, run_info=run_info, progress=False)
    result = trainer.fit()
    eval_seconds = result["test_seconds"]  # the final test evaluation, timed by the Trainer
    curve = [
        {"epoch": r["epoch"], "loss": r["loss"], **{m: r["test_curve"].get(m) for m in METRICS}}
        for r in trainer.history
        if "test_curve" in r
    ]
    return {
        "library": "ours",
        "model": model_name,
        "seed": seed,
        **{m: result.get(m) for m in METRICS},
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "stopped_by_budget": result.get("stopped_by_budget", False),
        "seconds_per_epoch": result["seconds_per_epoch"],
        "eval_seconds": eval_seconds,
        "eval_users_per_second": result["n_users"] / eval_seconds if eval_seconds > 0 else None,
        "train_seconds": result["seconds"],
        "train_config": {k: getattr(config, k) for k in ("epochs", "batch_size", "lr", "patience", "eval_every")},
        "model_config": dataclasses.asdict(model.config) if dataclasses.is_dataclass(model.config) else {},
        "device": str(trainer.accelerator.device),
        "curve": curve,
    }


def _write_recbole_files(split: Any, folder: Path, name: str) -> None:
    """The exact train/valid/test interactions as RecBole atomic files (``benchmark_filename``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part_name in ("train", "valid", "test"):
        part = getattr(split, part_name)
        users = [split.train.user_map.to_raw(u) for u in part.users]
        items = [split.train.item_map.to_raw(i) for i in part.items]
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in zip(users, items, strict=True)]
        (folder / f"{name}.{part_name}.inter").write_text("\n".join(lines) + "\n")


RECBOLE_SCRIPT = r"""
import json, sys, time
from recbole.quick_start import run_recbole
config = json.loads(sys.argv[1])
model = config.pop("model")
tick = time.time()
result = run_recbole(model=model, dataset=config.pop("dataset"), config_dict=config)
result["wall_seconds"] = time.time() - tick
print("RESULT_JSON " + json.dumps(result, default=float))
"""


def ensure_recbole_venv() -> Path:
    """Create the throw-away RecBole venv (recipe in ../shared/notes/peers.md) if it is missing."""
    python = RECBOLE_VENV / "bin" / "python"
    if python.exists():
        return python
    logger.info("creating RecBole venv at %s (a few minutes, once)", RECBOLE_VENV)
    subprocess.run([sys.executable, "-m", "venv", str(RECBOLE_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.14.1", "recbole==1.2.1"], check=True)
    subprocess.run([*pip, "setuptools<81", "numpy<1.24", "scipy<1.12", "pandas<2.1", "scikit-learn<1.4"], check=True)
    return python


def run_recbole(split: Any, model_name: str, seed: int, epochs: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train RecBole's BPR or LightGCN on exactly our split; parse its test metrics and epoch times."""
    python = ensure_recbole_venv()
    recbole_model = {"bpr": "BPR", "lightgcn": "LightGCN"}[model_name]
    cls = get_model_class(model_name)
    train = {**cls.train_defaults, **overrides}
    with tempfile.TemporaryDirectory() as tmp:
        _write_recbole_files(split, Path(tmp) / "bench", "bench")
        config = {
            "model": recbole_model,
            "dataset": "bench",
            "data_path": tmp,
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "eval_args": {"order": "RO", "mode": "full", "group_by": "user"},
            "metrics": ["Recall", "NDCG", "Hit"],
            "topk": [10, 20],
            "valid_metric": "NDCG@10",
            "epochs": epochs,
            "train_batch_size": int(train.get("batch_size", 2048)),
            "learning_rate": float(train.get("lr", 1e-3)),
            "embedding_size": 64,
            "n_layers": 3,
            "reg_weight": 1e-4,
            "stopping_step": int(train.get("patience", 10)),
            "seed": seed,
            "use_gpu": False,
            "show_progress": False,
            "checkpoint_dir": str(Path(tmp) / "saved"),
        }
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        proc = subprocess.run(
            [str(python), "-c", RECBOLE_SCRIPT, json.dumps(config)], capture_output=True, text=True, env=env, cwd=tmp
        )
    log = proc.stdout + proc.stderr
    match = re.search(r"RESULT_JSON (.*)", log)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"RecBole {recbole_model} failed:\n{log[-3000:]}")
    result = json.loads(match.group(1))
    epoch_times = [float(t) for t in re.findall(r"training \[time: ([\d.]+)s", log)]
    test = result["test_result"]
    return {
        "library": "recbole",
        "model": model_name,
        "seed": seed,
        "recall@20": test.get("recall@20"),
        "ndcg@20": test.get("ndcg@20"),
        "hr@10": test.get("hit@10"),
        "ndcg@10": test.get("ndcg@10"),
        "epochs_run": len(epoch_times),
        "seconds_per_epoch": float(np.mean(epoch_times)) if epoch_times else None,
        "train_seconds": result["wall_seconds"],
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (library, model)."""
    rows = []
    keys = sorted({(r["library"], r["model"]) for r in runs})
    for library, model in keys:
        group = [r for r in runs if r["library"] == library and r["model"] == model]
        row: dict[str, Any] = {"library": library, "model": model, "seeds": len(group)}
        for metric in (*METRICS, "seconds_per_epoch", "eval_users_per_second", "epochs_run"):
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                row[metric] = float(np.mean(values))
                if len(values) > 1 and metric in METRICS:
                    row[f"{metric}_std"] = float(np.std(values, ddof=1))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir")
    parser.add_argument("--split", default="loo", help="loo | temporal | random | given")
    parser.add_argument("--models", nargs="+", default=["pop", "ease", "bpr", "neumf", "lightgcn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="cap on epochs (default: each model's paper setting)")
    parser.add_argument("--patience", type=int)
    parser.add_argument("--peer", choices=["recbole"], help="also train the peer library on the same split")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--num-workers", type=int, help="DataLoader workers building the training batches")
    parser.add_argument(
        "--sampling",
        choices=["loader", "device"],
        help="loader: CPU DataLoader batches (default); device: each epoch drawn on the training device (GPUs)",
    )
    parser.add_argument("--lr", type=float)
    parser.add_argument("--eval-every", type=int, help="epochs between validation evaluations")
    parser.add_argument("--max-minutes", type=float, help="training time budget per run (reported in the JSON)")
    parser.add_argument("--curve-every", type=int, help="record test metrics every N epochs as a learning curve")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="model option, e.g. sample_by=user"
    )
    parser.add_argument("--run-dir", help="keep each run's checkpoint and run.json (updated every epoch) here")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads for ours and the peer (0: torch's default)"
    )
    parser.add_argument("--out", help="result JSON path")
    add_verbosity_args(parser)
    args = parser.parse_args(argv)
    configure_from_args(args, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.threads:  # the same for both libraries: ours here, RecBole's subprocess through the environment
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    split = prepare_split(DataConfig(dataset=args.dataset, data_dir=args.data_dir, split=args.split))
    overrides: dict[str, Any] = {}
    if args.epochs:
        overrides["epochs"] = args.epochs
    for key in ("patience", "batch_size", "lr", "eval_every", "max_minutes", "curve_every", "num_workers", "sampling"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    model_options = parse_overrides(["--" + opt for opt in args.option])
    runs = []
    for model_name in args.models:
        for seed in args.seeds:
            logger.info("ours: %s seed %d", model_name, seed)
            run_dir = Path(args.run_dir) / f"{model_name}_seed{seed}" if args.run_dir else None
            runs.append(run_ours(split, args.dataset, model_name, seed, overrides, model_options, run_dir))
            logger.info("%s", runs[-1])
            if args.peer == "recbole" and model_name in {"bpr", "lightgcn"}:
                epochs = args.epochs or get_model_class(model_name).train_defaults.get("epochs", 100)
                runs.append(run_recbole(split, model_name, seed, epochs, overrides))
                logger.info("%s", runs[-1])
    rows = summarise(runs)
    for row in rows:
        anchor = ANCHORS.get((args.dataset, row["model"]))
        if anchor and row["library"] == "ours":
            row["anchor_recall@20"] = anchor["recall@20"]
            row["anchor_ndcg@20"] = anchor["ndcg@20"]
    columns = ["library", "model", "seeds", *METRICS, "seconds_per_epoch", "eval_users_per_second", "epochs_run"]
    if any("anchor_recall@20" in r for r in rows):
        columns += ["anchor_recall@20", "anchor_ndcg@20"]
    print_table(rows, columns, title=f"{args.dataset} / {split.protocol} (full ranking, train+valid masked)")
    path = write_results(
        f"cf_{args.dataset}_{args.split}",
        {
            "dataset": args.dataset,
            "protocol": split.protocol,
            "evaluation": "full_ranking",
            "summary": rows,
            "runs": runs,
            "anchors": {f"{d}/{m}": v for (d, m), v in ANCHORS.items() if d == args.dataset},
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
