"""A two-tower retrieval model for the cold target domain that consumes item representations.

item(i) = q_i + W f_i[:k] + W_t f_i[k:] for a target item, item(j) = p_j + W f_j[:k] + W_s f_j[k:] for a source item
user(u) = e_u + mean_{i in H(u)} item(i) + mean_{j in S(u)} item(j)
score(u, i) = <user(u), item(i)>, trained with BPR.

f are fixed item features (from the representation stage, MiniLM, ...; absent for the ID-only baselines),
H(u) the user's target training history and S(u) its source-domain history. The first k =
``shared_feature_dim`` feature columns lie in one space for both domains (the transferable part, or a content
embedding from one encoder) and go through ONE projection W shared by the domains, so an aligned source and
target item get the same feature vector; the remaining columns (the domain-residual part) go through a
per-domain projection W_s / W_t. Cold target items (``attach(..., cold_items=...)``, items never seen in
training: a new live stream) have no ID vector (q_i = 0, only their features score them) and are never drawn
as BPR negatives, so no gradient reaches the model through them. With ``joint_behaviour`` the
source items are items of the same space and the BPR loss runs over the interactions of both domains (one
shared item space, as UniEmbedding); without it the model sees the target domain only. The ranking always
covers the target items only.
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
    shared_feature_dim: int = 0  # leading feature columns projected by one matrix shared by both domains

    # shared_feature_dim = 0 means "no shared columns", not a size the by-name default (>= 1) assumes
    field_ranges: ClassVar[dict[str, Any]] = {
        "embedding_dim": AT_LEAST_ONE,
        "reg_weight": NON_NEGATIVE,
        "init_std": NON_NEGATIVE,
        "shared_feature_dim": NON_NEGATIVE,
    }

    def __post_init__(self) -> None:
        validate_fields(self)


def _row_mean(csr: sp.csr_matrix) -> torch.Tensor:
    """A sparse row-normalised copy of ``csr`` (each row sums to 1; empty rows stay empty)."""
    csr = sp.csr_matrix(csr, dtype=np.float32)
    counts = np.asarray(csr.sum(axis=1)).ravel()
    scaled = sp.diags(1.0 / np.maximum(counts, 1.0)).astype(np.float32) @ csr
    coo = scaled.tocoo()
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    return torch.sparse_coo_tensor(indices, torch.as_tensor(coo.data), coo.shape).coalesce()


def _zero_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A bias-free projection that starts at zero: training starts from the ID-only model and adds the features'
    contribution only as far as it lowers the loss (random init let 576-d features swamp the ID embeddings)."""
    layer = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.zeros_(layer.weight)
    return layer


@register("rgcd_two_tower")
class RGCDTwoTower(Recommender):
    """Two towers over user/item IDs, target and source histories, and optional fixed item features."""

    Config = TwoTowerConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-2, "batch_size": 8192, "epochs": 20}

    def __init__(self, config: TwoTowerConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        d = config.embedding_dim
        self.user_embedding = nn.Embedding(n_users, d)
        self.item_embedding = nn.Embedding(n_items, d)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        self.source_item_embedding: nn.Embedding | None = None
        self.source_projection: nn.Linear | None = None
        self.target_projection: nn.Linear | None = None
        self.shared_projection: nn.Linear | None = None
        self.register_buffer("source_features", torch.zeros(0))
        self.register_buffer("target_features", torch.zeros(0))
        self.register_buffer("target_id_mask", torch.ones(n_items, 1))  # 0 for cold items: no ID vector
        self.cold_items = np.array([], dtype=np.int64)
        self.source_csr: sp.csr_matrix | None = None
        self.source_history: torch.Tensor | None = None
        self.target_history: torch.Tensor | None = None

    def attach(
        self,
        source_csr: sp.csr_matrix | None,
        source_features: np.ndarray | None,
        target_features: np.ndarray | None,
        cold_items: np.ndarray | None = None,
    ) -> RGCDTwoTower:
        """Give the model the users' source histories, the fixed item features and the cold target items (no ID
        vector, never a negative) (call before training)."""
        d, k = self.config.embedding_dim, self.config.shared_feature_dim
        if cold_items is not None and len(cold_items):
            self.cold_items = np.unique(np.asarray(cold_items, dtype=np.int64))
            if self.cold_items[0] < 0 or self.cold_items[-1] >= self.n_items:
                raise ValueError(f"cold_items must index the {self.n_items} target items")
            self.target_id_mask[torch.as_tensor(self.cold_items)] = 0.0
        for name, features in (("source_features", source_features), ("target_features", target_features)):
            if k and (features is None or features.shape[1] < k):
                raise ValueError(f"shared_feature_dim is {k} but {name} has fewer columns (or is missing)")
        if k and source_csr is None:
            raise ValueError("shared_feature_dim needs the source domain (source_csr)")
        if k:
            self.shared_projection = _zero_linear(k, d)
        if source_csr is not None:
            self.source_csr = sp.csr_matrix(source_csr)
            self.source_history = _row_mean(self.source_csr)
            self.source_item_embedding = nn.Embedding(self.source_csr.shape[1], d)
            nn.init.normal_(self.source_item_embedding.weight, std=self.config.init_std)
            if source_features is not None:
                if len(source_features) != self.source_csr.shape[1]:
                    raise ValueError(
                        f"source_features has {len(source_features)} rows for {self.source_csr.shape[1]} items"
                    )
                self.source_features = torch.as_tensor(source_features, dtype=torch.float32)
                if self.source_features.shape[1] > k:
                    self.source_projection = _zero_linear(self.source_features.shape[1] - k, d)
        if target_features is not None:
            if len(target_features) != self.n_items:
                raise ValueError(f"target_features has {len(target_features)} rows for {self.n_items} items")
            self.target_features = torch.as_tensor(target_features, dtype=torch.float32)
            if self.target_features.shape[1] > k:
                self.target_projection = _zero_linear(self.target_features.shape[1] - k, d)
        return self

    def prepare(self, train: Any) -> None:
        self.target_history = _row_mean(train.to_csr())

    def set_eval_history(self, history: Any) -> None:
        """A model read from a checkpoint (never prepared) takes its users' target histories from ``history``.

        A trained model keeps the training histories it was prepared with. The attached source-domain part
        (``attach``) is not in the checkpoint: attach it again after loading.
        """
        if self.target_history is None:
            self.target_history = _row_mean(history.to_csr())

    def train_dataset(self, train: Any) -> PairwiseDataset:
        if self.cold_items.size and np.isin(train.items, self.cold_items).any():
            raise ValueError("the training interactions include cold items (they must be held out of training)")
        if self.config.joint_behaviour and self.source_csr is not None:  # one item space: target, then source
            joint = sp.hstack([train.to_csr(), self.source_csr]).tocsr()
            coo = joint.tocoo()
            return PairwiseDataset(coo.row, coo.col, joint.shape[1], self._never_negative(joint))
        return PairwiseDataset(train.users, train.items, self.n_items, self._never_negative(train.to_csr()))

    def _never_negative(self, csr: sp.csr_matrix) -> sp.csr_matrix:
        """The negative sampler's rejection set: the training positives plus every cold item for every user (a
        cold item does not exist at training time). The positives themselves come from the interactions."""
        if not self.cold_items.size:
            return csr
        n_users = csr.shape[0]
        rows = np.repeat(np.arange(n_users), self.cold_items.size)
        cols = np.tile(self.cold_items, n_users)
        cold = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=csr.shape)
        return (sp.csr_matrix(csr, dtype=np.float32) + cold).tocsr()

    def _features(
        self, ids: nn.Embedding, features: torch.Tensor, own: nn.Linear | None, id_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ID vectors (masked: cold items have none) plus the shared projection of the first k feature columns and
        the domain's own of the rest."""
        vectors = ids.weight if id_mask is None else ids.weight * id_mask
        k = self.config.shared_feature_dim
        if self.shared_projection is not None:
            vectors = vectors + self.shared_projection(features[:, :k])
        if own is not None:
            vectors = vectors + own(features[:, k:])
        return vectors

    def _all_item_vectors(self) -> torch.Tensor:
        """Target item vectors, then (with a source history) source item vectors."""
        vectors = self._features(self.item_embedding, self.target_features, self.target_projection, self.target_id_mask)
        if self.source_item_embedding is not None:
            source = self._features(self.source_item_embedding, self.source_features, self.source_projection)
            vectors = torch.cat([vectors, source])
        return vectors

    def _user_vectors(self, users: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        if self.target_history is None:
            raise RuntimeError("call prepare(train) before scoring")
        parts = torch.sparse.mm(self.target_history, item_vectors[: self.n_items])
        if self.source_history is not None:
            parts = parts + torch.sparse.mm(self.source_history, item_vectors[self.n_items :])
        parts = parts.index_select(0, users)
        return parts + self.user_embedding(users) if self.config.use_user_id else parts

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = self._all_item_vectors()
        u = self._user_vectors(batch["users"], items)
        pos, neg = items.index_select(0, batch["pos_items"]), items.index_select(0, batch["neg_items"])
        return bpr_loss(u, pos, neg, self.config.reg_weight)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        items = self._all_item_vectors()
        return self._user_vectors(users, items) @ items[: self.n_items].T
