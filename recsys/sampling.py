"""Training datasets that build whole batches at once (vectorised negative sampling)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset


class PositiveLookup:
    """Fast vectorised membership test ``(user, item) in train``: a dense bitmap when the user x item grid is
    small (one byte per cell, at most ``DENSE_MAX_CELLS``), else binary search over sorted linear keys."""

    DENSE_MAX_CELLS = 64_000_000

    def __init__(self, csr: sp.csr_matrix) -> None:
        coo = csr.tocoo()
        self.n_items = csr.shape[1]
        self.keys = np.sort(coo.row.astype(np.int64) * self.n_items + coo.col.astype(np.int64))
        self.dense: np.ndarray | None = None
        cells = int(csr.shape[0]) * int(self.n_items)
        if 0 < cells <= self.DENSE_MAX_CELLS:
            self.dense = np.zeros(cells, dtype=bool)
            self.dense[self.keys] = True

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array: is each (user, item) pair a training positive?"""
        if self.keys.size == 0:
            return np.zeros(len(users), dtype=bool)
        query = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        if self.dense is not None:
            return self.dense[query]
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


class TrainingData(Dataset):
    """Base class of the datasets a model's ``train_dataset`` returns. What a dataset can do beyond batches is
    declared by the class flags below (the Trainer reads them; it never probes for methods)."""

    # device_sampler(device): whole epochs drawn on the training device (TrainConfig.sampling = "device")
    supports_device_sampling: ClassVar[bool] = False
    # set_target_weighting(mode): per-target loss weights (TrainConfig.target_weighting)
    supports_target_weighting: ClassVar[bool] = False
    # example_lengths(): each example's length, for length-bucketed batches (TrainConfig.length_buckets)
    has_example_lengths: ClassVar[bool] = False
    seed: int = 0
    epoch: int = 0

    def set_seed(self, seed: int) -> None:
        """The seed that, with the epoch, fixes every random draw of the dataset."""
        self.seed = int(seed)

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch``."""
        self.epoch = int(epoch)

    def device_sampler(self, device: str | torch.device) -> Any:
        """Draws of whole epochs on ``device`` (only where ``supports_device_sampling``)."""
        raise NotImplementedError(f"{type(self).__name__} builds its batches on the CPU only")

    def set_target_weighting(self, mode: str) -> None:
        """How a batch's targets are weighted (only where ``supports_target_weighting``)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-target loss")

    def example_lengths(self) -> np.ndarray:
        """Each example's length (only where ``has_example_lengths``)."""
        raise NotImplementedError(f"{type(self).__name__} has no example lengths")


class PairwiseDataset(TrainingData):
    """(user, positive item, sampled negative items) triples over the training interactions.

    ``__getitems__`` builds a whole batch with vectorised sampling, so a DataLoader created with
    ``collate_fn=collate_batch`` never loops over examples in Python. Call ``set_epoch`` to make the
    negatives of each epoch reproducible from the seed.
    """

    SAMPLE_BY = ("interaction", "user")
    supports_device_sampling = True

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        n_items: int,
        csr: sp.csr_matrix,
        n_neg: int = 1,
        seed: int = 0,
        sample_by: str = "interaction",
    ) -> None:
        if sample_by not in self.SAMPLE_BY:
            raise ValueError(f"sample_by must be one of {self.SAMPLE_BY}, got {sample_by!r}")
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.n_items = int(n_items)
        self.n_neg = int(n_neg)
        self.lookup = PositiveLookup(csr)
        self.seed = int(seed)
        self.epoch = 0
        self.rng = np.random.default_rng(self.seed)
        # "user": each example draws a user uniformly, then one of the user's positives (the LightGCN reference
        # code's sampler); "interaction": each training interaction once per epoch, in the sampler's order.
        self.sample_by = sample_by
        csr = sp.csr_matrix(csr)
        self._indptr = csr.indptr.astype(np.int64)
        self._indices = csr.indices.astype(np.int64)
        self._active_users = np.flatnonzero(np.diff(self._indptr) > 0)

    def _draw(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.sample_by == "interaction":
            return self.users[idx], self.items[idx]
        users = self._active_users[rng.integers(0, self._active_users.size, size=idx.size)]
        start = self._indptr[users]
        count = self._indptr[users + 1] - start
        positives = self._indices[start + (rng.random(idx.size) * count).astype(np.int64)]
        return users, positives

    def set_epoch(self, epoch: int) -> None:
        """Reseed the negative sampler for ``epoch``."""
        self.epoch = int(epoch)
        self.rng = np.random.default_rng([self.seed, self.epoch])

    def _batch_rng(self, idx: np.ndarray) -> np.random.Generator:
        """A generator for one batch, from (seed, epoch, the batch's first index): the draws do not depend on
        which DataLoader worker or process builds the batch, nor on how many there are."""
        first = int(idx[0]) if idx.size else 0
        return np.random.default_rng([self.seed, self.epoch, first, int(idx.size)])

    def __len__(self) -> int:
        return self.users.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        rng = self._batch_rng(idx)
        users, positives = self._draw(idx, rng)
        negatives = sample_negatives(users, self.lookup, self.n_items, rng, self.n_neg)
        return self.make_batch(torch.from_numpy(users), torch.from_numpy(positives), torch.from_numpy(negatives))

    def make_batch(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The batch dict from users ``[B]``, positives ``[B]`` and negatives ``[B, n_neg]`` (any device)."""
        return {
            "users": users,
            "pos_items": positives,
            "neg_items": negatives if self.n_neg > 1 else negatives[:, 0],
        }

    def device_sampler(self, device: str | torch.device) -> DeviceEpochSampler:
        """This dataset's examples drawn a whole epoch at a time on ``device`` (see ``DeviceEpochSampler``)."""
        return DeviceEpochSampler(self, device)


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

    def permutation(self) -> torch.Tensor:
        """This epoch's order of the ``n`` indices."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self):
        return iter(self.permutation().tolist())


class EpochSeededBatchSampler(torch.utils.data.BatchSampler):
    """The batches ``BatchSampler(EpochSeededSampler)`` yields, cut from the permutation in C rather than by a
    Python loop over every index (a tenth of a second per epoch on ML-1M). Being a ``BatchSampler`` whose
    ``sampler`` has ``set_epoch``, it is sharded and re-seeded by accelerate like the stock one."""

    sampler: EpochSeededSampler

    def __init__(self, sampler: EpochSeededSampler, batch_size: int, drop_last: bool = False) -> None:
        super().__init__(sampler, batch_size, drop_last)

    def __iter__(self):
        order = self.sampler.permutation()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size].tolist()


class LengthBucketBatchSampler(EpochSeededBatchSampler):
    """Batches of examples of similar length, for datasets whose batches are padded to their longest example
    (sequence windows): far less padding where most sequences are short (the Amazon sets: 8 events on average,
    windows of up to 50).

    Each epoch: the seeded permutation is cut into groups of ``bucket_batches`` batches; each group is sorted by
    length (stable) and cut into batches; the batches are then shuffled (seeded by the same seed and epoch). So
    the examples of a batch are still a random draw from a random group, every example is seen once per epoch,
    and the order depends only on (seed, epoch), as ``EpochSeededBatchSampler``'s."""

    def __init__(
        self,
        sampler: EpochSeededSampler,
        batch_size: int,
        lengths: np.ndarray,
        bucket_batches: int,
        drop_last: bool = False,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        if self.lengths.shape != (len(sampler),):
            raise ValueError(f"lengths: one per example ({len(sampler)}), got shape {tuple(self.lengths.shape)}")
        if bucket_batches < 1:
            raise ValueError(f"bucket_batches must be >= 1, got {bucket_batches}")
        self.bucket_batches = int(bucket_batches)

    def __iter__(self):
        order = self.sampler.permutation()
        group = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), group):
            chunk = order[start : start + group]
            chunk = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        generator = torch.Generator().manual_seed(self.sampler.seed * 1_000_003 + self.sampler.epoch + 7_919)
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index].tolist()


class PointwiseDataset(PairwiseDataset):
    """Each training positive with ``n_neg`` sampled negatives, flattened to (user, item, label) rows."""

    def make_batch(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        n_neg = negatives.shape[1]
        labels = torch.zeros(len(users) * (1 + n_neg), dtype=torch.float32, device=users.device)
        labels[: len(users)] = 1.0
        return {
            "users": torch.cat([users, users.repeat_interleave(n_neg)]),
            "items": torch.cat([positives, negatives.reshape(-1)]),
            "labels": labels,
        }


class DeviceEpochSampler:
    """A ``PairwiseDataset``'s (or ``PointwiseDataset``'s) examples for a whole epoch, drawn with torch on the
    training device and cut into batches there (``TrainConfig.sampling = "device"``).

    A DataLoader builds each batch on the CPU, in worker processes, and copies it to the device: for the small
    batches of embedding models on a GPU that per-batch overhead (worker IPC, collation, host-to-device copies)
    costs more than the step itself. Here one epoch is a handful of large kernels: the examples (the
    interactions in a random order, or uniform users and one of their positives), uniform negatives re-drawn
    while they hit a training positive (binary search over the sorted (user, item) keys), then slices.

    The draws depend only on ``(seed, epoch)`` (so a resumed run sees the same epochs), but they are torch's
    random streams, not the DataLoader path's numpy ones: the two modes give different, equally valid samples.
    """

    def __init__(self, dataset: PairwiseDataset, device: str | torch.device, max_rounds: int = 20) -> None:
        self.dataset = dataset
        self.device = torch.device(device)
        self.max_rounds = int(max_rounds)

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.long, device=self.device)

        self.users = put(dataset.users)
        self.items = put(dataset.items)
        self.indptr = put(dataset._indptr)
        self.indices = put(dataset._indices)
        self.active_users = put(dataset._active_users)
        self.keys = put(dataset.lookup.keys)  # sorted user * n_items + item of every training positive

    def __len__(self) -> int:
        return int(self.users.numel())

    def _generator(self, epoch: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed((self.dataset.seed * 1_000_003 + int(epoch)) % (2**63))
        return generator

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: is each (user, item) pair a training positive?"""
        if self.keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        query = users * self.dataset.n_items + items
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == query

    def draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users ``[N]``, positives ``[N]``, negatives ``[N, n_neg]``) of one epoch, ``N = len(self)``."""
        n, n_neg, n_items = len(self), self.dataset.n_neg, self.dataset.n_items
        generator = self._generator(epoch)
        if self.dataset.sample_by == "interaction":
            order = torch.randperm(n, generator=generator, device=self.device)
            users, positives = self.users[order], self.items[order]
        else:
            pick = torch.randint(self.active_users.numel(), (n,), generator=generator, device=self.device)
            users = self.active_users[pick]
            start = self.indptr[users]
            count = self.indptr[users + 1] - start
            offset = (torch.rand(n, generator=generator, device=self.device, dtype=torch.float64) * count).long()
            positives = self.indices[start + torch.minimum(offset, count - 1)]
        negatives = torch.randint(n_items, (n, n_neg), generator=generator, device=self.device)
        owners = users.unsqueeze(1).expand(n, n_neg)
        bad = self.is_positive(owners, negatives)
        for _ in range(self.max_rounds):  # one host sync per round, a few rounds per epoch
            n_bad = int(bad.sum())
            if n_bad == 0:
                break
            redraw = torch.randint(n_items, (n_bad,), generator=generator, device=self.device)
            negatives[bad] = redraw
            bad[bad.clone()] = self.is_positive(owners[bad], redraw)
        return users, positives, negatives

    def n_batches(self, batch_size: int, num_processes: int = 1) -> int:
        """Batches one process takes per epoch (every process the same number, so none waits at a collective)."""
        total = -(-len(self) // int(batch_size))
        return total if num_processes == 1 else total // num_processes

    def epoch(
        self, epoch: int, batch_size: int, process_index: int = 0, num_processes: int = 1
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of ``epoch`` for one process: every ``num_processes``-th batch from ``process_index``
        (all processes draw the same epoch from the same seed; a remainder that would be uneven is left out)."""
        users, positives, negatives = self.draw(epoch)
        for b in range(self.n_batches(batch_size, num_processes)):
            start = (b * num_processes + process_index) * batch_size
            stop = start + batch_size
            yield self.dataset.make_batch(users[start:stop], positives[start:stop], negatives[start:stop])
