"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016).

The classic RNN baseline in the form RecBole benchmarks it (our ML-1M anchor): item embedding 64,
dropout 0.3, one GRU layer of 128 units, a linear map back to the embedding size, softmax (CE) over all
items with tied item embeddings. The GRU state is constant-size, so it streams too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.sequential import PAD, SequentialRecommender


@dataclasses.dataclass
class GRU4RecConfig:
    """GRU4Rec hyper-parameters (RecBole's defaults)."""

    embedding_dim: int = 64
    hidden_dim: int = 128
    n_layers: int = 1
    dropout: float = 0.3
    max_len: int = 50
    loss: str = "ce"  # ce | bce | bpr | sampled_softmax (sampled negatives)
    n_neg: int = 1
    similarity: str = "dot"  # dot | cosine (query and items L2-normalised, divided by temperature)
    temperature: float = 1.0
    train_windows: str = "all"
    time_unit: float = 86400.0  # unused; kept for a common sequence pipeline

    def __post_init__(self) -> None:
        validate_fields(self)


@register("gru4rec")
class GRU4Rec(SequentialRecommender):
    """hidden_t = W GRU(E[i_1..t])_t; score = <hidden_t, E[j]>."""

    Config = GRU4RecConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 128, "epochs": 200, "patience": 10}

    def __init__(self, config: GRU4RecConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_dim, padding_idx=PAD)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_dim, config.hidden_dim, config.n_layers, batch_first=True, bias=False)
        self.dense = nn.Linear(config.hidden_dim, config.embedding_dim)
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def encode(self, items: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.gru(self.embedding_dropout(self.item_embedding(items)))
        return self.dense(out), out.new_zeros(())

    def stream_init(self, batch_size: int = 1) -> torch.Tensor:
        cfg = self.config
        return torch.zeros(cfg.n_layers, batch_size, cfg.hidden_dim, device=self.item_embedding.weight.device)

    def stream_step(self, state: torch.Tensor, items: torch.Tensor, gaps: torch.Tensor):
        out, state = self.gru(self.item_embedding(items).unsqueeze(1), state)
        return self.dense(out[:, 0]), state
