"""The store across processes: the writer lock, the stats CLI, and a real Chroma server through ``url=``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval import StoreError, VectorStore

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ANONYMIZED_TELEMETRY"] = "False"
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrieval.store", *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


HOLDER = """
import sys
from retrieval import VectorStore
store = VectorStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


def test_second_writer_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with VectorStore(path) as store:
        store.upsert("vectors", ["a"], embeddings=np.ones((1, 3), dtype=np.float32))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = holder.stdout.readline()
        assert line.strip() == "ready", holder.stderr.read()
        with pytest.raises(StoreError, match="another process holds this store's writer lock") as caught:
            VectorStore(path, lock_timeout=0.2)
        message = str(caught.value)
        assert str(path) in message and "chroma run --path" in message and "url=" in message
        with VectorStore(path, read_only=True) as reader:  # readers take no lock
            assert reader.count("vectors") == 1
    finally:
        holder.communicate("done\n", timeout=30)
    assert holder.returncode == 0
    with VectorStore(path, lock_timeout=0.2) as store:  # released on close
        assert store.count("vectors") == 1


def test_stats_cli_prints_json_and_fails_cleanly_on_bad_paths(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with VectorStore(path) as store:
        store.upsert("photos", ["a", "b"], embeddings=np.eye(2, dtype=np.float32))
        store.collection("empty", dim=5)
    done = run_cli("stats", "--path", str(path))
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["collections"]["photos"]["count"] == 2
    assert stats["collections"]["empty"] == {
        "count": 0,
        "embedder": "external",
        "dim": 5,
        "modality": "vector",
    }

    not_a_store = tmp_path / "documents"
    not_a_store.mkdir()
    (not_a_store / "letter.txt").write_text("hello")
    for bad in (not_a_store, tmp_path / "missing"):
        done = run_cli("stats", "--path", str(bad))
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "missing").exists()
    assert run_cli("--help").returncode == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path):
    chroma = Path(sys.executable).parent / "chroma"
    if not chroma.exists():
        pytest.fail(f"the chroma CLI is missing beside {sys.executable}; chromadb should install it")
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [
                str(chroma),
                "run",
                "--path",
                str(tmp_path / "served"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                store = VectorStore(url=url)
                break
            except StoreError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not start on {url} (exit {server.poll()}):\n{log.read_text()}")
                time.sleep(0.2)
        yield store
        store.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_http_client_round_trip_through_a_real_server(chroma_server: VectorStore) -> None:
    store = chroma_server
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0]], dtype=np.float32)
    store.collection("served", dim=3)
    store.upsert("served", ["x", "y", "z"], embeddings=vectors, metadatas=[{"g": 1}, {"g": 2}, {"g": 1}])
    store.upsert("served", ["x"], embeddings=vectors[:1], documents=["again"])  # idempotent
    assert store.count("served") == 3
    hits = store.query("served", embeddings=[[1, 0, 0]], k=2, where={"g": 1})[0]
    assert [hit["id"] for hit in hits] == ["x", "z"]
    assert hits[0]["document"] == "again" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(StoreError, match="holds 3-d"):
        store.upsert("served", ["w"], embeddings=np.ones((1, 4), dtype=np.float32))
    assert store.stats()["collections"]["served"]["count"] == 3


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        VectorStore(url=url)
    with pytest.raises(StoreError, match="expected a Chroma server URL"):
        VectorStore(url="localhost:8000")


KILLED_MID_WRITE = """
import os, signal, sys
import numpy as np
from retrieval import VectorStore

held = getattr(signal, sys.argv[2])
store = VectorStore(sys.argv[1], batch_size=4)
store.upsert("vectors", ["seed"], embeddings=np.ones((1, 3), dtype=np.float32))
state = store._states["vectors"]


class SignalledDuringWrite:
    # Chroma's collection, except that the signal arrives while its first upsert is running
    def __init__(self, handle):
        self.handle, self.calls = handle, 0

    def __getattr__(self, attribute):
        return getattr(self.handle, attribute)

    def upsert(self, **kwargs):
        self.calls += 1
        if self.calls == 1:
            os.kill(os.getpid(), held)
        return self.handle.upsert(**kwargs)


state.handle = SignalledDuringWrite(state.handle)
store.upsert("vectors", [f"item{j}" for j in range(8)], embeddings=np.full((8, 3), 0.5, dtype=np.float32))
print("the second batch was written too", flush=True)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_write_stops_the_process_after_that_batch_with_the_store_intact(
    tmp_path: Path, name: str
) -> None:
    import signal

    path = tmp_path / "store"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(path), name],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -getattr(signal, name), child.stderr[-2000:]
    assert "second batch" not in child.stdout
    assert f"{name} received during upsert" in child.stderr  # the log says why it stopped
    with VectorStore(path, read_only=True) as store:
        # the seed and the whole batch the signal interrupted: held until Chroma's call returned, then delivered
        assert store.count("vectors") == 5
        got = store.get("vectors", ids=["item0", "item3"])
        assert sorted(row["id"] for row in got) == ["item0", "item3"]


def test_deferred_signals_delivers_a_held_signal_to_its_own_handler_afterwards() -> None:
    import signal

    from retrieval.store import deferred_signals

    seen: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGHUP, handler)
    try:
        with deferred_signals("a test"):
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            assert seen == []  # held
            assert signal.getsignal(signal.SIGHUP) is not handler
        assert seen == [signal.SIGHUP]  # delivered once, after the block
        assert signal.getsignal(signal.SIGHUP) is handler
    finally:
        signal.signal(signal.SIGHUP, previous)
