"""The kernel switch of the gated delta rule: ours (PyTorch), fla's fused Triton kernel, or auto."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from synthetic import fla_contract_stand_in

from recsys.config import ConfigError
from recsys.models import build_model, delta_rule
from recsys.models.delta_rule import (
    GatedDeltaLayer,
    chunk_gated_delta_rule,
    fla_chunk_kernel,
    fla_gated_delta_rule,
)

SMALL = {
    "gdn": {"hidden_dim": 16, "max_len": 80, "chunk_size": 16},
    "sinkrec": {"hidden_dim": 16, "max_len": 80, "chunk_size": 16, "codebook_size": 16, "memory_window": 4},
}


def _encode(name: str, kernel: str, items: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(name, 3, 30, {**SMALL[name], "kernel": kernel}).eval()
    return model.encode(items, gaps)[0]


def _batch(length: int = 70):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(1, 31, (2, length), generator=gen), torch.rand(2, length, generator=gen)


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel must be one of torch, fla, auto; got 'triton'"):
        GatedDeltaLayer(16, 2, kernel="triton")
    with pytest.raises(ConfigError, match="sinkrec: kernel must be one of"):
        build_model("sinkrec", 3, 30, {**SMALL["sinkrec"], "kernel": "cuda"})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fla_kernel_on_cpu_tensors_is_one_clear_error(name):
    items, gaps = _batch()
    with pytest.raises(ConfigError, match=r"kernel='fla': the tensors are on cpu.*need CUDA.*kernel='auto'"):
        _encode(name, "fla", items, gaps)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_auto_kernel_off_cuda_is_ours_exactly(name):
    items, gaps = _batch()
    assert torch.equal(_encode(name, "auto", items, gaps), _encode(name, "torch", items, gaps))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fla_adapter_feeds_fla_layout_and_returns_ours(name, monkeypatch):
    """What reaches fla and what comes back: the model with the (stand-in) fused kernel equals ours."""
    calls = []

    def contract(*args, **kwargs):
        calls.append(args[0].shape)
        return fla_contract_stand_in(*args, **kwargs)

    monkeypatch.setattr(delta_rule, "fla_for", lambda tensor: contract)
    items, gaps = _batch()
    fused = _encode(name, "fla", items, gaps)
    monkeypatch.undo()
    assert calls and all(shape[:2] == (2, 70) for shape in calls)  # every mixer call went to the kernel
    assert torch.allclose(fused, _encode(name, "torch", items, gaps), atol=1e-5)


def test_fla_adapter_carries_the_state_across_calls(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    q, k = (F.normalize(torch.randn(2, 50, 3, 8, generator=gen), dim=-1) for _ in range(2))
    v = torch.randn(2, 50, 3, 5, generator=gen)
    g, beta = -torch.rand(2, 50, 3, generator=gen), torch.rand(2, 50, 3, generator=gen)
    start = torch.randn(2, 3, 8, 5, generator=gen)
    o, state = fla_gated_delta_rule(fla_contract_stand_in, q, k, v, g, beta, initial_state=start)
    ours, our_state = chunk_gated_delta_rule(*(t.transpose(1, 2) for t in (q, k, v, g, beta)), initial_state=start)
    assert o.shape == (2, 50, 3, 5) and o.dtype == torch.float32
    assert torch.allclose(o, ours.transpose(1, 2), atol=1e-5)
    assert torch.allclose(state, our_state, atol=1e-5)


@pytest.mark.skipif(
    not torch.cuda.is_available() or fla_chunk_kernel() is None,
    reason="needs a CUDA GPU and flash-linear-attention (pip install fla-core)",
)
def test_fla_kernel_equals_ours_on_a_gpu():
    for length in (50, 200, 1000):
        _check_fla_against_ours(length)


def _check_fla_against_ours(length: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (4, length, 2, 32)
    q, k = (F.normalize(torch.randn(*shape, device="cuda", generator=gen), dim=-1) for _ in range(2))
    v = torch.randn(*shape, device="cuda", generator=gen)
    g = F.logsigmoid(torch.randn(*shape[:3], device="cuda", generator=gen))
    beta = torch.rand(*shape[:3], device="cuda", generator=gen)
    tensors = [t.requires_grad_() for t in (q, k, v, g, beta)]
    o, state = fla_gated_delta_rule(fla_chunk_kernel(), *tensors)
    (o.square().sum() + state.sum()).backward()
    fla_grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    ours, our_state = chunk_gated_delta_rule(*(t.transpose(1, 2) for t in tensors))
    (ours.square().sum() + our_state.sum()).backward()
    assert torch.allclose(o, ours.transpose(1, 2), atol=2e-3, rtol=2e-3)
    assert torch.allclose(state, our_state, atol=2e-3, rtol=2e-3)
    for theirs, t in zip(fla_grads, tensors, strict=True):
        assert torch.allclose(theirs, t.grad, atol=1e-2, rtol=1e-2)
