"""The channel-encoder audit: eight input layers, one causal Transformer, next-step NLL over K quantile bins.

``python -m evals.channel_audit run --benchmark synthetic|etth1 --encoders linear sum ... --channels 4 8 16
--seeds 5 [--epochs N] [--out FILE]`` trains every (encoder, C, seed) with paired seeds, reports the best
validation NLL (synthetic; as the public code) or the test NLL at the best validation epoch (ETTh1), prints the
table with paired t-test and Wilcoxon p-values and effect sizes against a reference encoder, adds the geometric
probe (cosine between positional and channel directions) for ``linear`` and ``linear-ppe``, and writes JSON with
the command, commit, package versions and machine. The uniform-over-K constant (log K) is in every table.

The training loop is written here rather than reusing ``recsys.train``: that Trainer drives ``Recommender``
models with ranking evaluation, while this audit needs per-epoch categorical NLL and a best-epoch pick.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from core.cli import add_verbosity_args, configure_from_args
from core.provenance import environment
from recsys.data.channel_series import ETTH1_SPLITS, ChannelSplit, etth1_benchmark, synthetic_benchmark
from recsys.data.dataset import DataError
from recsys.models.channel_encoders import (
    ENCODERS,
    ChannelTransformer,
    ChannelTransformerConfig,
    EncoderConfigError,
    LinearEncoder,
    next_step_nll,
)

logger = logging.getLogger(__name__)

DEFAULT_ETTH1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ett" / "ETTh1.csv"
# the public code's numbers (best validation NLL, 20 seeds; ETTh1 on its 70/15/15 split)
ANCHOR = {
    ("synthetic", 4): {
        "linear-ppe": 2.114,
        "linear": 2.155,
        "linear-ortho": 2.155,
        "concat": 2.170,
        "mlp": 2.177,
        "cat": 2.348,
        "ci": 3.053,
        "sum": 3.257,
    },
    ("synthetic", 16): {"mlp": 2.231, "linear-ppe": 2.252},
    ("etth1", 7): {
        "cat": 0.551,
        "linear": 0.561,
        "linear-ortho": 0.561,
        "concat": 0.571,
        "linear-ppe": 0.573,
        "mlp": 0.585,
        "ci": 0.865,
        "sum": 3.668,
    },
}


class AuditError(RuntimeError):
    """A run that cannot go ahead (bad option, missing data)."""


# ------------------------------------------------------------------------------------------------ training


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def evaluate_nll(model: ChannelTransformer, x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Mean next-step NLL (nats) and accuracy of the most likely bin over every position of every series."""
    model.eval()
    device = next(model.parameters()).device
    total, correct, count = 0.0, 0, 0
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start : start + batch_size]).to(device)
        yb = torch.from_numpy(y[start : start + batch_size]).to(device)
        logits = model(xb)
        total += float(next_step_nll(logits, yb, reduction="sum"))
        correct += int((logits[:, :-1].argmax(-1) == yb[:, 1:]).sum())
        count += yb[:, 1:].numel()
    return {"nll": total / count, "accuracy": correct / count}


def train_one(
    data: ChannelSplit,
    config: ChannelTransformerConfig,
    seed: int,
    epochs: int,
    batch_size: int = 32,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    clip: float = 1.0,
    eval_every: int = 1,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train one model (AdamW, clip 1.0, cosine to 1 % of lr) and keep the epoch with the best validation NLL.

    ``device``: where the model and batches live ("cpu", or e.g. "cuda" for the full budget).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ChannelTransformer(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(data.train_x) / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    train_x, train_y = torch.from_numpy(data.train_x).to(device), torch.from_numpy(data.train_y).to(device)
    best: dict[str, Any] = {"valid_nll": math.inf}
    history = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in tqdm(
        range(1, epochs + 1), desc=f"{config.encoder} C={config.n_channels} s={seed}", disable=not progress
    ):
        model.train()
        for index in _batches(len(train_x), batch_size, generator):
            index = index.to(device)
            logits = model(train_x[index])
            loss = next_step_nll(logits, train_y[index]) + model.aux_loss()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimiser.step()
            schedule.step()
        if epoch % eval_every and epoch != epochs:
            continue
        valid = evaluate_nll(model, data.valid_x, data.valid_y)
        history.append({"epoch": epoch, "train_loss": float(loss.detach()), "valid_nll": valid["nll"]})
        if valid["nll"] < best["valid_nll"]:
            best = {"valid_nll": valid["nll"], "valid_accuracy": valid["accuracy"], "best_epoch": epoch}
            if data.test_x is not None:
                test = evaluate_nll(model, data.test_x, data.test_y)
                best.update(test_nll=test["nll"], test_accuracy=test["accuracy"])
            if isinstance(model.encoder, LinearEncoder):
                best["probe"] = geometric_probe(model, data.train_x.shape[1])
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        **best,
        "encoder": config.encoder,
        "n_channels": config.n_channels,
        "seed": seed,
        "epochs": epochs,
        "steps": total_steps,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": seconds,
        "seconds_per_step": seconds / total_steps,
        "cpu_seconds_per_step": cpu_seconds / total_steps,
        "history": history,
    }


def step_time(
    encoder: str,
    n_channels: int,
    steps: int = 2,
    warmup: int = 1,
    batch_size: int = 32,
    length: int = 160,
    seed: int = 0,
    dropout: float = 0.1,
) -> dict[str, Any]:
    """CPU seconds per training step (forward, backward, AdamW) of the audit model on random data, after ``warmup``.

    CPU time of this process (``time.process_time``), not wall time: on a shared machine wall time mostly measures
    the other jobs. Run it with one torch thread. ``dropout`` 0.1 is the audit model; 0 shows what PyTorch's CPU
    attention pays for dropout on the attention weights (it then falls back to the unfused path).
    """
    if steps < 1 or warmup < 0:
        raise AuditError(f"--steps: need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    torch.manual_seed(seed)
    model = ChannelTransformer(ChannelTransformerConfig(encoder=encoder, n_channels=n_channels, dropout=dropout))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4)
    x = torch.randn(batch_size, length, n_channels)
    y = torch.randint(0, model.config.n_bins, (batch_size, length))
    times = []
    for _ in range(warmup + steps):
        started = time.process_time()
        loss = next_step_nll(model(x), y) + model.aux_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        times.append(time.process_time() - started)
    hidden = model.encoder.encode(x)
    return {
        "encoder": encoder,
        "n_channels": n_channels,
        "tokens_per_series": int(hidden.shape[1]),
        "sequences_per_batch": int(hidden.shape[0]),
        "cpu_seconds_per_step": float(np.median(times[warmup:])),
        "min_cpu_seconds_per_step": float(min(times[warmup:])),
        "steps_timed": steps,
        "dropout": dropout,
    }


def attention_mask_cost(
    n_channels: int, length: int = 160, batch_size: int = 32, n_heads: int = 4, d_model: int = 64, repeats: int = 3
) -> dict[str, float]:
    """Forward + backward CPU seconds of one attention call at ``cat``'s length T * C: its step-block mask vs causal."""
    tokens = length * n_channels
    shape = (batch_size, n_heads, tokens, d_model // n_heads)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    step_of = torch.arange(tokens) // n_channels
    allowed = step_of.view(-1, 1) >= step_of.view(1, -1)  # True = may attend (SDPA's convention)
    blocked = torch.zeros(tokens, tokens).masked_fill(~allowed, float("-inf"))  # what nn.MultiheadAttention passes

    def timed(**kwargs: Any) -> float:
        best = math.inf
        for _ in range(repeats):
            started = time.process_time()
            torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs).sum().backward()
            best = min(best, time.process_time() - started)
        return best

    return {
        "tokens": tokens,
        "block_mask_cpu_seconds": timed(attn_mask=blocked),
        "causal_cpu_seconds": timed(is_causal=True),
    }


# ------------------------------------------------------------------------------------------------ baselines


def baseline_nlls(data: ChannelSplit, smoothing: float = 1.0) -> dict[str, dict[str, float]]:
    """Model-free next-step NLLs fitted on the training targets only, per evaluated part.

    ``uniform``: log K. ``marginal``: the training bin frequencies (add-``smoothing``). ``markov``: P(bin at t+1 |
    bin at t) from training transitions (add-``smoothing``), the persistence-style baseline a sceptic would try first:
    it sees the current target bin, which the encoders only see through the inputs (on ETTh1, OT is an input).
    """
    n_bins = data.binner.n_bins if data.binner is not None else int(data.train_y.max()) + 1
    marginal = np.bincount(data.train_y.ravel(), minlength=n_bins) + smoothing
    marginal = marginal / marginal.sum()
    transitions = np.full((n_bins, n_bins), smoothing)
    np.add.at(transitions, (data.train_y[:, :-1].ravel(), data.train_y[:, 1:].ravel()), 1.0)
    transitions /= transitions.sum(axis=1, keepdims=True)
    out = {}
    parts = {"valid": data.valid_y, "test": data.test_y}
    for part, y in parts.items():
        if y is None:
            continue
        following = y[:, 1:].ravel()
        out[part] = {
            "uniform": math.log(n_bins),
            "marginal": float(-np.log(marginal[following]).mean()),
            "markov": float(-np.log(transitions[y[:, :-1].ravel(), following]).mean()),
        }
    return out


def bins_leak_report(n_channels: int = 4, n_series: int = 512) -> dict[str, Any]:
    """How much the public code's pooled bins (train + validation series) change the synthetic targets."""
    train_only = synthetic_benchmark(n_channels=n_channels, n_series=n_series)
    pooled = synthetic_benchmark(n_channels=n_channels, n_series=n_series, bins_fit="pooled")
    return {
        "edges_max_abs_diff": float(np.abs(train_only.binner.edges - pooled.binner.edges).max()),
        "valid_targets_changed": float((train_only.valid_y != pooled.valid_y).mean()),
        "train_targets_changed": float((train_only.train_y != pooled.train_y).mean()),
        "baselines_train_bins": baseline_nlls(train_only),
        "baselines_pooled_bins": baseline_nlls(pooled),
    }


# ---------------------------------------------------------------------------------------------------- probe


@torch.no_grad()
def geometric_probe(model: ChannelTransformer, steps: int, variance: float = 0.9) -> dict[str, float]:
    """Cosines between channel directions W_k and the (centred) positional vectors p_t actually added to tokens.

    ``mean_abs_cos``: mean |cos(W_k, p_t)| over channels and steps; ``channel_energy_in_pos_subspace``: share of
    ||W_k||^2 inside the top principal directions of {p_t} that hold ``variance`` of its variance (averaged over
    k); ``pos_effective_rank``: how many such directions. A small cosine / share means channels and positions
    sit in near-orthogonal subspaces (the mechanism proposed for ``linear-ppe``).
    """
    encoder = model.encoder
    if not isinstance(encoder, LinearEncoder):
        raise AuditError(f"geometric probe: {encoder.name} has no per-channel directions")
    positions = encoder.positional(steps)
    positions = positions - positions.mean(dim=0, keepdim=True)
    directions = encoder.channel_directions()
    cos = torch.nn.functional.normalize(directions, dim=1) @ torch.nn.functional.normalize(positions, dim=1).t()
    _, singular, right = torch.linalg.svd(positions, full_matrices=False)
    share = singular.pow(2).cumsum(0) / singular.pow(2).sum()
    rank = int((share < variance).sum()) + 1
    basis = right[:rank]
    energy = (directions @ basis.t()).pow(2).sum(1) / directions.pow(2).sum(1)
    return {
        "mean_abs_cos": float(cos.abs().mean()),
        "max_abs_cos": float(cos.abs().max()),
        "channel_energy_in_pos_subspace": float(energy.mean()),
        "pos_effective_rank": rank,
    }


# ---------------------------------------------------------------------------------------------- statistics


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired statistics of b - a over seeds: mean, paired t-test and Wilcoxon p-values, Cohen's d_z."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape or a_arr.size == 0:
        raise AuditError(f"paired comparison needs equal, non-empty seed lists, got {a_arr.size} and {b_arr.size}")
    diff = b_arr - a_arr
    out: dict[str, Any] = {"n": int(diff.size), "mean_diff": float(diff.mean()), "t_p": None, "wilcoxon_p": None}
    out["d_z"] = float(diff.mean() / diff.std(ddof=1)) if diff.size > 1 and diff.std(ddof=1) > 0 else None
    if diff.size > 1 and np.any(diff != 0):
        out["t_p"] = float(stats.ttest_rel(b_arr, a_arr).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue)
    return out


def summarise(runs: list[dict[str, Any]], metric: str, reference: str, n_bins: int) -> list[dict[str, Any]]:
    """One row per (C, encoder): mean/std of ``metric`` over seeds and paired tests against ``reference``."""
    rows = []
    for channels in sorted({r["n_channels"] for r in runs}):
        by_encoder: dict[str, dict[int, float]] = {}
        for r in runs:
            if r["n_channels"] == channels:
                by_encoder.setdefault(r["encoder"], {})[r["seed"]] = r[metric]
        ref = by_encoder.get(reference, {})
        for encoder, per_seed in sorted(by_encoder.items(), key=lambda kv: np.mean(list(kv[1].values()))):
            values = np.array(list(per_seed.values()))
            row = {
                "C": channels,
                "encoder": encoder,
                "seeds": len(values),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                "uniform": math.log(n_bins),
            }
            shared = sorted(set(per_seed) & set(ref))
            if encoder != reference and shared:
                row["vs"] = reference
                row.update(paired_comparison([ref[s] for s in shared], [per_seed[s] for s in shared]))
            rows.append(row)
    return rows


def gap_by_epoch(runs: list[dict[str, Any]], reference: str = "linear") -> list[dict[str, Any]]:
    """Per (C, encoder, steps): mean over paired seeds of the validation-NLL gap to ``reference`` at every evaluation.

    Shows whether a gap is still opening or closing when a short run ends (runs of one length only are paired).
    """
    groups: dict[tuple[int, int], dict[str, dict[int, list[tuple[int, float]]]]] = {}
    for r in runs:
        curve = [(h["epoch"], h["valid_nll"]) for h in r.get("history", [])]
        groups.setdefault((r["n_channels"], r.get("steps", 0)), {}).setdefault(r["encoder"], {})[r["seed"]] = curve
    rows = []
    for (channels, steps), by_encoder in sorted(groups.items()):
        ref = by_encoder.get(reference, {})
        for encoder, per_seed in sorted(by_encoder.items()):
            shared = [s for s in sorted(set(per_seed) & set(ref)) if per_seed[s] and len(per_seed[s]) == len(ref[s])]
            if encoder == reference or not shared:
                continue
            gaps = np.array([[v - w for (_, v), (_, w) in zip(per_seed[s], ref[s], strict=True)] for s in shared])
            rows.append(
                {
                    "C": channels,
                    "steps": steps,
                    "encoder": encoder,
                    "vs": reference,
                    "seeds": shared,
                    "epochs": [e for e, _ in per_seed[shared[0]]],
                    "mean_gap": [float(g) for g in gaps.mean(0)],
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]], anchor: dict[tuple[str, int], dict[str, float]], benchmark: str) -> str:
    """A fixed-width text table: NLL mean +- std, anchor, paired difference to the reference and its p-values."""

    def num(value: Any, fmt: str = ".3f") -> str:
        return "-" if value is None else format(value, fmt)

    header = (
        f"{'C':>3} {'encoder':<13}{'seeds':>6}{'NLL':>8}{'+-':>7}{'anchor':>8}{'diff':>8}{'t p':>10}{'wilc p':>9}"
        f"{'d_z':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ref = anchor.get((benchmark, row["C"]), {}).get(row["encoder"])
        lines.append(
            f"{row['C']:>3} {row['encoder']:<13}{row['seeds']:>6}{num(row['mean']):>8}{num(row['std']):>7}"
            f"{num(ref):>8}{num(row.get('mean_diff'), '+.3f'):>8}{num(row.get('t_p'), '.2e'):>10}"
            f"{num(row.get('wilcoxon_p'), '.3f'):>9}{num(row.get('d_z'), '+.2f'):>7}"
        )
    if rows:
        lines.append(f"    {'uniform':<13}{'':>6}{rows[0]['uniform']:>8.3f}  (constant: log K)")
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic write (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------ run


def load_benchmark(
    benchmark: str, channels: int, bins_fit: str, split: str, data_path: Path | None, n_series: int = 512
) -> ChannelSplit:
    """The data for one benchmark and channel count."""
    if benchmark == "synthetic":
        return synthetic_benchmark(n_channels=channels, n_series=n_series, bins_fit=bins_fit)
    if benchmark == "etth1":
        return etth1_benchmark(data_path or DEFAULT_ETTH1, split=split)
    raise AuditError(f"benchmark: expected synthetic or etth1, got {benchmark!r}")


def run_audit(
    benchmark: str,
    encoders: Sequence[str],
    channels: Sequence[int],
    seeds: Sequence[int],
    epochs: int,
    bins_fit: str = "train",
    split: str = "standard",
    data_path: Path | None = None,
    n_series: int = 512,
    reference: str = "linear",
    eval_every: int = 1,
    progress: bool = True,
    partial: Path | None = None,
    partial_meta: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train every (C, encoder, seed), summarise with paired tests; ``partial`` gets the runs so far."""
    unknown = [e for e in encoders if e not in ENCODERS]
    if unknown:
        raise AuditError(f"--encoders: unknown {', '.join(unknown)}; choose from {', '.join(ENCODERS)}")
    if benchmark == "etth1":
        channels = [7]
    runs: list[dict[str, Any]] = []
    data_params = {}
    baselines = {}
    for n_channels in channels:
        data = load_benchmark(benchmark, n_channels, bins_fit, split, data_path, n_series)
        data_params[n_channels] = data.params
        baselines[str(n_channels)] = baseline_nlls(data)
        d_model, n_heads = (56, 7) if benchmark == "etth1" else (64, 4)
        for seed in seeds:
            for encoder in encoders:
                config = ChannelTransformerConfig(
                    encoder=encoder, n_channels=data.n_channels, d_model=d_model, n_heads=n_heads
                )
                result = train_one(data, config, seed, epochs, eval_every=eval_every, progress=False, device=device)
                runs.append(result)
                logger.info(
                    "%s C=%d seed=%d: valid NLL %.4f (epoch %d, %.3f s/step)",
                    encoder,
                    n_channels,
                    seed,
                    result["valid_nll"],
                    result["best_epoch"],
                    result["seconds_per_step"],
                )
                if progress:
                    print(
                        f"{encoder:<13} C={n_channels:<3} seed={seed}: valid NLL {result['valid_nll']:.4f} "
                        f"(best epoch {result['best_epoch']}/{epochs}, "
                        f"{result['seconds_per_step'] * 1000:.0f} ms/step)",
                        file=sys.stderr,
                        flush=True,
                    )
                if partial is not None:
                    write_json(partial, {"partial": True, "benchmark": benchmark, **(partial_meta or {}), "runs": runs})
    n_bins = 32
    metric = "test_nll" if benchmark == "etth1" else "valid_nll"
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "metric": metric,
        "reference": reference,
        "protocol": {
            "encoders": list(encoders),
            "channels": list(channels),
            "seeds": list(seeds),
            "epochs": epochs,
            "eval_every": eval_every,
            "device": device,
            "bins_fit": bins_fit,
            "split": split if benchmark == "etth1" else None,
            "model": asdict(ChannelTransformerConfig(n_channels=0))
            | ({"d_model": 56, "n_heads": 7} if benchmark == "etth1" else {}),
            "optimiser": {
                "name": "AdamW",
                "lr": 3e-4,
                "weight_decay": 1e-4,
                "clip": 1.0,
                "schedule": "cosine to 1%",
                "batch_size": 32,
            },
            "data": {str(k): v for k, v in data_params.items()},
        },
        "uniform_nll": math.log(n_bins),
        "baselines": baselines,
        "table": summarise(runs, metric, reference, n_bins),
        "anchor": {f"{b}/C={c}": v for (b, c), v in ANCHOR.items() if b == benchmark},
        "runs": runs,
    }
    if benchmark == "etth1":
        report["table_valid"] = summarise(runs, "valid_nll", reference, n_bins)
    return report


def merge_reports(paths: Sequence[Path], reference: str = "linear", metric: str | None = None) -> dict[str, Any]:
    """Runs of several result files of one benchmark, re-summarised together (seeds pair by their number)."""
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise AuditError(f"{path}: not a readable result file ({exc})") from exc
    runs = [run for r in reports for run in r["runs"]]
    # partial files (written after every run) carry only the runs: ETTh1 runs are the ones with a test set
    benchmarks = {r.get("benchmark") or ("etth1" if "test_nll" in r["runs"][0] else "synthetic") for r in reports}
    if len(benchmarks) != 1:
        raise AuditError(f"report: files mix benchmarks {sorted(map(str, benchmarks))}")
    metric = metric or reports[0].get("metric") or ("test_nll" if "etth1" in benchmarks else "valid_nll")
    return {
        "benchmark": benchmarks.pop(),
        "metric": metric,
        "files": [str(p) for p in paths],
        "table": summarise(runs, metric, reference, 32),
        "gap_by_epoch": gap_by_epoch(runs, reference),
        "sources": [
            {k: r.get(k) for k in ("command", "environment", "protocol", "baselines", "partial") if k in r}
            for r in reports
        ],
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m evals.channel_audit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb")
    run = sub.add_parser("run", help="train and compare encoders (the default verb)")
    run.add_argument("--benchmark", default="synthetic", choices=("synthetic", "etth1"))
    run.add_argument("--encoders", nargs="+", default=list(ENCODERS), help=f"any of {' '.join(ENCODERS)}")
    run.add_argument("--channels", nargs="+", type=int, default=[4], help="C values (synthetic; ETTh1 has 7)")
    run.add_argument("--seeds", type=int, default=5, help="number of paired seeds 0..N-1 (default 5)")
    run.add_argument("--seed-start", type=int, default=0, help="first seed (to add seeds to a run)")
    run.add_argument("--epochs", type=int, default=300, help="epochs per run (public code: 300)")
    run.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (and at the last)")
    run.add_argument("--bins-fit", default="train", choices=("train", "pooled"), help="pooled = public code's leak")
    run.add_argument("--split", default="standard", choices=ETTH1_SPLITS, help="ETTh1: 12/4/4 months or 70/15/15")
    run.add_argument("--n-series", type=int, default=512, help="synthetic: number of series (default 512)")
    run.add_argument("--data", type=Path, help=f"ETTh1 csv (default {DEFAULT_ETTH1})")
    run.add_argument("--reference", default="linear", help="encoder the paired tests compare against")
    run.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    run.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda, cuda:1, ...)")
    run.add_argument("--out", type=Path, help="JSON report path (default channel_audit_<benchmark>.json)")
    add_verbosity_args(run)
    report_parser = sub.add_parser("report", help="merge result JSON files (same benchmark) and print the table")
    report_parser.add_argument("files", nargs="+", type=Path)
    report_parser.add_argument("--reference", default="linear")
    report_parser.add_argument("--metric", help="valid_nll or test_nll (default: the files' metric)")
    report_parser.add_argument("--out", type=Path, help="write the merged table and runs as JSON")
    given = list(sys.argv[1:] if argv is None else argv)
    baselines_parser = sub.add_parser("baselines", help="model-free NLLs (uniform, marginal, markov), bins leak")
    baselines_parser.add_argument("--out", type=Path, help="JSON path")
    argv = given
    if not given or given[0] not in ("run", "report", "baselines", "-h", "--help"):
        argv = ["run", *given]  # the verb is optional: `python -m evals.channel_audit --benchmark ...` runs
    args = parser.parse_args(argv)
    configure_from_args(args, default=logging.WARNING)
    if args.verb == "report":
        try:
            merged = merge_reports(args.files, args.reference, args.metric)
        except AuditError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(format_table(merged["table"], ANCHOR, merged["benchmark"]))
        for row in merged["gap_by_epoch"]:
            gaps = " ".join(f"{g:+.3f}" for g in row["mean_gap"])
            print(f"C={row['C']} {row['encoder']} - {row['vs']} by epoch ({len(row['seeds'])} seeds): {gaps}")
        if args.out:
            merged["command"] = " ".join(["python -m evals.channel_audit", *given])
            merged["environment"] = environment()
            write_json(args.out, merged)
        return 0
    if args.verb == "baselines":
        try:
            payload = {
                "synthetic": {str(c): baseline_nlls(synthetic_benchmark(n_channels=c)) for c in (4, 8, 16)},
                "synthetic_bins_leak": bins_leak_report(),
                "etth1": {sp: baseline_nlls(etth1_benchmark(DEFAULT_ETTH1, split=sp)) for sp in ETTH1_SPLITS},
            }
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        payload["command"] = " ".join(["python -m evals.channel_audit", *given])
        payload["environment"] = environment()
        if args.out:
            write_json(args.out, payload)
        print(json.dumps({k: v for k, v in payload.items() if k != "environment"}, indent=1))
        return 0
    torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        print(f"error: --device {args.device!r}: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device!r}: no CUDA device is available here", file=sys.stderr)
        return 2
    out = args.out or Path(f"channel_audit_{args.benchmark}.json")
    started = time.time()
    provenance = environment(("torch", "numpy", "scipy"))  # at the start: the commit that trained the models
    try:
        report = run_audit(
            args.benchmark,
            args.encoders,
            args.channels,
            list(range(args.seed_start, args.seed_start + args.seeds)),
            args.epochs,
            bins_fit=args.bins_fit,
            split=args.split,
            data_path=args.data,
            n_series=args.n_series,
            reference=args.reference,
            eval_every=args.eval_every,
            progress=not args.quiet,
            partial=out.with_suffix(".partial.json"),
            device=args.device,
            partial_meta={"command": " ".join(["python -m evals.channel_audit", *given]), "environment": provenance},
        )
    except (AuditError, DataError, EncoderConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["command"] = " ".join(["python -m evals.channel_audit", *given])
    report["environment"] = provenance
    report["wall_seconds"] = time.time() - started
    write_json(out, report)
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(format_table(report["table"], ANCHOR, args.benchmark if args.benchmark == "synthetic" else "etth1"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
