"""`benchmarks/sequential.py kernels` and `scaling --kernel`: the pieces that run without a GPU."""

from __future__ import annotations

import functools
import json
import logging

import torch
import torch.nn.functional as F
from synthetic import fla_contract_stand_in

from benchmarks import sequential, sequential_kernels
from recsys.models.delta_rule import fla_gated_delta_rule


def test_kernels_without_gpu_or_fla_says_why_and_fails(monkeypatch, caplog):
    monkeypatch.setattr(sequential_kernels, "fla_chunk_kernel", lambda: None)
    with caplog.at_level(logging.ERROR, logger="benchmarks.sequential"):
        assert sequential.main(["kernels", "--lengths", "64"]) == 2
    assert "needs a CUDA GPU and flash-linear-attention" in caplog.text
    assert "fla not importable" in caplog.text


def test_kernel_comparison_finds_equal_kernels_equal_and_times_them():
    gen = torch.Generator().manual_seed(0)
    shape = (2, 70, 2, 8)
    q, k = (F.normalize(torch.randn(*shape, generator=gen), dim=-1) for _ in "qk")
    inputs = [
        t.requires_grad_()
        for t in (q, k, torch.randn(*shape, generator=gen), -torch.rand(2, 70, 2, generator=gen), torch.rand(2, 70, 2))
    ]
    ours = sequential._kernel_run(sequential._ours_fla_layout, inputs, repeats=1)
    theirs = sequential._kernel_run(functools.partial(fla_gated_delta_rule, fla_contract_stand_in), inputs, repeats=1)
    assert sequential._relative_error(ours[0], theirs[0]) < 1e-5
    assert sequential._relative_error(ours[1], theirs[1]) < 1e-5
    assert len(ours[2]) == 5 and all(g.abs().sum() > 0 for g in ours[2])
    assert max(sequential._relative_error(a, b) for a, b in zip(ours[2], theirs[2], strict=True)) < 1e-4
    assert ours[3] > 0 and theirs[3] > 0
    assert sequential._relative_error(ours[0], ours[0] * 1.01) > 5e-3  # the measure does see a difference


def test_scaling_records_the_kernel_of_the_linear_models(tmp_path):
    out = tmp_path / "scaling.json"
    argv = ["scaling", "--lengths", "20", "--models", "sasrec", "gdn", "--batch-size", "2", "--n-items", "50"]
    assert sequential.main([*argv, "--repeats", "1", "--kernel", "auto", "--out", str(out)]) == 0
    rows = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["gdn"]["kernel"] == "auto" and "kernel" not in rows["sasrec"]
    assert rows["gdn"]["train_step_s"] > 0 and rows["gdn"]["train_ratio_vs_sasrec"] > 0
    assert out.with_suffix(".png").stat().st_size > 0
