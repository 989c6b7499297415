"""`python benchmarks/sequential.py softmax`: the full-softmax loss, plain against blocked."""

from __future__ import annotations

import argparse
import functools
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import print_table, write_results
from benchmarks.sequential_common import (
    _result_name,
    logger,
)
from benchmarks.sequential_kernels import _relative_error
from benchmarks.sequential_scaling import _timed
from recsys.models.losses import linear_cross_entropy


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
