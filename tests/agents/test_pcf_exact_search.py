"""PCF reference search is exact: the store's neighbours equal brute force; identical runs give identical labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.pcf.estimate import MatrixNeighbours, StoreNeighbours
from agents.pcf.label import read_catalogue, run_label_job
from agents.pcf.reference import REFERENCE_COLLECTION, index_references, load_carbon_catalogue
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder

WORDS = [
    "office",
    "chair",
    "steel",
    "laptop",
    "monitor",
    "cotton",
    "shirt",
    "paper",
    "printer",
    "lamp",
    "bottle",
    "plastic",
    "wooden",
    "desk",
    "phone",
    "cable",
    "shoe",
    "jacket",
    "battery",
    "glass",
    "server",
    "truck",
]


def write_items(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = [{"item_id": f"I{i:04d}", "title": " ".join(rng.choice(WORDS, size=4))} for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_store_neighbours_equal_brute_force_over_the_reference_catalogue(tmp_path: Path) -> None:
    items = read_catalogue(write_items(tmp_path / "items.jsonl", 300)).items
    embedder = HashingEmbedder()
    products = load_carbon_catalogue()
    queries = embedder.embed_texts([item.text() for item in items])
    exact = MatrixNeighbours(products, embedder.embed_texts([p.text() for p in products])).search(queries, k=5)
    with VectorStore(path=tmp_path / "store") as store:
        index_references(store, products, embedder, REFERENCE_COLLECTION)
        found = StoreNeighbours(store, REFERENCE_COLLECTION).search(queries, k=5)
        batched = StoreNeighbours(store, REFERENCE_COLLECTION).search(queries[:7], k=5)
    for want, got in zip(exact, found, strict=True):
        assert np.allclose([n.similarity for n in got], [n.similarity for n in want], atol=1e-6)
        assert [n.product.ref_id for n in got] == [n.product.ref_id for n in want] or np.allclose(
            sorted(n.similarity for n in got), sorted(n.similarity for n in want), atol=1e-6
        )  # the same ids, or a tie between equally similar products
    assert [[(n.product.ref_id, n.similarity) for n in row] for row in batched] == [
        [(n.product.ref_id, n.similarity) for n in row] for row in found[:7]
    ]  # a query's neighbours do not depend on the batch it came in


@pytest.mark.slow
def test_two_clean_runs_and_a_resumed_run_give_identical_labels(tmp_path: Path) -> None:
    catalog = write_items(tmp_path / "items.jsonl", 300)
    first_part = tmp_path / "part.jsonl"
    first_part.write_text("".join(catalog.read_text().splitlines(keepends=True)[:110]))
    outs = []
    for run in ("a", "b", "resumed"):
        out = tmp_path / f"{run}.jsonl"
        with VectorStore(path=tmp_path / f"store-{run}") as store:
            if run == "resumed":  # an interrupted job: 110 items first, then the rest on rerun
                run_label_job(first_part, out, store, HashingEmbedder(), batch_size=16, progress=False)
            run_label_job(catalog, out, store, HashingEmbedder(), batch_size=32, progress=False)
        outs.append(sorted(out.read_text().splitlines()))
    assert len(outs[0]) == 300 and outs[0] == outs[1] == outs[2]
