"""GDN: a Gated DeltaNet next-item recommender without memory (the linear-time baseline of SinkRec).

Item embeddings pass through ``n_layers`` pre-norm blocks of a Gated DeltaNet token mixer (see
recsys.models.delta_rule: chunked parallel form in training, recurrent form for streaming) and a
feed-forward net, then a final LayerNorm; score = <hidden_t, E[j]> with tied item embeddings. No position
embeddings: the recurrence orders the events, so any sequence length runs (linear time, constant state).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.delta_rule import GatedDeltaLayer
from recsys.models.sequential import PAD, SequentialRecommender


@dataclasses.dataclass
class GDNConfig:
    """GDN hyper-parameters (sized to train on ml-100k in minutes on a CPU)."""

    hidden_dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    conv_size: int = 4  # short causal conv on q, k, v (fla's default); 0 disables
    ffn_mult: int = 2
    dropout: float = 0.2
    chunk_size: int = 64
    # who runs the chunked delta rule: "torch" (ours), "fla" (flash-linear-attention's fused kernel, CUDA
    # only) or "auto" (fla when it can run, ours otherwise); see recsys.models.delta_rule
    kernel: str = "torch"
    max_len: int = 50
    loss: str = "ce"
    n_neg: int = 1
    similarity: str = "dot"  # dot | cosine (query and items L2-normalised, divided by temperature)
    temperature: float = 1.0
    train_windows: str = "all"
    time_unit: float = 86400.0  # unused by GDN (SinkRec's temporal gates read it)

    def __post_init__(self) -> None:
        validate_fields(self)


class FeedForward(nn.Module):
    """Pre-norm two-layer GELU net."""

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("gdn")
class GDNRec(SequentialRecommender):
    """hidden = blocks(E[i_1..t]) with x <- x + GDN(LN(x)), x <- x + FFN(x); score = <hidden_t, E[j]>."""

    Config = GDNConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 128, "epochs": 200, "patience": 10}

    def __init__(self, config: GDNConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        dim = config.hidden_dim
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        self.dropout = nn.Dropout(config.dropout)
        self.mixer_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(config.n_layers))
        self.mixers = nn.ModuleList(
            GatedDeltaLayer(
                dim, config.n_heads, conv_size=config.conv_size, chunk_size=config.chunk_size, kernel=config.kernel
            )
            for _ in range(config.n_layers)
        )
        self.ffns = nn.ModuleList(FeedForward(dim, config.ffn_mult, config.dropout) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_embedding.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def encode(self, items: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(self.item_embedding(items))
        for norm, mixer, ffn in zip(self.mixer_norms, self.mixers, self.ffns, strict=True):
            x = x + self.dropout(mixer(norm(x)))
            x = x + self.dropout(ffn(x))
        return self.final_norm(x), x.new_zeros(())

    def stream_init(self, batch_size: int = 1) -> list[dict[str, torch.Tensor]]:
        device = self.item_embedding.weight.device
        return [mixer.init_cache(batch_size, device) for mixer in self.mixers]

    def stream_step(self, state, items: torch.Tensor, gaps: torch.Tensor):
        x = self.item_embedding(items).unsqueeze(1)
        new_state = []
        for norm, mixer, ffn, cache in zip(self.mixer_norms, self.mixers, self.ffns, state, strict=True):
            out, cache = mixer.step(norm(x), cache)
            new_state.append(cache)
            x = x + out
            x = x + ffn(x)
        return self.final_norm(x)[:, 0], new_state
