"""camroll chat holds the store's writer lock only while it writes: other asks, chats and ingests share the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.camroll.__main__ import main
from agents.camroll.demo_data import make_demo_roll
from agents.camroll.memory import CamrollMemory, NoVisual
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def roll(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("roll")
    make_demo_roll(out, users=["12", "13"], photos_per_user=60, questions_per_user=5, seed=0, progress=False)
    return out


def _agent_args(verb: str, roll: Path, tmp_path: Path, user: str) -> list[str]:
    return [verb, "--user", user, "--data", str(roll), "--store", str(tmp_path / "store"), "--embedder", "hashing",
            "--visual", "none", "--threads-db", str(tmp_path / f"threads-{user}.sqlite"), "--today", "2030-01-01",
            "--quiet"]  # fmt: skip


@pytest.mark.slow
def test_an_open_chat_does_not_lock_out_ask_chat_or_ingest(roll: Path, tmp_path: Path, capsys) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    chat = subprocess.Popen([sys.executable, "-m", "agents.camroll", *_agent_args("chat", roll, tmp_path, "12")],
                            cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready = ""
        deadline = time.monotonic() + 90
        while "ask about your photos" not in ready and time.monotonic() < deadline and chat.poll() is None:
            ready += chat.stdout.readline()
        assert "ask about your photos" in ready, chat.stderr.read() if chat.poll() is not None else ready
        # While that chat is open: an ask on the same store (another user: it ingests, briefly taking the lock) ...
        assert main([*_agent_args("ask", roll, tmp_path, "13"), "How many photos did I take?"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["answer"] and answer["thread"] == "user13:default"
        # ... an ask of the chat's own user (nothing to write: read-only throughout) ...
        assert main([*_agent_args("ask", roll, tmp_path, "12"), "How many photos did I take?"]) == 0
        capsys.readouterr()
        # ... and a writer (the lock is free: the chat holds none).
        with VectorStore(path=tmp_path / "store", lock_timeout=0.5) as writer:
            memory = CamrollMemory(writer, roll, embedder=HashingEmbedder(), visual=NoVisual(), cache_dir=tmp_path)
            assert memory.ingest("13", progress=False)["upserted"] == {}  # already current
        chat.stdin.write("How many photos did I take?\nexit\n")
        chat.stdin.flush()
        out, err = chat.communicate(timeout=60)
        assert chat.returncode == 0, err[-2000:]
        assert "camroll> " in out
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
