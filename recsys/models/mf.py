"""BPR-MF: matrix factorisation trained with the pairwise BPR loss (Rendle et al., UAI 2009)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.base import Recommender, bpr_loss, sum_of_squares
from recsys.sampling import PairwiseDataset


@dataclasses.dataclass
class BPRConfig:
    """BPR-MF hyper-parameters (embedding size 64 and L2 1e-4 as in the LightGCN/NGCF comparisons)."""

    embedding_dim: int = 64
    reg_weight: float = 1e-4
    n_negatives: int = 1
    init_std: float = 0.1
    sample_by: str = "interaction"  # or "user": uniform user, then one of its positives (LightGCN reference code)

    def __post_init__(self) -> None:
        validate_fields(self)


@register("bpr")
class BPRMF(Recommender):
    """score(u, i) = <p_u, q_i>; loss = -log sigmoid(s(u, i+) - s(u, i-)) + L2 on the batch embeddings."""

    Config = BPRConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 2048, "epochs": 200}

    def __init__(self, config: BPRConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        self.user_embedding = nn.Embedding(n_users, config.embedding_dim)
        self.item_embedding = nn.Embedding(n_items, config.embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)

    def train_dataset(self, train) -> PairwiseDataset:
        return PairwiseDataset(
            train.users,
            train.items,
            self.n_items,
            train.to_csr(),
            self.config.n_negatives,
            sample_by=self.config.sample_by,
        )

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # index_select rather than the Embedding modules' forward: its backward (a scatter-add) is cheaper on
        # a CPU than embedding_dense_backward
        u = self.user_embedding.weight.index_select(0, batch["users"])
        pos = self.item_embedding.weight.index_select(0, batch["pos_items"])
        neg_items = batch["neg_items"]
        if neg_items.dim() == 1:  # one negative per positive: the fused loss with its closed-form gradient
            neg = self.item_embedding.weight.index_select(0, neg_items)
            return bpr_loss(u, pos, neg, self.config.reg_weight)
        neg = self.item_embedding(neg_items)  # [B, n_neg, d]
        neg_scores = torch.einsum("bd,bnd->bn", u, neg)
        bpr = -F.logsigmoid((u * pos).sum(-1).unsqueeze(1) - neg_scores).mean()
        reg = sum_of_squares(u, pos, neg) / (2 * len(u))
        return bpr + self.config.reg_weight * reg

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embedding(users) @ self.item_embedding.weight.T
