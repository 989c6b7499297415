"""`python benchmarks/sequential.py scaling`: step time, latency and memory against sequence length."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import print_table, write_results
from benchmarks.sequential_common import (
    VARIANTS,
    _result_name,
    logger,
)
from recsys.models import build_model
from recsys.models.sequential import StreamingScorer


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
