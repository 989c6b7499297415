"""DFPL image features: batched Fashion-MNIST pre-processing, the cache key, the full-size Fashion-MNIST loader."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mllm.dfpl import features
from mllm.dfpl.data import read_idx
from mllm.dfpl.datasets import DataSpec, load_split
from mllm.dfpl.errors import DfplError
from mllm.dfpl.features import cache_key, to_pixels

FASHION = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion_mnist"


def _first(split: str, kind: str, n: int) -> np.ndarray:
    return read_idx(FASHION / f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz")[:n]


def test_batched_grayscale_pixels_equal_the_per_image_path() -> None:
    images = list(_first("t10k", "images", 6))
    fast = to_pixels(images, 64)  # same-shape uint8 HxW arrays: the batched path
    slow = to_pixels([np.repeat(a[:, :, None], 3, axis=2) for a in images], 64)  # HxWx3: one PIL image each
    assert fast.shape == (6, 3, 64, 64)
    assert float((fast - slow).abs().max()) == 0.0


def test_cache_key_follows_names_pixels_resolution_grid_and_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    images = list(_first("t10k", "images", 3))
    names = ["a", "b", "c"]
    key = cache_key(images, names, 64, 2)
    assert cache_key([a.copy() for a in images], names, 64, 2) == key  # same content, same key
    changed = [a.copy() for a in images]
    changed[1][5, 5] ^= 1  # one pixel of one image
    assert cache_key(changed, names, 64, 2) != key
    assert cache_key(images, ["a", "b", "d"], 64, 2) != key
    assert cache_key(images, names, 224, 2) != key and cache_key(images, names, 64, 1) != key
    monkeypatch.setattr(features, "weights_digest", lambda: "other-weights")
    assert cache_key(images, names, 64, 2) != key


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = (2051 if array.ndim == 3 else 2049).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_full_fashion_loader_takes_every_item_and_caches_its_features(tmp_path: Path) -> None:
    folder = tmp_path / "fashion"
    folder.mkdir()
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", _first(split, "images", n))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", _first(split, "labels", n))
    spec = DataSpec(name="fashion", path=str(folder), full=True, cache_dir=str(tmp_path / "cache"))
    train, test = load_split(spec)
    assert (len(train), len(test)) == (12, 5)
    assert np.array_equal(train.labels, _first("train", "labels", 12))
    assert train.image.shape == (12, 4, 1280) and train.image.dtype == np.float16  # 2x2 region tokens, compact
    assert np.isfinite(train.image.astype(np.float32)).all() and float(np.abs(train.image).max()) > 0
    assert abs(float(train.numeric.mean())) < 1e-5  # price standardised on the training split only
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and all(name.startswith("fashion-") and "-all-64px-g2-" in name for name in cached)
    again, _ = load_split(spec)  # from the cache: identical values, no new file
    assert np.array_equal(again.image, train.image)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached
    batch = train.batch(np.arange(4), np.array([True, False, True, True]), np.ones(4, dtype=bool))
    assert batch["image"].dtype.is_floating_point and bool(batch["image"][1].isnan().all())
    with pytest.raises(DfplError, match="cached features only"):
        load_split(DataSpec(name="fashion", path=str(folder), full=True, pixels=True))
