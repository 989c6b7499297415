"""VectorStore: the one shared Chroma store, local (one writer process per directory) or a Chroma server.

Collections are named per domain; each records the embedder's name and dimension in its metadata and
refuses another embedder. Writes are batched, idempotent upserts keyed by stable string ids.

CLI: ``python -m retrieval.store stats --path DIR`` (or ``--url http://host:port``) prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from tqdm.auto import tqdm

from retrieval.embed import Embedder, ImageInput, embedder_from_name
from retrieval.errors import RetrievalError, StoreError
from retrieval.integrity import check_store_integrity

# Chroma's product telemetry must never phone home: off in Settings below, and for any client or
# server process started from here (Chroma reads this variable too).
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

logger = logging.getLogger(__name__)

STORE_ENV = "RECAGENTS_STORE"
LOCK_FILE = ".recagents.lock"
CHROMA_DB_FILE = "chroma.sqlite3"
EXTERNAL_EMBEDDER = "external"  # embeddings supplied by the caller, no embedder attached
META_EMBEDDER = "embedder"
META_DIM = "dim"
META_MODALITY = "modality"
DEFAULT_BATCH_SIZE = 512
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_SCALAR_TYPES = (str, int, float, bool)
# Index settings a collection may be created with (Chroma's ``configuration={"hnsw": ...}``), with their lower
# bounds. The space stays cosine: query scores are 1 - cosine distance. Chroma 1.x's Rust index drops
# ``batch_size`` and ``num_threads`` from the stored configuration, so they are refused rather than ignored.
HNSW_SETTINGS: dict[str, tuple[type, float]] = {
    "max_neighbors": (int, 2),  # M: graph neighbours per node (Chroma's default 16)
    "ef_construction": (int, 1),  # candidate list while inserting (default 100)
    "ef_search": (int, 1),  # candidate list while querying (default 100; Chroma uses max(ef_search, k))
    "sync_threshold": (int, 3),  # vectors between persists of the index (default 1000)
    "resize_factor": (float, 1.0),  # growth factor of the index's capacity (default 1.2; must exceed 1)
}
HNSW_MUTABLE = ("ef_search", "sync_threshold", "resize_factor")  # what Chroma lets an existing collection change

# One writer lock per directory per process, shared (reference-counted) by the stores of this process:
# Chroma is thread-safe within a process, but not safe across processes on one directory.
_process_locks: dict[Path, tuple[Any, int]] = {}
_process_locks_guard = threading.Lock()
_HELD_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)  # held for the length of one Chroma write on a local store (deferred_signals)


def default_store_path() -> Path:
    """``$RECAGENTS_STORE`` or ``~/.cache/recagents/store``."""
    return Path(os.environ.get(STORE_ENV) or Path.home() / ".cache" / "recagents" / "store").expanduser()


def _acquire_writer_lock(path: Path, timeout: float) -> None:
    """Hold ``<path>/.recagents.lock`` exclusively for this process, or raise StoreError."""
    from filelock import FileLock, Timeout

    with _process_locks_guard:
        if path in _process_locks:
            lock, users = _process_locks[path]
            _process_locks[path] = (lock, users + 1)
            return
        lock = FileLock(path / LOCK_FILE, timeout=timeout, thread_local=False)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"{path}: another process holds this store's writer lock ({path / LOCK_FILE}); a local "
                "Chroma directory takes one writer process. For several writers run a Chroma server "
                f"(chroma run --path {path}) and open VectorStore(url='http://localhost:8000'); "
                "to only read, open it with read_only=True"
            ) from exc
        _process_locks[path] = (lock, 1)


def _release_writer_lock(path: Path) -> None:
    """Drop this store's reference to the directory lock; the last one releases the file lock."""
    with _process_locks_guard:
        if path not in _process_locks:
            return
        lock, users = _process_locks[path]
        if users > 1:
            _process_locks[path] = (lock, users - 1)
        else:
            del _process_locks[path]
            lock.release()


def check_store_dir(path: Path, must_exist: bool = False) -> None:
    """Refuse a path that is a file, or a non-empty directory that is not a Chroma store."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: is a file, not a Chroma store directory")
    if not path.exists():
        if must_exist:
            raise StoreError(f"{path}: no Chroma store here (the directory does not exist)")
        return
    entries = [p.name for p in path.iterdir() if p.name != LOCK_FILE]
    if not entries:
        if must_exist:
            raise StoreError(f"{path}: no Chroma store here (the directory is empty)")
        return
    if not (path / CHROMA_DB_FILE).is_file():
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise StoreError(
            f"{path}: not a Chroma store (no {CHROMA_DB_FILE}; holds {shown}); "
            "give an empty or new directory, or an existing store"
        )


def _parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, ssl) from ``http(s)://host[:port]``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise StoreError(f"url={url!r}: expected a Chroma server URL like http://localhost:8000")
    ssl = parsed.scheme == "https"
    try:
        port = parsed.port or (443 if ssl else 8000)
    except ValueError as exc:
        raise StoreError(f"url={url!r}: bad port ({exc})") from exc
    return parsed.hostname, port, ssl


@dataclass
class _CollectionState:
    """What the store knows about an open collection."""

    handle: Any  # chromadb Collection
    embedder_name: str
    dim: int | None
    modality: str


class Collection:
    """A named collection of a VectorStore; its methods call the store's with the name filled in."""

    def __init__(self, store: VectorStore, name: str) -> None:
        self.store = store
        self.name = name

    @property
    def embedder_name(self) -> str:
        """The embedder recorded in the collection's metadata (``"external"`` when none is attached)."""
        return self.store._state(self.name).embedder_name

    @property
    def dim(self) -> int | None:
        """The embedding dimension recorded for the collection (None before the first external upsert)."""
        return self.store._state(self.name).dim

    def upsert(self, ids: Sequence[str], **kwargs: Any) -> int:
        """See VectorStore.upsert."""
        return self.store.upsert(self.name, ids, **kwargs)

    def query(self, **kwargs: Any) -> list[list[dict[str, Any]]]:
        """See VectorStore.query."""
        return self.store.query(self.name, **kwargs)

    def get(self, **kwargs: Any) -> list[dict[str, Any]]:
        """See VectorStore.get."""
        return self.store.get(self.name, **kwargs)

    def delete(self, **kwargs: Any) -> None:
        """See VectorStore.delete."""
        self.store.delete(self.name, **kwargs)

    def count(self) -> int:
        """See VectorStore.count."""
        return self.store.count(self.name)

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, embedder={self.embedder_name!r}, dim={self.dim})"


class VectorStore:
    """The shared Chroma vector store: a persistent directory (default) or a Chroma server (``url=``)."""

    def __init__(
        self,
        path: str | Path | None = None,
        url: str | None = None,
        *,
        read_only: bool = False,
        lock_timeout: float = 1.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        import chromadb
        from chromadb.config import Settings

        if path is not None and url is not None:
            raise StoreError("VectorStore takes a directory path or a server url, not both")
        self.read_only = read_only
        self.batch_size = batch_size
        self.path: Path | None = None
        self.url: str | None = url
        self._states: dict[str, _CollectionState] = {}
        self._embedders: dict[str, Embedder] = {}
        self._holds_lock = False
        self._closed = False
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if url is not None:
            host, port, ssl = _parse_url(url)
            self.location = url
            try:
                self._client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
                self._client.heartbeat()
            except Exception as exc:  # httpx connection errors, chroma version errors, ...
                raise StoreError(f"cannot reach the Chroma server at {url} ({exc}); is `chroma run` up?") from exc
            return
        self.path = Path(path).expanduser().resolve() if path is not None else default_store_path().resolve()
        self.location = str(self.path)
        check_store_dir(self.path, must_exist=read_only)
        if not read_only:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the store directory ({exc})") from exc
            _acquire_writer_lock(self.path, lock_timeout)
            self._holds_lock = True
        try:
            check_store_integrity(self.path, writable=not read_only)  # before Chroma could rewrite anything
            self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
        except StoreError:
            self.close()
            raise
        except Exception as exc:  # a corrupt sqlite file, a newer schema, permissions, ...
            self.close()
            raise StoreError(f"{self.path}: cannot open the Chroma store ({exc})") from exc
        except BaseException as exc:  # a Rust panic inside Chroma (pyo3's PanicException is a BaseException)
            self.close()
            if not _is_panic(exc):
                raise
            raise StoreError(f"{self.path}: cannot open the Chroma store (Chroma panicked: {exc})") from None

    # ------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the Chroma client and the writer lock; the store is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        client = getattr(self, "_client", None)
        if client is not None and hasattr(client, "close"):
            with contextlib.suppress(Exception), deferred_signals(f"close {self.location}"):
                client.close()
        if self._holds_lock and self.path is not None:
            _release_writer_lock(self.path)
            self._holds_lock = False
        self._states.clear()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"VectorStore({self.location!r}, {mode})"

    # ------------------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _chroma(self, operation: str, name: str | None = None, write: bool = False) -> Iterator[None]:
        """Turn any Chroma failure into a StoreError naming the operation, collection and store.

        A ``write`` to a local store holds SIGTERM, SIGINT and SIGHUP until Chroma's call returns (see
        ``deferred_signals``): Chroma rewrites its index files inside the call, and a process killed there can
        leave a store that no longer opens.
        """
        if self._closed:
            raise StoreError(f"{self.location}: the store is closed")
        guard = deferred_signals(f"{operation} on {self.location}") if write and self.path else contextlib.nullcontext()
        try:
            with guard:
                yield
        except RetrievalError:
            raise
        except Exception as exc:  # chroma raises ValueError, ChromaError subclasses, httpx errors
            where = f"collection {name!r} in {self.location}" if name else self.location
            raise StoreError(f"{operation} on {where} failed: {exc}") from exc
        except BaseException as exc:  # a Rust panic inside Chroma: a damaged segment file, never a traceback
            if not _is_panic(exc):
                raise
            where = f"collection {name!r} in {self.location}" if name else self.location
            raise StoreError(f"{operation} on {where} failed: Chroma panicked ({exc}); is the store damaged?") from None

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.location}: opened read_only=True; open it without read_only to write")

    def _state(self, name: str, missing_ok: bool = False) -> _CollectionState | None:
        """The cached state of an existing collection (fetched from Chroma on first use)."""
        if name in self._states:
            return self._states[name]
        from chromadb.errors import NotFoundError

        _check_collection_name(name)
        try:
            with self._chroma("get collection", name):
                handle = self._client.get_collection(name, embedding_function=None)
        except StoreError as exc:
            if isinstance(exc.__cause__, NotFoundError) or "does not exist" in str(exc):
                if missing_ok:
                    return None
                known = ", ".join(self.list_collections()) or "none"
                raise StoreError(
                    f"{self.location}: no collection {name!r} (collections: {known}); "
                    f"create it with store.collection({name!r}, embedder=...)"
                ) from None
            raise
        meta = dict(handle.metadata or {})
        dim = meta.get(META_DIM)
        state = _CollectionState(
            handle=handle,
            embedder_name=str(meta.get(META_EMBEDDER, EXTERNAL_EMBEDDER)),
            dim=int(dim) if dim is not None else None,
            modality=str(meta.get(META_MODALITY, "unknown")),
        )
        self._states[name] = state
        return state

    def _create(
        self, name: str, embedder: Embedder | None, dim: int | None, hnsw: Mapping[str, Any] | None = None
    ) -> _CollectionState:
        """Create a cosine-space collection recording its embedder (or "external") and dimension.

        ``hnsw`` holds index settings checked by ``check_hnsw_settings`` (Chroma's defaults for the rest)."""
        from chromadb.errors import ChromaError

        self._require_writable()
        embedder_name = embedder.name if embedder is not None else EXTERNAL_EMBEDDER
        dim = int(embedder.dim) if embedder is not None else dim
        modality = embedder.modality if embedder is not None else "vector"
        metadata: dict[str, Any] = {META_EMBEDDER: embedder_name, META_MODALITY: modality}
        if dim is not None:
            metadata[META_DIM] = dim
        try:
            with self._chroma("create collection", name, write=True):
                self._client.create_collection(
                    name,
                    configuration={"hnsw": {"space": "cosine", **check_hnsw_settings(hnsw, name)}},
                    metadata=metadata,
                    embedding_function=None,
                )
            logger.info("created collection %r in %s (embedder %s, dim %s)", name, self.location, embedder_name, dim)
        except StoreError as exc:  # another client created it first: use theirs, checked below
            if not (isinstance(exc.__cause__, ChromaError) and "already exists" in str(exc)):
                raise
        self._states.pop(name, None)
        return self._state(name)

    def _embedder_for(self, name: str, state: _CollectionState) -> Embedder:
        """The embedder attached to a collection, rebuilding a packaged one from its recorded name."""
        if name in self._embedders:
            return self._embedders[name]
        if state.embedder_name == EXTERNAL_EMBEDDER:
            raise StoreError(
                f"collection {name!r} in {self.location} has no embedder (built from given embeddings); "
                "pass embeddings= rather than texts, documents or images"
            )
        embedder = embedder_from_name(state.embedder_name)
        if embedder is None:
            raise StoreError(
                f"collection {name!r} in {self.location} was built with embedder {state.embedder_name!r}; "
                f"attach it with store.collection({name!r}, embedder=...) before embedding texts or images"
            )
        self._embedders[name] = embedder
        return embedder

    def _check_dim(self, name: str, state: _CollectionState, vectors: np.ndarray, what: str) -> None:
        if state.dim is not None and vectors.shape[1] != state.dim:
            raise StoreError(
                f"collection {name!r} in {self.location} holds {state.dim}-d embeddings "
                f"(embedder {state.embedder_name}); {what} have dimension {vectors.shape[1]}"
            )

    # ------------------------------------------------------------------------------ collections

    def collection(
        self,
        name: str,
        embedder: Embedder | None = None,
        dim: int | None = None,
        hnsw: Mapping[str, Any] | None = None,
    ) -> Collection:
        """Open or create collection ``name``; an existing one must have been built with the same embedder.

        ``hnsw``: index settings (keys of ``HNSW_SETTINGS``, e.g. ``{"max_neighbors": 32, "ef_construction": 200}``)
        for a new collection. For an existing one, ``ef_search``, ``sync_threshold`` and ``resize_factor`` are
        changed; the others must equal the collection's (they are fixed when it is built).
        """
        _check_collection_name(name)
        state = self._state(name, missing_ok=True)
        if state is None:
            state = self._create(name, embedder, dim, hnsw)
        elif hnsw:
            self.configure(name, hnsw)
        if embedder is not None:
            if state.embedder_name != embedder.name or (state.dim is not None and state.dim != embedder.dim):
                raise StoreError(
                    f"collection {name!r} in {self.location} was built with embedder {state.embedder_name!r} "
                    f"(dim {state.dim}); refusing to mix in {embedder.name!r} (dim {embedder.dim}). "
                    "Use another collection name, or delete_collection() and rebuild"
                )
            self._embedders[name] = embedder
        elif dim is not None and state.dim is not None and state.dim != dim:
            raise StoreError(f"collection {name!r} in {self.location} holds {state.dim}-d embeddings, not {dim}-d")
        return Collection(self, name)

    def hnsw_settings(self, name: str) -> dict[str, Any]:
        """The index settings Chroma holds for collection ``name`` (space, max_neighbors, ef_construction, ...)."""
        state = self._state(name)
        with self._chroma("read configuration", name):
            configuration = state.handle.configuration or {}
        return dict(configuration.get("hnsw") or {})

    def configure(self, name: str, hnsw: Mapping[str, Any]) -> dict[str, Any]:
        """Change an existing collection's ``ef_search`` / ``sync_threshold`` / ``resize_factor``; returns the
        settings now held. Settings fixed at build time (``max_neighbors``, ``ef_construction``) must match."""
        self._require_writable()
        settings = check_hnsw_settings(hnsw, name)
        current = self.hnsw_settings(name)
        fixed = {key: value for key, value in settings.items() if key not in HNSW_MUTABLE}
        clash = {key: (value, current.get(key)) for key, value in fixed.items() if current.get(key) != value}
        if clash:
            shown = ", ".join(f"{key}={new} (built with {old})" for key, (new, old) in sorted(clash.items()))
            raise StoreError(
                f"collection {name!r} in {self.location}: {shown}; these are fixed when a collection is built "
                "(delete_collection() and rebuild to change them)"
            )
        changes = {key: value for key, value in settings.items() if key in HNSW_MUTABLE and current.get(key) != value}
        if changes:
            state = self._state(name)
            with self._chroma("configure", name, write=True):
                state.handle.modify(configuration={"hnsw": changes})
            self._states.pop(name, None)  # re-read the handle with its new configuration
            logger.info("collection %r in %s: hnsw %s", name, self.location, changes)
        return self.hnsw_settings(name)

    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""
        with self._chroma("list collections"):
            found = self._client.list_collections()
        return sorted(c if isinstance(c, str) else c.name for c in found)

    def delete_collection(self, name: str) -> None:
        """Drop a whole collection (its items and its embedder record)."""
        self._require_writable()
        self._state(name)
        with self._chroma("delete collection", name, write=True):
            self._client.delete_collection(name)
        self._states.pop(name, None)
        self._embedders.pop(name, None)

    # ------------------------------------------------------------------------------ writes

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        documents: Sequence[str | None] | None = None,
        embeddings: np.ndarray | Sequence[Sequence[float]] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        images: Sequence[ImageInput] | None = None,
        batch_size: int | None = None,
    ) -> int:
        """Insert or overwrite items by id (idempotent); embeds images, else documents, if no embeddings.

        Each field given replaces the stored one wholesale (metadata included: keys not given are removed);
        a field left as None keeps what is stored (an embeddings-only upsert keeps documents and metadata).

        A collection that does not exist yet is created when ``embeddings`` are given (embedder
        ``"external"``). Returns the number of items written.
        """
        self._require_writable()
        ids = _check_ids(ids)
        n = len(ids)
        for field, values in (("documents", documents), ("embeddings", embeddings), ("metadatas", metadatas)):
            if values is not None and len(values) != n:
                raise StoreError(f"upsert into {name!r}: {len(values)} {field} for {n} ids")
        if images is not None and len(images) != n:
            raise StoreError(f"upsert into {name!r}: {len(images)} images for {n} ids")
        if documents is not None:
            for i, document in enumerate(documents):
                if document is not None and not isinstance(document, str):
                    raise StoreError(f"upsert into {name!r}: document of id {ids[i]!r} is {type(document).__name__}")
        clean_metadatas = _check_metadatas(ids, metadatas) if metadatas is not None else None
        vectors = _as_matrix(embeddings, name) if embeddings is not None else None

        state = self._state(name, missing_ok=True)
        if state is None:
            if vectors is None:
                raise StoreError(
                    f"{self.location}: no collection {name!r}; create it with store.collection({name!r}, "
                    "embedder=...) before upserting documents or images"
                )
            state = self._create(name, None, vectors.shape[1] if n else None)
        if n == 0:
            return 0
        embedder: Embedder | None = None
        if vectors is None:
            if images is None and documents is None:
                raise StoreError(f"upsert into {name!r}: give embeddings, documents or images")
            if images is None and any(d is None for d in documents):
                missing = [ids[i] for i, d in enumerate(documents) if d is None][:5]
                raise StoreError(f"upsert into {name!r}: cannot embed a None document (ids {missing})")
            embedder = self._embedder_for(name, state)
        else:
            self._check_dim(name, state, vectors, "the given embeddings")
            if state.dim is None:
                self._record_dim(name, state, vectors.shape[1])

        with self._chroma("max batch size"):
            max_batch = int(self._client.get_max_batch_size())
        step = max(1, min(batch_size or self.batch_size, max_batch))
        with tqdm(total=n, desc=f"upsert {name}", unit="item", disable=n <= step) as bar:
            for start in range(0, n, step):
                stop = min(start + step, n)
                if vectors is not None:
                    chunk_vectors = vectors[start:stop]
                elif images is not None:
                    chunk_vectors = embedder.embed_images(list(images[start:stop]))
                else:
                    chunk_vectors = embedder.embed_texts(list(documents[start:stop]))
                self._check_dim(name, state, chunk_vectors, f"embeddings from {embedder.name if embedder else '?'}")
                chunk_metadatas = None
                if clean_metadatas is not None:
                    chunk_metadatas = self._replacing_metadatas(
                        name, state, ids[start:stop], clean_metadatas[start:stop]
                    )
                with self._chroma("upsert", name, write=True):
                    state.handle.upsert(
                        ids=ids[start:stop],
                        embeddings=np.asarray(chunk_vectors, dtype=np.float32),
                        documents=list(documents[start:stop]) if documents is not None else None,
                        metadatas=chunk_metadatas,
                    )
                bar.update(stop - start)
        return n

    def _replacing_metadatas(
        self, name: str, state: _CollectionState, ids: list[str], metadatas: list[dict[str, Any] | None]
    ) -> list[dict[str, Any] | None]:
        """Metadatas that replace the stored ones wholesale.

        Chroma merges an upserted metadata dict into the stored one, so a key dropped by a re-run would
        survive; setting it to None makes Chroma delete it, and the item ends up exactly as written.
        """
        with self._chroma("get", name):
            stored = state.handle.get(ids=ids, include=["metadatas"])
        old_keys = {item_id: set(meta or {}) for item_id, meta in zip(stored["ids"], stored["metadatas"], strict=True)}
        replacing: list[dict[str, Any] | None] = []
        for item_id, metadata in zip(ids, metadatas, strict=True):
            stale = old_keys.get(item_id, set()) - set(metadata or {})
            if stale:
                metadata = {**(metadata or {}), **dict.fromkeys(sorted(stale))}
            replacing.append(metadata)
        return replacing

    def _record_dim(self, name: str, state: _CollectionState, dim: int) -> None:
        """Record the dimension of an external collection at its first upsert."""
        metadata = dict(state.handle.metadata or {})
        metadata[META_DIM] = int(dim)
        with self._chroma("record dimension", name, write=True):
            state.handle.modify(metadata=metadata)
        state.dim = int(dim)

    def delete(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> None:
        """Delete items by ids and/or a metadata filter (at least one is required)."""
        self._require_writable()
        if ids is None and where is None and where_document is None:
            raise StoreError(f"delete from {name!r}: give ids, where or where_document (or use delete_collection)")
        state = self._state(name)
        if ids is not None:
            ids = _check_ids(ids)
            if not ids:
                return
        with self._chroma("delete", name, write=True):
            state.handle.delete(
                ids=ids,
                where=dict(where) if where else None,
                where_document=dict(where_document) if where_document else None,
            )

    # ------------------------------------------------------------------------------ reads

    def query(
        self,
        name: str,
        texts: Sequence[str] | None = None,
        embeddings: np.ndarray | Sequence[Sequence[float]] | None = None,
        images: Sequence[ImageInput] | None = None,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Nearest items per query: lists of {id, score (cosine similarity), distance, document, metadata}."""
        inputs = {"texts": texts, "embeddings": embeddings, "images": images}
        given = [arg for arg, value in inputs.items() if value is not None]
        if len(given) != 1:
            raise StoreError(f"query {name!r}: give exactly one of texts, embeddings or images (got {given or 'none'})")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(k, int) or k < 1:
            raise StoreError(f"query {name!r}: k must be a positive int, got {k!r}")
        state = self._state(name)
        if embeddings is not None:
            vectors = _as_matrix(embeddings, name)
            what = "the query embeddings"
        else:
            embedder = self._embedder_for(name, state)
            vectors = embedder.embed_texts(list(texts)) if texts is not None else embedder.embed_images(list(images))
            what = f"embeddings from {embedder.name}"
        if len(vectors) == 0:
            return []
        self._check_dim(name, state, vectors, what)
        with self._chroma("query", name):
            found = state.handle.query(
                query_embeddings=np.asarray(vectors, dtype=np.float32),
                n_results=k,
                where=dict(where) if where else None,
                where_document=dict(where_document) if where_document else None,
                include=["documents", "metadatas", "distances"],
            )
        results = []
        for row in range(len(vectors)):
            hits = []
            for i, item_id in enumerate(found["ids"][row]):
                distance = float(found["distances"][row][i])
                hits.append(
                    {
                        "id": item_id,
                        "score": 1.0 - distance,  # Chroma's cosine distance is 1 - cosine similarity
                        "distance": distance,
                        "document": found["documents"][row][i] if found.get("documents") else None,
                        "metadata": found["metadatas"][row][i] if found.get("metadatas") else None,
                    }
                )
            results.append(hits)
        return results

    def get(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include_embeddings: bool = False,
    ) -> list[dict[str, Any]]:
        """Items by ids and/or filter as {id, document, metadata[, embedding]}, in the order of ``ids``."""
        state = self._state(name)
        if ids is not None:
            ids = _check_ids(ids)
            if not ids:
                return []
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        with self._chroma("get", name):
            found = state.handle.get(
                ids=ids,
                where=dict(where) if where else None,
                where_document=dict(where_document) if where_document else None,
                limit=limit,
                offset=offset,
                include=include,
            )
        items = []
        for i, item_id in enumerate(found["ids"]):
            item: dict[str, Any] = {
                "id": item_id,
                "document": found["documents"][i] if found.get("documents") is not None else None,
                "metadata": found["metadatas"][i] if found.get("metadatas") is not None else None,
            }
            if include_embeddings:
                item["embedding"] = np.asarray(found["embeddings"][i], dtype=np.float32)
            items.append(item)
        if ids is not None:
            position = {item_id: i for i, item_id in enumerate(ids)}
            items.sort(key=lambda item: position[item["id"]])
        return items

    def count(self, name: str) -> int:
        """Number of items in a collection."""
        state = self._state(name)
        with self._chroma("count", name):
            return int(state.handle.count())

    def stats(self) -> dict[str, Any]:
        """{"store", "collections": {name: {count, embedder, dim, modality}}}."""
        collections = {}
        for name in self.list_collections():
            state = self._state(name)
            collections[name] = {
                "count": self.count(name),
                "embedder": state.embedder_name,
                "dim": state.dim,
                "modality": state.modality,
            }
        return {"store": self.location, "collections": collections}


# ---------------------------------------------------------------------------------- validation


@contextlib.contextmanager
def deferred_signals(what: str = "a store write") -> Iterator[None]:
    """Hold SIGTERM, SIGINT and SIGHUP until the block ends, then deliver them as they would have been.

    Chroma 1.x persists its HNSW files inside each write call, in place; a process killed there can leave an
    index that Chroma can no longer apply its log to ("Failed to apply logs to the hnsw segment writer" on the
    next open). Holding the signals for the length of one call (one batch) makes ``kill PID`` and Ctrl-C stop
    the process just after the batch, with the store intact. SIGKILL cannot be held. Outside the main thread
    (where Python cannot install handlers) the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        if not received:
            logger.warning("%s received during %s: stopping once it is written", signal.Signals(signum).name, what)
        received.append(signum)

    previous: dict[int, Any] = {}
    for signum in _HELD_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is None:  # installed outside Python: it cannot be restored, so it is left alone
            continue
        signal.signal(signum, hold)
        previous[signum] = handler
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):  # each held signal once, now under its own handler
            signal.raise_signal(signum)


def _is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic surfaced by pyo3 (``pyo3_runtime.PanicException``)."""
    return type(exc).__name__ == "PanicException"


def _check_collection_name(name: str) -> None:
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
        raise StoreError(
            f"collection name {name!r}: use 3-512 characters from [A-Za-z0-9._-], starting and ending with a "
            "letter or digit"
        )


def check_hnsw_settings(hnsw: Mapping[str, Any] | None, name: str = "?") -> dict[str, Any]:
    """Validated Chroma HNSW settings (see ``HNSW_SETTINGS``), or StoreError naming the collection and key."""
    if hnsw is None:
        return {}
    if not isinstance(hnsw, Mapping):
        raise StoreError(f"collection {name!r}: hnsw settings must be a dict, got {type(hnsw).__name__}")
    settings: dict[str, Any] = {}
    for key, value in hnsw.items():
        if key == "space":
            if value != "cosine":
                raise StoreError(
                    f"collection {name!r}: hnsw space {value!r}: the store searches by cosine (its query scores "
                    "are cosine similarities); for inner product or L2 use retrieval.ann's MIPS reduction"
                )
            continue
        if key not in HNSW_SETTINGS:
            known = ", ".join(sorted(HNSW_SETTINGS))
            extra = (
                " (Chroma 1.x's index ignores it; the store's own upsert batch is VectorStore(batch_size=...))"
                if key in ("batch_size", "num_threads")
                else ""
            )
            raise StoreError(f"collection {name!r}: unknown hnsw setting {key!r}{extra}; known: {known}")
        kind, low = HNSW_SETTINGS[key]
        if isinstance(value, np.generic):
            value = value.item()
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (kind is int and not isinstance(value, int)) or not math.isfinite(value):
            wanted = "an int" if kind is int else "a number"
            raise StoreError(f"collection {name!r}: hnsw {key}={value!r} must be {wanted}")
        if value < low or (kind is float and value <= low):
            bound = f"> {low}" if kind is float else f">= {int(low)}"
            raise StoreError(f"collection {name!r}: hnsw {key}={value!r} must be {bound}")
        settings[key] = kind(value)
    return settings


def _check_ids(ids: Sequence[str]) -> list[str]:
    """Ids as a list of unique non-empty strings, or StoreError listing the offenders."""
    if isinstance(ids, str):
        raise StoreError(f"ids must be a list of strings, got the single string {ids!r}; wrap it in a list")
    ids = list(ids)
    for index, item_id in enumerate(ids):
        if not isinstance(item_id, str) or not item_id:
            raise StoreError(f"ids[{index}] = {item_id!r}: ids must be non-empty strings")
    duplicates = [item_id for item_id, times in Counter(ids).items() if times > 1]
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:10]) + (" ..." if len(duplicates) > 10 else "")
        raise StoreError(f"duplicate ids in one call ({len(duplicates)}): {shown}")
    return ids


def _clean_value(item_id: str, key: str, value: Any) -> Any:
    """A Chroma-storable metadata value (numpy scalars become Python), or StoreError naming id and key."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, _SCALAR_TYPES):
        if isinstance(value, float) and not math.isfinite(value):
            raise StoreError(f"metadata of id {item_id!r}, key {key!r}: {value} is not a finite number")
        return value
    if isinstance(value, (list, tuple)) and value:
        cleaned = [_clean_value(item_id, key, v) for v in value]
        if len({type(v) for v in cleaned}) != 1:
            raise StoreError(f"metadata of id {item_id!r}, key {key!r}: a list must hold values of one type")
        return cleaned
    kind = "None" if value is None else type(value).__name__
    raise StoreError(
        f"metadata of id {item_id!r}, key {key!r}: {kind} is not storable; use str, int, float, bool "
        "(or a non-empty list of one of them), and leave out keys that have no value"
    )


def _check_metadatas(ids: list[str], metadatas: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any] | None]:
    """Validated metadata dicts (empty ones become None, as Chroma refuses empty dicts)."""
    cleaned: list[dict[str, Any] | None] = []
    for item_id, metadata in zip(ids, metadatas, strict=True):
        if metadata is None or len(metadata) == 0:
            cleaned.append(None)
            continue
        if not isinstance(metadata, Mapping):
            raise StoreError(f"metadata of id {item_id!r} is {type(metadata).__name__}, expected a dict")
        row = {}
        for key, value in metadata.items():
            if not isinstance(key, str) or not key:
                raise StoreError(f"metadata of id {item_id!r}: key {key!r} must be a non-empty string")
            row[key] = _clean_value(item_id, key, value)
        cleaned.append(row)
    return cleaned


def _as_matrix(embeddings: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    """Embeddings as a finite float32 (n, d) matrix, or StoreError."""
    try:
        matrix = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"collection {name!r}: embeddings are not a rectangular numeric array ({exc})") from exc
    if matrix.ndim == 1 and matrix.size:
        raise StoreError(f"collection {name!r}: embeddings must be 2-d (n, dim); wrap a single vector in a list")
    if matrix.size == 0:
        return matrix.reshape(0, matrix.shape[-1] if matrix.ndim == 2 else 0)
    if matrix.ndim != 2:
        raise StoreError(f"collection {name!r}: embeddings must be 2-d (n, dim), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise StoreError(f"collection {name!r}: embeddings contain NaN or infinity")
    return matrix


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m retrieval.store stats --path DIR | --url URL``: print the store's collections as JSON."""
    parser = argparse.ArgumentParser(prog="python -m retrieval.store", description="Inspect a recagents vector store.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    stats = verbs.add_parser("stats", help="print JSON: collections with their counts, embedders and dimensions")
    where = stats.add_mutually_exclusive_group()
    where.add_argument("--path", help=f"store directory (default: ${STORE_ENV} or ~/.cache/recagents/store)")
    where.add_argument("--url", help="Chroma server URL, e.g. http://localhost:8000")
    # retrieval is a leaf (imports nothing of ours, core included), so its one CLI declares the two flags itself
    loud = stats.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    loud.add_argument("-q", "--quiet", action="store_true", help="only errors")
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG, logging.INFO, logging.WARNING)[max(0, 2 - args.verbose)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        # Read-only: stats never takes the writer lock, and never creates a store where there is none.
        with VectorStore(path=args.path, url=args.url, read_only=True) as store:
            result = store.stats()
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
