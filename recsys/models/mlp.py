"""A plain MLP for CTR, by default the size of DS-MLP's main (student) MLP: the baseline DS-MLP must beat."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.ctr_layers import CTRModel, FeatureEmbedding, MLPBlock


@dataclasses.dataclass
class MLPConfig:
    """DS-MLP's student MLP settings for MovieLens/Avazu: embedding 10, [1024]x3, dropout 0.2, batch norm."""

    embedding_dim: int = 10
    hidden_units: tuple[int, ...] = (1024, 1024, 1024)
    dropout: float = 0.2
    batch_norm: bool = True
    embedding_regularizer: float = 0.01

    def __post_init__(self) -> None:
        validate_fields(self)


@register("mlp")
class MLP(CTRModel):
    """``logit = w^T MLP(concat of field embeddings) + b`` (implicit interactions only)."""

    Config = MLPConfig

    def __init__(
        self, config: MLPConfig, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None
    ):
        super().__init__(config, n_users, n_items, layout)
        self.embedding = FeatureEmbedding(self.layout, config.embedding_dim)
        input_dim = self.embedding.n_fields * config.embedding_dim
        self.mlp = MLPBlock(input_dim, tuple(config.hidden_units), config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.mlp(self.embedding(batch).flatten(1))).squeeze(-1)
