"""The gated delta rule (Gated DeltaNet, Yang, Kautz & Hatamizadeh, ICLR 2025) in plain PyTorch: the
per-step recurrence, a chunked parallel form for training, one streaming step, and the layer around them.

Notation follows the flash-linear-attention library (``fla/ops/gated_delta_rule/naive.py``, read as a
reference, not copied). For each head and step t, with the state ``S`` of shape [K, V]::

    S <- exp(g_t) * S                        (decay, g_t <= 0)
    u_t = beta_t * (v_t - S^T k_t)           (delta-rule correction of what S already predicts for k_t)
    S <- S + k_t u_t^T                       (write)
    o_t = S^T (scale * q_t)                  (read; scale = K^-1/2 by default)

Shapes: q, k [B, H, T, K], v [B, H, T, V], g and beta [B, H, T]. Computed in float32.

Chunked form (our derivation; the WY-style idea of the DeltaNet papers). Inside a chunk of C steps with
start state S0 and cumulative log-decay G_t = sum_{s<=t} g_s, unrolling gives
``S_t = e^{G_t} S0 + sum_{s<=t} e^{G_t - G_s} k_s u_s^T`` and the corrections solve the unit lower-triangular
system ``(I + A) U = diag(beta) V - diag(beta e^G) K S0`` with ``A[t, s] = beta_t e^{G_t - G_s} k_t.k_s``
for s < t. Outputs are ``O = (e^G * Q) S0 + (tril(Q K^T) * e^{G_t - G_s}) U`` and the next chunk starts from
``S_C = e^{G_C} S0 + (K * e^{G_C - G})^T U``: matrix products inside a chunk, a loop only over chunks.

Kernels. ``GatedDeltaLayer(kernel=...)`` picks who runs the chunked form: ``"torch"`` (the code here, the
default: exact float32 on any device), ``"fla"`` (flash-linear-attention's fused Triton kernel
``fla.ops.gated_delta_rule.chunk_gated_delta_rule``, CUDA only, its own fixed chunk of 64; a ConfigError
when it cannot run) or ``"auto"`` (fla on CUDA tensors when it is installed, ours otherwise). The one-step
streaming update is always ours. ``benchmarks/sequential.py kernels`` checks fla against ours on a GPU.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import ConfigError

logger = logging.getLogger(__name__)

KERNELS = ("torch", "fla", "auto")


@functools.cache
def fla_chunk_kernel() -> Callable | None:
    """fla's ``chunk_gated_delta_rule`` when flash-linear-attention (fla-core) imports here, else None."""
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except Exception as exc:  # not installed, or a Triton that cannot start on this machine
        logger.debug("flash-linear-attention unavailable: %s", exc)
        return None
    return chunk_gated_delta_rule


def fla_for(tensor: torch.Tensor) -> Callable | None:
    """The fla kernel if it can run on ``tensor``'s device (CUDA), else None."""
    return fla_chunk_kernel() if tensor.is_cuda else None


def fla_gated_delta_rule(kernel: Callable, q, k, v, g, beta, initial_state=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Call fla's kernel on our [B, T, H, *] tensors; (o [B, T, H, V] float32, final state [B, H, K, V]).

    q, k, v and beta go in their own dtype (float32 unless the caller autocasts), the log-decay g and the
    state in float32, as fla's own GatedDeltaNet layer does; q and k arrive already L2-normalised.
    """
    o, state = kernel(
        q,
        k,
        v,
        g.float(),
        beta.to(q.dtype),
        initial_state=None if initial_state is None else initial_state.float(),
        output_final_state=True,
    )
    return o.float(), state.float()


def gated_delta_rule_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: q, k [B, H, K], v [B, H, V], g, beta [B, H], state [B, H, K, V] -> (o [B, H, V], state)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state = state * g.float().exp()[..., None, None]
    k = k.float()
    correction = beta.float()[..., None] * (v.float() - torch.einsum("bhk,bhkv->bhv", k, state))
    state = state + k[..., :, None] * correction[..., None, :]
    out = torch.einsum("bhk,bhkv->bhv", q.float() * scale, state)
    return out, state


def recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence step by step (reference and streaming form): (o [B, H, T, V], final state)."""
    batch, heads, length, key_dim = q.shape
    state = (
        torch.zeros(batch, heads, key_dim, v.shape[-1], device=q.device, dtype=torch.float32)
        if initial_state is None
        else initial_state.float()
    )
    outputs = []
    for t in range(length):
        out, state = gated_delta_rule_step(q[:, :, t], k[:, :, t], v[:, :, t], g[:, :, t], beta[:, :, t], state, scale)
        outputs.append(out)
    o = torch.stack(outputs, dim=2) if outputs else v.new_zeros(batch, heads, 0, v.shape[-1]).float()
    return o, state


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked parallel form (see the module docstring): same result as the recurrence, O(T C) work."""
    batch, heads, length, key_dim = q.shape
    value_dim = v.shape[-1]
    scale = key_dim**-0.5 if scale is None else scale
    C = max(1, min(int(chunk_size), length))  # one short sequence is one chunk of its own length: no padding
    pad = (-length) % C
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    if pad:  # padded steps have k = v = 0, beta = 0 and g = 0: they change neither outputs nor state
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g, beta = (F.pad(x, (0, pad)) for x in (g, beta))
    n_chunks = (length + pad) // C
    q = q.reshape(batch, heads, n_chunks, C, key_dim) * scale
    k = k.reshape(batch, heads, n_chunks, C, key_dim)
    v = v.reshape(batch, heads, n_chunks, C, value_dim)
    beta = beta.reshape(batch, heads, n_chunks, C)
    G = g.reshape(batch, heads, n_chunks, C).cumsum(-1)
    inclusive = torch.ones(C, C, device=q.device).tril()
    strict = inclusive.tril(-1)
    # [.., t, s] = exp(G_t - G_s) for s <= t (G falls, so the exponent is <= 0); 0 above the diagonal, where
    # the clamp keeps exp finite and the mask removes it (one exp, no -inf fills)
    decay_incl = (G[..., :, None] - G[..., None, :]).clamp(max=0.0).exp() * inclusive
    decay_strict = decay_incl * strict
    k_beta = k * beta[..., None]
    system = torch.eye(C, device=q.device) + (k_beta @ k.transpose(-1, -2)) * decay_strict
    rhs = torch.cat([v * beta[..., None], k_beta * G.exp()[..., None]], dim=-1)
    solved = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    u_values, u_keys = solved[..., :value_dim], solved[..., value_dim:]  # U = u_values - u_keys @ S0
    attn = (q @ k.transpose(-1, -2)) * decay_incl
    q_decayed = q * G.exp()[..., None]
    k_to_end = k * (G[..., -1:] - G).exp()[..., None]
    state = (
        torch.zeros(batch, heads, key_dim, value_dim, device=q.device, dtype=torch.float32)
        if initial_state is None
        else initial_state.float()
    )
    outputs = []
    for n in range(n_chunks):
        u = u_values[:, :, n] - u_keys[:, :, n] @ state
        outputs.append(q_decayed[:, :, n] @ state + attn[:, :, n] @ u)
        state = G[:, :, n, -1].exp()[..., None, None] * state + k_to_end[:, :, n].transpose(-1, -2) @ u
    o = torch.cat(outputs, dim=2)[:, :, :length] if outputs else v.new_zeros(batch, heads, 0, value_dim)
    return o, state


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension with a learned gain."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class GatedDeltaLayer(nn.Module):
    """A Gated DeltaNet token mixer, as in ``fla/layers/gated_deltanet.py`` (read, not copied).

    q, k, v = SiLU(causal depthwise conv(W x)) (kernel ``conv_size``; 0 disables the conv), q and k
    L2-normalised per head; beta = sigmoid(W_b x); g = -exp(A_log) * softplus(W_a x + dt_bias); output =
    W_o(RMSNorm(o) * SiLU(W_g x)). ``forward`` uses the chunked form, ``step`` the recurrence with a
    constant-size cache (the delta-rule state and the last ``conv_size - 1`` projected inputs).
    SinkRec reuses ``project``, ``gate_inputs`` and ``output`` to modify gates and readout.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        head_dim: int | None = None,
        conv_size: int = 4,
        chunk_size: int = 64,
        kernel: str = "torch",
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
        self.kernel = kernel
        self.n_heads = n_heads
        self.head_dim = head_dim or dim // n_heads
        self.chunk_size = chunk_size
        inner = n_heads * self.head_dim
        self.qkv_proj = nn.Linear(dim, 3 * inner, bias=False)
        self.conv_size = int(conv_size)
        if self.conv_size > 0:
            self.conv_weight = nn.Parameter(torch.empty(3 * inner, 1, self.conv_size))
            nn.init.kaiming_uniform_(self.conv_weight, a=math.sqrt(5))
        self.a_proj = nn.Linear(dim, n_heads, bias=False)
        self.b_proj = nn.Linear(dim, n_heads, bias=False)
        # decay rates A in [1, 16] and time steps dt in [1e-3, 1e-1] (the Mamba-2 / GDN initialisation)
        self.A_log = nn.Parameter(torch.log(torch.empty(n_heads).uniform_(1, 16)))
        dt = torch.exp(torch.rand(n_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.gate_proj = nn.Linear(dim, inner, bias=False)
        self.norm = RMSNorm(self.head_dim)
        self.o_proj = nn.Linear(inner, dim, bias=False)

    # -- pieces -----------------------------------------------------------------------------------
    def project(self, x: torch.Tensor, conv_cache: torch.Tensor | None = None):
        """q, k, v as [B, T, H, d] (q, k normalised) and the new conv cache (streaming only)."""
        batch, length, _ = x.shape
        qkv = self.qkv_proj(x)
        new_cache = None
        if self.conv_size > 0:
            weight = self.conv_weight
            if conv_cache is None:  # batch: causal depthwise conv over the time axis
                qkv = F.conv1d(F.pad(qkv.transpose(1, 2), (self.conv_size - 1, 0)), weight, groups=weight.shape[0])
                qkv = qkv.transpose(1, 2)
            else:  # one step: conv over the cache of the last conv_size - 1 inputs and this one
                window = torch.cat([conv_cache, qkv], dim=1)  # [B, conv_size, C]
                new_cache = window[:, 1:]
                qkv = torch.einsum("bjc,cj->bc", window, weight[:, 0]).unsqueeze(1)
        qkv = F.silu(qkv).view(batch, length, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.unbind(2)
        return F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, new_cache

    def gate_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-activations of the decay and the write strength: (a [B, T, H], b [B, T, H])."""
        return self.a_proj(x), self.b_proj(x)

    def gates(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-decay g <= 0, write strength beta in (0, 1)) from the pre-activations."""
        g = -self.A_log.float().exp() * F.softplus(a.float() + self.dt_bias)
        return g, torch.sigmoid(b.float())

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Gated RMSNorm and the output projection; o is [B, T, H, V]."""
        batch, length = o.shape[:2]
        gate = F.silu(self.gate_proj(x)).view(batch, length, self.n_heads, self.head_dim)
        return self.o_proj((self.norm(o.to(x.dtype)) * gate).reshape(batch, length, -1))

    def mix(self, q, k, v, g, beta, state=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the rule on [B, T, H, *] tensors: chunked for several steps, one recurrent step otherwise."""
        args = [t.transpose(1, 2) for t in (q, k, v, g, beta)]
        if q.shape[1] == 1 and state is not None:
            o, state = gated_delta_rule_step(*(t[:, :, 0] for t in args), state)
            return o.unsqueeze(1), state
        fused = self.fused_kernel(q)
        if fused is not None:
            return fla_gated_delta_rule(fused, q, k, v, g, beta, initial_state=state)
        o, state = chunk_gated_delta_rule(*args, initial_state=state, chunk_size=self.chunk_size)
        return o.transpose(1, 2), state

    def fused_kernel(self, x: torch.Tensor) -> Callable | None:
        """fla's kernel when ``kernel`` asks for it and it can run on x's device; None means ours."""
        if self.kernel == "torch":
            return None
        fused = fla_for(x)
        if fused is None and self.kernel == "fla":
            reason = (
                f"the tensors are on {x.device.type}, and fla's Triton kernels need CUDA"
                if not x.is_cuda
                else "flash-linear-attention is not installed here (pip install fla-core)"
            )
            raise ConfigError(f"kernel='fla': {reason}; use kernel='auto' to fall back to the PyTorch kernel")
        return fused

    # -- plain Gated DeltaNet ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, _ = self.project(x)
        g, beta = self.gates(*self.gate_inputs(x))
        o, _ = self.mix(q, k, v, g, beta)
        return self.output(o, x)

    def init_cache(self, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Empty streaming cache: state [B, H, K, V] and conv inputs [B, conv_size - 1, 3 H d]."""
        cache = {"state": torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, device=device)}
        if self.conv_size > 0:
            cache["conv"] = torch.zeros(batch_size, self.conv_size - 1, self.conv_weight.shape[0], device=device)
        return cache

    def step(self, x: torch.Tensor, cache: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One token per row (x [B, 1, D]) with the recurrent form; returns (output [B, 1, D], new cache)."""
        q, k, v, conv = self.project(x, cache.get("conv"))
        g, beta = self.gates(*self.gate_inputs(x))
        o, state = self.mix(q, k, v, g, beta, cache["state"])
        new = {"state": state}
        if conv is not None:
            new["conv"] = conv
        return self.output(o, x), new
