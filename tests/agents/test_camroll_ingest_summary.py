"""The ingest summary counts only the photos that got visual labels; the rest are reported apart."""

from __future__ import annotations

from pathlib import Path

from agents.camroll.data import read_photos
from agents.camroll.demo_data import make_demo_roll
from agents.camroll.memory import CamrollMemory, ScriptedVisual
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder


def test_photos_without_labels_are_not_counted_as_labelled(tmp_path: Path) -> None:
    roll = tmp_path / "roll"
    make_demo_roll(roll, users=["7"], photos_per_user=40, questions_per_user=0, seed=0, progress=False)
    photos = read_photos(roll / "user7")
    n = len(photos)  # the demo adds a few photos to the 40 asked for
    # All but 2 photos the backend recognises; 2 it cannot (a broken JPEG gets [] from EfficientNetLabels.describe too).
    visual = ScriptedVisual({Path(p.file).name: ["pizza"] for p in photos[:-2]})
    with VectorStore(tmp_path / "store") as store:
        memory = CamrollMemory(store, roll, embedder=HashingEmbedder(), visual=visual, cache_dir=tmp_path / "cache")
        first = memory.ingest("7", progress=False)
        again = memory.ingest("7", progress=False)
    assert (first["photos"], first["visual_labelled"], first["visual_unlabelled"]) == (n, n - 2, 2)
    assert first["visual_cached"] == 0
    assert (again["visual_labelled"], again["visual_unlabelled"], again["visual_cached"]) == (0, 0, n)
