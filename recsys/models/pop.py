"""ItemPop: rank items by their training interaction count (the sanity floor)."""

from __future__ import annotations

import numpy as np
import torch

from recsys.models import register
from recsys.models.base import Recommender


@register("pop")
class ItemPop(Recommender):
    """Every user gets the same ranking: items by number of training interactions."""

    trainable = False

    def __init__(self, config, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        self.register_buffer("item_counts", torch.zeros(n_items))

    def fit_closed_form(self, train) -> None:
        """Count each item's training interactions."""
        counts = np.bincount(train.items, minlength=self.n_items).astype(np.float32)
        self.item_counts.copy_(torch.from_numpy(counts))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.item_counts.unsqueeze(0).expand(len(users), -1)
