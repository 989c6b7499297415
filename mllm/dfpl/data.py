"""The image-tabular data layer: typed tables, image token sets, labels, and seeded missing-modality masks.

A :class:`MultimodalData` holds, per sample, an image token set (cached EfficientNet features or synthetic
tokens; ``(n, L, D)``), a table (standardised numeric columns and integer-coded categorical columns) and a
label. :func:`missing_masks` draws which samples lose which modality. :meth:`MultimodalData.batch` builds a
model batch in which every masked input is replaced by NaN, so a model that reads (rather than skips) a
missing input produces NaN: the tests rely on this, and ``torch.isfinite`` on a model output is a check.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mllm.dfpl.errors import DfplError

logger = logging.getLogger(__name__)

PATTERNS = ("none", "image", "table", "mixed")


@dataclass
class TableSchema:
    """Column names of a typed table and the vocabulary size of each categorical column (code 0 = unknown)."""

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    cardinalities: list[int] = field(default_factory=list)


@dataclass
class MultimodalData:
    """Image tokens ``(n, L, D)``, numeric ``(n, p)`` float32, categorical ``(n, q)`` int64 codes, labels ``(n,)``."""

    image: np.ndarray
    numeric: np.ndarray
    categorical: np.ndarray
    labels: np.ndarray
    schema: TableSchema
    num_classes: int
    image_present: np.ndarray | None = None  # natural missingness (e.g. a pet without photos); None = all there

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("image", "numeric", "categorical"):
            if len(getattr(self, name)) != n:
                raise DfplError(f"MultimodalData.{name}: {len(getattr(self, name))} rows, labels have {n}")
        if self.numeric.shape[1] != len(self.schema.numeric):
            raise DfplError(f"numeric: {self.numeric.shape[1]} columns, schema names {len(self.schema.numeric)}")
        if self.categorical.shape[1] != len(self.schema.categorical):
            raise DfplError(
                f"categorical: {self.categorical.shape[1]} columns, schema names {len(self.schema.categorical)}"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise DfplError(f"labels must lie in 0..{self.num_classes - 1}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> MultimodalData:
        """The rows ``index`` (a view-free copy)."""
        present = None if self.image_present is None else self.image_present[index]
        return MultimodalData(
            self.image[index],
            self.numeric[index],
            self.categorical[index],
            self.labels[index],
            self.schema,
            self.num_classes,
            present,
        )

    def batch(self, index: np.ndarray, image_mask: np.ndarray, table_mask: np.ndarray) -> dict[str, torch.Tensor]:
        """A model batch for rows ``index``; a False in a mask means that modality is missing for that row.

        Missing inputs are never copied: their slots hold NaN (numeric/image) or -1 (categorical), so any
        model that reads them fails loudly instead of silently using a zero fill.
        """
        image_mask = image_mask.astype(bool)
        table_mask = table_mask.astype(bool)
        if self.image_present is not None:  # a sample with no photo at all keeps its table
            image_mask = image_mask & self.image_present[index]
            table_mask = table_mask | ~image_mask
        image = np.full((len(index), *self.image.shape[1:]), np.nan, dtype=np.float32)
        image[image_mask] = self.image[index[image_mask]]
        numeric = np.full((len(index), self.numeric.shape[1]), np.nan, dtype=np.float32)
        numeric[table_mask] = self.numeric[index[table_mask]]
        categorical = np.full((len(index), self.categorical.shape[1]), -1, dtype=np.int64)
        categorical[table_mask] = self.categorical[index[table_mask]]
        return {
            "image": torch.from_numpy(image),
            "numeric": torch.from_numpy(numeric),
            "categorical": torch.from_numpy(categorical),
            "image_mask": torch.from_numpy(image_mask),
            "table_mask": torch.from_numpy(table_mask),
            "labels": torch.from_numpy(self.labels[index].astype(np.int64)),
        }


def missing_masks(n: int, rate: float, pattern: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (image_present, table_present) for ``n`` samples; never both missing for one sample.

    ``pattern``: ``"image"`` drops the image of a ``rate`` share of samples, ``"table"`` the table, ``"mixed"``
    drops one of the two (chosen 50/50) for a ``rate`` share, ``"none"`` drops nothing. The exact count is
    ``round(rate * n)``, the rows are a seeded permutation.
    """
    if pattern not in PATTERNS:
        raise DfplError(f"missing pattern {pattern!r}: use one of {', '.join(PATTERNS)}")
    if not 0.0 <= rate < 1.0:
        raise DfplError(f"missing rate must lie in [0, 1), got {rate}")
    rng = np.random.default_rng(seed)
    image_present = np.ones(n, dtype=bool)
    table_present = np.ones(n, dtype=bool)
    if pattern == "none" or rate == 0.0:
        return image_present, table_present
    dropped = rng.permutation(n)[: round(rate * n)]
    if pattern == "image":
        image_present[dropped] = False
    elif pattern == "table":
        table_present[dropped] = False
    else:
        drop_image = rng.random(len(dropped)) < 0.5
        image_present[dropped[drop_image]] = False
        table_present[dropped[~drop_image]] = False
    return image_present, table_present


# ------------------------------------------------------------------------------------------ typed tables
def fit_standardiser(numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (1 where constant) of the training rows."""
    mean = numeric.mean(axis=0)
    std = numeric.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def fit_vocabularies(columns: np.ndarray) -> list[dict[str, int]]:
    """One value -> code map per categorical column, codes from 1 (0 is reserved for unseen values)."""
    return [{value: code + 1 for code, value in enumerate(sorted(set(column)))} for column in columns.T]


def encode_categorical(columns: np.ndarray, vocabularies: list[dict[str, int]]) -> np.ndarray:
    """Integer codes of string columns under fitted vocabularies (unseen -> 0)."""
    codes = np.zeros(columns.shape, dtype=np.int64)
    for j, vocabulary in enumerate(vocabularies):
        codes[:, j] = [vocabulary.get(value, 0) for value in columns[:, j]]
    return codes


def prepare_table(
    numeric_raw: np.ndarray, categorical_raw: np.ndarray, train_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Standardise numeric and code categorical columns with statistics fitted on ``train_index`` only."""
    mean, std = fit_standardiser(numeric_raw[train_index].astype(np.float64))
    numeric = ((numeric_raw - mean) / std).astype(np.float32)
    vocabularies = fit_vocabularies(categorical_raw[train_index].astype(str))
    categorical = encode_categorical(categorical_raw.astype(str), vocabularies)
    return numeric, categorical, [len(v) + 1 for v in vocabularies]


# ------------------------------------------------------------------------------------------ Houses
HOUSE_PHOTOS = ("bathroom", "bedroom", "frontal", "kitchen")


@dataclass
class HousesRaw:
    """The Houses table (bedrooms, bathrooms, area numeric; zipcode categorical), prices, and photo paths."""

    numeric: np.ndarray
    zipcode: np.ndarray
    price: np.ndarray
    photos: list[list[Path]]


def read_houses(folder: str | Path) -> HousesRaw:
    """Read ``HousesInfo.txt`` and the four photo paths per house; errors name the file and line."""
    folder = Path(folder)
    info = folder / "HousesInfo.txt"
    if not info.is_file():
        raise DfplError(f"{info}: file not found (expected the Houses data set folder)")
    rows = []
    for number, line in enumerate(info.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise DfplError(f"{info}:{number}: expected 5 fields (bedrooms bathrooms area zipcode price)")
        try:
            rows.append([float(p) for p in parts])
        except ValueError as exc:
            raise DfplError(f"{info}:{number}: non-numeric field ({exc})") from exc
    table = np.array(rows)
    photos = []
    for house in range(1, len(rows) + 1):
        paths = [folder / "images" / f"{house}_{kind}.jpg" for kind in HOUSE_PHOTOS]
        for path in paths:
            if not path.is_file():
                raise DfplError(f"{path}: photo missing (house {house})")
        photos.append(paths)
    return HousesRaw(table[:, :3].astype(np.float32), table[:, 3].astype(int).astype(str), table[:, 4], photos)


def price_terciles(train_prices: np.ndarray, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tercile labels 0/1/2 of ``prices`` under edges fitted on ``train_prices`` only (and the two edges)."""
    edges = np.quantile(train_prices, [1 / 3, 2 / 3])
    return np.searchsorted(edges, prices, side="right").astype(np.int64), edges


def houses_fold(raw: HousesRaw, image_tokens: np.ndarray, train_index: np.ndarray, test_index: np.ndarray):
    """Train and test :class:`MultimodalData` of one fold: labels, scaling and vocabularies fitted on train."""
    labels, _ = price_terciles(raw.price[train_index], raw.price)
    numeric = np.log1p(raw.numeric)
    numeric, categorical, cards = prepare_table(numeric, raw.zipcode[:, None], train_index)
    schema = TableSchema(["bedrooms", "bathrooms", "area"], ["zipcode"], cards)
    data = MultimodalData(image_tokens, numeric, categorical, labels, schema, 3)
    return data.subset(train_index), data.subset(test_index)


# ------------------------------------------------------------------------------------------ Fashion-MNIST
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The semi-synthetic table rule (docs/dfpl.md): department is the coarse group (tops / legwear-dress / shoes /
# bags), season and price separate the classes the image confuses most (T-shirt, pullover, coat, shirt).
FASHION_DEPARTMENT = (0, 1, 0, 1, 0, 2, 0, 2, 3, 2)
FASHION_COLD = (0, 1, 1, 0, 1, 0, 0, 0, 0, 1)
FASHION_PRICE = (15.0, 40.0, 35.0, 45.0, 80.0, 30.0, 25.0, 60.0, 50.0, 70.0)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a uint8 array: images (n, rows, cols) or labels (n,)."""
    path = Path(path)
    if not path.is_file():
        raise DfplError(f"{path}: file not found")
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    magic = int.from_bytes(raw[:4], "big")
    if magic == 2051:
        n, rows, cols = (int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    if magic == 2049:
        return np.frombuffer(raw, dtype=np.uint8, offset=8).copy()
    raise DfplError(f"{path}: IDX magic {magic} is neither 2051 (images) nor 2049 (labels)")


def fashion_table(labels: np.ndarray, seed: int, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """The semi-synthetic attribute table of Fashion-MNIST items: (numeric [price], categorical [dept, season]).

    Rule: department = the class's coarse group, season = cold/warm of the class, each replaced by a uniform
    random value with probability ``noise``; price ~ Normal(class mean, 12). Seeded by ``seed``.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    department = np.array(FASHION_DEPARTMENT)[labels]
    flip = rng.random(n) < noise
    department[flip] = rng.integers(0, 4, flip.sum())
    season = np.array(FASHION_COLD)[labels]
    flip = rng.random(n) < noise
    season[flip] = rng.integers(0, 2, flip.sum())
    price = np.array(FASHION_PRICE)[labels] + rng.normal(0.0, 12.0, n)
    categorical = np.stack([department.astype(str), season.astype(str)], axis=1)
    return price[:, None].astype(np.float32), categorical


def stratified_subsample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` samples of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


# ------------------------------------------------------------------------------------------ synthetic
def synthetic_data(n: int, seed: int, tokens: int = 4, image_dim: int = 16, noise: float = 1.0) -> MultimodalData:
    """Complementary synthetic data: 8 classes = (a in 0..3) x (b in 0..1).

    The image tokens carry factor ``a`` strongly (class-mean per token) and nothing about ``b``; the table
    carries ``b`` (two numeric columns) and a noisy copy of ``a`` (one categorical column, right 40% of the
    time, so a is recovered 55% of the time). So image alone tops out near 50% (a known, b guessed), the table
    alone near 55% (b known, a from the noisy copy), and both together near 100%: each modality holds known,
    complementary information. Split one draw into train and test (the class centres are drawn per call).
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n)
    b = rng.integers(0, 2, n)
    labels = (2 * a + b).astype(np.int64)
    centres = rng.normal(0.0, 1.0, (4, tokens, image_dim))
    image = (centres[a] + noise * rng.normal(0.0, 1.0, (n, tokens, image_dim))).astype(np.float32)
    numeric = np.stack([2.0 * b - 1.0 + 0.5 * rng.normal(size=n), rng.normal(size=n)], axis=1).astype(np.float32)
    noisy_a = np.where(rng.random(n) < 0.4, a, rng.integers(0, 4, n))
    categorical = (noisy_a + 1)[:, None].astype(np.int64)
    schema = TableSchema(["signal_b", "distractor"], ["noisy_a"], [5])
    return MultimodalData(image, numeric, categorical, labels, schema, 8)
