"""VectorStore on a persistent directory: round trips, idempotent upserts, filters and the refusals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from retrieval import StoreError, VectorStore

VOCABULARY = ["dog", "cat", "park", "sleeps", "runs", "stock", "market", "falls"]


class BagOfWordsEmbedder:
    """A tiny deterministic text embedder over a fixed vocabulary, so store tests need no model."""

    modality = "text"

    def __init__(self, name: str = "bow-8", dim: int = len(VOCABULARY)) -> None:
        self.name = name
        self.dim = dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                if word in VOCABULARY:
                    vectors[row, VOCABULARY.index(word) % self.dim] += 1.0
            vectors[row, -1] += 0.01  # never an all-zero vector
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_images(self, images: Sequence[object]) -> np.ndarray:
        raise NotImplementedError


@pytest.fixture
def store(tmp_path: Path):
    with VectorStore(tmp_path / "store") as opened:
        yield opened


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store"
    vectors = unit_rows(np.random.default_rng(0), 3, 6)
    with VectorStore(path) as store:
        store.collection("photos", dim=6)
        store.upsert(
            "photos",
            ["p/2", "p/0", "p/1"],
            documents=["two", "zero", "one"],
            embeddings=vectors,
            metadatas=[{"n": 2, "even": True}, {"n": 0, "even": True}, {"n": 1, "even": False}],
        )
    assert (path / "chroma.sqlite3").is_file()

    with VectorStore(path) as reopened:
        assert reopened.list_collections() == ["photos"]
        assert reopened.count("photos") == 3
        items = reopened.get("photos", ids=["p/0", "p/1", "p/2"], include_embeddings=True)
        assert [item["id"] for item in items] == ["p/0", "p/1", "p/2"]
        assert [item["document"] for item in items] == ["zero", "one", "two"]
        assert items[1]["metadata"] == {"n": 1, "even": False}
        np.testing.assert_allclose(items[2]["embedding"], vectors[0], atol=1e-6)
        stats = reopened.stats()
        assert stats["collections"]["photos"] == {
            "count": 3,
            "embedder": "external",
            "dim": 6,
            "modality": "vector",
        }


def test_upsert_twice_overwrites_and_never_duplicates(store: VectorStore) -> None:
    store.collection("notes", BagOfWordsEmbedder())
    store.upsert("notes", ["a", "b"], documents=["dog runs", "stock market falls"], metadatas=[{"v": 1}, {"v": 1}])
    store.upsert("notes", ["a", "b"], documents=["cat sleeps", "stock market falls"], metadatas=[{"w": 2}, None])
    assert store.count("notes") == 2
    a, b = store.get("notes", ids=["a", "b"])
    assert a["document"] == "cat sleeps" and a["metadata"] == {"w": 2}  # replaced, not merged
    assert b["metadata"] is None
    # the embedding was recomputed from the new document: a "cat" query now finds "a" first
    assert store.query("notes", texts=["cat"], k=1)[0][0]["id"] == "a"
    # a field left out keeps what is stored
    store.upsert("notes", ["a"], embeddings=BagOfWordsEmbedder().embed_texts(["park"]))
    assert store.get("notes", ids=["a"])[0] == {"id": "a", "document": "cat sleeps", "metadata": {"w": 2}}
    assert store.query("notes", texts=["park"], k=1)[0][0]["id"] == "a"
    assert store.count("notes") == 2


def test_query_scores_are_cosine_similarities(store: VectorStore) -> None:
    rng = np.random.default_rng(1)
    items = rng.normal(size=(20, 5)).astype(np.float32)  # not normalised: cosine space must not care
    query = rng.normal(size=(2, 5)).astype(np.float32)
    store.upsert("vectors", [f"v{i}" for i in range(20)], embeddings=items)
    results = store.query("vectors", embeddings=query, k=5)
    cosine = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        items / np.linalg.norm(items, axis=1, keepdims=True)
    ).T
    for row, hits in enumerate(results):
        expected = np.argsort(-cosine[row])[:5]
        assert [hit["id"] for hit in hits] == [f"v{i}" for i in expected]
        np.testing.assert_allclose([hit["score"] for hit in hits], cosine[row][expected], atol=1e-4)
        assert all(abs(hit["score"] + hit["distance"] - 1.0) < 1e-6 for hit in hits)


def test_where_filters_restrict_query_get_and_delete(store: VectorStore) -> None:
    store.collection("pets", BagOfWordsEmbedder())
    store.upsert(
        "pets",
        ["d1", "d2", "c1", "c2"],
        documents=["dog runs park", "dog sleeps", "cat runs", "cat sleeps park"],
        metadatas=[
            {"kind": "dog", "year": 2019, "indoor": False},
            {"kind": "dog", "year": 2023, "indoor": True},
            {"kind": "cat", "year": 2021, "indoor": True},
            {"kind": "cat", "year": 2024, "indoor": False, "tags": ["park", "nap"]},
        ],
    )
    hits = store.query("pets", texts=["dog runs park"], k=4, where={"kind": "cat"})[0]
    assert {hit["id"] for hit in hits} == {"c1", "c2"}
    recent = store.get("pets", where={"$and": [{"year": {"$gte": 2021}}, {"indoor": True}]})
    assert sorted(item["id"] for item in recent) == ["c1", "d2"]
    assert [item["id"] for item in store.get("pets", where_document={"$contains": "park"})] != []
    store.delete("pets", where={"kind": "dog"})
    assert store.count("pets") == 2
    assert sorted(item["id"] for item in store.get("pets")) == ["c1", "c2"]
    with pytest.raises(StoreError, match="delete from 'pets'"):
        store.delete("pets")
    with pytest.raises(StoreError, match=r"\$bad"):
        store.get("pets", where={"year": {"$bad": 1}})


def test_embedder_mismatch_is_refused_even_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with VectorStore(path) as store:
        store.collection("notes", BagOfWordsEmbedder("bow-a"))
        with pytest.raises(StoreError, match="refusing to mix in 'bow-b'"):
            store.collection("notes", BagOfWordsEmbedder("bow-b"))
    with VectorStore(path) as reopened:
        assert reopened.collection("notes", BagOfWordsEmbedder("bow-a")).embedder_name == "bow-a"
        with pytest.raises(StoreError, match="built with embedder 'bow-a'"):
            reopened.collection("notes", BagOfWordsEmbedder("bow-b"))
        with pytest.raises(StoreError, match=r"dim 4"):
            reopened.collection("notes", BagOfWordsEmbedder("bow-a", dim=4))


def test_embeddings_of_the_wrong_dimension_are_refused(store: VectorStore) -> None:
    store.collection("fixed", BagOfWordsEmbedder())
    with pytest.raises(StoreError, match=r"holds 8-d embeddings.*dimension 5"):
        store.upsert("fixed", ["x"], embeddings=np.ones((1, 5), dtype=np.float32))
    with pytest.raises(StoreError, match="dimension 3"):
        store.query("fixed", embeddings=np.ones((1, 3), dtype=np.float32))
    # an external collection takes its dimension from the first upsert and keeps it
    store.upsert("loose", ["a"], embeddings=np.ones((1, 3), dtype=np.float32))
    assert store.stats()["collections"]["loose"]["dim"] == 3
    with pytest.raises(StoreError, match="holds 3-d"):
        store.upsert("loose", ["b"], embeddings=np.ones((1, 4), dtype=np.float32))
    assert store.count("loose") == 1


def test_bad_ids_and_metadata_are_refused_with_their_names(store: VectorStore) -> None:
    store.collection("notes", BagOfWordsEmbedder())
    with pytest.raises(StoreError, match=r"duplicate ids in one call \(2\): 'a', 'b'"):
        store.upsert("notes", ["a", "b", "a", "b", "c"], documents=["dog"] * 5)
    with pytest.raises(StoreError, match=r"ids\[1\] = ''"):
        store.upsert("notes", ["a", ""], documents=["dog", "cat"])
    with pytest.raises(StoreError, match="metadata of id 'b', key 'taken': None"):
        store.upsert("notes", ["a", "b"], documents=["dog", "cat"], metadatas=[{"taken": 1}, {"taken": None}])
    with pytest.raises(StoreError, match="metadata of id 'a', key 'exif': dict"):
        store.upsert("notes", ["a"], documents=["dog"], metadatas=[{"exif": {"iso": 100}}])
    with pytest.raises(StoreError, match="2 documents for 3 ids"):
        store.upsert("notes", ["a", "b", "c"], documents=["dog", "cat"])
    with pytest.raises(StoreError, match="collection name 'x'"):
        store.collection("x")
    with pytest.raises(StoreError, match="no collection 'missing'"):
        store.upsert("missing", ["a"], documents=["dog"])
    with pytest.raises(StoreError, match="no collection 'missing'"):
        store.count("missing")
    assert store.count("notes") == 0  # nothing half-written
    store.upsert("notes", ["n"], documents=["dog"], metadatas=[{"count": np.int64(3), "score": np.float32(0.5)}])
    assert store.get("notes", ids=["n"])[0]["metadata"] == {"count": 3, "score": 0.5}


def test_large_upsert_is_batched_and_complete(store: VectorStore) -> None:
    vectors = unit_rows(np.random.default_rng(2), 1500, 4)
    ids = [f"user1/photo/{i:06d}" for i in range(1500)]
    assert store.upsert("many", ids, embeddings=vectors, batch_size=200) == 1500
    assert store.count("many") == 1500
    last = store.get("many", ids=[ids[-1]], include_embeddings=True)[0]
    np.testing.assert_allclose(last["embedding"], vectors[-1], atol=1e-6)
    assert store.query("many", embeddings=vectors[777:778], k=1)[0][0]["id"] == ids[777]


def test_texts_need_the_collections_embedder(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with VectorStore(path) as store:
        store.collection("notes", BagOfWordsEmbedder()).upsert(["a"], documents=["dog runs"])
        store.upsert("raw", ["a"], embeddings=np.ones((1, 8), dtype=np.float32))
        with pytest.raises(StoreError, match="has no embedder"):
            store.query("raw", texts=["dog"])
    with VectorStore(path) as reopened:
        # "bow-8" is not a packaged embedder, so the store cannot rebuild it by name
        with pytest.raises(StoreError, match=r"attach it with store\.collection"):
            reopened.query("notes", texts=["dog"])
        reopened.collection("notes", BagOfWordsEmbedder())
        assert reopened.query("notes", texts=["dog"], k=1)[0][0]["id"] == "a"


def test_non_store_directory_and_file_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "holiday photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a database")
    with pytest.raises(StoreError, match="not a Chroma store") as caught:
        VectorStore(folder)
    assert str(folder) in str(caught.value)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing created there

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "chroma.sqlite3").write_text("garbage")
    with pytest.raises(StoreError, match="cannot open the Chroma store") as caught:
        VectorStore(corrupt)
    assert str(corrupt) in str(caught.value)

    a_file = tmp_path / "store.db"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="is a file") as caught:
        VectorStore(a_file)
    assert str(a_file) in str(caught.value)


def test_read_only_store_reads_but_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with pytest.raises(StoreError, match="no Chroma store here"):
        VectorStore(path, read_only=True)
    assert not path.exists()
    with VectorStore(path) as store:
        store.upsert("vectors", ["a"], embeddings=np.ones((1, 2), dtype=np.float32))
    with VectorStore(path, read_only=True) as reader:
        assert reader.count("vectors") == 1
        with pytest.raises(StoreError, match="read_only"):
            reader.upsert("vectors", ["b"], embeddings=np.ones((1, 2), dtype=np.float32))
        with pytest.raises(StoreError, match="read_only"):
            reader.delete("vectors", ids=["a"])


def test_same_process_may_reopen_and_default_path_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECAGENTS_STORE", str(tmp_path / "env-store"))
    first = VectorStore()
    second = VectorStore()  # the writer lock is per process: a second handle here is fine
    assert first.path == second.path == (tmp_path / "env-store").resolve()
    first.upsert("shared", ["a"], embeddings=np.ones((1, 2), dtype=np.float32))
    assert second.count("shared") == 1
    first.close()
    second.close()
    with pytest.raises(StoreError, match="closed"):
        second.count("shared")


def test_hnsw_settings_reach_chroma_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store"
    vectors = unit_rows(np.random.default_rng(1), 40, 5)
    with VectorStore(path) as store:
        default = store.collection("plain", dim=5)
        assert store.hnsw_settings(default.name)["max_neighbors"] == 16  # Chroma's default, untouched
        store.collection("tuned", dim=5, hnsw={"max_neighbors": 8, "ef_construction": 40, "sync_threshold": 5000})
        store.upsert("tuned", [f"v{i}" for i in range(40)], embeddings=vectors)
        assert store.query("tuned", embeddings=vectors[:1], k=1)[0][0]["id"] == "v0"
    with VectorStore(path) as store:
        held = store.hnsw_settings("tuned")
        assert (held["space"], held["max_neighbors"], held["ef_construction"], held["sync_threshold"]) == (
            "cosine",
            8,
            40,
            5000,
        )
        # the settings Chroma lets an existing collection change are changed; the built ones must match
        now = store.collection("tuned", hnsw={"ef_search": 250, "max_neighbors": 8}).store.hnsw_settings("tuned")
        assert now["ef_search"] == 250 and now["max_neighbors"] == 8
        with pytest.raises(StoreError, match=r"max_neighbors=32 \(built with 8\).*fixed when a collection is built"):
            store.configure("tuned", {"max_neighbors": 32})
        assert store.count("tuned") == 40


@pytest.mark.parametrize(
    ("hnsw", "message"),
    [
        ({"max_neighbors": 1}, r"max_neighbors=1 must be >= 2"),
        ({"ef_search": 10.5}, r"ef_search=10.5 must be an int"),
        ({"ef_construction": True}, r"ef_construction=True must be an int"),
        ({"resize_factor": 1.0}, r"resize_factor=1.0 must be > 1.0"),
        ({"sync_threshold": 2}, r"sync_threshold=2 must be >= 3"),
        ({"batch_size": 1000}, r"unknown hnsw setting 'batch_size' \(Chroma 1.x's index ignores it"),
        ({"M": 16}, r"unknown hnsw setting 'M'.*known: ef_construction, ef_search, max_neighbors"),
        ({"space": "ip"}, r"hnsw space 'ip'"),
        ([("max_neighbors", 8)], r"settings must be a dict, got list"),
    ],
)
def test_bad_hnsw_settings_are_refused_before_chroma_sees_them(store: VectorStore, hnsw, message: str) -> None:
    with pytest.raises(StoreError, match=rf"collection 'bad': (hnsw )?{message}"):
        store.collection("bad", dim=3, hnsw=hnsw)
    assert "bad" not in store.list_collections()
