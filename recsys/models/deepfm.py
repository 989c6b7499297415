"""DeepFM (Guo et al., IJCAI 2017): an FM and a deep MLP sharing one embedding table, logits summed."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.ctr_layers import CTRModel, FeatureEmbedding, MLPBlock
from recsys.models.fm import fm_interaction


@dataclasses.dataclass
class DeepFMConfig:
    """Defaults of the BARS/FuxiCTR DeepFM configs (embedding 10, [400]x3, dropout 0.2, batch norm)."""

    embedding_dim: int = 10
    hidden_units: tuple[int, ...] = (400, 400, 400)
    dropout: float = 0.2
    batch_norm: bool = True
    embedding_regularizer: float = 0.01

    def __post_init__(self) -> None:
        validate_fields(self)


@register("deepfm")
class DeepFM(CTRModel):
    """``logit = FM(x) + w^T MLP(concat of field embeddings)`` (paper eq. 1-4)."""

    Config = DeepFMConfig

    def __init__(
        self, config: DeepFMConfig, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None
    ):
        super().__init__(config, n_users, n_items, layout)
        self.linear = FeatureEmbedding(self.layout, 1)
        self.bias = nn.Parameter(torch.zeros(1))
        self.embedding = FeatureEmbedding(self.layout, config.embedding_dim)
        input_dim = self.embedding.n_fields * config.embedding_dim
        self.mlp = MLPBlock(input_dim, tuple(config.hidden_units), config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embeddings = self.embedding(batch)
        fm = self.linear(batch).sum(dim=(1, 2)) + self.bias + fm_interaction(embeddings)
        deep = self.head(self.mlp(embeddings.flatten(1))).squeeze(-1)
        return fm + deep
