"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder with a zero diagonal."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch

from recsys.config import validate_fields
from recsys.models import register
from recsys.models.base import Recommender

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EASEConfig:
    """L2 strength lambda (the paper tunes it per dataset; 500 was best on ML-20M and Netflix)."""

    l2: float = 500.0
    max_items: int = 30_000  # the n_items x n_items solve needs O(n_items^2) memory

    def __post_init__(self) -> None:
        validate_fields(self)


@register("ease")
class EASE(Recommender):
    """B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1 (eq. 8); score(u) = X_u B."""

    Config = EASEConfig
    trainable = False
    data_buffers = ("history_indptr", "history_indices")

    def __init__(self, config: EASEConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        if n_items > config.max_items:
            raise ValueError(
                f"EASE needs an {n_items} x {n_items} dense matrix; raise max_items if you have the memory"
            )
        self.register_buffer("weights", torch.zeros(n_items, n_items))
        self.register_buffer("history_indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("history_indices", torch.zeros(0, dtype=torch.long))

    def prepare(self, train: Any) -> None:
        csr = train.to_csr()
        self.history_indptr = torch.from_numpy(csr.indptr.astype(np.int64))
        self.history_indices = torch.from_numpy(csr.indices.astype(np.int64))

    def fit_closed_form(self, train: Any) -> None:
        """Solve for B in float64 and store it as float32."""
        x = train.to_csr().astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.config.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights.copy_(torch.from_numpy(b.astype(np.float32)))

    def _history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense 0/1 training rows of ``users`` (gathered from the stored CSR history, vectorised)."""
        users = users.to(self.history_indptr.device)
        starts = self.history_indptr[users]
        counts = self.history_indptr[users + 1] - starts
        row_ids = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        positions = (
            torch.repeat_interleave(starts, counts) + torch.arange(int(counts.sum()), device=users.device) - first
        )
        rows = torch.zeros(len(users), self.n_items, device=self.weights.device)
        rows[row_ids.to(rows.device), self.history_indices[positions].to(rows.device)] = 1.0
        return rows

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self._history_rows(users) @ self.weights
