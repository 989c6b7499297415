"""The shared vector store (Chroma) and the embedders (MiniLM text, EfficientNet-lite0 image, open_clip).

Names are loaded lazily so ``import retrieval`` stays cheap and ``python -m retrieval.store`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrieval.embed import (
        Embedder,
        HashingEmbedder,
        ImageEmbedder,
        OpenClipEmbedder,
        TextEmbedder,
        embedder_from_name,
        make_text_embedder,
    )
    from retrieval.errors import EmbedError, RetrievalError, StoreError
    from retrieval.store import Collection, VectorStore, default_store_path

_EXPORTS = {
    "VectorStore": "retrieval.store",
    "Collection": "retrieval.store",
    "default_store_path": "retrieval.store",
    "Embedder": "retrieval.embed",
    "TextEmbedder": "retrieval.embed",
    "HashingEmbedder": "retrieval.embed",
    "make_text_embedder": "retrieval.embed",
    "ImageEmbedder": "retrieval.embed",
    "OpenClipEmbedder": "retrieval.embed",
    "embedder_from_name": "retrieval.embed",
    "RetrievalError": "retrieval.errors",
    "StoreError": "retrieval.errors",
    "EmbedError": "retrieval.errors",
}

__all__ = [
    "Collection",
    "EmbedError",
    "Embedder",
    "HashingEmbedder",
    "ImageEmbedder",
    "OpenClipEmbedder",
    "RetrievalError",
    "StoreError",
    "TextEmbedder",
    "VectorStore",
    "default_store_path",
    "embedder_from_name",
    "make_text_embedder",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
