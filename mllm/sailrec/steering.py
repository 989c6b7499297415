"""Hierarchical attention steering: an additive bias on the attention logits toward collaborative-token keys.

Registered with transformers' attention interface as ``"sailrec_steered"``: eager attention (softmax(QK^T *
scale + mask)) plus, in layer l, ``bias[l]`` added to the logits of every key position that holds a collaborative
token. The bias is per layer (a depth schedule: negative in shallow layers, positive in deep ones); it is zero
everywhere while no :class:`SteeringState` is active, which makes the function plain eager attention. The same
function records the attention mass that the answer position puts on collaborative tokens, per layer.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

STEERED_ATTENTION = "sailrec_steered"

_ACTIVE: contextvars.ContextVar[SteeringState | None] = contextvars.ContextVar("sailrec_steering", default=None)


def depth_schedule(n_layers: int, shallow: float, deep: float, kind: str = "linear") -> list[float]:
    """Per-layer biases: ``linear`` from ``shallow`` (layer 0) to ``deep`` (last layer); ``step``: ``shallow``
    in the first half, ``deep`` in the second; ``none``: all zero."""
    if kind == "none" or n_layers == 0:
        return [0.0] * n_layers
    if kind == "step":
        return [shallow if layer < n_layers / 2 else deep for layer in range(n_layers)]
    if kind != "linear":
        raise ValueError(f"steering schedule must be linear, step or none; got {kind!r}")
    if n_layers == 1:
        return [deep]
    return [shallow + (deep - shallow) * layer / (n_layers - 1) for layer in range(n_layers)]


@dataclass
class SteeringState:
    """What the attention function needs during one forward pass."""

    layer_bias: list[float]
    key_mask: torch.Tensor | None = None  # [B, T] bool: collaborative-token key positions
    answer_index: torch.Tensor | None = None  # [B] query position whose attention mass is recorded
    record: bool = False
    mass_sum: dict[int, float] = field(default_factory=dict)
    mass_count: dict[int, int] = field(default_factory=dict)
    probabilities: dict[int, torch.Tensor] = field(default_factory=dict)  # kept when keep_probabilities
    keep_probabilities: bool = False

    def mean_mass(self) -> list[float]:
        """Mean attention mass on collaborative keys at the answer position, per layer (0 when unseen)."""
        n_layers = len(self.layer_bias)
        return [self.mass_sum.get(i, 0.0) / max(self.mass_count.get(i, 0), 1) for i in range(n_layers)]


@contextlib.contextmanager
def steering(state: SteeringState) -> Iterator[SteeringState]:
    """Make ``state`` the one the steered attention function reads, for the duration of the block."""
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)


def steered_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention plus the active state's per-layer bias on collaborative key positions."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: share each key/value head across its query heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    logits = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        logits = logits + attention_mask[:, :, :, : key.shape[-2]]
    state = _ACTIVE.get()
    layer = int(getattr(module, "layer_idx", 0))
    if state is not None and state.key_mask is not None:
        bias = state.layer_bias[layer] if layer < len(state.layer_bias) else 0.0
        if bias != 0.0:
            key_bias = state.key_mask[:, None, None, : key.shape[-2]].to(logits.dtype) * bias
            logits = logits + key_bias
    probabilities = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    if state is not None and state.record and state.key_mask is not None and state.answer_index is not None:
        with torch.no_grad():
            rows = torch.arange(probabilities.shape[0], device=probabilities.device)
            at_answer = probabilities[rows, :, state.answer_index, :]  # [B, heads, keys]
            mass = (at_answer * state.key_mask[:, None, : key.shape[-2]].to(at_answer.dtype)).sum(-1).mean(-1)
            state.mass_sum[layer] = state.mass_sum.get(layer, 0.0) + float(mass.sum())
            state.mass_count[layer] = state.mass_count.get(layer, 0) + int(mass.numel())
    if state is not None and state.keep_probabilities:
        state.probabilities[layer] = probabilities.detach().clone()
    probabilities = torch.nn.functional.dropout(probabilities, p=dropout, training=module.training)
    output = torch.matmul(probabilities, value).transpose(1, 2).contiguous()
    return output, probabilities


def install_steered_attention(model: Any) -> None:
    """Register the steered attention function (and eager masks for it) and switch ``model`` to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(STEERED_ATTENTION, steered_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(STEERED_ATTENTION, eager_mask)
    model.set_attn_implementation(STEERED_ATTENTION)
