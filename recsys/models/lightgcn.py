"""LightGCN (He et al., SIGIR 2020): linear propagation over the user-item graph, layer-mean readout."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.base import Recommender, bpr_loss, sum_of_squares
from recsys.sampling import PairwiseDataset


@dataclasses.dataclass
class LightGCNConfig:
    """The paper's settings: 64-d embeddings, 3 layers, L2 1e-4 on the batch's ego embeddings."""

    embedding_dim: int = 64
    n_layers: int = 3
    reg_weight: float = 1e-4
    init_std: float = 0.1
    sample_by: str = "interaction"  # or "user": uniform user, then one of its positives (LightGCN reference code)

    def __post_init__(self) -> None:
        validate_fields(self)


def normalized_adjacency(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """Sparse D^-1/2 A D^-1/2 of the bipartite graph A = [[0, R], [R^T, 0]] (eq. 7), as a COO tensor."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    degree = torch.bincount(rows, minlength=n).float()
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    values = inv_sqrt[rows] * inv_sqrt[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse CSR ``A``; the gradient is ``A @ grad`` again.

    torch's generic sparse backward transposes ``A`` on every step (10x slower on CPU than the product
    itself); the normalised adjacency is symmetric, so the forward kernel serves both directions.
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad.contiguous()


@register("lightgcn")
class LightGCN(Recommender):
    """E^(k+1) = A_hat E^(k); final embedding = mean_k E^(k) (eq. 8); score = <e_u, e_i>; BPR loss."""

    Config = LightGCNConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 2048, "epochs": 1000, "patience": 20}
    data_buffers = ("graph_users", "graph_items")

    def __init__(self, config: LightGCNConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        self.embedding = nn.Embedding(n_users + n_items, config.embedding_dim)
        nn.init.normal_(self.embedding.weight, std=config.init_std)
        self.register_buffer("graph_users", torch.zeros(0, dtype=torch.long))
        self.register_buffer("graph_items", torch.zeros(0, dtype=torch.long))
        self._adjacency: torch.Tensor | None = None
        self._cache: torch.Tensor | None = None

    def prepare(self, train: Any) -> None:
        """Store the training graph (edges as buffers, so checkpoints carry it)."""
        self.graph_users = torch.as_tensor(
            np.asarray(train.users), dtype=torch.long, device=self.embedding.weight.device
        )
        self.graph_items = torch.as_tensor(
            np.asarray(train.items), dtype=torch.long, device=self.embedding.weight.device
        )
        self._adjacency = None

    def train_dataset(self, train: Any) -> PairwiseDataset:
        return PairwiseDataset(train.users, train.items, self.n_items, train.to_csr(), sample_by=self.config.sample_by)

    def adjacency(self) -> torch.Tensor:
        """The normalised adjacency on the embeddings' device, built once."""
        device = self.embedding.weight.device
        if self._adjacency is None or self._adjacency.device != device:
            if self.graph_users.numel() == 0:
                raise RuntimeError("LightGCN has no graph: call prepare(train) or load a trained checkpoint")
            self._adjacency = normalized_adjacency(
                self.graph_users.to(device), self.graph_items.to(device), self.n_users, self.n_items
            )
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the kernels used here are stable
                warnings.simplefilter("ignore", UserWarning)
                self._adjacency = self._adjacency.to_sparse_csr()
        return self._adjacency

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-mean embeddings of all users and items."""
        adjacency = self.adjacency()
        layer = self.embedding.weight
        total = layer
        for _ in range(self.config.n_layers):
            layer = _SymmetricSpMM.apply(adjacency, layer)
            total = total + layer
        final = total / (self.config.n_layers + 1)
        return final[: self.n_users], final[self.n_users :]

    def train(self, mode: bool = True) -> LightGCN:
        self._cache = None  # propagated embeddings are stale once the weights may change
        return super().train(mode)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        user_final, item_final = self.propagate()
        users, pos, neg = batch["users"], batch["pos_items"], batch["neg_items"]
        bpr = bpr_loss(
            user_final.index_select(0, users), item_final.index_select(0, pos), item_final.index_select(0, neg)
        )
        ego = self.embedding.weight
        ego_u = ego.index_select(0, users)
        ego_p = ego.index_select(0, pos + self.n_users)
        ego_n = ego.index_select(0, neg + self.n_users)
        reg = sum_of_squares(ego_u, ego_p, ego_n) / (2 * len(users))
        return bpr + self.config.reg_weight * reg

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self.training or self._cache is None:
            user_final, item_final = self.propagate()
            if self.training:
                return user_final[users] @ item_final.T
            self._cache = torch.cat([user_final, item_final]).detach()
        return self._cache[users] @ self._cache[self.n_users :].T
