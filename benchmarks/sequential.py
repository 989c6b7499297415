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
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, print_table, write_results
from recsys.config import build_config
from recsys.models import build_model, get_model_class
from recsys.models.delta_rule import chunk_gated_delta_rule, fla_chunk_kernel, fla_gated_delta_rule
from recsys.models.losses import linear_cross_entropy
from recsys.models.sequential import StreamingScorer
from recsys.train import EVAL_MASKS, DataConfig, TrainConfig, Trainer, prepare_split

logger = logging.getLogger("benchmarks.sequential")

# Data presets: the data and preprocessing each anchor used, and the model's maximum sequence length.
PRESETS: dict[str, dict[str, Any]] = {
    "ml-100k": {"data": {"dataset": "ml-100k"}, "max_len": 50},
    # RecBole's sequential benchmark on ML-1M: ratings >= 3, 10-core users and items, history 50
    "ml-1m-recbole": {"data": {"dataset": "ml-1m", "min_rating": 3, "user_core": 10, "item_core": 10}, "max_len": 50},
    # HSTU's ML-1M table: every rating kept (ML-1M users already have >= 20), history 200
    "ml-1m-hstu": {"data": {"dataset": "ml-1m"}, "max_len": 200},
    "beauty": {"data": {"dataset": "beauty"}, "max_len": 50},
    "sports": {"data": {"dataset": "sports"}, "max_len": 50},
    "video-games": {"data": {"dataset": "video-games"}, "max_len": 50},
}

# Published full-ranking numbers (leave-one-out), with the ranking mask of their protocol (our eval_mask):
# RecBole masks the user's whole history, HSTU only the items of the model's input window. Sampled-metric
# tables (e.g. the SASRec paper's) are not comparable and are not listed.
_RECBOLE = {"source": "RecBole ML-1M benchmark", "eval_mask": "history"}
_HSTU = {"source": "HSTU repository ML-1M table", "eval_mask": "input"}
ANCHORS: dict[tuple[str, str], dict[str, Any]] = {
    ("ml-1m-recbole", "sasrec"): {"hr@10": 0.2468, "ndcg@10": 0.1286, **_RECBOLE},
    ("ml-1m-recbole", "gru4rec"): {"hr@10": 0.2776, "ndcg@10": 0.1545, **_RECBOLE},
    ("ml-1m-hstu", "sasrec"): {"hr@10": 0.2853, "ndcg@10": 0.1603, **_HSTU},
    # the same published row: their SASRec is trained with this loss
    ("ml-1m-hstu", "sasrec-sampled-softmax"): {"hr@10": 0.2853, "ndcg@10": 0.1603, **_HSTU},
    ("ml-1m-hstu", "hstu (theirs)"): {"hr@10": 0.3097, "ndcg@10": 0.1720, **_HSTU},
}

# Model variants: registered name and config overrides (SinkRec's ablations are config switches).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sasrec": ("sasrec", {}),
    "gru4rec": ("gru4rec", {}),
    # SASRec trained as the HSTU repository's baseline: sampled softmax over 128 uniform negatives on
    # L2-normalised embeddings, temperature 0.05 (configs/ml-1m/sasrec-sampled-softmax-n128-final.gin)
    "sasrec-sampled-softmax": (
        "sasrec",
        {"loss": "sampled_softmax", "n_neg": 128, "similarity": "cosine", "temperature": 0.05},
    ),
    "gdn": ("gdn", {}),
    "sinkrec": ("sinkrec", {}),
    "sinkrec-no-memory": ("sinkrec", {"use_memory": False}),
    "sinkrec-no-reinject": ("sinkrec", {"reinject": False}),
    "sinkrec-no-suppression": ("sinkrec", {"write_suppression": False}),
    "sinkrec-no-purification": ("sinkrec", {"readout_purification": False}),
    "sinkrec-no-temporal": ("sinkrec", {"temporal_gates": False}),
    # not an ablation: per-loop weights, the other loop form the paper allows (two distinct layers, as GDN)
    "sinkrec-per-loop": ("sinkrec", {"shared_loop_weights": False}),
    "sinkrec-data-init": ("sinkrec", {"codebook_init": "data"}),  # codebooks from the first batch
    "sinkrec-reinject-zero": ("sinkrec", {"reinject_init": "zero"}),  # re-injection starts switched off
    "sinkrec-pattern-norm": ("sinkrec", {"pattern_norm": True}),  # the RVQ quantises at a fixed scale
    # re-injection as a lookup: the main loss trains the chosen codes, not the local pattern
    "sinkrec-reinject-codebook": ("sinkrec", {"reinject_grad": "codebook"}),
}
METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")
QUALITY_COLUMNS = [
    "preset",
    "model",
    "seeds",
    *METRICS,
    "anchor_hr@10",
    "anchor_ndcg@10",
    "anchor_eval_mask",
    "epochs_run",
    "budget_stop",
]
ANCHORS_PAYLOAD = {f"{preset}/{model}": anchor for (preset, model), anchor in ANCHORS.items()}


def _result_name(kind: str, tag: str | None) -> str:
    return f"sequential_{kind}" + (f"_{tag}" if tag else "")


# -- quality ------------------------------------------------------------------------------------------------
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


def _label(run: dict[str, Any]) -> str:
    """The variant's name, with its ranking mask when not the default ("history") and its batching when not
    the default (random batches, each weighing the same): results under different masks are different
    protocols, and under different batching different training recipes, so they never share a row or a mean."""
    settings = []
    mask = run.get("eval_mask", "history")
    if mask != "history":
        settings.append(f"eval_mask {mask}")
    train = run.get("train_config") or {}
    if train.get("length_buckets"):
        settings.append(f"length_buckets {train['length_buckets']}")
    if train.get("target_weighting", "batch") != "batch":
        settings.append(f"target_weighting {train['target_weighting']}")
    return f"{run['model']} ({', '.join(settings)})" if settings else run["model"]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std over seeds) per (preset, model, epochs trained), with the published anchor beside it.

    Seeds trained for different numbers of epochs (say one stopped by a time budget at 23, one capped at 13)
    are different measurements, not samples of one: they get a row each rather than a mean."""
    groups: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["preset"], _label(run), run.get("epochs_run")), []).append(run)
    rows = []
    for (preset, label, _), group in groups.items():
        variant = group[0]["model"]
        row: dict[str, Any] = {"preset": preset, "model": label, "seeds": len(group)}
        for metric in (*METRICS, "epochs_run", "seconds_per_epoch"):
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                row[metric] = float(np.mean(values))
                if len(values) > 1 and metric in METRICS:
                    row[f"{metric}_std"] = float(np.std(values, ddof=1))
        row["budget_stop"] = any(r.get("stopped_by_budget") for r in group)
        anchor = ANCHORS.get((preset, variant))
        if anchor:  # beside every mask: the row's label and the anchor's eval_mask say which protocol is whose
            row["anchor_hr@10"], row["anchor_ndcg@10"] = anchor["hr@10"], anchor["ndcg@10"]
            row["anchor_eval_mask"] = anchor["eval_mask"]
        rows.append(row)
    return rows


def equal_epoch_rows(runs: list[dict[str, Any]], epochs: list[int]) -> list[dict[str, Any]]:
    """Valid NDCG@10 of each run at the given epochs, from its ``valid_curve`` (None where the run had stopped
    earlier or did not evaluate that epoch): variants that time budgets stopped at different epochs compare
    like for like. Runs without a curve (written before curves were recorded) are named and left out."""
    rows = []
    for run in runs:
        curve = run.get("valid_curve")
        if not curve:
            logger.warning(
                "%s %s seed %s has no valid_curve; left out of the equal-epoch table",
                run["preset"],
                run["model"],
                run["seed"],
            )
            continue
        by_epoch = {point["epoch"]: point["ndcg@10"] for point in curve}
        row: dict[str, Any] = {"preset": run["preset"], "model": _label(run), "seed": run["seed"]}
        row.update({f"valid_ndcg@10@{e}": by_epoch.get(e) for e in epochs})
        row["epochs_run"] = run.get("epochs_run")
        rows.append(row)
    return rows


def equal_epoch_means(rows: list[dict[str, Any]], epochs: list[int]) -> list[dict[str, Any]]:
    """Per (preset, model): mean, sample std (two or more seeds) and number of seeds of valid NDCG@10 at each
    epoch, over the seeds whose runs reached it."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["preset"], row["model"]), []).append(row)
    out = []
    for (preset, model), group in groups.items():
        summary: dict[str, Any] = {"preset": preset, "model": model}
        for epoch in epochs:
            values = [r[f"valid_ndcg@10@{epoch}"] for r in group if r.get(f"valid_ndcg@10@{epoch}") is not None]
            summary[f"mean@{epoch}"] = float(np.mean(values)) if values else None
            summary[f"std@{epoch}"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
            summary[f"seeds@{epoch}"] = len(values)
        out.append(summary)
    return out


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


def _quality_payload(runs: list[dict[str, Any]], presets: list[str]) -> dict[str, Any]:
    return {
        "evaluation": "full_ranking, leave-one-out",
        "summary": summarise(runs),
        "runs": runs,
        "anchors": ANCHORS_PAYLOAD,
        "presets": {p: PRESETS[p] for p in presets},
    }


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
                        str(Path(__file__).resolve()),
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


def report(args: argparse.Namespace) -> int:
    """Merge the runs of several quality JSONs (e.g. one per background process) into one summary table."""
    runs: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()  # (preset, variant and its mask, seed)
    for file in args.files:
        try:
            payload = json.loads(Path(file).read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"{file}: cannot read a quality result ({error})") from None
        if "runs" not in payload:
            raise SystemExit(f"{file}: no 'runs' list; is it a 'quality' result?")
        for run in payload["runs"]:
            key = (run["preset"], _label(run), int(run["seed"]))
            if key in seen:  # the same run in two files: keep the first, say so
                logger.warning("%s: %s seed %d already merged from an earlier file; skipped", file, key[1], key[2])
                continue
            seen.add(key)
            runs.append(run)
    rows = summarise(runs)
    print_table(rows, QUALITY_COLUMNS, title="sequential quality (merged; full ranking, leave-one-out)")
    at_epochs = equal_epoch_rows(runs, args.at_epochs) if args.at_epochs else []
    if at_epochs:
        columns = ["preset", "model", "seed", *(f"valid_ndcg@10@{e}" for e in args.at_epochs), "epochs_run"]
        print_table(at_epochs, columns, title="valid NDCG@10 at equal epochs (runs stopped at different epochs)")
        at_epochs_mean = equal_epoch_means(at_epochs, args.at_epochs)
        columns = ["preset", "model", *(f"{stat}@{e}" for e in args.at_epochs for stat in ("mean", "std", "seeds"))]
        print_table(at_epochs_mean, columns, title="valid NDCG@10 at equal epochs: mean and std over seeds")
    if args.out:
        payload = {"evaluation": "full_ranking, leave-one-out", "summary": rows, "runs": runs}
        if at_epochs:
            payload["at_epochs"] = at_epochs
            payload["at_epochs_mean"] = at_epochs_mean
        payload["merged_from"] = args.files
        payload["anchors"] = ANCHORS_PAYLOAD
        print(f"wrote {write_results('sequential_quality_merged', payload, args.out)}")
    return 0


# -- scaling -------------------------------------------------------------------------------------------------
def _saved_activation_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while ``fn`` runs (a device-free memory measure)."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    tick = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - tick) / repeats


def measure(model: Any, items: torch.Tensor, gaps: torch.Tensor, repeats: int, streams: bool) -> dict[str, float]:
    """Training step time, saved activations, single-user inference latency and the streaming update time."""
    batch = {"items": items[:, :-1], "targets": items[:, 1:], "gaps": gaps[:, :-1]}
    out: dict[str, float] = {}

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(batch).backward()

    model.train()
    out["train_step_s"] = _timed(train_step, repeats)
    out["activation_mb"] = _saved_activation_bytes(lambda: model.loss(batch)) / 2**20
    model.eval()
    length = items.shape[1]
    with torch.no_grad():
        lengths = torch.full((1,), length, device=items.device)
        out["inference_s"] = _timed(lambda: model.item_logits(model.last_hidden(items[:1], gaps[:1], lengths)), repeats)
    if items.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        train_step()
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if streams:  # the per-event streaming update after `length - 1` events
        stream = StreamingScorer(model)
        for item in items[0, : length - 1].tolist():
            stream.update(0, item - 1)
        out["stream_update_s"] = _timed(lambda: stream.update(0, 0), repeats * 4)
    return out


def scaling(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_items = args.n_items
    rows: list[dict[str, Any]] = []
    name = _result_name("scaling", args.tag)
    for length in args.lengths:
        for variant in args.models:
            model_name, options = VARIANTS[variant]
            options = {**options, "max_len": length, "dropout": 0.0}
            if model_name in ("gdn", "sinkrec"):
                options["kernel"] = args.kernel
            torch.manual_seed(0)
            model = build_model(model_name, 1, n_items, options).to(device)
            items = torch.randint(1, n_items + 1, (args.batch_size, length), device=device)
            gaps = torch.rand(args.batch_size, length, device=device)
            row: dict[str, Any] = {"length": length, "model": variant, "batch_size": args.batch_size}
            if "kernel" in options:
                row["kernel"] = args.kernel
            try:
                row.update(measure(model, items, gaps, args.repeats, streams=model_name != "sasrec"))
            except (RuntimeError, MemoryError) as exc:  # out of memory at long lengths is a result too
                row["error"] = str(exc).splitlines()[0][:200]
            rows.append(row)
            logger.info("%s", row)
            by_model = {(r["length"], r["model"]): r for r in rows}
            for r in rows:
                base = by_model.get((r["length"], "sasrec"))
                if base and "train_step_s" in base and "train_step_s" in r:
                    r["train_ratio_vs_sasrec"] = r["train_step_s"] / base["train_step_s"]
                    r["infer_ratio_vs_sasrec"] = r["inference_s"] / base["inference_s"]
            path = write_results(name, {"device": str(device), "n_items": n_items, "rows": rows}, args.out)
    columns = [
        "length",
        "model",
        "train_step_s",
        "inference_s",
        "activation_mb",
        "stream_update_s",
        "train_ratio_vs_sasrec",
        "infer_ratio_vs_sasrec",
    ]
    if device.type == "cuda":
        columns.append("peak_gpu_mb")
    print_table(rows, columns, title=f"sequential scaling on {device} (batch {args.batch_size}, {n_items} items)")
    print(f"wrote {path}")
    print(f"wrote {plot_scaling(rows, path.with_suffix('.png'))}")
    return 0


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |theirs - ours| / max |ours|: one scale-free number per tensor."""
    return float((theirs.float() - ours.float()).abs().max() / ours.float().abs().max().clamp(min=1e-12))


def _ours_fla_layout(q, k, v, g, beta) -> tuple[torch.Tensor, torch.Tensor]:
    """Our chunked rule on fla's [B, T, H, *] layout."""
    o, state = chunk_gated_delta_rule(*(t.transpose(1, 2) for t in (q, k, v, g, beta)))
    return o.transpose(1, 2), state


def _kernel_run(fn, inputs: list[torch.Tensor], repeats: int):
    """(output, final state, input gradients, seconds per forward + backward) of one kernel."""

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        for t in inputs:
            t.grad = None
        o, state = fn(*inputs)
        (o.square().sum() + state.sum()).backward()
        return o.detach(), state.detach()

    o, state = step()
    grads = [t.grad.clone() for t in inputs]
    return o, state, grads, _timed(step, repeats)


def kernels(args: argparse.Namespace) -> int:
    """flash-linear-attention's fused chunk kernel against ours: outputs, final state, gradients and time."""
    fused = fla_chunk_kernel()
    if not torch.cuda.is_available() or fused is None:
        logger.error(
            "kernels needs a CUDA GPU and flash-linear-attention (pip install fla-core): cuda %s, fla %s",
            torch.cuda.is_available(),
            "importable" if fused is not None else "not importable",
        )
        return 2
    device = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    name = _result_name("kernels", args.tag)
    for length in args.lengths:
        gen = torch.Generator(device=device).manual_seed(0)
        shape = (args.batch_size, length, args.heads, args.head_dim)
        q, k = (torch.nn.functional.normalize(torch.randn(*shape, device=device, generator=gen), dim=-1) for _ in "qk")
        v = torch.randn(*shape, device=device, generator=gen)
        g = torch.nn.functional.logsigmoid(torch.randn(*shape[:3], device=device, generator=gen))
        beta = torch.rand(*shape[:3], device=device, generator=gen)
        inputs = [t.requires_grad_() for t in (q, k, v, g, beta)]
        results = {
            label: _kernel_run(fn, inputs, args.repeats)
            for label, fn in (("torch", _ours_fla_layout), ("fla", functools.partial(fla_gated_delta_rule, fused)))
        }
        ours, theirs = results["torch"], results["fla"]
        row: dict[str, Any] = {
            "length": length,
            "batch_size": args.batch_size,
            "heads": args.heads,
            "head_dim": args.head_dim,
            "err_output": _relative_error(ours[0], theirs[0]),
            "err_state": _relative_error(ours[1], theirs[1]),
            "err_grad_max": max(_relative_error(a, b) for a, b in zip(ours[2], theirs[2], strict=True)),
            "torch_fwd_bwd_s": ours[3],
            "fla_fwd_bwd_s": theirs[3],
        }
        row["speedup"] = row["torch_fwd_bwd_s"] / row["fla_fwd_bwd_s"]
        rows.append(row)
        logger.info("%s", row)
        path = write_results(name, {"device": torch.cuda.get_device_name(), "rows": rows}, args.out)
    columns = ["length", "err_output", "err_state", "err_grad_max", "torch_fwd_bwd_s", "fla_fwd_bwd_s", "speedup"]
    print_table(rows, columns, title=f"fla chunk_gated_delta_rule vs ours on {torch.cuda.get_device_name()}")
    print(f"wrote {path}")
    return 0


def softmax(args: argparse.Namespace) -> int:
    """The full-softmax loss over a catalogue, plain ``F.cross_entropy(h @ E.T)`` against our blocked
    ``linear_cross_entropy``: forward + backward time and the largest relative error of loss and gradients."""
    rows: list[dict[str, Any]] = []
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    for n_items in args.items:
        gen = torch.Generator().manual_seed(0)
        hidden = (0.3 * torch.randn(args.rows, args.dim, generator=gen)).to(device).requires_grad_()
        weight = (0.3 * torch.randn(n_items, args.dim, generator=gen)).to(device).requires_grad_()
        target = torch.randint(0, n_items, (args.rows,), generator=gen).to(device)
        plain = functools.partial(_softmax_run, lambda h, w, t: F.cross_entropy(h @ w.T, t), hidden, weight, target)
        blocked = functools.partial(_softmax_run, linear_cross_entropy, hidden, weight, target)
        reference, ours = plain(), blocked()
        row = {
            "n_items": n_items,
            "rows": args.rows,
            "dim": args.dim,
            "err_max": max(_relative_error(a, b) for a, b in zip(reference, ours, strict=True)),
            "plain_fwd_bwd_s": _timed(plain, args.repeats),
            "blocked_fwd_bwd_s": _timed(blocked, args.repeats),
        }
        row["speedup"] = row["plain_fwd_bwd_s"] / row["blocked_fwd_bwd_s"]
        rows.append(row)
        logger.info("%s", row)
    title = f"softmax cross-entropy over the catalogue, {args.rows} x {args.dim} rows, {device.type}, "
    title += f"{torch.get_num_threads()} thread(s)"
    print_table(rows, ["n_items", "err_max", "plain_fwd_bwd_s", "blocked_fwd_bwd_s", "speedup"], title=title)
    payload = {"device": device.type, "threads": torch.get_num_threads(), "rows": rows}
    path = write_results(_result_name("softmax", args.tag), payload, args.out)
    print(f"wrote {path}")
    return 0


def _softmax_run(loss_fn, hidden, weight, target) -> tuple[torch.Tensor, ...]:
    loss = loss_fn(hidden, weight, target)
    grads = torch.autograd.grad(loss, (hidden, weight))
    return (loss.detach(), *grads)


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> Path:
    """Log-log plot of training step time, inference latency and streaming update time vs length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("train_step_s", "training step (s)"),
        ("inference_s", "inference (s)"),
        ("stream_update_s", "stream update (s)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    models = list(dict.fromkeys(r["model"] for r in rows))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for index, model in enumerate(models):
            points = [(r["length"], r[key]) for r in rows if r["model"] == model and key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=model, color=f"C{index}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- the sink diagnostic ---------------------------------------------------------------------------------------
def planted_repetition_dataset(n_users: int, n_items: int, length: int, seed: int):
    """Sequences mixing planted repetition (a user's 3 favourite items recur in bursts) with planted
    transitions (i -> i + 1); the next item after a transition is predictable, the bursts are a sink."""
    from recsys.data import InteractionDataset

    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(n_users):
        favourites = rng.choice(n_items, size=3, replace=False)
        item = int(rng.integers(n_items))
        t = 0.0
        for _ in range(length):
            if rng.random() < 0.5:
                current = int(rng.choice(favourites))
                t += 60.0  # repeats come in quick bursts
            else:
                item = (item + 1) % n_items
                current = item
                t += 86400.0
            users.append(user)
            items.append(current)
            times.append(t)
    return InteractionDataset.from_raw("planted", users, items, timestamps=times)


def item_genres(dataset: Any) -> list[frozenset[str]] | None:
    """Each item's genres (space-separated tokens of the genre/class column, as MovieLens), or None."""
    from recsys.data.loaders import GENRE_COLUMNS

    features = getattr(dataset, "item_features", None)
    if features is None:
        return None
    column = next((c for c in GENRE_COLUMNS if c in features.columns), None)
    if column is None:
        return None
    values = features[column].fillna("").astype(str).tolist()
    return [frozenset(v.split()) for v in values]


def _own_keys(mixer: Any, model: Any, items: np.ndarray) -> torch.Tensor:
    """Each item's own key direction in the first mixer (its projection without the conv context): [n, H, K]."""
    emb = model.item_embedding.weight[torch.as_tensor(items) + 1]
    keys = mixer.qkv_proj(emb).view(len(items), 3, mixer.n_heads, mixer.head_dim)[:, 1]
    return torch.nn.functional.normalize(keys, dim=-1)


def _share(basis: torch.Tensor, state: torch.Tensor, energy: torch.Tensor) -> float:
    """Energy of ``state`` [H, K, V] inside the orthonormal ``basis`` [H, K, r], as a share of ``energy``."""
    return float(torch.einsum("hkr,hkv->hrv", basis, state).pow(2).sum() / energy)


def _percentile(scores: torch.Tensor, items: np.ndarray) -> float:
    """Mean score percentile of ``items`` among all items (1 = scored above every other item)."""
    above = (scores[None, :] > scores[torch.as_tensor(items)][:, None]).float().mean(1)
    return float(1 - above.mean())


@torch.no_grad()
def sink_share(
    model: Any,
    history: Any,
    top_k: int = 3,
    max_users: int = 200,
    genres: list[frozenset[str]] | None = None,
) -> dict[str, Any]:
    """How much of the first layer's delta-rule state the user's recurring patterns take, after streaming the
    user's history (users with >= 5 events, the first ``max_users``). The measures:

    * ``state_share_top_key_directions``: share of the state's energy (squared Frobenius norm, all heads) in
      the span of the top ``top_k`` right singular vectors of the keys written over the user's history, per
      head: the directions the history wrote most often. It needs no item repeats, so it applies to any
      data. ``random_subspace_share`` (= top_k / key dim) is what a state with no preference would give.
    * ``state_share_repeated``: the same share for the key directions of the user's ``top_k`` most frequent
      items, over users whose most frequent item occurs at least twice (``None`` if there are none: e.g.
      MovieLens, where an item is rated once).
    * ``repeated_score_percentile``: mean score percentile of those repeated items in the next prediction
      (readout bias toward them), over the same users.
    * With ``genres`` (one set per item; MovieLens has them), the semantic version for data where items do
      not repeat but kinds of items do: ``state_share_top_genre`` is the share in the span of the top
      ``top_k`` singular directions of the own keys of the user's history items of the user's most frequent
      genre; ``top_genre_score_percentile`` the mean score percentile of all catalogue items of that genre.
    """
    from recsys.models.sequential import build_user_sequences

    model.eval()
    mixer = model.mixers[0] if hasattr(model, "mixers") else model._block(0).mixer
    seq = build_user_sequences(history, model.config.time_unit)
    written: list[torch.Tensor] = []
    original = mixer.project

    def recording_project(x: torch.Tensor, conv_cache: torch.Tensor | None = None):
        q, k, v, cache = original(x, conv_cache)
        written.append(k[0, 0])  # [H, K]: this step's keys (after the conv, normalised)
        return q, k, v, cache

    top_shares, repeat_shares, ranks, genre_shares, genre_ranks = [], [], [], [], []
    members_of: dict[str, list[int]] = {}  # genre -> its catalogue items, built once
    for item, item_genre_set in enumerate(genres or []):
        for genre in item_genre_set:
            members_of.setdefault(genre, []).append(item)
    catalogue = {genre: np.asarray(items) for genre, items in members_of.items()}
    mixer.project = recording_project  # instance attribute: shadows the method for this diagnostic only
    try:
        for user in range(history.n_users):
            events = seq.of(user)
            if events.size < 5:
                continue
            if len(top_shares) >= max_users:  # one share per measured user
                break
            written.clear()
            state = model.stream_init(1)
            gaps = seq.gaps[seq.indptr[user] : seq.indptr[user + 1]]
            first_calls = []
            for item, gap in zip(events.tolist(), gaps.tolist(), strict=True):
                mark = len(written)
                hidden, state = model.stream_step(state, torch.tensor([item + 1]), torch.tensor([gap]))
                first_calls.append(written[mark])  # a shared-weight loop calls the mixer again: keep the first
            S = state[0]["state"][0]  # [H, K, V], first layer
            energy = S.pow(2).sum().clamp(min=1e-12)
            keys = torch.stack(first_calls)  # [T, H, K]
            basis = torch.linalg.svd(keys.permute(1, 0, 2), full_matrices=False).Vh[:, :top_k]  # [H, r, K]
            top_shares.append(_share(basis.transpose(1, 2), S, energy))
            scores = model.item_logits(hidden)[0]
            if genres is not None:
                tally = Counter(genre for item in events.tolist() for genre in genres[item])
                if tally:
                    top = tally.most_common(1)[0][0]
                    members = np.unique([item for item in events.tolist() if top in genres[item]])
                    own = _own_keys(mixer, model, members).permute(1, 0, 2)  # [H, n, K]
                    directions = torch.linalg.svd(own, full_matrices=False).Vh[:, :top_k]  # [H, r, K]
                    genre_shares.append(_share(directions.transpose(1, 2), S, energy))
                    genre_ranks.append(_percentile(scores, catalogue[top]))
            counts = np.bincount(events, minlength=model.n_items)
            repeated = np.argsort(-counts, kind="stable")[:top_k]
            if counts[repeated[0]] < 2:
                continue
            repeated = repeated[counts[repeated] >= 2]
            q_basis = torch.linalg.qr(_own_keys(mixer, model, repeated).permute(1, 2, 0)).Q  # [H, K, r]
            repeat_shares.append(_share(q_basis, S, energy))
            ranks.append(_percentile(scores, repeated))
    finally:
        del mixer.project
    return {
        "state_share_top_key_directions": float(np.mean(top_shares)) if top_shares else None,
        "random_subspace_share": top_k / mixer.head_dim,
        "state_share_repeated": float(np.mean(repeat_shares)) if repeat_shares else None,
        "repeated_score_percentile": float(np.mean(ranks)) if ranks else None,
        "state_share_top_genre": float(np.mean(genre_shares)) if genre_shares else None,
        "top_genre_score_percentile": float(np.mean(genre_ranks)) if genre_ranks else None,
        "users": len(top_shares),
        "users_with_repeats": len(repeat_shares),
    }


def sink(args: argparse.Namespace) -> int:
    from recsys.data import make_split

    if args.preset:  # real data
        split = prepare_split(build_config(DataConfig, PRESETS[args.preset]["data"]))
        source = args.preset
    else:
        split = make_split(planted_repetition_dataset(args.users, 60, args.length, seed=0), "loo")
        source = "planted repetition + transitions (synthetic)"
    rows = []
    for variant in args.models:
        model_name, options = VARIANTS[variant]
        torch.manual_seed(0)
        config = build_config(TrainConfig, {"epochs": args.epochs, "batch_size": 64, "lr": 3e-3, "patience": 0})
        max_len = PRESETS[args.preset]["max_len"] if args.preset else args.length
        model = build_model(model_name, split.train.n_users, split.train.n_items, {**options, "max_len": max_len})
        result = Trainer(model, split, config, progress=False).fit()
        row = {"data": source, "model": variant, **{m: result.get(m) for m in METRICS}}
        row.update(sink_share(model, split.train, genres=item_genres(split.train)))
        rows.append(row)
        logger.info("%s", row)
    columns = [
        "model",
        "hr@10",
        "ndcg@10",
        "state_share_top_key_directions",
        "random_subspace_share",
        "state_share_repeated",
        "repeated_score_percentile",
        "users_with_repeats",
        "state_share_top_genre",
        "top_genre_score_percentile",
    ]
    print_table(rows, columns, title=f"semantic state sink on {source}")
    payload = {"data": source, "rows": rows, "users": args.users, "length": args.length, "epochs": args.epochs}
    path = write_results(_result_name("sink", args.tag), payload, args.out)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    commands = {"quality": quality, "scaling": scaling, "kernels": kernels, "sink": sink, "softmax": softmax}
    return {**commands, "report": report}[args.kind](args)


if __name__ == "__main__":
    sys.exit(main())
