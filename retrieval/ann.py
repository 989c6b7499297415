"""Maximum-inner-product vector indexes behind one interface: vectors in, integer ids out.

Back ends: ``ExactIndex`` (brute force, the reference), ``FaissIVFIndex`` (faiss IVF-Flat, inner product, with
DINOSAUR's nlist = sqrt(4 |index|) and nprobe = 0.1 nlist), ``FaissHNSWIndex`` (faiss HNSW) and ``ChromaIndex``
(the shared Chroma store through ``retrieval.store.VectorStore``). HNSW and Chroma search by L2 / cosine, so
they index the usual MIPS-to-nearest-neighbour reduction (Bachrach et al., RecSys 2014): each vector x becomes
[x, sqrt(M^2 - |x|^2)] / M with M the largest norm, each query q becomes [q, 0] / |q|; the cosine (and the L2
distance) of the two is then a decreasing function of <q, x> alone, so the ranking is the inner product's.

Every index answers ``search(queries, k) -> (scores, ids)`` with ``scores`` the inner products (float32,
descending per row) and ``ids`` int64 (``-1`` where fewer than ``k`` results were found).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from retrieval.errors import RetrievalError

logger = logging.getLogger(__name__)

BACKENDS = ("exact", "faiss-ivf", "faiss-hnsw", "chroma")


class AnnIndexError(RetrievalError):
    """An ANN index was given bad vectors, ids or parameters."""


@dataclass
class IndexStats:
    """What building an index cost: seconds, bytes held, vectors indexed, and back-end parameters."""

    backend: str
    n_vectors: int
    dim: int
    build_seconds: float
    memory_bytes: int
    params: dict[str, Any] = field(default_factory=dict)


class AnnIndex(Protocol):
    """The interface every back end implements."""

    stats: IndexStats

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (inner products, ids) per query row."""
        ...


def _check_vectors(vectors: Any, what: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 matrix without NaN/inf, of the expected width."""
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2 or array.shape[0] == 0:
        raise AnnIndexError(f"{what}: need a non-empty [n, dim] matrix, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise AnnIndexError(f"{what}: {array.shape[1]}-d vectors for an index of {dim}-d vectors")
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise AnnIndexError(f"{what}: row {row} holds NaN or inf")
    return array


def _check_ids(ids: Any, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise AnnIndexError(f"ids: {ids.shape[0] if ids.ndim else 0} ids for {n} vectors")
    if (ids < 0).any():
        raise AnnIndexError(f"ids: negative id at position {int(np.flatnonzero(ids < 0)[0])} (ids must be >= 0)")
    return ids


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise AnnIndexError(f"k must be a positive int, got {k!r}")
    return int(k)


def mips_augment_items(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """[x, sqrt(M^2 - |x|^2)] / M per row (unit norm), and M, the largest norm."""
    norms_sq = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    max_norm = float(np.sqrt(norms_sq.max())) or 1.0
    extra = np.sqrt(np.maximum(max_norm**2 - norms_sq, 0.0)).astype(np.float32)
    return np.hstack([vectors, extra[:, None]]) / np.float32(max_norm), max_norm


def mips_augment_queries(queries: np.ndarray) -> np.ndarray:
    """[q, 0] / |q| per row (a zero query stays zero)."""
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.hstack([queries / norms, np.zeros((len(queries), 1), np.float32)]).astype(np.float32)


def _rescore(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, positions: np.ndarray) -> tuple:
    """Exact inner products of the found positions (-1 = none), sorted descending; ids mapped through ``ids``."""
    valid = positions >= 0
    safe = np.where(valid, positions, 0)
    scores = np.einsum("qd,qkd->qk", queries, vectors[safe]).astype(np.float32)
    scores[~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, 1)
    found = np.take_along_axis(np.where(valid, ids[safe], -1), order, 1)
    return scores, found


class ExactIndex:
    """Brute-force inner product search (the reference): matrix products over chunks of the vectors, merged."""

    def __init__(self, vectors: Any, ids: Any = None, batch_size: int = 256, chunk_size: int = 131_072) -> None:
        tick = time.perf_counter()
        self.vectors = _check_vectors(vectors, "vectors")
        self.ids = _check_ids(ids, len(self.vectors))
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.stats = IndexStats(
            "exact",
            len(self.vectors),
            self.vectors.shape[1],
            time.perf_counter() - tick,
            self.vectors.nbytes + self.ids.nbytes,
        )

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` by inner product; equal scores are ordered by position (stable)."""
        queries = _check_vectors(queries, "queries", self.vectors.shape[1])
        k = _check_k(k)
        n = len(self.vectors)
        width = min(k, n)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(queries), self.batch_size):
            batch = queries[start : start + self.batch_size]
            kept_scores, kept_positions = [], []
            for first in range(0, n, self.chunk_size):  # each chunk's own top-k, merged below
                block = batch @ self.vectors[first : first + self.chunk_size].T
                if width < block.shape[1]:
                    part = np.argpartition(-block, width - 1, axis=1)[:, :width]
                else:
                    part = np.broadcast_to(np.arange(block.shape[1]), block.shape)
                kept_scores.append(np.take_along_axis(block, part, 1))
                kept_positions.append(part + first)
            block_scores, positions = np.hstack(kept_scores), np.hstack(kept_positions)
            order = np.lexsort((positions, -block_scores), axis=1)[:, :width]
            rows = slice(start, start + len(batch))
            scores[rows, :width] = np.take_along_axis(block_scores, order, 1)
            ids[rows, :width] = self.ids[np.take_along_axis(positions, order, 1)]
        return scores, ids


def ivf_parameters(n_vectors: int) -> tuple[int, int]:
    """DINOSAUR's IVF sizes: nlist = sqrt(4 n), nprobe = 0.1 nlist (at least 1 each)."""
    nlist = max(1, round(math.sqrt(4 * n_vectors)))
    return nlist, max(1, round(0.1 * nlist))


class FaissIVFIndex:
    """faiss IndexIVFFlat with inner product; nlist and nprobe default to DINOSAUR's rule (``ivf_parameters``)."""

    def __init__(
        self,
        vectors: Any,
        ids: Any = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        train_size: int = 100_000,
        niter: int = 10,
        seed: int = 0,
        add_batch: int = 200_000,
    ) -> None:
        import faiss

        tick = time.perf_counter()
        vectors = _check_vectors(vectors, "vectors")
        n, dim = vectors.shape
        self.ids = _check_ids(ids, n)
        default_nlist, _ = ivf_parameters(n)
        nlist = min(nlist or default_nlist, n)
        nprobe = nprobe or max(1, round(0.1 * nlist))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = niter
        index.cp.seed = seed
        index.cp.max_points_per_centroid = max(1, train_size // nlist)
        rng = np.random.default_rng(seed)
        sample = vectors if n <= train_size else vectors[np.sort(rng.choice(n, train_size, replace=False))]
        index.train(sample)
        for start in range(0, n, add_batch):
            index.add_with_ids(vectors[start : start + add_batch], self.ids[start : start + add_batch])
        index.nprobe = min(nprobe, nlist)
        self.index = index
        self.dim = dim
        self.stats = IndexStats(
            "faiss-ivf",
            n,
            dim,
            time.perf_counter() - tick,
            # codes + ids in the inverted lists + centroids (serialising would copy the whole index once more)
            int(index.ntotal * (index.code_size + 8) + nlist * dim * 4),
            {"nlist": nlist, "nprobe": int(index.nprobe), "train_size": len(sample), "niter": niter},
        )

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` by inner product (the lists of the nprobe nearest centroids, scanned exactly)."""
        queries = _check_vectors(queries, "queries", self.dim)
        k = _check_k(k)
        scores, ids = self.index.search(queries, k)
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32), ids.astype(np.int64)


class FaissHNSWIndex:
    """faiss IndexHNSWFlat (L2) over MIPS-augmented unit vectors; results re-scored by exact inner product."""

    def __init__(
        self,
        vectors: Any,
        ids: Any = None,
        m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 128,
        add_batch: int = 250_000,
        on_batch: Callable[[FaissHNSWIndex], bool] | None = None,
    ) -> None:
        """Index ``vectors`` in batches of ``add_batch``; ``on_batch(self)`` after each may stop the build early
        (return False): the index then holds the vectors added so far. Its time is not counted as build time."""
        import faiss

        tick = time.perf_counter()
        self.vectors = _check_vectors(vectors, "vectors")
        self.ids = _check_ids(ids, len(self.vectors))
        augmented, self.max_norm = mips_augment_items(self.vectors)
        index = faiss.IndexHNSWFlat(augmented.shape[1], m)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        self.index = index
        self.ef_search = ef_search
        outside = 0.0  # seconds spent in on_batch
        for start in range(0, len(augmented), add_batch):  # in batches, so that a long build reports its rate
            index.add(augmented[start : start + add_batch])
            elapsed = time.perf_counter() - tick - outside
            if len(augmented) > add_batch:
                logger.info(
                    "HNSW: %d / %d vectors added, %.0f s, %.0f vectors/s",
                    index.ntotal,
                    len(augmented),
                    elapsed,
                    index.ntotal / elapsed,
                )
            if on_batch is not None:
                mark = time.perf_counter()
                keep_going = on_batch(self)
                outside += time.perf_counter() - mark
                if not keep_going:
                    break
        self.vectors, self.ids = self.vectors[: index.ntotal], self.ids[: index.ntotal]
        self.stats = IndexStats(
            "faiss-hnsw",
            int(index.ntotal),
            self.vectors.shape[1],
            time.perf_counter() - tick - outside,
            hnsw_bytes(index) + self.ids.nbytes,
            {"M": m, "efConstruction": ef_construction, "efSearch": ef_search},
        )

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k``; efSearch is raised to ``k`` when ``k`` is larger (HNSW returns at most ef)."""
        queries = _check_vectors(queries, "queries", self.vectors.shape[1])
        k = _check_k(k)
        self.index.hnsw.efSearch = max(self.ef_search, k)
        _, positions = self.index.search(mips_augment_queries(queries), k)
        return _rescore(queries, self.vectors, self.ids, positions)


class ChromaIndex:
    """The shared Chroma store (cosine HNSW) over MIPS-augmented vectors, via a ``VectorStore`` passed in."""

    max_hits_per_call = 20_000

    def __init__(
        self,
        store: Any,
        collection: str,
        vectors: Any,
        ids: Any = None,
        batch_size: int = 5000,
        rebuild: bool = True,
        add_batch: int = 100_000,
        on_batch: Callable[[ChromaIndex], bool] | None = None,
        hnsw: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        """Upsert ``vectors`` ``add_batch`` at a time (``batch_size`` per store call); ``on_batch(self)`` after each
        may stop early (return False), as for ``FaissHNSWIndex``; its time is not counted as build time.
        ``hnsw``: the collection's index settings (``VectorStore.collection(hnsw=...)``; Chroma's defaults if None).
        ``resume``: keep an existing collection built by an earlier, stopped ``ChromaIndex`` over the same vectors
        and add only the vectors after those it holds (its ids are the positions "0", "1", ...)."""
        tick = time.perf_counter()
        self.vectors = _check_vectors(vectors, "vectors")
        self.ids = _check_ids(ids, len(self.vectors))
        augmented, self.max_norm = mips_augment_items(self.vectors)
        self.store = store
        self.collection = collection
        exists = collection in store.list_collections()
        if rebuild and exists and not resume:
            store.delete_collection(collection)
        store.collection(collection, dim=augmented.shape[1], hnsw=hnsw)
        # position -> string id: the store's ids are strings; ids may repeat (several copies of one item)
        outside, added = 0.0, 0
        if resume and exists:
            added = self._resume_point(augmented)
        self.resumed_at = added
        for start in range(added, len(augmented), add_batch):
            stop = min(start + add_batch, len(augmented))
            keys = [str(i) for i in range(start, stop)]
            store.upsert(collection, keys, embeddings=augmented[start:stop], batch_size=batch_size)
            added = stop
            if len(augmented) > add_batch:
                elapsed = time.perf_counter() - tick - outside
                logger.info(
                    "Chroma: %d / %d vectors, %.0f s, %.0f vectors/s (this run)",
                    added,
                    len(augmented),
                    elapsed,
                    (added - self.resumed_at) / elapsed,
                )
            if on_batch is not None:
                self.n_added = added
                mark = time.perf_counter()
                keep_going = on_batch(self)
                outside += time.perf_counter() - mark
                if not keep_going:
                    break
        self.n_added = added
        self.vectors, self.ids = self.vectors[:added], self.ids[:added]
        self.stats = IndexStats(
            "chroma",
            added,
            self.vectors.shape[1],
            time.perf_counter() - tick - outside,
            _directory_bytes(getattr(store, "path", None)),
            {
                "space": "cosine (MIPS-augmented)",
                "location": str(getattr(store, "location", "")),
                **(store.hnsw_settings(collection) if hasattr(store, "hnsw_settings") else {}),
                "resumed_at": self.resumed_at,
            },
        )

    def _resume_point(self, augmented: np.ndarray) -> int:
        """How many of the (augmented) vectors an existing collection holds, checked: ids "0" .. str(count - 1),
        the last of them stored with the vector given at that position."""
        count, n = self.store.count(self.collection), len(augmented)
        if count > n:
            raise AnnIndexError(f"collection {self.collection!r} holds {count} vectors, more than the {n} given")
        if count:
            last = self.store.get(self.collection, ids=[str(count - 1)], include_embeddings=True)
            if len(last) != 1 or not np.allclose(last[0]["embedding"], augmented[count - 1], atol=1e-6):
                raise AnnIndexError(
                    f"collection {self.collection!r}: its {count} vectors are not the first {count} given (id "
                    f"{str(count - 1)!r} missing or another vector), so it cannot be resumed; rebuild it"
                )
        logger.info("Chroma: resuming %r at %d of %d vectors", self.collection, count, n)
        return count

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` from the store, re-scored by exact inner product."""
        queries = _check_vectors(queries, "queries", self.vectors.shape[1])
        k = min(_check_k(k), getattr(self, "n_added", len(self.vectors)))
        augmented = mips_augment_queries(queries)
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        # Chroma fetches the records of every hit in one SQLite statement, limited to 32,766 variables
        step = max(1, self.max_hits_per_call // k)
        for first in range(0, len(queries), step):
            hits = self.store.query(self.collection, embeddings=augmented[first : first + step], k=k)
            for row, found in enumerate(hits, start=first):
                positions[row, : len(found)] = [int(hit["id"]) for hit in found]
        return _rescore(queries, self.vectors, self.ids, positions)


def hnsw_bytes(index: Any) -> int:
    """Bytes a faiss IndexHNSWFlat holds: its vectors plus the graph (neighbour lists, offsets, levels).

    Counted from the arrays' sizes; serialising the index to measure it would copy it once more.
    """
    graph = index.hnsw
    return int(
        index.ntotal * index.d * 4 + graph.neighbors.size() * 4 + graph.offsets.size() * 8 + graph.levels.size() * 4
    )


def _directory_bytes(path: Any) -> int:
    """Bytes on disk under ``path`` (0 when there is no local directory, e.g. a Chroma server)."""
    if path is None:
        return 0
    from pathlib import Path

    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def build_index(backend: str, vectors: Any, ids: Any = None, store: Any = None, **options: Any) -> AnnIndex:
    """An index of ``backend`` (one of ``BACKENDS``) over ``vectors``; ``chroma`` needs a ``store``."""
    if backend == "exact":
        return ExactIndex(vectors, ids, **options)
    if backend == "faiss-ivf":
        return FaissIVFIndex(vectors, ids, **options)
    if backend == "faiss-hnsw":
        return FaissHNSWIndex(vectors, ids, **options)
    if backend == "chroma":
        if store is None:
            raise AnnIndexError("backend 'chroma' needs a VectorStore (store=...)")
        return ChromaIndex(store, options.pop("collection", "ann_index"), vectors, ids, **options)
    raise AnnIndexError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def measure_queries(index: AnnIndex, queries: np.ndarray, k: int, batch_size: int = 256) -> dict[str, float]:
    """Latency per query batch and queries per second of ``index.search``."""
    batches: Sequence[np.ndarray] = [queries[s : s + batch_size] for s in range(0, len(queries), batch_size)]
    tick = time.perf_counter()
    for batch in batches:
        index.search(batch, k)
    seconds = time.perf_counter() - tick
    return {
        "queries": len(queries),
        "k": k,
        "seconds": seconds,
        "qps": len(queries) / seconds if seconds > 0 else float("inf"),
        "ms_per_query": 1000 * seconds / len(queries),
    }


def recall_against(reference_ids: np.ndarray, found_ids: np.ndarray) -> float:
    """Mean share of each row's reference ids (ignoring -1) that ``found_ids`` also returned."""
    shares = []
    for ref, got in zip(reference_ids, found_ids, strict=True):
        ref = ref[ref >= 0]
        if len(ref):
            shares.append(np.isin(ref, got).mean())
    return float(np.mean(shares)) if shares else 1.0
