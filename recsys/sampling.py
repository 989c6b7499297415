"""Training datasets that build whole batches at once (vectorised negative sampling)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset


class PositiveLookup:
    """Fast vectorised membership test ``(user, item) in train`` via sorted linear keys."""

    def __init__(self, csr: sp.csr_matrix) -> None:
        coo = csr.tocoo()
        self.n_items = csr.shape[1]
        self.keys = np.sort(coo.row.astype(np.int64) * self.n_items + coo.col.astype(np.int64))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array: is each (user, item) pair a training positive?"""
        if self.keys.size == 0:
            return np.zeros(len(users), dtype=bool)
        query = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        pos = np.searchsorted(self.keys, query)
        pos = np.minimum(pos, self.keys.size - 1)
        return self.keys[pos] == query


def sample_negatives(
    users: np.ndarray,
    lookup: PositiveLookup,
    n_items: int,
    rng: np.random.Generator,
    n_neg: int = 1,
    max_rounds: int = 20,
) -> np.ndarray:
    """Uniform negatives per user (shape ``[len(users), n_neg]``), re-drawn while they hit a positive."""
    users_rep = np.repeat(users, n_neg)
    negatives = rng.integers(0, n_items, size=users_rep.size)
    bad = lookup.contains(users_rep, negatives)
    for _ in range(max_rounds):
        if not bad.any():
            break
        negatives[bad] = rng.integers(0, n_items, size=int(bad.sum()))
        bad[bad] = lookup.contains(users_rep[bad], negatives[bad])
    return negatives.reshape(len(users), n_neg)


class PairwiseDataset(Dataset):
    """(user, positive item, sampled negative items) triples over the training interactions.

    ``__getitems__`` builds a whole batch with vectorised sampling, so a DataLoader created with
    ``collate_fn=collate_batch`` never loops over examples in Python. Call ``set_epoch`` to make the
    negatives of each epoch reproducible from the seed.
    """

    def __init__(
        self, users: np.ndarray, items: np.ndarray, n_items: int, csr: sp.csr_matrix, n_neg: int = 1, seed: int = 0
    ) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.n_items = int(n_items)
        self.n_neg = int(n_neg)
        self.lookup = PositiveLookup(csr)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the negative sampler for ``epoch``."""
        self.rng = np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        return self.users.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        users = self.users[idx]
        negatives = sample_negatives(users, self.lookup, self.n_items, self.rng, self.n_neg)
        return {
            "users": torch.from_numpy(users),
            "pos_items": torch.from_numpy(self.items[idx]),
            "neg_items": torch.from_numpy(negatives if self.n_neg > 1 else negatives[:, 0]),
        }


def collate_batch(batch: dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate for datasets whose ``__getitems__`` already returns a batch dict."""
    if isinstance(batch, dict):
        return batch
    return {key: torch.cat([b[key].reshape(-1, *b[key].shape[1:]) for b in batch]) for key in batch[0]}


class EpochSeededSampler(torch.utils.data.Sampler[int]):
    """A random permutation per epoch that depends only on ``(seed, epoch)``: identical on every process
    and after a resume, unlike a sampler that carries generator state from epoch to epoch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class PointwiseDataset(PairwiseDataset):
    """Each training positive with ``n_neg`` sampled negatives, flattened to (user, item, label) rows."""

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        users = self.users[idx]
        negatives = sample_negatives(users, self.lookup, self.n_items, self.rng, self.n_neg)
        all_users = np.concatenate([users, np.repeat(users, self.n_neg)])
        all_items = np.concatenate([self.items[idx], negatives.reshape(-1)])
        labels = np.concatenate([np.ones(len(users)), np.zeros(negatives.size)]).astype(np.float32)
        return {
            "users": torch.from_numpy(all_users),
            "items": torch.from_numpy(all_items),
            "labels": torch.from_numpy(labels),
        }
