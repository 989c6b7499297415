"""A two-tower retrieval model for the cold target domain that consumes item representations.

user(u) = e_u + W_s mean_{s in S(u)} f_s + W_t mean_{t in H(u)} f_t + mean_{t in H(u)} q_t
item(i) = q_i + W_i f_i
score(u, i) = <user(u), item(i)>, trained with BPR on the target training interactions.

f are fixed item features (from the representation stage, MiniLM, ...; absent for the ID-only baselines),
S(u) the user's source-domain history and H(u) its target training history. With ``joint_behaviour`` the
model also learns ID embeddings of the source items from the source interactions (one shared item space
trained on both domains: the shared-embedding baseline); the ranking still covers only target items.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recsys.config import AT_LEAST_ONE, NON_NEGATIVE, validate_fields
from recsys.models import register
from recsys.models.base import Recommender, bpr_loss
from recsys.sampling import PairwiseDataset


@dataclasses.dataclass
class TwoTowerConfig:
    """Sizes and switches of the two-tower model."""

    embedding_dim: int = 64
    reg_weight: float = 1e-4
    use_user_id: bool = True
    joint_behaviour: bool = False
    init_std: float = 0.1

    def __post_init__(self) -> None:
        validate_fields(self, {"embedding_dim": AT_LEAST_ONE, "reg_weight": NON_NEGATIVE, "init_std": NON_NEGATIVE})


def _row_mean(csr: sp.csr_matrix) -> torch.Tensor:
    """A sparse row-normalised copy of ``csr`` (each row sums to 1; empty rows stay empty)."""
    csr = sp.csr_matrix(csr, dtype=np.float32)
    counts = np.asarray(csr.sum(axis=1)).ravel()
    scaled = sp.diags(1.0 / np.maximum(counts, 1.0)).astype(np.float32) @ csr
    coo = scaled.tocoo()
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    return torch.sparse_coo_tensor(indices, torch.as_tensor(coo.data), coo.shape).coalesce()


@register("rgcd_two_tower")
class RGCDTwoTower(Recommender):
    """Two towers over user/item IDs, source and target histories, and optional fixed item features."""

    Config = TwoTowerConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 3e-3, "batch_size": 1024, "epochs": 30}

    def __init__(self, config: TwoTowerConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        d = config.embedding_dim
        self.user_embedding = nn.Embedding(n_users, d)
        self.item_embedding = nn.Embedding(n_items, d)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        self.source_history: torch.Tensor | None = None
        self.source_item_embedding: nn.Embedding | None = None
        self.source_projection: nn.Linear | None = None
        self.target_projection: nn.Linear | None = None
        self.register_buffer("source_user_features", torch.zeros(0))
        self.register_buffer("target_features", torch.zeros(0))
        self.target_history: torch.Tensor | None = None
        self.source_csr: sp.csr_matrix | None = None

    def attach(
        self,
        source_csr: sp.csr_matrix | None,
        source_features: np.ndarray | None,
        target_features: np.ndarray | None,
    ) -> RGCDTwoTower:
        """Give the model the users' source histories and the fixed item features (call before training)."""
        d = self.config.embedding_dim
        if source_csr is not None:
            self.source_csr = sp.csr_matrix(source_csr)
            self.source_history = _row_mean(self.source_csr)
            if self.config.joint_behaviour:
                self.source_item_embedding = nn.Embedding(self.source_csr.shape[1], d)
                nn.init.normal_(self.source_item_embedding.weight, std=self.config.init_std)
            if source_features is not None:
                features = torch.as_tensor(source_features, dtype=torch.float32)
                self.source_user_features = torch.sparse.mm(self.source_history, features)
                self.source_projection = nn.Linear(features.shape[1], d, bias=False)
        if target_features is not None:
            if len(target_features) != self.n_items:
                raise ValueError(f"target_features has {len(target_features)} rows for {self.n_items} items")
            self.target_features = torch.as_tensor(target_features, dtype=torch.float32)
            self.target_projection = nn.Linear(self.target_features.shape[1], d, bias=False)
        return self

    def prepare(self, train: Any) -> None:
        self.target_history = _row_mean(train.to_csr())

    def train_dataset(self, train: Any) -> PairwiseDataset:
        if self.config.joint_behaviour and self.source_csr is not None:  # one item space: target, then source
            joint = sp.hstack([train.to_csr(), self.source_csr]).tocsr()
            coo = joint.tocoo()
            return PairwiseDataset(coo.row, coo.col, joint.shape[1], joint)
        return PairwiseDataset(train.users, train.items, self.n_items, train.to_csr())

    def _item_vectors(self) -> torch.Tensor:
        vectors = self.item_embedding.weight
        if self.target_projection is not None:
            vectors = vectors + self.target_projection(self.target_features)
        return vectors

    def _all_item_vectors(self) -> torch.Tensor:
        vectors = self._item_vectors()
        if self.source_item_embedding is not None:
            vectors = torch.cat([vectors, self.source_item_embedding.weight])
        return vectors

    def _user_vectors(self, users: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        parts = self.user_embedding(users) if self.config.use_user_id else 0.0
        if self.target_history is None:
            raise RuntimeError("call prepare(train) before scoring")
        target_mean = torch.sparse.mm(self.target_history, item_vectors[: self.n_items])
        parts = parts + target_mean.index_select(0, users)
        if self.source_projection is not None:
            parts = parts + self.source_projection(self.source_user_features.index_select(0, users))
        if self.source_item_embedding is not None and self.source_history is not None:
            source_mean = torch.sparse.mm(self.source_history, self.source_item_embedding.weight)
            parts = parts + source_mean.index_select(0, users)
        return parts

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = self._all_item_vectors()
        u = self._user_vectors(batch["users"], items)
        return bpr_loss(
            u,
            items.index_select(0, batch["pos_items"]),
            items.index_select(0, batch["neg_items"]),
            self.config.reg_weight,
        )

    def score(self, users: torch.Tensor) -> torch.Tensor:
        items = self._all_item_vectors()
        return self._user_vectors(users, items) @ items[: self.n_items].T
