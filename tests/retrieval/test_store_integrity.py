"""A damaged store is detected on open, never rewritten, and reported in one line (no panic, no traceback)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reliability import build_store
from retrieval import StoreError, VectorStore
from retrieval.integrity import StoreDamagedError, check_store_integrity
from retrieval.store import main

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def healthy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one collection flushed to an HNSW segment (1,100 vectors) and one small collection."""
    path = tmp_path_factory.mktemp("healthy") / "store"
    build_store(path)
    return path


def _segment(path: Path) -> Path:
    return next(p for p in path.iterdir() if (p / "index_metadata.pickle").exists())


def _overwrite(path: Path, fraction: float, size: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(int(path.stat().st_size * fraction))
        handle.write(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())


DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty sqlite": lambda p: (p / "chroma.sqlite3").write_bytes(b""),
    "sqlite overwritten at 40%": lambda p: _overwrite(p / "chroma.sqlite3", 0.4, 4096),
    "sqlite truncated": lambda p: os.truncate(p / "chroma.sqlite3", (p / "chroma.sqlite3").stat().st_size // 2),
    "sqlite header garbled": lambda p: _overwrite(p / "chroma.sqlite3", 0.0, 16),
    "hnsw header garbled": lambda p: _overwrite(_segment(p) / "header.bin", 0.04, 40),
    "hnsw data truncated": lambda p: os.truncate(_segment(p) / "data_level0.bin", 1000),
    "hnsw links garbled": lambda p: _overwrite(_segment(p) / "data_level0.bin", 0.01, 3000),
    "hnsw link lists deleted": lambda p: (_segment(p) / "link_lists.bin").unlink(),
    "id map pickle truncated": lambda p: os.truncate(_segment(p) / "index_metadata.pickle", 500),
}


def _digest(path: Path) -> dict[str, str]:
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest() for f in path.rglob("*") if f.is_file()
    }


def test_a_healthy_store_passes_and_opens(healthy_store: Path) -> None:
    check_store_integrity(healthy_store)
    with VectorStore(path=healthy_store, read_only=True) as store:
        assert store.count("things") == 1100 and store.count("small") == 2


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_refused_on_every_open_and_nothing_is_rewritten(
    healthy_store: Path, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "store"
    shutil.copytree(healthy_store, path)
    DAMAGE[damage](path)
    before = _digest(path)
    for read_only in (True, False):
        with pytest.raises(StoreDamagedError, match=r"it is damaged: .*rebuild") as raised:
            VectorStore(path=path, read_only=read_only)
        assert "\n" not in str(raised.value) and str(path) in str(raised.value)
    after = _digest(path)
    after.pop(".recagents.lock", None)  # the writer's lock file, released
    assert after == before  # never rewritten: a zero-length sqlite stays zero-length, no new segment folders
    assert isinstance(raised.value, StoreError)


@pytest.mark.slow
def test_stats_cli_prints_one_line_and_exits_non_zero(healthy_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "store"
    shutil.copytree(healthy_store, path)
    DAMAGE["sqlite overwritten at 40%"](path)
    result = subprocess.run([sys.executable, "-m", "retrieval.store", "stats", "--path", str(path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {path}/chroma.sqlite3: cannot open the Chroma store, it is damaged: SQLite"
    )
    assert "Traceback" not in result.stderr and "panicked" not in result.stderr


def test_stats_in_process_on_an_empty_sqlite(healthy_store: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "store"
    shutil.copytree(healthy_store, path)
    DAMAGE["empty sqlite"](path)
    assert main(["stats", "--path", str(path)]) == 1
    assert "the file is empty (0 bytes)" in capsys.readouterr().err
    assert (path / "chroma.sqlite3").stat().st_size == 0


def test_a_creation_killed_half_way_is_finished_by_the_next_writer(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "store"
    path.mkdir()
    connection = sqlite3.connect(path / "chroma.sqlite3")  # a valid database without Chroma's tables yet
    connection.execute("CREATE TABLE t (x)")
    connection.execute("DROP TABLE t")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError):  # a reader cannot finish it
        VectorStore(path=path, read_only=True)
    with VectorStore(path=path) as store:  # only the SQLite file, no segment: the writer lets Chroma create it
        store.collection("things", dim=2)
        store.upsert("things", ["a"], embeddings=[[0.1, 0.2]])
    with VectorStore(path=path, read_only=True) as store:
        assert store.count("things") == 1
