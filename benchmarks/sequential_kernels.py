"""`python benchmarks/sequential.py kernels`: fla's fused delta-rule kernel against ours."""

from __future__ import annotations

import argparse
import functools
from typing import Any

import torch

from benchmarks.common import print_table, write_results
from benchmarks.sequential_common import (
    _result_name,
    logger,
)
from benchmarks.sequential_scaling import _timed
from recsys.models.delta_rule import chunk_gated_delta_rule, fla_chunk_kernel, fla_gated_delta_rule


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
