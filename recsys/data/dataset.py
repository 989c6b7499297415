"""The interaction dataset type, its two-way id maps, splits and the data layer's exceptions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.errors import UserError

logger = logging.getLogger(__name__)

# Values of ``InteractionDataset.fold`` for datasets that ship their own split (LightGCN train/test files).
FOLD_TRAIN, FOLD_VALID, FOLD_TEST = 0, 1, 2


class DataError(UserError, ValueError):
    """Bad or missing data; the message names the file, line and field where it can."""


class UnknownIdError(DataError, KeyError):
    """A raw user or item id (or a dense index) that the map does not know."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class IdMap:
    """Two-way map between raw ids (strings) and dense integer indices 0..n-1."""

    def __init__(self, raw: Sequence[str], kind: str = "id") -> None:
        self.kind = kind
        self.raw: list[str] = [str(r) for r in raw]
        self._index = pd.Index(self.raw, dtype=object)
        if not self._index.is_unique:
            duplicated = self._index[self._index.duplicated()].tolist()[:5]
            raise DataError(f"IdMap: raw {kind}s must be unique, duplicated: {duplicated}")
        self._lookup: dict[str, int] | None = None

    @classmethod
    def from_raw(cls, values: Iterable[Any], sort: bool = False, kind: str = "id") -> IdMap:
        """Map the distinct values in order of first appearance (or sorted, when ``sort=True``)."""
        strings = [str(v) for v in values]
        uniques = pd.unique(pd.Series(strings, dtype=object)).tolist() if strings else []
        if sort:
            uniques = sorted(uniques)
        return cls(uniques, kind=kind)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        head = ", ".join(self.raw[:3]) + (", ..." if len(self.raw) > 3 else "")
        return f"IdMap({len(self.raw)} {self.kind}s: {head})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.raw == other.raw

    def __contains__(self, raw: object) -> bool:
        return str(raw) in self._dict()

    def _dict(self) -> dict[str, int]:
        if self._lookup is None:
            self._lookup = {r: i for i, r in enumerate(self.raw)}
        return self._lookup

    def to_index(self, raw: Any) -> int:
        """Dense index of ``raw``; raises ``UnknownIdError`` naming the id."""
        try:
            return self._dict()[str(raw)]
        except KeyError:
            raise UnknownIdError(f"unknown {self.kind} {str(raw)!r} ({len(self)} known)") from None

    def to_raw(self, index: int) -> str:
        """Raw id of dense ``index``; raises ``UnknownIdError`` when out of range."""
        i = int(index)
        if not 0 <= i < len(self.raw):
            raise UnknownIdError(f"{self.kind} index {i} out of range [0, {len(self.raw)})")
        return self.raw[i]

    def index_array(self, raws: Iterable[Any]) -> np.ndarray:
        """Dense indices (int64) of many raw ids at once; raises ``UnknownIdError`` naming the first unknown."""
        values = [str(r) for r in raws] if not isinstance(raws, np.ndarray) else raws.astype(str).tolist()
        codes = self._index.get_indexer(pd.Index(values, dtype=object)) if values else np.zeros(0, np.int64)
        missing = np.flatnonzero(codes < 0)
        if missing.size:
            raise UnknownIdError(
                f"unknown {self.kind} {values[missing[0]]!r} ({missing.size} unknown of {len(values)} given)"
            )
        return codes.astype(np.int64)

    def raw_array(self, indices: np.ndarray) -> np.ndarray:
        """Raw ids (object array) of many dense indices at once."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.raw)):
            raise UnknownIdError(f"{self.kind} indices out of range [0, {len(self.raw)})")
        return np.asarray(self.raw, dtype=object)[idx]

    def subset(self, keep: np.ndarray) -> IdMap:
        """A new map over the raw ids at the (sorted) dense indices ``keep``, renumbered 0..len(keep)-1."""
        return IdMap([self.raw[i] for i in np.asarray(keep, dtype=np.int64)], kind=self.kind)


@dataclasses.dataclass
class InteractionDataset:
    """User-item interactions with dense indices, optional ratings/timestamps and side information.

    ``fold`` is set only by loaders of datasets that ship their own split (0 train, 1 valid, 2 test);
    ``make_split(ds, "given")`` uses it.
    """

    name: str
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None
    timestamps: np.ndarray | None
    user_map: IdMap
    item_map: IdMap
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    item_text: list[str] | None = None
    source: str = ""
    fold: np.ndarray | None = None
    # what the loader read and what it skipped (rows read, duplicates dropped, ...); `recsys.data info` prints it
    read_report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = np.ascontiguousarray(self.users, dtype=np.int64)
        self.items = np.ascontiguousarray(self.items, dtype=np.int64)
        n = self.users.shape[0]
        where = f"{self.source or self.name}"
        if self.users.ndim != 1 or self.items.shape != (n,):
            raise DataError(f"{where}: users and items must be 1-d arrays of equal length")
        if self.ratings is not None:
            self.ratings = np.ascontiguousarray(self.ratings, dtype=np.float32)
            if self.ratings.shape != (n,):
                raise DataError(f"{where}: field 'rating' has {self.ratings.shape[0]} values for {n} rows")
        if self.timestamps is not None:
            self.timestamps = np.ascontiguousarray(self.timestamps, dtype=np.float64)
            if self.timestamps.shape != (n,):
                raise DataError(f"{where}: field 'timestamp' has {self.timestamps.shape[0]} values for {n} rows")
        if self.fold is not None:
            self.fold = np.ascontiguousarray(self.fold, dtype=np.int8)
            if self.fold.shape != (n,):
                raise DataError(f"{where}: fold has {self.fold.shape[0]} values for {n} rows")
        for field, values, size in (("user", self.users, len(self.user_map)), ("item", self.items, len(self.item_map))):
            if n and (values.min() < 0 or values.max() >= size):
                raise DataError(f"{where}: {field} indices must lie in [0, {size}) (the {field} map's size)")
        if self.item_text is not None and len(self.item_text) != len(self.item_map):
            raise DataError(f"{where}: item_text has {len(self.item_text)} entries for {len(self.item_map)} items")

    @classmethod
    def from_raw(
        cls,
        name: str,
        users: Iterable[Any],
        items: Iterable[Any],
        ratings: Iterable[float] | None = None,
        timestamps: Iterable[float] | None = None,
        source: str = "",
    ) -> InteractionDataset:
        """Build a dataset from raw ids (maps in order of first appearance)."""
        user_codes, user_uniques = pd.factorize(pd.Series([str(u) for u in users], dtype=object))
        item_codes, item_uniques = pd.factorize(pd.Series([str(i) for i in items], dtype=object))
        return cls(
            name=name,
            users=user_codes,
            items=item_codes,
            ratings=None if ratings is None else np.asarray(list(ratings), dtype=np.float32),
            timestamps=None if timestamps is None else np.asarray(list(timestamps), dtype=np.float64),
            user_map=IdMap(list(user_uniques), kind="user"),
            item_map=IdMap(list(item_uniques), kind="item"),
            source=source,
        )

    @property
    def n_users(self) -> int:
        """Number of users in the map (not only those with rows)."""
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        """Number of items in the map (not only those with rows)."""
        return len(self.item_map)

    @property
    def n_interactions(self) -> int:
        """Number of interaction rows."""
        return int(self.users.shape[0])

    @property
    def density(self) -> float:
        """Interactions / (users x items)."""
        cells = self.n_users * self.n_items
        return self.n_interactions / cells if cells else 0.0

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (
            f"InteractionDataset({self.name!r}: {self.n_users} users, {self.n_items} items, "
            f"{self.n_interactions} interactions)"
        )

    def to_csr(self, binary: bool = True) -> sp.csr_matrix:
        """The (n_users, n_items) interaction matrix: ones, or ratings (interaction counts if none)."""
        if binary or self.ratings is None:
            data = np.ones(self.n_interactions, dtype=np.float32)
        else:
            data = self.ratings.astype(np.float32)
        matrix = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        if binary:
            matrix.data[:] = 1.0
        return matrix

    def subset(self, mask: np.ndarray) -> InteractionDataset:
        """The rows selected by a boolean mask or an index array; maps and side information are shared."""
        mask = np.asarray(mask)
        if mask.dtype == bool and mask.shape != (self.n_interactions,):
            raise DataError(f"{self.name}: subset mask has shape {mask.shape}, expected ({self.n_interactions},)")
        return dataclasses.replace(
            self,
            users=self.users[mask],
            items=self.items[mask],
            ratings=None if self.ratings is None else self.ratings[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            fold=None if self.fold is None else self.fold[mask],
        )

    def concat(self, other: InteractionDataset) -> InteractionDataset:
        """The rows of ``self`` followed by those of ``other`` (same maps; e.g. train + valid before test)."""
        if other.user_map is not self.user_map and len(other.user_map) != len(self.user_map):
            raise DataError(f"{self.name}: cannot concatenate parts with different user maps")
        if other.item_map is not self.item_map and len(other.item_map) != len(self.item_map):
            raise DataError(f"{self.name}: cannot concatenate parts with different item maps")

        def join(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            if a is None and b is None:
                return None
            if a is None or b is None:
                raise DataError(f"{self.name}: one part has a field the other lacks (ratings, timestamps or fold)")
            return np.concatenate([a, b])

        return dataclasses.replace(
            self,
            users=np.concatenate([self.users, other.users]),
            items=np.concatenate([self.items, other.items]),
            ratings=join(self.ratings, other.ratings),
            timestamps=join(self.timestamps, other.timestamps),
            fold=join(self.fold, other.fold),
        )

    def info(self) -> dict[str, Any]:
        """Counts, density and the first/last timestamp (raw numbers, None without timestamps)."""
        has_time = self.timestamps is not None and self.n_interactions > 0
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_interactions": self.n_interactions,
            "density": self.density,
            "first_timestamp": float(self.timestamps.min()) if has_time else None,
            "last_timestamp": float(self.timestamps.max()) if has_time else None,
        }


@dataclasses.dataclass
class Split:
    """Train / valid / test parts of one dataset (same maps); ``valid`` may be empty."""

    train: InteractionDataset
    valid: InteractionDataset
    test: InteractionDataset
    protocol: str
    seed: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def train_csr(self) -> sp.csr_matrix:
        """Binary train matrix (n_users, n_items)."""
        return self.train.to_csr()

    def valid_csr(self) -> sp.csr_matrix:
        """Binary validation matrix (n_users, n_items); all zeros when valid is empty."""
        return self.valid.to_csr()

    def test_csr(self) -> sp.csr_matrix:
        """Binary test matrix (n_users, n_items)."""
        return self.test.to_csr()

    def info(self) -> dict[str, Any]:
        """Protocol, seed, parameters and the row count of each part."""
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            **({"params": self.params} if self.params else {}),
            "n_users": self.train.n_users,
            "n_items": self.train.n_items,
            "n_train": self.train.n_interactions,
            "n_valid": self.valid.n_interactions,
            "n_test": self.test.n_interactions,
        }
