"""Seeded, reproducible train/valid/test splits and k-core filtering.

Every split labels each interaction row exactly once (train, valid or test), so the three parts are
disjoint as rows and their union is the dataset; each part keeps the dataset's maps.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.dataset import FOLD_TEST, FOLD_TRAIN, FOLD_VALID, DataError, InteractionDataset, Split

logger = logging.getLogger(__name__)

DEFAULT_SEED = 2024


def _where(dataset: InteractionDataset) -> str:
    return dataset.source or dataset.name


def split_from_labels(
    dataset: InteractionDataset,
    labels: np.ndarray,
    protocol: str,
    seed: int | None,
    params: dict[str, Any] | None = None,
) -> Split:
    """A Split from one label per row (0 train, 1 valid, 2 test)."""
    labels = np.asarray(labels)
    return Split(
        train=dataset.subset(labels == FOLD_TRAIN),
        valid=dataset.subset(labels == FOLD_VALID),
        test=dataset.subset(labels == FOLD_TEST),
        protocol=protocol,
        seed=seed,
        params=dict(params or {}),
    )


def _rank_within_user(users: np.ndarray, n_users: int, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row among its user's rows ordered by ``keys`` (first key most significant),
    ties broken by row order; and each row's user's row count."""
    n = users.size
    order = np.lexsort((np.arange(n), *reversed(keys), users))
    counts = np.bincount(users, minlength=n_users)
    starts = np.cumsum(counts) - counts
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - starts[users[order]]
    return position, counts[users]


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = [float(r) for r in ratios]
    if len(values) == 2:
        values = [values[0], 0.0, values[1]]
    if len(values) != 3 or any(r < 0 for r in values) or not np.isclose(sum(values), 1.0, atol=1e-6):
        raise DataError(f"ratios must be 2 or 3 non-negative numbers summing to 1 (train, [valid,] test), got {ratios}")
    return values[0], values[1], values[2]


def _log_repeats(dataset: InteractionDataset, labels: np.ndarray, protocol: str) -> None:
    """Warn when a test (user, item) pair also occurs in train (repeat consumption): the evaluator masks it."""
    train = labels == FOLD_TRAIN
    test = labels == FOLD_TEST
    if not test.any() or not train.any():
        return
    train_pairs = pd.MultiIndex.from_arrays([dataset.users[train], dataset.items[train]])
    repeats = pd.MultiIndex.from_arrays([dataset.users[test], dataset.items[test]]).isin(train_pairs)
    if repeats.any():
        logger.warning(
            "%s (%s): %d test interactions repeat a (user, item) pair seen in train; full ranking masks "
            "train items, so these cannot be hit",
            _where(dataset),
            protocol,
            int(repeats.sum()),
        )


def leave_one_out_split(
    dataset: InteractionDataset, by: str = "time", valid: bool = True, seed: int | None = DEFAULT_SEED
) -> Split:
    """Each user's last interaction -> test, second last -> valid (ties: later row is later).

    Users with one interaction stay train-only (a warning counts them); users with two get train + test.
    ``by="random"`` holds out random interactions instead (seeded).
    """
    n = dataset.n_interactions
    if by == "time":
        if dataset.timestamps is None:
            logger.warning("%s has no timestamps: leave-one-out uses the row order as time", _where(dataset))
            key, protocol = np.arange(n, dtype=np.float64), "leave_one_out_by_order"
        else:
            key, protocol = dataset.timestamps, "leave_one_out_by_time"
    elif by == "random":
        key, protocol = np.random.default_rng(seed).random(n), "leave_one_out_random"
    else:
        raise DataError(f"leave_one_out_split: by must be 'time' or 'random', got {by!r}")
    position, count = _rank_within_user(dataset.users, dataset.n_users, key)
    from_end = count - 1 - position
    labels = np.full(n, FOLD_TRAIN, dtype=np.int8)
    labels[(from_end == 0) & (count >= 2)] = FOLD_TEST
    if valid:
        labels[(from_end == 1) & (count >= 3)] = FOLD_VALID
    per_user = np.bincount(dataset.users, minlength=dataset.n_users)
    singles = int((per_user == 1).sum())
    if singles:
        logger.warning(
            "%s: %d users have a single interaction; kept in train only (no test item for them)",
            _where(dataset),
            singles,
        )
    if valid:
        pairs = int((per_user == 2).sum())
        if pairs:
            logger.info("%s: %d users have two interactions: train + test, no validation item", _where(dataset), pairs)
    _log_repeats(dataset, labels, protocol)
    return split_from_labels(dataset, labels, protocol, seed, {"by": by, "valid": bool(valid)})


def temporal_split(
    dataset: InteractionDataset, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int | None = None
) -> Split:
    """Cut at global timestamp quantiles: the earliest share -> train, then valid, the latest -> test.

    Rows with equal timestamps are ordered by row position; users/items absent from train stay in the
    later parts and are counted in a log message.
    """
    if dataset.timestamps is None:
        raise DataError(f"{_where(dataset)}: field 'timestamp' missing; a temporal split needs timestamps")
    r_train, r_valid, _ = _check_ratios(ratios)
    n = dataset.n_interactions
    order = np.lexsort((np.arange(n), dataset.timestamps))
    cut_train = round(n * r_train)
    cut_valid = round(n * (r_train + r_valid))
    labels = np.empty(n, dtype=np.int8)
    labels[order[:cut_train]] = FOLD_TRAIN
    labels[order[cut_train:cut_valid]] = FOLD_VALID
    labels[order[cut_valid:]] = FOLD_TEST
    train = labels == FOLD_TRAIN
    seen_users = np.zeros(dataset.n_users, dtype=bool)
    seen_users[dataset.users[train]] = True
    seen_items = np.zeros(dataset.n_items, dtype=bool)
    seen_items[dataset.items[train]] = True
    for part, value in (("valid", FOLD_VALID), ("test", FOLD_TEST)):
        rows = labels == value
        cold_users = np.unique(dataset.users[rows][~seen_users[dataset.users[rows]]]).size
        cold_items = np.unique(dataset.items[rows][~seen_items[dataset.items[rows]]]).size
        cold_rows = int((rows & (~seen_users[dataset.users] | ~seen_items[dataset.items])).sum())
        if cold_rows:
            logger.info(
                "%s (temporal): %s holds %d users and %d items never seen in train (%d of its %d rows); kept",
                _where(dataset),
                part,
                cold_users,
                cold_items,
                cold_rows,
                int(rows.sum()),
            )
    _log_repeats(dataset, labels, "temporal_global")
    params: dict[str, Any] = {"ratios": [round(r, 10) for r in _check_ratios(ratios)]}
    if n:
        params["train_end_timestamp"] = float(dataset.timestamps[order[cut_train - 1]]) if cut_train else None
    return split_from_labels(dataset, labels, "temporal_global", seed, params)


def random_split(
    dataset: InteractionDataset,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int | None = DEFAULT_SEED,
    per_user: bool = True,
) -> Split:
    """Random ratio split, per user (each user's rows shuffled and cut; >= 1 train row each) or global."""
    r_train, r_valid, _ = _check_ratios(ratios)
    n = dataset.n_interactions
    rng = np.random.default_rng(seed)
    labels = np.empty(n, dtype=np.int8)
    if per_user:
        position, count = _rank_within_user(dataset.users, dataset.n_users, rng.random(n))
        n_train = np.maximum(1, np.round(count * r_train)).astype(np.int64)
        n_train_valid = np.maximum(n_train, np.round(count * (r_train + r_valid)).astype(np.int64))
        labels[:] = FOLD_TEST
        labels[position < n_train_valid] = FOLD_VALID
        labels[position < n_train] = FOLD_TRAIN
        protocol = "random_per_user"
    else:
        order = rng.permutation(n)
        cut_train, cut_valid = round(n * r_train), round(n * (r_train + r_valid))
        labels[order[:cut_train]] = FOLD_TRAIN
        labels[order[cut_train:cut_valid]] = FOLD_VALID
        labels[order[cut_valid:]] = FOLD_TEST
        protocol = "random_global"
    _log_repeats(dataset, labels, protocol)
    params = {"ratios": [round(r, 10) for r in (r_train, r_valid, 1.0 - r_train - r_valid)], "per_user": per_user}
    return split_from_labels(dataset, labels, protocol, seed, params)


def given_split(dataset: InteractionDataset, valid_ratio: float = 0.0, seed: int | None = DEFAULT_SEED) -> Split:
    """The split a dataset ships with (``dataset.fold``); optionally carve a per-user validation share of train."""
    if dataset.fold is None:
        raise DataError(
            f"{_where(dataset)}: has no given train/test split (only LightGCN train.txt/test.txt and RecBole "
            "<name>.train/.test.inter folders do); use 'loo', 'temporal' or 'random'"
        )
    labels = dataset.fold.astype(np.int8).copy()
    if valid_ratio:
        if not 0.0 < valid_ratio < 1.0:
            raise DataError(f"valid_ratio must lie in (0, 1), got {valid_ratio}")
        if (labels == FOLD_VALID).any():
            raise DataError(f"{_where(dataset)}: already has a validation part; valid_ratio must be 0")
        train_rows = np.flatnonzero(labels == FOLD_TRAIN)
        users = dataset.users[train_rows]
        rng = np.random.default_rng(seed)
        position, count = _rank_within_user(users, dataset.n_users, rng.random(train_rows.size))
        n_valid = np.minimum(np.round(count * valid_ratio), count - 1)
        labels[train_rows[position < n_valid]] = FOLD_VALID
    _log_repeats(dataset, labels, "given_train_test")
    return split_from_labels(dataset, labels, "given_train_test", seed, {"valid_ratio": float(valid_ratio)})


PROTOCOLS: dict[str, tuple[Callable[..., Split], dict[str, Any]]] = {
    "loo": (leave_one_out_split, {"by": "time"}),
    "leave_one_out": (leave_one_out_split, {"by": "time"}),
    "leave_one_out_by_time": (leave_one_out_split, {"by": "time"}),
    "loo_random": (leave_one_out_split, {"by": "random"}),
    "temporal": (temporal_split, {}),
    "temporal_global": (temporal_split, {}),
    "random": (random_split, {}),
    "random_per_user": (random_split, {"per_user": True}),
    "random_global": (random_split, {"per_user": False}),
    "given": (given_split, {}),
    "given_train_test": (given_split, {}),
}


def make_split(dataset: InteractionDataset, protocol: str, seed: int | None = DEFAULT_SEED, **kwargs: Any) -> Split:
    """Split by protocol name (loo, leave_one_out, temporal, random, random_global, given, ...)."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown split protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    function, defaults = PROTOCOLS[protocol]
    options = {**defaults, **kwargs}
    accepted = set(inspect.signature(function).parameters) - {"dataset"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DataError(f"split {protocol!r}: unknown option(s) {unknown}; accepted: {sorted(accepted - {'seed'})}")
    return function(dataset, seed=seed, **options)


def kcore_filter(dataset: InteractionDataset, user_k: int = 0, item_k: int = 0) -> InteractionDataset:
    """Keep the rows of users with >= user_k rows and items with >= item_k rows, iterated until stable;
    the maps (and side information) are re-indexed to the surviving users and items."""
    users, items = dataset.users, dataset.items
    keep = np.ones(dataset.n_interactions, dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        user_counts = np.bincount(users[keep], minlength=dataset.n_users)
        item_counts = np.bincount(items[keep], minlength=dataset.n_items)
        new_keep = keep & (user_counts[users] >= user_k) & (item_counts[items] >= item_k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise DataError(
            f"{_where(dataset)}: k-core filtering (user_k={user_k}, item_k={item_k}) removed every interaction"
        )
    kept_users = np.unique(users[keep])
    kept_items = np.unique(items[keep])
    user_lookup = np.full(dataset.n_users, -1, dtype=np.int64)
    user_lookup[kept_users] = np.arange(kept_users.size)
    item_lookup = np.full(dataset.n_items, -1, dtype=np.int64)
    item_lookup[kept_items] = np.arange(kept_items.size)

    def features(frame: pd.DataFrame | None, kept: np.ndarray) -> pd.DataFrame | None:
        if frame is None:
            return None
        out = frame.iloc[kept].reset_index(drop=True)
        out.index.name = frame.index.name
        return out

    filtered = dataclasses.replace(
        dataset.subset(keep),
        users=user_lookup[users[keep]],
        items=item_lookup[items[keep]],
        user_map=dataset.user_map.subset(kept_users),
        item_map=dataset.item_map.subset(kept_items),
        item_features=features(dataset.item_features, kept_items),
        user_features=features(dataset.user_features, kept_users),
        item_text=None if dataset.item_text is None else [dataset.item_text[i] for i in kept_items],
    )
    logger.info(
        "%s: %d-core users / %d-core items after %d rounds: %d -> %d users, %d -> %d items, %d -> %d interactions",
        _where(dataset),
        user_k,
        item_k,
        rounds,
        dataset.n_users,
        filtered.n_users,
        dataset.n_items,
        filtered.n_items,
        dataset.n_interactions,
        filtered.n_interactions,
    )
    return filtered
