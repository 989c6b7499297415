"""recsys.data splits (leave-one-out, temporal, random, given) and k-core filtering."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from recsys.data import (
    DataError,
    IdMap,
    InteractionDataset,
    Split,
    kcore_filter,
    leave_one_out_split,
    make_split,
    random_split,
    temporal_split,
)


def synthetic(seed: int = 0, n_users: int = 60, n_items: int = 40) -> InteractionDataset:
    """Users with 1, 2 and many interactions; coarse timestamps so that ties occur."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(n_users):
        count = 1 if user % 10 == 0 else 2 if user % 10 == 1 else int(rng.integers(3, 15))
        chosen = rng.choice(n_items, size=count, replace=False)
        users += [user] * count
        items += chosen.tolist()
        times += rng.integers(0, 20, size=count).tolist()  # many equal timestamps
    order = rng.permutation(len(users))  # rows not sorted by user or time
    return InteractionDataset(
        name="synthetic",
        users=np.asarray(users)[order],
        items=np.asarray(items)[order],
        ratings=rng.integers(1, 6, size=len(users)).astype(np.float32),
        timestamps=np.asarray(times, dtype=np.float64)[order],
        user_map=IdMap([f"u{u}" for u in range(n_users)], kind="user"),
        item_map=IdMap([f"i{i}" for i in range(n_items)], kind="item"),
        item_text=[f"item {i}" for i in range(n_items)],
        source="synthetic",
    )


def rows(ds: InteractionDataset) -> Counter:
    return Counter(zip(ds.users.tolist(), ds.items.tolist(), ds.timestamps.tolist(), strict=True))


def assert_partition(ds: InteractionDataset, split: Split) -> None:
    """train, valid, test are disjoint as (user, item, time) rows, union back to the dataset, share maps."""
    parts = [rows(split.train), rows(split.valid), rows(split.test)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not (set(parts[i]) & set(parts[j])), "parts overlap"
    assert parts[0] + parts[1] + parts[2] == rows(ds)
    for part in (split.train, split.valid, split.test):
        assert part.user_map is ds.user_map and part.item_map is ds.item_map
        assert part.to_csr().shape == (ds.n_users, ds.n_items)


ALL_PROTOCOLS = [
    ("loo", {}),
    ("leave_one_out", {"valid": False}),
    ("loo_random", {}),
    ("temporal", {}),
    ("temporal", {"ratios": (0.7, 0.3)}),
    ("random", {}),
    ("random_global", {"ratios": (0.6, 0.2, 0.2)}),
]


@pytest.mark.parametrize(("protocol", "options"), ALL_PROTOCOLS)
def test_every_split_partitions_the_rows_and_is_reproducible(protocol, options):
    ds = synthetic()
    first = make_split(ds, protocol, seed=3, **options)
    assert_partition(ds, first)
    assert first.protocol and first.seed == 3
    assert first.test.n_interactions > 0 and first.train.n_interactions > first.test.n_interactions
    second = make_split(ds, protocol, seed=3, **options)
    for a, b in ((first.train, second.train), (first.valid, second.valid), (first.test, second.test)):
        np.testing.assert_array_equal(a.users, b.users)
        np.testing.assert_array_equal(a.items, b.items)


def test_given_split_partitions_the_rows():
    ds = synthetic()
    ds.fold = (np.arange(ds.n_interactions) % 5 == 0).astype(np.int8) * 2
    split = make_split(ds, "given")
    assert_partition(ds, split)
    assert split.test.n_interactions == int((ds.fold == 2).sum()) and split.valid.n_interactions == 0
    carved = make_split(ds, "given", seed=1, valid_ratio=0.2)
    assert_partition(ds, carved)
    assert carved.valid.n_interactions > 0
    np.testing.assert_array_equal(carved.test.items, split.test.items)
    with pytest.raises(DataError, match="no given train/test split"):
        make_split(synthetic(), "given")


def test_leave_one_out_holds_out_each_users_latest(caplog):
    ds = synthetic()
    with caplog.at_level(logging.WARNING):
        split = leave_one_out_split(ds)
    assert split.protocol == "leave_one_out_by_time"
    per_user = np.bincount(ds.users, minlength=ds.n_users)
    test_users = np.bincount(split.test.users, minlength=ds.n_users)
    valid_users = np.bincount(split.valid.users, minlength=ds.n_users)
    np.testing.assert_array_equal(test_users, (per_user >= 2).astype(int))
    np.testing.assert_array_equal(valid_users, (per_user >= 3).astype(int))
    singles = int((per_user == 1).sum())
    assert f"{singles} users have a single interaction" in caplog.text
    for user in range(ds.n_users):
        train_times = split.train.timestamps[split.train.users == user]
        valid_times = split.valid.timestamps[split.valid.users == user]
        test_times = split.test.timestamps[split.test.users == user]
        if per_user[user] == 1:
            assert train_times.size == 1 and test_times.size == 0
        for held_out in (test_times, valid_times):
            if held_out.size and train_times.size:
                assert held_out.min() >= train_times.max()
        if valid_times.size:
            assert test_times.min() >= valid_times.max()


def test_leave_one_out_breaks_timestamp_ties_by_row_order():
    ds = InteractionDataset.from_raw(
        "ties", ["a", "a", "a", "b", "b"], ["x", "y", "z", "x", "y"], timestamps=[5, 5, 5, 1, 1]
    )
    split = leave_one_out_split(ds)
    assert sorted(ds.item_map.raw_array(split.test.items).tolist()) == ["y", "z"]  # the later row of each tie
    assert ds.item_map.raw_array(split.valid.items).tolist() == ["y"]
    shuffled = leave_one_out_split(ds.subset(np.array([2, 1, 0, 4, 3])))
    assert sorted(ds.item_map.raw_array(shuffled.test.items).tolist()) == ["x", "x"]


def test_leave_one_out_without_timestamps_uses_row_order(caplog):
    ds = InteractionDataset.from_raw("order", ["a", "a", "a"], ["x", "y", "z"])
    with caplog.at_level(logging.WARNING):
        split = leave_one_out_split(ds)
    assert split.protocol == "leave_one_out_by_order" and "row order" in caplog.text
    assert ds.item_map.raw_array(split.test.items).tolist() == ["z"]


def test_temporal_split_cuts_global_time(caplog):
    ds = synthetic()
    with caplog.at_level(logging.INFO):
        split = temporal_split(ds, ratios=(0.8, 0.1, 0.1))
    assert split.protocol == "temporal_global"
    assert split.train.timestamps.max() <= split.valid.timestamps.min()
    assert split.valid.timestamps.max() <= split.test.timestamps.min()
    n = ds.n_interactions
    assert split.train.n_interactions == round(0.8 * n) and split.test.n_interactions == n - round(0.9 * n)
    late_user = ds.subset(np.ones(n, dtype=bool))  # a copy of the arrays
    late_user.timestamps[late_user.users == 5] = 100.0  # user 5 appears only at the end: cold in test
    caplog.clear()
    with caplog.at_level(logging.INFO):
        temporal_split(late_user)
    assert "never seen in train" in caplog.text
    with pytest.raises(DataError, match="needs timestamps"):
        temporal_split(InteractionDataset.from_raw("x", ["a"], ["b"]))
    with pytest.raises(DataError, match="ratios"):
        temporal_split(ds, ratios=(0.8, 0.3))


def test_random_split_per_user_keeps_a_train_row_and_depends_on_seed():
    ds = synthetic()
    split = random_split(ds, ratios=(0.8, 0.1, 0.1), seed=1)
    assert split.protocol == "random_per_user"
    assert set(ds.users.tolist()) == set(split.train.users.tolist())
    other = random_split(ds, ratios=(0.8, 0.1, 0.1), seed=2)
    assert rows(split.test) != rows(other.test)
    ten = InteractionDataset.from_raw("ten", ["a"] * 10, [str(i) for i in range(10)], timestamps=range(10))
    counts = random_split(ten, seed=0).info()
    assert (counts["n_train"], counts["n_valid"], counts["n_test"]) == (8, 1, 1)
    global_split = random_split(ds, ratios=(0.5, 0.5), seed=0, per_user=False)
    assert global_split.train.n_interactions == round(0.5 * ds.n_interactions)
    assert global_split.valid.n_interactions == 0


def test_make_split_rejects_unknown_protocols_and_options():
    ds = synthetic()
    with pytest.raises(DataError, match="unknown split protocol 'bogus'; known: loo"):
        make_split(ds, "bogus")
    with pytest.raises(DataError, match=r"unknown option\(s\) \['ratio'\]"):
        make_split(ds, "temporal", ratio=0.5)


def test_kcore_filter_iterates_until_stable_and_reindexes():
    # item z has 2 users; removing user c (1 row) leaves z with 1 user, which then drops a's z row
    raw = [
        ("a", "x"),
        ("a", "y"),
        ("a", "z"),
        ("b", "x"),
        ("b", "y"),
        ("b", "w"),
        ("c", "z"),
        ("d", "x"),
        ("d", "y"),
        ("d", "w"),
    ]
    ds = InteractionDataset.from_raw("k", [u for u, _ in raw], [i for _, i in raw], timestamps=range(len(raw)))
    ds.item_text = [f"text {i}" for i in ds.item_map.raw]
    ds.item_features = pd.DataFrame({"item_id": ds.item_map.raw, "size": np.arange(ds.n_items)})
    filtered = kcore_filter(ds, user_k=2, item_k=2)
    assert filtered.user_map.raw == ["a", "b", "d"]
    assert filtered.item_map.raw == ["x", "y", "w"]  # z fell below 2 once c was removed
    assert filtered.n_interactions == 8
    assert np.bincount(filtered.users).min() >= 2 and np.bincount(filtered.items).min() >= 2
    assert filtered.item_text == ["text x", "text y", "text w"]
    assert filtered.item_features["item_id"].tolist() == filtered.item_map.raw
    pairs = {
        (filtered.user_map.to_raw(u), filtered.item_map.to_raw(i))
        for u, i in zip(filtered.users, filtered.items, strict=True)
    }
    assert pairs == set(raw) - {("a", "z"), ("c", "z")}
    assert kcore_filter(ds, 0, 0).n_interactions == ds.n_interactions
    with pytest.raises(DataError, match="removed every interaction"):
        kcore_filter(ds, user_k=10, item_k=1)
