"""DCN-V2 (Wang et al., WWW 2021): a full-rank cross network beside (parallel) or before (stacked) an MLP."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.ctr_layers import CTRModel, FeatureEmbedding, MLPBlock

STRUCTURES = ("parallel", "stacked")


class CrossNetworkV2(nn.Module):
    """``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (DCN-V2 eq. 1), ``num_layers`` times."""

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


@dataclasses.dataclass
class DCNv2Config:
    """Defaults of the BARS/FuxiCTR DCNv2 configs (embedding 10, 3 cross layers, [400]x3, dropout 0.2)."""

    embedding_dim: int = 10
    num_cross_layers: int = 3
    hidden_units: tuple[int, ...] = (400, 400, 400)
    structure: str = "parallel"  # parallel: [cross(x0), mlp(x0)] -> linear; stacked: mlp(cross(x0)) -> linear
    dropout: float = 0.2
    batch_norm: bool = True
    embedding_regularizer: float = 0.01

    def __post_init__(self) -> None:
        validate_fields(self)


@register("dcnv2")
class DCNv2(CTRModel):
    """Cross network and MLP over the concatenated field embeddings, stacked or parallel (paper Fig. 2)."""

    Config = DCNv2Config

    def __init__(
        self, config: DCNv2Config, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None
    ):
        super().__init__(config, n_users, n_items, layout)
        if config.structure not in STRUCTURES:
            raise ValueError(f"dcnv2: structure must be one of {STRUCTURES}, got {config.structure!r}")
        self.embedding = FeatureEmbedding(self.layout, config.embedding_dim)
        input_dim = self.embedding.n_fields * config.embedding_dim
        self.cross = CrossNetworkV2(input_dim, config.num_cross_layers)
        self.mlp = MLPBlock(input_dim, tuple(config.hidden_units), config.dropout, config.batch_norm)
        head_dim = self.mlp.output_dim + (input_dim if config.structure == "parallel" else 0)
        self.head = nn.Linear(head_dim, 1)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        if self.config.structure == "stacked":
            hidden = self.mlp(self.cross(x0))
        else:
            hidden = torch.cat([self.cross(x0), self.mlp(x0)], dim=1)
        return self.head(hidden).squeeze(-1)
