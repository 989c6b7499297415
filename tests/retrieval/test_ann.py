"""The ANN back ends: exact search is the reference; faiss IVF/HNSW and Chroma agree with it within tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ann import (
    AnnIndexError,
    ExactIndex,
    FaissHNSWIndex,
    FaissIVFIndex,
    build_index,
    ivf_parameters,
    mips_augment_items,
    mips_augment_queries,
    recall_against,
)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Vectors around 20 centres with varied norms (so inner product and cosine rankings differ)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    points = centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, dim))
    return (points * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    vectors = _clustered(3000, 16, 0)
    queries = _clustered(50, 16, 1)
    reference_scores, reference_ids = ExactIndex(vectors).search(queries, 20)
    return vectors, queries, reference_scores, reference_ids


def test_exact_matches_brute_force_order_and_scores(catalogue):
    vectors, queries, scores, ids = catalogue
    brute = queries @ vectors.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, 1), rtol=1e-5)
    _chunked_scores, chunked_ids = ExactIndex(vectors, chunk_size=701, batch_size=16).search(queries, 20)
    np.testing.assert_array_equal(chunked_ids, ids)  # chunks of the vectors merged into the same order


def test_exact_maps_positions_to_given_ids_and_pads_short_results():
    vectors = np.eye(3, dtype=np.float32)
    index = ExactIndex(vectors, ids=[7, 7, 9])  # repeated ids: several copies of one item
    scores, ids = index.search(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), 5)
    assert ids.tolist() == [[7, 9, 7, -1, -1]]
    assert np.isinf(scores[0, 3:]).all()


def test_mips_augmentation_preserves_inner_product_ranking(catalogue):
    vectors, queries, _, ids = catalogue
    items, _ = mips_augment_items(vectors)
    cosine = mips_augment_queries(queries) @ items.T
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argsort(-cosine, axis=1, kind="stable")[:, :20], ids)


def test_ivf_parameters_follow_the_paper():
    assert ivf_parameters(5_000_000) == (4472, 447)
    assert ivf_parameters(10_000) == (200, 20)


# IVF probes 10% of its lists (the paper's nprobe), so it misses some true neighbours by design
@pytest.mark.parametrize(("backend", "tolerance"), [("faiss-ivf", 0.8), ("faiss-hnsw", 0.95)])
def test_faiss_agrees_with_exact(catalogue, backend, tolerance):
    vectors, queries, _reference_scores, reference_ids = catalogue
    index = build_index(backend, vectors, np.arange(len(vectors)) + 100)
    scores, ids = index.search(queries, 20)
    assert recall_against(reference_ids + 100, ids) >= tolerance
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # descending inner products
    assert index.stats.n_vectors == 3000 and index.stats.memory_bytes > vectors.nbytes


def test_ivf_probing_every_list_is_exact(catalogue):
    vectors, queries, reference_scores, reference_ids = catalogue
    scores, ids = FaissIVFIndex(vectors, nlist=30, nprobe=30).search(queries, 20)
    np.testing.assert_array_equal(ids, reference_ids)
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-4, atol=1e-4)


def test_ivf_uses_the_paper_nprobe_by_default(catalogue):
    vectors = catalogue[0]
    index = FaissIVFIndex(vectors)
    nlist, nprobe = ivf_parameters(len(vectors))
    assert index.stats.params["nlist"] == nlist and index.stats.params["nprobe"] == nprobe


def test_chroma_store_agrees_with_exact(catalogue, tmp_path):
    from retrieval.store import VectorStore

    vectors, queries, _, _reference_ids = catalogue
    with VectorStore(tmp_path / "store") as store:
        index = build_index("chroma", vectors[:1500], store=store, collection="ann_test")
        _, expected = ExactIndex(vectors[:1500]).search(queries, 20)
        scores, ids = index.search(queries, 20)
        assert recall_against(expected, ids) >= 0.9
        assert (np.diff(scores, axis=1) <= 1e-5).all()
        assert store.count("ann_test") == 1500


def test_bad_input_raises_our_error():
    with pytest.raises(AnnIndexError, match="row 1"):
        ExactIndex(np.array([[1.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(AnnIndexError, match="3-d vectors"):
        ExactIndex(np.eye(2)).search(np.ones((1, 3)), 1)
    with pytest.raises(AnnIndexError, match="ids"):
        FaissHNSWIndex(np.eye(2), ids=[0])
    with pytest.raises(AnnIndexError, match="unknown index backend"):
        build_index("annoy", np.eye(2))
    with pytest.raises(AnnIndexError, match="needs a VectorStore"):
        build_index("chroma", np.eye(2))


def test_staged_build_stops_early_and_searches_only_what_was_added(catalogue, tmp_path):
    from retrieval.store import VectorStore

    vectors, queries, _, _ = catalogue
    seen: list[int] = []

    def stop_after_first(index) -> bool:
        seen.append(int(index.index.ntotal))
        return False

    hnsw = FaissHNSWIndex(vectors, ids=np.arange(3000) + 10, m=16, add_batch=1000, on_batch=stop_after_first)
    assert seen == [1000] and hnsw.stats.n_vectors == 1000 and len(hnsw.vectors) == 1000
    _, found = hnsw.search(queries, 20)
    assert found.min() >= 10 and found.max() < 1010  # only the first 1000 vectors were indexed
    exact_ids = ExactIndex(vectors[:1000], np.arange(1000) + 10).search(queries, 20)[1]
    assert recall_against(exact_ids, found) > 0.9
    assert hnsw.stats.memory_bytes > vectors[:1000].nbytes

    counts: list[int] = []
    with VectorStore(tmp_path / "store") as store:
        chroma = build_index(
            "chroma",
            vectors[:900],
            store=store,
            collection="ann_staged",
            add_batch=300,
            on_batch=lambda index: counts.append(index.n_added) or index.n_added < 600,
            hnsw={"max_neighbors": 8, "ef_construction": 32},
        )
        assert counts == [300, 600] and chroma.stats.n_vectors == 600
        assert (chroma.stats.params["max_neighbors"], chroma.stats.params["ef_construction"]) == (8, 32)
        assert store.collection("ann_staged").count() == 600
        assert chroma.search(queries[:5], 20)[1].max() < 600
    # a later process goes on where the stopped build ended, after checking that the store holds these vectors
    with VectorStore(tmp_path / "store") as store:
        resumed = build_index("chroma", vectors[:900], store=store, collection="ann_staged", resume=True, add_batch=300)
        assert resumed.resumed_at == 600 and resumed.stats.n_vectors == 900 and store.count("ann_staged") == 900
        assert resumed.stats.params["max_neighbors"] == 8  # the collection's settings are kept
        expected = ExactIndex(vectors[:900]).search(queries, 20)[1]
        assert recall_against(expected, resumed.search(queries, 20)[1]) >= 0.9
        with pytest.raises(AnnIndexError, match="not the first 900 given"):
            build_index("chroma", vectors[1:1000], store=store, collection="ann_staged", resume=True)
