"""NeuMF (He et al., WWW 2017): a GMF tower and an MLP tower fused into one prediction layer."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import validate_fields
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
    score_chunk_pairs: int = 1_000_000  # user-item pairs scored at once in full ranking

    def __post_init__(self) -> None:
        validate_fields(self)


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
        """Every item for every user, without materialising (user, item) pairs of embeddings.

        The GMF part is one matrix product, ``(p_u * h_gmf) @ Q^T``; the MLP's first layer splits into a
        user half and an item half, ``W [p'_u ; q'_i] = W_u p'_u + W_i q'_i``, computed once per user and
        once per item and added by broadcasting; only the later (narrower) layers run per pair, in chunks
        of ``score_chunk_pairs`` so memory stays bounded. Equal to ``logits`` on every pair (tested).
        """
        gmf_width = self.config.gmf_dim if self.use_gmf else 0
        weight = self.output.weight[0]
        total = self.output.bias.expand(len(users), self.n_items).clone()
        if self.use_gmf:
            total += (self.gmf_user(users) * weight[:gmf_width]) @ self.gmf_item.weight.T
        if not self.use_mlp:
            return total
        first, rest = self.mlp[0], self.mlp[1:]
        d = self.config.mlp_dim
        user_part = self.mlp_user(users) @ first.weight[:, :d].T + first.bias  # (B, h1)
        item_part = self.mlp_item.weight @ first.weight[:, d:].T  # (N, h1)
        w_mlp = weight[gmf_width:]
        chunk = max(1, self.config.score_chunk_pairs // self.n_items)
        for start in range(0, len(users), chunk):
            hidden = user_part[start : start + chunk, None, :] + item_part[None, :, :]  # (b, N, h1)
            total[start : start + chunk] += rest(hidden) @ w_mlp
        return total
