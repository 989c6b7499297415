"""Eight input layers that embed C simultaneous scalar channels for a Transformer, and the small causal model.

Every encoder maps ``x: (B, T, C)`` to the token sequence the backbone attends over, and back:

- ``encode(x) -> (B', L, d_model)`` the tokens (``B' = B`` and ``L = T`` for the six "one token per step" encoders);
- ``attention_mask(T) -> (L, L)`` bool, True where attention is blocked (causal in time);
- ``readout(h, batch, steps) -> (B, T, readout_dim)`` one vector per time step for the head;
- ``aux_loss()`` an extra training loss (only ``linear-ortho`` has one).

Names follow the channel-encoder audit (arXiv 2606.04752): ``sum`` (shared scalar projection), ``linear``
(``nn.Linear(C, d_model)``), ``linear-ortho`` (plus ``lambda * sum_{i<j} (W_i . W_j)^2``), ``mlp`` (two-layer
GELU stem), ``concat`` (block-partitioned per-channel projections), ``ci`` (channel-independent, PatchTST-style:
one shared Transformer per channel, concatenated at the head), ``cat`` (channel-as-token: C tokens per step,
bidirectional within a step, mean-pooled) and ``linear-ppe`` (``linear`` plus the sinusoidal positional encoding
passed through a learned ``nn.Linear(d_model, d_model)``). ``ChannelTransformer`` is the shared causal pre-LN
backbone with a categorical head over K quantile bins (the paper's NLL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evals.metrics import MetricError

__all__ = [
    "ENCODERS",
    "ChannelEncoder",
    "ChannelTransformer",
    "ChannelTransformerConfig",
    "EncoderConfigError",
    "build_channel_encoder",
    "next_step_nll",
    "sinusoidal_positions",
]


class EncoderConfigError(ValueError):
    """An encoder name or size that cannot be built (the message names the field)."""


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed sinusoidal positional encoding (Vaswani et al. 2017, section 3.5) as a (max_len, d_model) table."""
    if d_model % 2:
        raise EncoderConfigError(f"d_model: the sinusoidal encoding needs an even width, got {d_model}")
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    inverse_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * inverse_freq)
    table[:, 1::2] = torch.cos(position * inverse_freq)
    return table


def causal_mask(steps: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) bool mask, True above the diagonal (a step never attends to a later one)."""
    return torch.triu(torch.ones(steps, steps, dtype=torch.bool, device=device), diagonal=1)


class ChannelEncoder(nn.Module):
    """Base class: one token per step, sinusoidal positions added, a standard causal mask, identity readout."""

    name = "base"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024) -> None:
        super().__init__()
        if n_channels < 1:
            raise EncoderConfigError(f"n_channels: must be >= 1, got {n_channels}")
        self.n_channels = n_channels
        self.d_model = d_model
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)

    @property
    def readout_dim(self) -> int:
        """Width of the per-step vector the head reads."""
        return self.d_model

    def positional(self, steps: int) -> torch.Tensor:
        """The (T, d_model) positional term added to every token of a step."""
        if steps > self.positions.shape[0]:
            raise EncoderConfigError(f"T: {steps} steps exceed max_len {self.positions.shape[0]}")
        return self.positions[:steps]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The channel term: (B, T, C) -> (B, T, d_model)."""
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.n_channels:
            raise EncoderConfigError(
                f"x: expected (batch, steps, {self.n_channels}) for {self.name}, got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens for the backbone: (B, T, C) -> (B, T, d_model)."""
        self._check(x)
        return self.embed(x) + self.positional(x.shape[1])

    def attention_mask(self, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """Which tokens may not attend to which (True = blocked)."""
        return causal_mask(steps, device)

    def readout(self, hidden: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        """Backbone output -> (B, T, readout_dim)."""
        return hidden

    def aux_loss(self) -> torch.Tensor:
        """Extra training loss of the encoder (zero unless it regularises itself)."""
        return self.positions.new_zeros(())


class SharedScalarEncoder(ChannelEncoder):
    """``sum``: every channel through the same ``w`` plus a per-channel constant, summed; sees only sum_k x_k."""

    name = "sum"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024) -> None:
        super().__init__(n_channels, d_model, max_len)
        self.proj = nn.Linear(1, d_model, bias=False)
        self.channel_embedding = nn.Embedding(n_channels, d_model)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """sum_k (w x_k + e_k) = w sum_k x_k + sum_k e_k: channel identity is lost by construction."""
        return self.proj(x.unsqueeze(-1)).sum(dim=2) + self.channel_embedding.weight.sum(dim=0)


class LinearEncoder(ChannelEncoder):
    """``linear``: ``nn.Linear(C, d_model)``, one direction W_k per channel; ``ortho_lambda > 0``: ``linear-ortho``."""

    name = "linear"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024, ortho_lambda: float = 0.0) -> None:
        super().__init__(n_channels, d_model, max_len)
        self.proj = nn.Linear(n_channels, d_model)
        self.ortho_lambda = float(ortho_lambda)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """sum_k x_k W_k + b."""
        return self.proj(x)

    def channel_directions(self) -> torch.Tensor:
        """(C, d_model): row k is channel k's direction W_k."""
        return self.proj.weight.t()

    def aux_loss(self) -> torch.Tensor:
        """lambda * sum_{i<j} (W_i . W_j)^2, the soft orthogonality penalty of ``linear-ortho``."""
        if self.ortho_lambda == 0.0:
            return super().aux_loss()
        directions = self.channel_directions()
        gram = directions @ directions.t()
        off_diagonal = gram - torch.diag_embed(torch.diagonal(gram))
        return self.ortho_lambda * off_diagonal.pow(2).sum() / 2


class ProjectedPositionEncoder(LinearEncoder):
    """``linear-ppe``: ``linear`` plus P W_p, the sinusoidal table through a learned linear map (no bias)."""

    name = "linear-ppe"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024) -> None:
        super().__init__(n_channels, d_model, max_len)
        self.position_proj = nn.Linear(d_model, d_model, bias=False)

    def positional(self, steps: int) -> torch.Tensor:
        """The projected positional term P[:T] W_p^T."""
        return self.position_proj(super().positional(steps))


class MLPEncoder(ChannelEncoder):
    """``mlp``: Linear(C, hidden) -> GELU -> Linear(hidden, d_model) on the channel vector of each step."""

    name = "mlp"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024, hidden: int | None = None) -> None:
        super().__init__(n_channels, d_model, max_len)
        hidden = hidden or d_model
        self.stem = nn.Sequential(nn.Linear(n_channels, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """A nonlinear stem over the C values of a step."""
        return self.stem(x)


class BlockConcatEncoder(ChannelEncoder):
    """``concat``: channel k owns dims [k d/C, (k+1) d/C) and writes x_k w_k + b_k there (block partition)."""

    name = "concat"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024) -> None:
        super().__init__(n_channels, d_model, max_len)
        if d_model % n_channels:
            raise EncoderConfigError(f"d_model: concat needs d_model divisible by C, got {d_model} and C={n_channels}")
        self.block = d_model // n_channels
        self.weight = nn.Parameter(torch.randn(n_channels, self.block) / math.sqrt(self.block))
        self.bias = nn.Parameter(torch.zeros(n_channels, self.block))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the C per-channel blocks."""
        blocks = x.unsqueeze(-1) * self.weight + self.bias
        return blocks.flatten(start_dim=2)


class ChannelIndependentEncoder(ChannelEncoder):
    """``ci``: each channel is its own sequence through the shared backbone; the head reads all C states."""

    name = "ci"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024) -> None:
        super().__init__(n_channels, d_model, max_len)
        self.proj = nn.Linear(1, d_model)

    @property
    def readout_dim(self) -> int:
        """C * d_model: the C per-channel states side by side."""
        return self.n_channels * self.d_model

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B * C, T, d_model); channels never meet before the head."""
        self._check(x)
        batch, steps, channels = x.shape
        series = x.permute(0, 2, 1).reshape(batch * channels, steps, 1)
        return self.proj(series) + self.positional(steps)

    def readout(self, hidden: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        """(B * C, T, d) -> (B, T, C * d)."""
        hidden = hidden.reshape(batch, self.n_channels, steps, self.d_model).permute(0, 2, 1, 3)
        return hidden.reshape(batch, steps, self.readout_dim)


class ChannelAsTokenEncoder(ChannelEncoder):
    """``cat``: one token per (step, channel) = w x_k + e_k + p_t; causal in time, bidirectional within a step."""

    name = "cat"

    def __init__(self, n_channels: int, d_model: int, max_len: int = 1024) -> None:
        super().__init__(n_channels, d_model, max_len)
        self.proj = nn.Linear(1, d_model)
        self.channel_embedding = nn.Embedding(n_channels, d_model)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T * C, d_model), ordered (t0, k0), (t0, k1), ..."""
        self._check(x)
        batch, steps, channels = x.shape
        tokens = self.proj(x.unsqueeze(-1)) + self.channel_embedding.weight + self.positional(steps).unsqueeze(1)
        return tokens.reshape(batch, steps * channels, self.d_model)

    def attention_mask(self, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """Token (t, k) sees every (t', k') with t' <= t."""
        step_of = torch.arange(steps * self.n_channels, device=device) // self.n_channels
        return step_of.view(1, -1) > step_of.view(-1, 1)

    def readout(self, hidden: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        """Mean over the C tokens of each step."""
        return hidden.reshape(batch, steps, self.n_channels, self.d_model).mean(dim=2)


ENCODERS: dict[str, type[ChannelEncoder]] = {
    "sum": SharedScalarEncoder,
    "linear": LinearEncoder,
    "linear-ortho": LinearEncoder,
    "mlp": MLPEncoder,
    "concat": BlockConcatEncoder,
    "ci": ChannelIndependentEncoder,
    "cat": ChannelAsTokenEncoder,
    "linear-ppe": ProjectedPositionEncoder,
}


def build_channel_encoder(
    name: str, n_channels: int, d_model: int, max_len: int = 1024, ortho_lambda: float = 1e-2
) -> ChannelEncoder:
    """An encoder by its audit name (``ENCODERS``); ``ortho_lambda`` only affects ``linear-ortho``."""
    if name not in ENCODERS:
        raise EncoderConfigError(f"encoder: unknown name {name!r}; choose from {', '.join(ENCODERS)}")
    if name == "linear-ortho":
        encoder = LinearEncoder(n_channels, d_model, max_len, ortho_lambda=ortho_lambda)
    else:
        encoder = ENCODERS[name](n_channels, d_model, max_len)
    encoder.name = name
    return encoder


@dataclass
class ChannelTransformerConfig:
    """The public code's synthetic settings (ETTh1 uses d_model 56 and 7 heads)."""

    encoder: str = "linear"
    n_channels: int = 4
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 3
    d_ff: int = 256
    n_bins: int = 32
    dropout: float = 0.1
    max_len: int = 1024
    ortho_lambda: float = 1e-2


class ChannelTransformer(nn.Module):
    """Causal pre-LN Transformer (GELU) over encoded channels, with a categorical head over K bins."""

    def __init__(self, config: ChannelTransformerConfig) -> None:
        super().__init__()
        if config.d_model % config.n_heads:
            raise EncoderConfigError(f"n_heads: {config.n_heads} does not divide d_model {config.d_model}")
        self.config = config
        self.encoder = build_channel_encoder(
            config.encoder, config.n_channels, config.d_model, config.max_len, config.ortho_lambda
        )
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=config.d_model,
                nhead=config.n_heads,
                dim_feedforward=config.d_ff,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(self.encoder.readout_dim, config.n_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> logits (B, T, K); position t has seen x_{<=t} only."""
        batch, steps, _ = x.shape
        hidden = self.encoder.encode(x)
        mask = self.encoder.attention_mask(steps, x.device)
        for layer in self.layers:
            hidden = layer(hidden, src_mask=mask)
        hidden = self.norm(hidden)
        return self.head(self.encoder.readout(hidden, batch, steps))

    def aux_loss(self) -> torch.Tensor:
        """The encoder's regulariser (zero for all but ``linear-ortho``)."""
        return self.encoder.aux_loss()


def next_step_nll(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Categorical NLL of the bin at t + 1 from the logits at t: logits (B, T, K), targets (B, T) int."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise MetricError(f"targets: expected shape {tuple(logits.shape[:2])}, got {tuple(targets.shape)}")
    prediction = logits[:, :-1].reshape(-1, logits.shape[-1])
    return F.cross_entropy(prediction, targets[:, 1:].reshape(-1), reduction=reduction)
