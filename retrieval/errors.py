"""Exceptions of the retrieval package; each message names the path, collection, id or field at fault."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class of every error raised by ``retrieval``."""


class StoreError(RetrievalError):
    """A vector-store problem: bad path, lock held, embedder mismatch, invalid ids or metadata."""


class EmbedError(RetrievalError):
    """An embedder problem: missing model files, unreadable image, unsupported modality."""
