"""Ready-to-train data sets: Houses (real photos + real table) and Fashion-MNIST (real images + rule table).

Image features are frozen EfficientNet-lite0 tokens from :mod:`mllm.dfpl.features`, computed once and cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from mllm.dfpl.data import (
    HousesRaw,
    MultimodalData,
    TableSchema,
    fashion_table,
    houses_fold,
    prepare_table,
    read_houses,
    read_idx,
    stratified_subsample,
    synthetic_data,
)
from mllm.dfpl.errors import DfplError
from mllm.dfpl.features import FEATURE_DIM, cached_features, to_pixels
from mllm.dfpl.readers import RawImageTable, read_dvm_car, read_petfinder, to_multimodal

logger = logging.getLogger(__name__)

FASHION_SIZE = 64  # pixels fed to EfficientNet-lite0 (28 px upsampled); 224 px is ~12x slower on a CPU
FASHION_GRID = 2  # the 2x2 final feature map at 64 px: four region tokens per item


def load_houses(folder: str | Path, cache_dir: str | Path | None = None) -> tuple[HousesRaw, np.ndarray]:
    """The Houses table and its photo tokens (n, 4, 1280): one frozen EfficientNet-lite0 vector per photo."""
    raw = read_houses(folder)
    paths = [path for photos in raw.photos for path in photos]
    features = cached_features("houses", paths, [str(p.resolve()) for p in paths], 224, 1, cache_dir)
    return raw, features.reshape(len(raw.photos), len(raw.photos[0]), -1).astype(np.float32)


FASHION_POOL = {"train": 600, "t10k": 200}  # per class: the fixed, cached subsample (seed 0)


def load_fashion(
    folder: str | Path,
    train_per_class: int = 300,
    test_per_class: int = 100,
    table_seed: int = 0,
    cache_dir: str | Path | None = None,
    pixels: bool = False,
) -> tuple[MultimodalData, MultimodalData]:
    """A stratified Fashion-MNIST subsample (from the official train / test files) with its rule table.

    Features are cached for a fixed pool (600 train + 200 test images per class, seed 0); a run takes the
    first ``train_per_class`` / ``test_per_class`` of each class from it. ``table_seed`` draws the table's
    noise. Table statistics are fitted on the training part. ``pixels=True`` returns the same items as
    lite-scaled pixels ``(n, 1, 3, 64, 64)`` for fine-tuning (with ``ModelConfig(image_grid=2)`` the trunk
    gives the same four region tokens as the cache).
    """
    folder = Path(folder)
    parts = []
    for split, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        if not 1 <= per_class <= FASHION_POOL[split]:
            raise DfplError(f"fashion {split}: per-class count must be in 1..{FASHION_POOL[split]}, got {per_class}")
        images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
        pool = stratified_subsample(labels, FASHION_POOL[split], seed=0)
        keep = np.sort(np.concatenate([np.flatnonzero(labels[pool] == c)[:per_class] for c in range(10)]))
        if pixels:
            image = to_pixels(list(images[pool[keep]]), FASHION_SIZE).numpy()[:, None]
        else:
            sources = [f"fashion_mnist/{split}/{i}" for i in pool]
            tokens = cached_features(
                f"fashion-{split}", list(images[pool]), sources, FASHION_SIZE, FASHION_GRID, cache_dir
            )
            image = tokens[keep].astype(np.float32)
        parts.append((image, labels[pool][keep]))
    labels = np.concatenate([p[1] for p in parts])
    numeric_raw, categorical_raw = fashion_table(labels, seed=table_seed)
    train_index = np.arange(len(parts[0][1]))
    numeric, categorical, cards = prepare_table(numeric_raw, categorical_raw, train_index)
    schema = TableSchema(["price"], ["department", "season"], cards)
    data = MultimodalData(np.concatenate([p[0] for p in parts]), numeric, categorical, labels, schema, 10)
    return data.subset(train_index), data.subset(np.arange(len(train_index), len(labels)))


def load_fashion_full(
    folder: str | Path, table_seed: int = 0, cache_dir: str | Path | None = None
) -> tuple[MultimodalData, MultimodalData]:
    """All of Fashion-MNIST (60,000 train / 10,000 test, the official files) with its rule table.

    The frozen EfficientNet-lite0 tokens of every image are extracted once per split file and cached (~4
    CPU-minutes for both at 64 px); they stay float16 in memory (~0.7 GB), cast to float32 per batch.
    """
    folder = Path(folder)
    parts = []
    for split in ("train", "t10k"):
        images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
        if len(images) != len(labels):
            raise DfplError(f"{folder}/{split}: {len(images)} images but {len(labels)} labels")
        sources = [f"fashion_mnist/{split}/{i}" for i in range(len(images))]
        tokens = cached_features(f"fashion-{split}-all", list(images), sources, FASHION_SIZE, FASHION_GRID, cache_dir)
        parts.append((tokens, labels))
    labels = np.concatenate([p[1] for p in parts])
    numeric_raw, categorical_raw = fashion_table(labels, seed=table_seed)
    n_train = len(parts[0][1])
    numeric, categorical, cards = prepare_table(numeric_raw, categorical_raw, np.arange(n_train))
    schema = TableSchema(["price"], ["department", "season"], cards)
    return (
        MultimodalData(parts[0][0], numeric[:n_train], categorical[:n_train], parts[0][1], schema, 10),
        MultimodalData(parts[1][0], numeric[n_train:], categorical[n_train:], parts[1][1], schema, 10),
    )


DATASETS = ("synthetic", "houses", "fashion", "petfinder", "dvm_car")


@dataclass
class DataSpec:
    """Which data and which split: recorded in a checkpoint so ``eval`` rebuilds the same test set."""

    name: str = "synthetic"
    path: str = ""  # Houses / Fashion-MNIST folder, PetFinder train.csv, DVM-Car Ad_table.csv
    image_dir: str = ""  # PetFinder train_images/, DVM-Car image root
    split_seed: int = 0  # split / synthetic draw / table-noise seed
    fold: int = 0  # Houses: which of the ``folds`` folds is the test fold
    folds: int = 5
    repeat: int = 0  # Houses: which repetition of the stratified k-fold (its shuffling seed)
    synthetic_n: int = 2000
    train_per_class: int = 300  # Fashion-MNIST subsample
    test_per_class: int = 100
    pixels: bool = False  # Fashion-MNIST: pixels for fine-tuning (--finetune-image true --image-grid 2)
    full: bool = False  # Fashion-MNIST: all 60,000 / 10,000 items (cached features; per-class counts ignored)
    test_share: float = 0.2  # PetFinder / DVM-Car hold-out share (stratified)
    cache_dir: str = ""


def houses_split(raw: HousesRaw, fold: int, folds: int, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / test rows of one stratified fold; the strata are price terciles of all houses (for balance
    only: the labels themselves use edges fitted on the training fold, see ``houses_fold``)."""
    if not 0 <= fold < folds:
        raise DfplError(f"fold {fold} outside 0..{folds - 1}")
    strata = np.searchsorted(np.quantile(raw.price, [1 / 3, 2 / 3]), raw.price, side="right")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=repeat)
    return list(splitter.split(np.zeros(len(strata)), strata))[fold]


def reader_tokens(raw: RawImageTable, name: str, cache_dir: str | Path | None) -> np.ndarray:
    """Frozen image tokens (n, 1, 1280) of the rows with a photo; zeros (never read) for the others."""
    present = [i for i, p in enumerate(raw.image_paths) if p is not None]
    tokens = np.zeros((len(raw.labels), 1, FEATURE_DIM), dtype=np.float32)
    if present:
        paths = [raw.image_paths[i] for i in present]
        tokens[present] = cached_features(name, paths, [str(Path(p).resolve()) for p in paths], 224, 1, cache_dir)
    return tokens


def load_split(spec: DataSpec) -> tuple[MultimodalData, MultimodalData]:
    """The (train, test) pair a spec names; every statistic is fitted on the training rows."""
    cache = spec.cache_dir or None
    if spec.name == "synthetic":
        data = synthetic_data(spec.synthetic_n, spec.split_seed)
        cut = round(0.6 * len(data))
        return data.subset(np.arange(cut)), data.subset(np.arange(cut, len(data)))
    if spec.name == "houses":
        raw, tokens = load_houses(spec.path, cache)
        train_index, test_index = houses_split(raw, spec.fold, spec.folds, spec.repeat)
        return houses_fold(raw, tokens, train_index, test_index)
    if spec.name == "fashion" and spec.full:
        if spec.pixels:
            raise DfplError("fashion: --full true works on cached features only, not with --pixels true")
        return load_fashion_full(spec.path, spec.split_seed, cache)
    if spec.name == "fashion":
        return load_fashion(
            spec.path, spec.train_per_class, spec.test_per_class, spec.split_seed, cache, pixels=spec.pixels
        )
    if spec.name in ("petfinder", "dvm_car"):
        reader = read_petfinder if spec.name == "petfinder" else read_dvm_car
        raw = reader(spec.path, spec.image_dir)
        index = np.arange(len(raw.labels))
        counts = np.bincount(raw.labels)
        stratify = raw.labels if counts.min() >= 2 else None
        train_index, test_index = train_test_split(
            index, test_size=spec.test_share, random_state=spec.split_seed, stratify=stratify
        )
        data = to_multimodal(raw, np.sort(train_index), reader_tokens(raw, spec.name, cache))
        return data.subset(np.sort(train_index)), data.subset(np.sort(test_index))
    raise DfplError(f"data set {spec.name!r}: use one of {', '.join(DATASETS)}")
