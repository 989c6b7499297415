"""NeuMF (He et al., WWW 2017): a GMF tower and an MLP tower fused into one prediction layer."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models import register
from recsys.models.base import Recommender
from recsys.sampling import PointwiseDataset


@dataclasses.dataclass
class NeuMFConfig:
    """Paper defaults: 4 sampled negatives per positive, BCE loss, a 3-layer tower pyramid."""

    gmf_dim: int = 64
    mlp_dim: int = 64
    mlp_layers: tuple[int, ...] = (128, 64, 32)
    dropout: float = 0.0
    n_negatives: int = 4
    towers: str = "both"  # both | gmf | mlp (train a single tower, e.g. for pre-training)
    pretrained_gmf: str | None = None  # checkpoint folder of a towers=gmf model
    pretrained_mlp: str | None = None  # checkpoint folder of a towers=mlp model
    pretrain_alpha: float = 0.5  # weight of the GMF part of the fused output layer (section 3.4.1)
    score_chunk_pairs: int = 4_000_000  # user-item pairs scored at once in full ranking


@register("neumf")
class NeuMF(Recommender):
    """y = sigmoid(h^T [p_u * q_i ; MLP([p'_u ; q'_i])]) (eq. 11)."""

    Config = NeuMFConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 256, "epochs": 100}

    def __init__(self, config: NeuMFConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        if config.towers not in {"both", "gmf", "mlp"}:
            raise ValueError(f"towers must be both, gmf or mlp, got {config.towers!r}")
        self.use_gmf = config.towers in {"both", "gmf"}
        self.use_mlp = config.towers in {"both", "mlp"}
        out_dim = 0
        if self.use_gmf:
            self.gmf_user = nn.Embedding(n_users, config.gmf_dim)
            self.gmf_item = nn.Embedding(n_items, config.gmf_dim)
            out_dim += config.gmf_dim
        if self.use_mlp:
            self.mlp_user = nn.Embedding(n_users, config.mlp_dim)
            self.mlp_item = nn.Embedding(n_items, config.mlp_dim)
            layers: list[nn.Module] = []
            width = 2 * config.mlp_dim
            for size in config.mlp_layers:
                layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.dropout)]
                width = size
            self.mlp = nn.Sequential(*layers)
            out_dim += width
        self.output = nn.Linear(out_dim, 1)
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.01)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def load_pretrained_towers(self, gmf_dir: str | None, mlp_dir: str | None) -> None:
        """Initialise from separately trained GMF and MLP models; the fused output layer is
        [alpha * h_gmf ; (1 - alpha) * h_mlp] (section 3.4.1)."""
        alpha = self.config.pretrain_alpha
        gmf_width = self.config.gmf_dim if self.use_gmf else 0
        with torch.no_grad():
            if gmf_dir and self.use_gmf:
                gmf = Recommender.from_pretrained(gmf_dir)
                self.gmf_user.weight.copy_(gmf.gmf_user.weight)
                self.gmf_item.weight.copy_(gmf.gmf_item.weight)
                self.output.weight[:, :gmf_width] = alpha * gmf.output.weight
                self.output.bias.copy_(alpha * gmf.output.bias)
            if mlp_dir and self.use_mlp:
                mlp = Recommender.from_pretrained(mlp_dir)
                self.mlp_user.weight.copy_(mlp.mlp_user.weight)
                self.mlp_item.weight.copy_(mlp.mlp_item.weight)
                self.mlp.load_state_dict(mlp.mlp.state_dict())
                self.output.weight[:, gmf_width:] = (1 - alpha) * mlp.output.weight
                self.output.bias.add_((1 - alpha) * mlp.output.bias)

    def prepare(self, train: Any) -> None:
        """Before training, start from pre-trained towers when the config names them."""
        if self.config.pretrained_gmf or self.config.pretrained_mlp:
            self.load_pretrained_towers(self.config.pretrained_gmf, self.config.pretrained_mlp)

    def train_dataset(self, train: Any) -> PointwiseDataset:
        return PointwiseDataset(train.users, train.items, self.n_items, train.to_csr(), self.config.n_negatives)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores of aligned (user, item) pairs."""
        parts = []
        if self.use_gmf:
            parts.append(self.gmf_user(users) * self.gmf_item(items))
        if self.use_mlp:
            parts.append(self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=-1)))
        return self.output(torch.cat(parts, dim=-1)).squeeze(-1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(batch["users"], batch["items"]), batch["labels"])

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Every item for every user, in chunks of users so memory stays bounded."""
        items = torch.arange(self.n_items, device=users.device)
        chunk = max(1, self.config.score_chunk_pairs // self.n_items)
        out = []
        for start in range(0, len(users), chunk):
            block = users[start : start + chunk]
            pair_users = block.repeat_interleave(self.n_items)
            pair_items = items.repeat(len(block))
            out.append(self.logits(pair_users, pair_items).view(len(block), self.n_items))
        return torch.cat(out)
