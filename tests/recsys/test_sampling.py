"""Vectorised training-batch construction: membership lookups, negative sampling, user-uniform draws."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.sampling import PairwiseDataset, PointwiseDataset, PositiveLookup, sample_negatives


def _random_csr(n_users=50, n_items=40, density=0.2, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[3] = False  # a user without positives
    return sp.csr_matrix(dense.astype(np.float32))


def test_dense_and_sorted_lookups_agree(monkeypatch):
    csr = _random_csr()
    users, items = np.meshgrid(np.arange(50), np.arange(40), indexing="ij")
    users, items = users.ravel(), items.ravel()
    dense = PositiveLookup(csr)
    assert dense.dense is not None
    monkeypatch.setattr(PositiveLookup, "DENSE_MAX_CELLS", 0)
    searched = PositiveLookup(csr)
    assert searched.dense is None
    expected = csr.toarray().ravel() > 0
    np.testing.assert_array_equal(dense.contains(users, items), expected)
    np.testing.assert_array_equal(searched.contains(users, items), expected)


def test_negatives_are_never_positives():
    csr = _random_csr(density=0.5)
    lookup = PositiveLookup(csr)
    users = np.repeat(np.arange(50), 20)
    negatives = sample_negatives(users, lookup, 40, np.random.default_rng(1), n_neg=3)
    assert negatives.shape == (users.size, 3)
    assert not lookup.contains(np.repeat(users, 3), negatives.ravel()).any()


@pytest.mark.parametrize("cls", [PairwiseDataset, PointwiseDataset])
def test_user_uniform_sampling_draws_each_users_own_positives(cls):
    csr = _random_csr()
    coo = csr.tocoo()
    data = cls(coo.row, coo.col, 40, csr, n_neg=2, seed=5, sample_by="user")
    data.set_epoch(0)
    batch = data.__getitems__(list(range(len(data))))
    if cls is PairwiseDataset:
        users, items = batch["users"].numpy(), batch["pos_items"].numpy()
    else:
        positive = batch["labels"].numpy() > 0
        users, items = batch["users"].numpy()[positive], batch["items"].numpy()[positive]
    assert PositiveLookup(csr).contains(users, items).all()
    assert 3 not in set(users.tolist())  # a user without positives is never drawn
    counts = np.bincount(users, minlength=50)
    assert counts[counts > 0].min() > 0.3 * counts.mean()  # uniform over users, not over interactions
    with pytest.raises(ValueError, match="sample_by"):
        cls(coo.row, coo.col, 40, csr, sample_by="item")


@pytest.mark.parametrize(
    "n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (9, 3, True), (5, 8, False), (5, 8, True)]
)
def test_batch_sampler_cuts_the_same_batches_as_the_stock_one(n, batch_size, drop_last):
    import torch

    from recsys.sampling import EpochSeededBatchSampler, EpochSeededSampler

    sampler = EpochSeededSampler(n, seed=7)
    batches = EpochSeededBatchSampler(sampler, batch_size, drop_last)
    seen = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        expected = list(torch.utils.data.BatchSampler(sampler, batch_size, drop_last))
        assert list(batches) == expected
        assert len(batches) == len(expected)
        seen.append(expected)
    if seen[0]:  # each epoch its own order
        assert seen[0] != seen[1]


@pytest.mark.parametrize("cls", [PairwiseDataset, PointwiseDataset])
@pytest.mark.parametrize("sample_by", ["interaction", "user"])
def test_device_sampler_draws_valid_reproducible_epochs(cls, sample_by):
    """The on-device epoch: real positives, negatives never positives (dense data forces re-draws), the
    interactions each once per epoch, the same epoch from the same seed, batches that tile the epoch."""
    csr = _random_csr(density=0.5)
    coo = csr.tocoo()
    data = cls(coo.row, coo.col, 40, csr, n_neg=2, seed=5, sample_by=sample_by)
    sampler = data.device_sampler("cpu")
    lookup = PositiveLookup(csr)
    users, positives, negatives = (t.numpy() for t in sampler.draw(0))
    assert users.shape == positives.shape == (coo.nnz,) and negatives.shape == (coo.nnz, 2)
    assert lookup.contains(users, positives).all()
    assert not lookup.contains(np.repeat(users, 2), negatives.ravel()).any()
    assert ((negatives >= 0) & (negatives < 40)).all()
    if sample_by == "interaction":
        drawn = np.sort(users * 40 + positives)
        np.testing.assert_array_equal(drawn, np.sort(coo.row.astype(np.int64) * 40 + coo.col))
    else:
        assert 3 not in set(users.tolist())
    again = sampler.draw(0)
    assert np.array_equal(again[0].numpy(), users) and np.array_equal(again[2].numpy(), negatives)
    assert not np.array_equal(sampler.draw(1)[2].numpy(), negatives)

    batches = list(sampler.epoch(0, batch_size=64))
    assert len(batches) == sampler.n_batches(64) == -(-coo.nnz // 64)
    key = "users"
    assert sum(len(b[key]) for b in batches) == coo.nnz * (1 if cls is PairwiseDataset else 3)
    if cls is PointwiseDataset:
        assert batches[0]["labels"].sum() == 64 and batches[0]["labels"].shape == (64 * 3,)
    # two processes take disjoint, equally many batches of the same epoch
    shards = [list(sampler.epoch(0, 64, rank, 2)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == sampler.n_batches(64, 2) == len(batches) // 2
    assert torch.equal(shards[1][0]["users"], batches[1]["users"])


def _padded_cells(batches, lengths) -> int:
    return sum(len(b) * int(lengths[b].max()) for b in batches)


@pytest.mark.parametrize("drop_last", [False, True])
def test_length_buckets_see_every_example_once_with_far_less_padding(drop_last):
    from recsys.sampling import EpochSeededBatchSampler, EpochSeededSampler, LengthBucketBatchSampler

    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.geometric(0.12, size=1003), 50)  # mostly short, a few long (as the Amazon sets)
    sampler = EpochSeededSampler(len(lengths), seed=3)
    buckets = LengthBucketBatchSampler(sampler, 16, lengths, bucket_batches=8, drop_last=drop_last)
    plain = EpochSeededBatchSampler(EpochSeededSampler(len(lengths), seed=3), 16, drop_last=drop_last)
    first = [np.array(b) for b in buckets]
    assert len(first) == len(buckets) == len(list(plain))
    seen = np.concatenate(first)
    if drop_last:  # only the last group's partial batch goes
        assert len(seen) == 1003 - 1003 % 16 and len(set(seen.tolist())) == len(seen)
        assert all(len(b) == 16 for b in first)
    else:
        assert sorted(seen.tolist()) == list(range(1003))
    assert _padded_cells(first, lengths) < 0.6 * _padded_cells([np.array(b) for b in plain], lengths)

    # a batch's examples come from one sorted group: lengths differ little within a batch
    def spread(batches):
        return np.mean([lengths[b].max() - lengths[b].min() for b in batches])

    assert spread(first) < 0.25 * spread([np.array(b) for b in plain])
    # reproducible per (seed, epoch), different across epochs, and not sorted across batches
    again = [np.array(b) for b in LengthBucketBatchSampler(sampler, 16, lengths, 8, drop_last)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    sampler.set_epoch(1)
    assert [b.tolist() for b in first] != [list(b) for b in buckets]
    maxima = [lengths[b].max() for b in first]
    assert maxima != sorted(maxima)


def test_length_buckets_check_their_arguments():
    from recsys.sampling import EpochSeededSampler, LengthBucketBatchSampler

    with pytest.raises(ValueError, match=r"lengths: one per example \(10\), got shape \(9,\)"):
        LengthBucketBatchSampler(EpochSeededSampler(10), 4, np.ones(9), 2)
    with pytest.raises(ValueError, match="bucket_batches must be >= 1"):
        LengthBucketBatchSampler(EpochSeededSampler(10), 4, np.ones(10), 0)
