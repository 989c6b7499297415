"""Factorization machine (Rendle, ICDM 2010) for CTR: first-order weights plus all pairwise dot products."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.ctr_layers import CTRModel, FeatureEmbedding


def fm_interaction(embeddings: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} <v_i, v_j>`` for ``[B, F, D]`` embeddings in O(F D): ``0.5 ((sum v)^2 - sum v^2)`` (Rendle eq. 4)."""
    square_of_sum = embeddings.sum(dim=1).pow(2)
    sum_of_square = embeddings.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


@dataclasses.dataclass
class FMConfig:
    """FM: embedding 10 as in FuxiCTR/BARS. The embedding regulariser is 1e-5 (the Criteo setting): FM's
    prediction is made of embeddings only, and 0.01 on every table each step collapses it (ML-1M-CTR AUC 0.69)."""

    embedding_dim: int = 10
    embedding_regularizer: float = 1e-5

    def __post_init__(self) -> None:
        validate_fields(self)


@register("fm")
class FM(CTRModel):
    """``logit = b + sum_f w_f(x_f) + sum_{i<j} <v_i, v_j>``."""

    Config = FMConfig

    def __init__(
        self, config: FMConfig, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None
    ):
        super().__init__(config, n_users, n_items, layout)
        self.linear = FeatureEmbedding(self.layout, 1)
        self.bias = torch.nn.Parameter(torch.zeros(1))
        self.embedding = FeatureEmbedding(self.layout, config.embedding_dim)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        first_order = self.linear(batch).sum(dim=(1, 2)) + self.bias
        return first_order + fm_interaction(self.embedding(batch))
