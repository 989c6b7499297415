"""Vectorised training-batch construction: membership lookups, negative sampling, user-uniform draws."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

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
