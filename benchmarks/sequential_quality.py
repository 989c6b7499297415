"""`python benchmarks/sequential.py quality`: HR/NDCG per model and preset, the anchors beside."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS_DIR, print_table, write_results
from benchmarks.sequential_common import (
    METRICS,
    PRESETS,
    QUALITY_COLUMNS,
    VARIANTS,
    _result_name,
    logger,
)
from benchmarks.sequential_report import (
    _quality_payload,
    summarise,
)
from recsys.config import build_config
from recsys.models import build_model, get_model_class
from recsys.train import DataConfig, TrainConfig, Trainer, prepare_split


def run_quality(preset: str, split: Any, variant: str, seed: int, train_overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one variant with one seed on one preset; return test metrics and timings."""
    model_name, model_options = VARIANTS[variant]
    cls = get_model_class(model_name)
    config = build_config(TrainConfig, {**cls.train_defaults, **train_overrides, "seed": seed})
    torch.manual_seed(seed)
    options = {**model_options, "max_len": PRESETS[preset]["max_len"]}
    model = build_model(model_name, split.train.n_users, split.train.n_items, options)
    run_info = {"dataset": preset, "protocol": split.protocol, "model": variant, "seed": seed}
    trainer = Trainer(model, split, config, run_info=run_info, progress=False)
    result = trainer.fit()
    return {
        "preset": preset,
        "model": variant,
        "seed": seed,
        "eval_mask": config.eval_mask,
        **{m: result.get(m) for m in METRICS},
        "valid_ndcg@10": result.get("valid", {}).get("ndcg@10"),
        # per evaluated epoch: compares variants at equal epochs when time budgets stopped them at different ones
        "valid_curve": [
            {"epoch": h["epoch"], "ndcg@10": h["valid"].get("ndcg@10"), "seconds": h["seconds"]}
            for h in trainer.history
            if "valid" in h
        ],
        # training loss per epoch, with its named parts where the model has them (SinkRec: next-item and RVQ)
        "loss_curve": [{"epoch": h["epoch"], "loss": h["loss"], **h.get("loss_parts", {})} for h in trainer.history],
        "codebook_usage": model.code_usage() if hasattr(model, "code_usage") else None,  # SinkRec's RVQ
        # per epoch, what the model reports of itself (SinkRec: RVQ usage, relative error, pattern energy)
        "diagnostics_curve": [{"epoch": h["epoch"], **h["diagnostics"]} for h in trainer.history if "diagnostics" in h],
        "n_users": result.get("n_users"),
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "stopped_early": result.get("stopped_early", False),
        "stopped_by_budget": result.get("stopped_by_budget", False),
        "seconds_per_epoch": result["seconds_per_epoch"],
        "train_seconds": result["seconds"],
        "train_config": {
            k: getattr(config, k)
            for k in (
                "epochs",
                "batch_size",
                "lr",
                "patience",
                "max_minutes",
                "eval_mask",
                "length_buckets",
                "target_weighting",
            )
        },
        "model_config": dataclasses.asdict(model.config),
    }


TRAIN_OVERRIDES = (
    "epochs",
    "patience",
    "batch_size",
    "lr",
    "max_minutes",
    "eval_every",
    "eval_mask",
    "length_buckets",
    "target_weighting",
)


def quality(args: argparse.Namespace) -> int:
    train_overrides = {key: getattr(args, key) for key in TRAIN_OVERRIDES if getattr(args, key) is not None}
    name = _result_name("quality", args.tag)
    if args.jobs > 1:
        runs = quality_in_parallel(args, name)
        if runs is None:
            return 1
        path = write_results(name, _quality_payload(runs, args.presets), args.out)
    else:
        runs = []
        for preset in args.presets:
            data = build_config(DataConfig, {**PRESETS[preset]["data"], "data_dir": args.data_dir})
            split = prepare_split(data)
            logger.info("%s: %s", preset, split.info())
            for variant in args.models:
                for seed in args.seeds:
                    logger.info("%s %s seed %d", preset, variant, seed)
                    run = run_quality(preset, split, variant, seed, train_overrides)
                    run["data_config"] = dataclasses.asdict(data)
                    run["split"] = split.info()
                    runs.append(run)
                    logger.info("%s", {k: run[k] for k in ("model", "seed", *METRICS, "epochs_run", "train_seconds")})
                    path = write_results(name, _quality_payload(runs, args.presets), args.out)
    rows = summarise(runs)
    print_table(rows, QUALITY_COLUMNS, title="sequential quality (full ranking, leave-one-out)")
    print(f"wrote {path}")
    return 0


def quality_in_parallel(args: argparse.Namespace, name: str) -> list[dict[str, Any]] | None:
    """Run every (preset, model, seed) of the sweep as its own process, ``args.jobs`` at a time.

    Each run writes ``<out>.runs/<preset>_<model>_seed<S>.json`` (and its log beside it) when it finishes, so an
    interrupted sweep, started again with the same arguments, runs only what is missing. Returns the runs in
    sweep order, or None (after naming the logs) when a run failed."""
    import subprocess

    from tqdm import tqdm

    out = Path(args.out) if args.out else RESULTS_DIR / f"{name}.json"
    runs_dir = out.with_suffix(".runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(p, m, s) for p in args.presets for m in args.models for s in args.seeds]
    files = {task: runs_dir / f"{task[0]}_{task[1]}_seed{task[2]}.json" for task in tasks}
    pending = [task for task in tasks if not files[task].exists()]
    if len(pending) < len(tasks):
        logger.info(
            "%d of %d runs already in %s; running the other %d",
            len(tasks) - len(pending),
            len(tasks),
            runs_dir,
            len(pending),
        )
    # each process gets its share of the cores unless told: N processes at torch's default of all cores each
    # spin against one another (on 2 cores, 2 runs at 2 threads were 10-15x slower than at 1 thread each)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    common = ["--threads", str(threads)]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    for key in TRAIN_OVERRIDES:
        if getattr(args, key) is not None:
            common += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    manifest = runs_dir / "sweep.json"  # finished runs are reused only by a sweep with the same settings
    earlier = json.loads(manifest.read_text())["settings"] if manifest.exists() else common
    if earlier != common:
        raise SystemExit(
            f"{runs_dir}: holds runs made with other settings ({earlier}, now {common}); remove the folder or "
            "choose another --out"
        )
    manifest.write_text(json.dumps({"settings": common}))
    running: dict[tuple[str, str, int], subprocess.Popen] = {}
    failed: list[Path] = []
    try:
        with tqdm(total=len(tasks), initial=len(tasks) - len(pending), desc="quality runs", unit="run") as bar:
            while pending or running:
                while pending and len(running) < args.jobs:
                    task = pending.pop(0)
                    preset, variant, seed = task
                    command = [
                        sys.executable,
                        str(Path(__file__).resolve().with_name("sequential.py")),
                        "quality",
                        "--presets",
                        preset,
                        "--models",
                        variant,
                        "--seeds",
                        str(seed),
                        "--out",
                        str(files[task]),
                        *common,
                    ]
                    log = files[task].with_suffix(".log").open("w")
                    running[task] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                    log.close()
                time.sleep(0.2)
                for task, process in list(running.items()):
                    if process.poll() is None:
                        continue
                    del running[task]
                    bar.update(1)
                    if process.returncode != 0 or not files[task].exists():
                        failed.append(files[task].with_suffix(".log"))
                        logger.error("%s %s seed %d failed (exit %d); log: %s", *task, process.returncode, failed[-1])
    finally:  # stopped by Ctrl-C or an error here: no run is left going on its own
        for process in running.values():
            process.terminate()
        for process in running.values():
            process.wait()
    if failed:
        logger.error(
            "%d run(s) failed; the others are kept in %s: run the same command again to retry", len(failed), runs_dir
        )
        return None
    return [run for task in tasks for run in json.loads(files[task].read_text())["runs"]]
