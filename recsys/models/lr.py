"""Logistic regression for CTR: a bias plus one learned weight per feature value (first order only)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.ctr_layers import CTRModel, FeatureEmbedding


@dataclasses.dataclass
class LRConfig:
    """Logistic regression: no embedding regularisation by default."""

    embedding_regularizer: float = 0.0

    def __post_init__(self) -> None:
        validate_fields(self)


@register("lr")
class LogisticRegression(CTRModel):
    """``logit = b + sum_f w_f(x_f)``; numeric fields contribute ``w_f * x_f``, sequences their mean weight."""

    Config = LRConfig

    def __init__(
        self, config: LRConfig, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None
    ):
        super().__init__(config, n_users, n_items, layout)
        self.weights = FeatureEmbedding(self.layout, 1)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weights(batch).sum(dim=(1, 2)) + self.bias
