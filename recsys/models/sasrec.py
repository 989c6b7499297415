"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), full-ranking version.

Causal self-attention over the item sequence with learned absolute positions, point-wise feed-forward
blocks, and tied input/output item embeddings. Defaults are the paper's: 2 blocks, 1 head, hidden 50,
dropout 0.2 (its ML-1M setting; 0.5 for the sparse Amazon sets), lr 1e-3, batch 128, max length 50
(200 for ML-1M). The paper trains with BCE on one sampled negative per position (``loss="bce"``); our
default ``loss="ce"`` is the full softmax over all items, as RecBole (whose ML-1M table is our anchor).
Positions count from the oldest kept event (we right-pad; see recsys.models.sequential).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.sequential import PAD, SequentialRecommender


@dataclasses.dataclass
class SASRecConfig:
    """SASRec hyper-parameters (paper defaults)."""

    hidden_dim: int = 50
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    # ce (softmax over all items) | bce (paper: 1 negative per position) | bpr | sampled_softmax (n_neg)
    loss: str = "ce"
    n_neg: int = 1
    similarity: str = "dot"  # dot | cosine (query and items L2-normalised, divided by temperature)
    temperature: float = 1.0
    train_windows: str = "all"  # all windows of each long sequence, or "last" (SASRec reference code)
    time_unit: float = 86400.0  # unused by SASRec; kept so every sequential model reads the same data

    def __post_init__(self) -> None:
        validate_fields(self)


class SASRecBlock(nn.Module):
    """Pre-norm causal multi-head attention and a point-wise two-layer feed-forward net, each residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + self.dropout(self.attn(h, h, h, attn_mask=causal, need_weights=False)[0])
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


@register("sasrec")
class SASRec(SequentialRecommender):
    """hidden_t = Transformer(E[i_1..t] * sqrt(d) + P[1..t]) under a causal mask; score = <hidden_t, E[j]>."""

    Config = SASRecConfig
    prefers_bf16 = True
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 128, "epochs": 200, "patience": 10}

    def __init__(self, config: SASRecConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        dim = config.hidden_dim
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        self.position_embedding = nn.Embedding(config.max_len, dim)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(dim, config.n_heads, config.dropout) for _ in range(config.n_blocks))
        self.final_norm = nn.LayerNorm(dim, eps=1e-8)
        nn.init.normal_(self.item_embedding.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def encode(self, items: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = items.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sasrec: sequence of length {length} exceeds max_len {self.config.max_len}")
        positions = torch.arange(length, device=items.device)
        x = self.item_embedding(items) * math.sqrt(self.config.hidden_dim) + self.position_embedding(positions)
        x = self.embedding_dropout(x)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).triu(1)  # True = masked
        for block in self.blocks:
            x = block(x, causal)
        return self.final_norm(x), x.new_zeros(())
