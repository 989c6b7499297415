"""Fault suite: kill -9 during PCF labelling and camroll ingest, malformed inputs to every reader, hostile requests
to mllm.serve (127.0.0.1 only), damaged store files. Prints one table and writes benchmarks/results/reliability.json.

    nice -n 5 python -m benchmarks.reliability                        # the full run (>= 50 kills, >= 200 inputs)
    python -m benchmarks.reliability --label-kills 2 --ingest-kills 2 --inputs 40 --requests 30 --damages 4 --no-write

Each part returns one row: faults injected, survived, inputs tried, rejected with a clear line, data lost,
duplicated, tracebacks. tests/reliability/ runs the same parts at CI size.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["part", "faults_injected", "survived", "inputs_tried", "rejected_clear", "accepted", "data_lost",
           "duplicated", "tracebacks", "seconds"]  # fmt: skip
WORDS = ["office", "chair", "steel", "laptop", "monitor", "cotton", "shirt", "paper", "printer", "lamp", "bottle",
         "plastic", "wooden", "desk", "phone", "cable", "shoe", "jacket", "battery", "glass", "server", "truck",
         "cereal", "box", "pen", "stapler", "notebook"]  # fmt: skip
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _row(part: str, **values: Any) -> dict[str, Any]:
    base = dict.fromkeys(COLUMNS[1:-1], 0)
    return {"part": part, **base, **values}


def _tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)") + text.count("panicked at")


def _kill_loop(command: list[str], kills: int, delay: tuple[float, float], rng: random.Random) -> tuple[int, str]:
    """Start ``command`` and kill -9 it after a random delay, ``kills`` times (or until a run completes first).

    Returns (kills done, stderr of the runs that ended by themselves).
    """
    done, stderr = 0, ""
    while done < kills:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=rng.uniform(*delay))
            stderr += process.stderr.read().decode(errors="replace")  # finished before the kill: the round is over
            break
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()
            done += 1
    return done, stderr


# ---------------------------------------------------------------------------------------- kill -9: labelling


def write_catalogue(path: Path, n: int, seed: int = 0) -> list[str]:
    """A JSONL catalogue of ``n`` items with random product words; returns the ids."""
    rng = np.random.default_rng(seed)
    ids = [f"K{i:05d}" for i in range(n)]
    path.write_text("".join(json.dumps({"item_id": i, "title": " ".join(rng.choice(WORDS, 4))}) + "\n" for i in ids))
    return ids


def label_kills(
    workdir: Path, kills: int, rng: random.Random, items: int = 1000, per_round: int = 10, delay: float = 6.0
) -> dict:
    """kill -9 the labelling job at random moments, rerun to completion; labels must equal an uninterrupted run."""
    from retrieval import StoreError, VectorStore

    started = time.perf_counter()
    catalog = workdir / "catalog.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    ids = write_catalogue(catalog, items)

    def label_command(out: Path, store_dir: Path) -> list[str]:
        return [sys.executable, "-m", "agents.pcf", "label", "--catalog", str(catalog), "--out", str(out), "--store",
                str(store_dir), "--embedder", "hashing", "--batch-size", "4", "--no-progress"]  # fmt: skip

    # the reference is the same command run once without interruption, in the same environment: the estimator's
    # floating-point sums depend on the BLAS thread count, so an in-process run is not the right comparison
    reference = workdir / "reference.jsonl"
    subprocess.run(label_command(reference, workdir / "reference-store"), cwd=REPO_ROOT, env=ENV, check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    expected = sorted(reference.read_text().splitlines())
    row = _row("kill -9 PCF labelling")
    round_number = 0
    while row["faults_injected"] < kills:
        round_number += 1
        out, store_dir = workdir / f"labels-{round_number}.jsonl", workdir / f"store-{round_number}"
        command = label_command(out, store_dir)
        done, stderr = _kill_loop(command, min(per_round, kills - row["faults_injected"]), (0.5, delay), rng)
        final = subprocess.run(command, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600)
        row["tracebacks"] += _tracebacks(stderr + final.stderr)
        if final.returncode != 0:
            row.setdefault("problems", []).append(
                f"round {round_number}: exit {final.returncode}: {final.stderr[-300:]!r}"[:400]
            )
        lines = out.read_text().splitlines() if out.exists() else []
        counts = Counter(json.loads(line)["item_id"] for line in lines)
        try:
            with VectorStore(path=store_dir, read_only=True) as store:
                stored = store.count("pcf_labels")
        except StoreError as exc:
            stored = 0
            row.setdefault("problems", []).append(f"round {round_number}: {exc}")
        lost = len(set(ids) - set(counts)) + max(0, len(ids) - stored)
        duplicated = sum(c - 1 for c in counts.values())
        same = sorted(lines) == expected
        row["faults_injected"] += done
        row["survived"] += done if final.returncode == 0 and lost == 0 and duplicated == 0 and same else 0
        row["data_lost"] += lost
        row["duplicated"] += duplicated
        row["inputs_tried"] += len(ids)
        row.setdefault("labels_differing_from_uninterrupted_run", 0)
        row["labels_differing_from_uninterrupted_run"] += len(set(lines) ^ set(expected))
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


# ---------------------------------------------------------------------------------------- kill -9: camroll ingest


def ingest_kills(
    workdir: Path,
    kills: int,
    rng: random.Random,
    users: int = 6,
    per_round: int = 10,
    delay: float = 6.0,
    photos_per_user: int = 150,
) -> dict:
    """kill -9 ``camroll ingest --all-users`` at random moments, rerun; the store must equal an uninterrupted one."""
    from agents.camroll.demo_data import make_demo_roll
    from agents.camroll.memory import CamrollMemory, NoVisual
    from retrieval import StoreError, VectorStore
    from retrieval.embed import HashingEmbedder

    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    roll = workdir / "roll"
    make_demo_roll(roll, users=users, photos_per_user=photos_per_user, questions_per_user=0, seed=0, progress=False)

    def snapshot(path: Path, read_only: bool) -> dict[str, str]:
        with VectorStore(path=path, read_only=read_only) as store:
            memory = CamrollMemory(store, roll, embedder=HashingEmbedder(), visual=NoVisual(), cache_dir=workdir)
            if not read_only:
                for user in range(1, users + 1):
                    memory.ingest(str(user), progress=False)
            items = store.get(memory.collection)
        return {item["id"]: (item["metadata"] or {}).get("content_hash") for item in items}

    expected = snapshot(workdir / "reference-store", read_only=False)
    row = _row("kill -9 camroll ingest")
    round_number = 0
    while row["faults_injected"] < kills:
        round_number += 1
        store_dir = workdir / f"store-{round_number}"
        command = [sys.executable, "-m", "agents.camroll", "ingest", "--all-users", "--data", str(roll), "--store",
                   str(store_dir), "--embedder", "hashing", "--visual", "none", "--cache-dir", str(workdir / "cache"),
                   "--quiet"]  # fmt: skip
        done, stderr = _kill_loop(command, min(per_round, kills - row["faults_injected"]), (0.5, delay), rng)
        final = subprocess.run(command, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600)
        row["tracebacks"] += _tracebacks(stderr + final.stderr)
        try:
            found = snapshot(store_dir, read_only=True) if final.returncode == 0 else {}
        except StoreError as exc:
            found = {}
            row.setdefault("problems", []).append(f"round {round_number}: {exc}")
        if final.returncode != 0:
            row.setdefault("problems", []).append(
                f"round {round_number}: exit {final.returncode}: {final.stderr[-300:]!r}"[:400]
            )
        lost = sum(1 for key, digest in expected.items() if found.get(key) != digest)
        extra = len(set(found) - set(expected))
        row["faults_injected"] += done
        row["survived"] += done if final.returncode == 0 and lost == 0 and extra == 0 else 0
        row["data_lost"] += lost
        row["duplicated"] += extra
        row["inputs_tried"] += len(expected)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


# ---------------------------------------------------------------------------------------- malformed inputs

MUTATIONS = ("non_utf8", "nul_byte", "wrong_type", "missing_field", "huge_field", "truncated", "extra_column",
             "binary_line", "negative", "nan", "bom", "quote_unclosed", "empty_file", "only_header")  # fmt: skip


def _mutate(line: str, kind: str, separator: str, rng: random.Random) -> bytes:
    """One malformed version of a good row (``separator`` None: a JSON object line)."""
    if kind == "non_utf8":
        return line.encode()[:5] + bytes([rng.choice([0xE9, 0xFF, 0xC3, 0x80])]) + line.encode()[5:]
    if kind == "nul_byte":
        return line.encode()[:4] + b"\x00" + line.encode()[4:]
    if kind == "binary_line":
        return bytes(rng.randrange(1, 256) for _ in range(60)).replace(b"\n", b" ")
    if kind == "truncated":
        return line.encode()[: max(1, len(line) // 2)]
    if kind == "bom":
        return b"\xef\xbb\xbf" + line.encode()
    if kind == "quote_unclosed":
        return line.encode().replace(b",", b',"', 1) if separator else line.encode().replace(b'"', b"", 1)
    if separator is None:
        row = json.loads(line)
        key = rng.choice(list(row))
        if kind == "wrong_type":
            row[key] = rng.choice([[1, 2], {"a": 1}, True, 12.5, None])
        elif kind == "missing_field":
            row.pop(key)
        elif kind == "huge_field":
            row[key] = "x" * 1_000_000
        elif kind == "extra_column":
            row["unexpected"] = "surplus"
        elif kind in ("negative", "nan"):
            row[key] = -100 if kind == "negative" else float("nan")
        return json.dumps(row).encode()
    cells = line.split(separator)
    index = rng.randrange(len(cells))
    if kind == "wrong_type":
        cells[index] = "abc"
    elif kind == "missing_field":
        cells.pop(index)
    elif kind == "huge_field":
        cells[index] = "9" * 1_000_000
    elif kind == "extra_column":
        cells.append("surplus")
    elif kind == "negative":
        cells[index] = "-100"
    elif kind == "nan":
        cells[index] = "nan"
    return separator.join(cells).encode()


def _readers(workdir: Path) -> dict[str, tuple[str, list[str], str | None, str, Callable[[Path], int | None]]]:
    """name -> (header or "", good rows, separator, file name, read(path) -> rows read or None)."""
    from agents.camroll.data import read_photos
    from agents.pcf.label import read_catalogue, read_labels
    from agents.pcf.reference import load_carbon_catalogue
    from recsys.config import build_config, load_yaml
    from recsys.data import load_dataset
    from recsys.train import TrainConfig

    photos_dir = workdir / "photos-user"
    (photos_dir / "photos").mkdir(parents=True, exist_ok=True)
    for i in range(5):
        (photos_dir / "photos" / f"{i:06d}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    photo_rows = [json.dumps({"photo_id": f"{i:06d}", "file": f"photos/{i:06d}.jpg", "timestamp":
                              f"2021-05-0{i + 1}T10:00:00", "lat": 21.3, "lon": -157.8}) for i in range(5)]  # fmt: skip
    reference = (REPO_ROOT.parent / "shared" / "data" / "carbon_catalogue" / "product_level.csv").read_text()
    ref_lines = reference.splitlines()

    def catalogue_rows(path: Path) -> tuple[int, int]:
        """(items read plus the good rows a reject names (an unclosed quote's span), rows rejected by line)."""
        catalogue = read_catalogue(path)
        spans = [re.search(r"lines (\d+)-(\d+) were read as one row", r.error) for r in catalogue.rejects]
        named = sum(1 for r in catalogue.rejects if r.line > 0 and r.error)
        return len(catalogue.items) + sum(int(m[2]) - int(m[1]) for m in spans if m), named

    def camroll(path: Path) -> int:
        target = photos_dir / "photos.jsonl"
        shutil.copyfile(path, target)
        return len(read_photos(photos_dir))

    def config(path: Path) -> int:
        build_config(TrainConfig, load_yaml(path))
        return 1

    return {
        "pcf catalogue .csv": ("item_id,title,weight_kg", [f"A{i},{WORDS[i]} desk,{i + 1}.5" for i in range(6)], ",",
                               "c.csv", catalogue_rows),
        "pcf catalogue .jsonl": ("", [json.dumps({"item_id": f"J{i}", "title": f"{WORDS[i]} lamp"}) for i in range(6)],
                                 None, "c.jsonl", catalogue_rows),
        "pcf labels file": ("", [json.dumps({"item_id": f"L{i}", "pcf_kg": 1.5 + i, "method": "knn"})
                                 for i in range(6)], None, "labels.jsonl", lambda p: len(read_labels(p))),
        "carbon reference .csv": (ref_lines[0], ref_lines[1:7], ",", "product_level.csv",
                                  lambda p: len(load_carbon_catalogue(p))),
        "grouplens u.data": ("", [f"{i + 1}\t{10 + i}\t{1 + i % 5}\t88125094{i}" for i in range(6)], "\t", "u.data",
                             lambda p: load_dataset(str(p)).n_interactions),
        "recbole .inter": ("user_id:token\titem_id:token\trating:float\ttimestamp:float",
                           [f"u{i}\ti{i}\t{1 + i % 5}\t88125094{i}" for i in range(6)], "\t", "d.inter",
                           lambda p: load_dataset(str(p)).n_interactions),
        "camroll photos.jsonl": ("", photo_rows, None, "photos.jsonl", camroll),
        "train config .yaml": ("", ["epochs: 3", "lr: 0.01", "batch_size: 64", "ks: [10, 20]"], ": ", "c.yaml", config),
    }  # fmt: skip


def malformed_inputs(workdir: Path, n: int, rng: random.Random) -> dict:
    """Feed ``n`` malformed files (one bad row among good ones, or a broken file) to every reader."""
    from agents.camroll.errors import CamrollError
    from agents.pcf.errors import PCFError
    from recsys.config import ConfigError
    from recsys.data import DataError
    from retrieval.errors import RetrievalError

    ours = (CamrollError, PCFError, ConfigError, DataError, RetrievalError)
    started = time.perf_counter()
    readers = _readers(workdir)
    row = _row("malformed inputs to every reader")
    row["by_reader"], row["problems"] = {}, []
    names = list(readers)
    for i in range(n):
        name, kind = names[i % len(names)], MUTATIONS[(i // len(names)) % len(MUTATIONS)]
        header, good, separator, file_name, read = readers[name]
        bad_index = rng.randrange(len(good))
        if kind == "empty_file":
            body = b""
        elif kind == "only_header":
            body = (header + "\n").encode() if header else b"\n"
        else:
            rows = [line.encode() for line in good]
            rows[bad_index] = _mutate(good[bad_index], kind, separator, rng)
            body = ((header + "\n").encode() if header else b"") + b"\n".join(rows) + b"\n"
        path = workdir / f"input-{i:04d}" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        row["inputs_tried"] += 1
        stats = row["by_reader"].setdefault(name, Counter())
        try:
            read_rows = read(path)
        except ours as exc:
            message = str(exc)
            clear = "\n" not in message and (path.name in message or "field" in message or "line" in message)
            row["rejected_clear" if clear else "tracebacks"] += 1
            stats["rejected" if clear else "unclear"] += 1
            if not clear:
                row["problems"].append(f"{name}/{kind}: unclear message {message[:200]!r}")
            continue
        except Exception as exc:  # not one of ours: a traceback for the user
            row["tracebacks"] += 1
            stats["traceback"] += 1
            row["problems"].append(f"{name}/{kind}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        read_rows, rejected_rows = read_rows if isinstance(read_rows, tuple) else (read_rows, 0)
        if rejected_rows:  # the file was read and the bad row went to the rejects, named by its line
            row["rejected_clear"] += 1
            stats["row rejected by line"] += 1
        else:
            row["accepted"] += 1
            stats["accepted"] += 1
        # Row-tolerant readers (the PCF catalogue) must read every good row or name it in a reject: else data lost.
        if name.startswith("pcf catalogue") and kind not in ("empty_file", "only_header"):
            lost = max(0, len(good) - 1 - (read_rows or 0))
            row["data_lost"] += lost
            if lost:
                row["problems"].append(f"{name}/{kind}: {lost} good rows lost")
    row["by_reader"] = {k: dict(v) for k, v in row["by_reader"].items()}
    row["faults_injected"] = row["survived"] = row["inputs_tried"]
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


# ---------------------------------------------------------------------------------------- mllm.serve


class _WordModel:
    """A scripted chat model: tokens are words of at most 12 characters, a context of 256 tokens."""

    def __new__(cls, delay: float = 0.01):
        from mllm.backbones import ChatModel

        class WordModel(ChatModel):
            name = "words"
            context_length = 256

            def count_prompt_tokens(self, messages):
                return sum(len(m["content"].split()) for m in messages)

            def max_chars_per_token(self):
                return 12

            def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None):
                time.sleep(delay)
                self.usage.record(self.count_prompt_tokens(messages), 2)
                return "ok fine"

        return WordModel()


def _raw_request(port: int, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path)
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _chat_body(content: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}]}).encode()


def server_requests(n: int, rng: random.Random) -> dict:
    """Malformed, oversized and concurrent requests to mllm.serve on 127.0.0.1; it must answer each and survive."""
    from mllm.serve import ChatServer

    started = time.perf_counter()
    errors_logged: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                errors_logged.append(record.getMessage())

    handler = Count()
    logging.getLogger("mllm.serve").addHandler(handler)
    hello = {"messages": [{"role": "user", "content": "hello"}]}
    kinds: list[tuple[str, bytes, dict[str, str], set[int]]] = [
        ("not json", b"{nope", {}, {400}),
        ("not an object", b"[1, 2]", {}, {400}),
        ("no messages", b"{}", {}, {400}),
        ("bad role", json.dumps({"messages": [{"role": "x", "content": "a"}]}).encode(), {}, {400}),
        ("content a number", json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), {}, {400}),
        ("max_tokens -1", json.dumps({**hello, "max_tokens": -1}).encode(), {}, {400}),
        ("temperature nan", b'{"messages": [{"role": "user", "content": "a"}], "temperature": NaN}', {}, {400}),
        ("non-UTF-8 body", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', {}, {400}),
        ("prompt over the character bound", _chat_body("w" * 4000), {}, {400}),
        ("prompt over the context in tokens", _chat_body("w " * 300), {}, {400}),
        ("2 MB prompt", _chat_body("word " * 419_000), {}, {400}),
        ("body over 8 MB (declared)", b"{}", {"Content-Length": str(9 * 1024 * 1024)}, {413}),
        ("bad Content-Length", b"{}", {"Content-Length": "ten"}, {400}),
        ("chunked body", b"", {"Transfer-Encoding": "chunked"}, {411}),
        ("valid", json.dumps(hello).encode(), {}, {200}),
    ]
    row = _row("hostile requests to mllm.serve")
    max_connections = 16
    with ChatServer(
        _WordModel(), port=0, name="words", max_queue=4, request_timeout=5.0, max_connections=max_connections
    ) as server:
        for i in range(n):
            label, body, headers, allowed = kinds[i % len(kinds)]
            sent = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
            if "Transfer-Encoding" in headers:
                sent.pop("Content-Length")
            try:
                status, reply = _raw_request(server.port, "POST", "/v1/chat/completions", body, sent)
            except (OSError, http.client.HTTPException) as exc:
                status, reply = -1, str(exc).encode()
            row["inputs_tried"] += 1
            ok = status in allowed and (status == 200 or "error" in json.loads(reply or b"{}"))
            row["rejected_clear" if status != 200 and ok else "accepted" if ok else "tracebacks"] += 1
            if not ok:
                row.setdefault("problems", []).append(f"{label}: HTTP {status} {reply[:120]!r}")
        burst = max(8, n // 10)  # concurrent valid requests: each gets 200 or a clear 503 (queue full)
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda: statuses.append(_raw_request(
            server.port, "POST", "/v1/chat/completions", json.dumps(hello).encode(),
            {"Content-Type": "application/json", "Content-Length": str(len(json.dumps(hello)))})[0]))
            for _ in range(burst)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        row["inputs_tried"] += burst
        row["accepted"] += statuses.count(200)
        row["rejected_clear"] += statuses.count(503)
        row["tracebacks"] += sum(1 for s in statuses if s not in (200, 503)) + burst - len(statuses)
        row["concurrent_burst"] = dict(Counter(statuses))
        flood = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(max_connections)]
        time.sleep(0.2)  # idle connections hold every slot: one more must get 503 and be closed
        refused = _raw_request(server.port, "GET", "/health", b"", {})[0]
        for sock in flood:
            sock.close()
        time.sleep(0.3)
        row["inputs_tried"] += 1
        row["rejected_clear" if refused == 503 else "tracebacks"] += 1
        row["connection_flood"] = {"open": max_connections, "one_more": refused}
        alive = _raw_request(server.port, "GET", "/health", b"", {})[0] == 200
    logging.getLogger("mllm.serve").removeHandler(handler)
    row["tracebacks"] += len(errors_logged)
    row["faults_injected"] = row["inputs_tried"]
    row["survived"] = row["inputs_tried"] if alive else 0
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


# ---------------------------------------------------------------------------------------- damaged stores


def build_store(path: Path) -> dict[str, int]:
    """A store with one collection flushed to an HNSW segment and one small one; returns the counts."""
    from retrieval import VectorStore

    rng = np.random.default_rng(0)
    with VectorStore(path=path) as store:
        store.collection("things", dim=8)
        store.upsert("things", [f"t{i}" for i in range(1100)], embeddings=rng.random((1100, 8)))
        store.collection("small", dim=4)
        store.upsert("small", ["a", "b"], embeddings=rng.random((2, 4)))
    (path / ".recagents.lock").unlink(missing_ok=True)
    return {"things": 1100, "small": 2}


def _segment(path: Path) -> Path:
    return next(p for p in path.iterdir() if (p / "index_metadata.pickle").exists())


def _overwrite(path: Path, rng: random.Random, size: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(rng.randrange(max(1, path.stat().st_size - size)))
        handle.write(bytes(rng.randrange(256) for _ in range(size)))


DAMAGE: dict[str, Callable[[Path, random.Random], None]] = {
    "sqlite emptied": lambda p, r: (p / "chroma.sqlite3").write_bytes(b""),
    "sqlite truncated": lambda p, r: os.truncate(p / "chroma.sqlite3", r.randrange(400_000)),
    "sqlite overwritten": lambda p, r: _overwrite(p / "chroma.sqlite3", r, 4096),
    "sqlite deleted": lambda p, r: (p / "chroma.sqlite3").unlink(),
    "hnsw header overwritten": lambda p, r: _overwrite(_segment(p) / "header.bin", r, 24),
    "hnsw data truncated": lambda p, r: os.truncate(_segment(p) / "data_level0.bin", r.randrange(100_000)),
    "hnsw data overwritten": lambda p, r: _overwrite(_segment(p) / "data_level0.bin", r, 2048),
    "hnsw file deleted": lambda p, r: (_segment(p) / r.choice(["link_lists.bin", "length.bin", "header.bin"])).unlink(),
    "id map truncated": lambda p, r: os.truncate(_segment(p) / "index_metadata.pickle", r.randrange(20_000)),
    "id map overwritten": lambda p, r: _overwrite(_segment(p) / "index_metadata.pickle", r, 64),
}  # fmt: skip


def _digest(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest() for f in path.rglob("*")
            if f.is_file() and f.name != ".recagents.lock"}  # fmt: skip


def store_damage(workdir: Path, n: int, rng: random.Random) -> dict:
    """Damage copies of a healthy store ``n`` times; ``retrieval.store stats`` must refuse each in one line."""
    started = time.perf_counter()
    healthy = workdir / "healthy"
    counts = build_store(healthy)
    row = _row("damaged store files")
    row["undetected"], row["rewritten"], row["problems"] = 0, 0, []
    names = list(DAMAGE)
    for i in range(n):
        kind = names[i % len(names)]
        path = workdir / f"damaged-{i:03d}"
        shutil.copytree(healthy, path)
        DAMAGE[kind](path, rng)
        before = _digest(path)
        result = subprocess.run([sys.executable, "-m", "retrieval.store", "stats", "--path", str(path)], cwd=REPO_ROOT,
                                env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
        row["faults_injected"] += 1
        row["inputs_tried"] += 1
        lines = result.stderr.strip().splitlines()
        if result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "):
            row["rejected_clear"] += 1
            row["survived"] += 1
            if before != _digest(path):  # a refused store must be left exactly as it was
                row["problems"].append(f"{kind}: refused, but the files were changed")
                row["rewritten"] += 1
        elif result.returncode == 0:
            reported = {k: v["count"] for k, v in json.loads(result.stdout)["collections"].items()}
            row["undetected"] += 1
            row["survived"] += 1
            row["accepted"] += 1
            intact = reported == counts
            row["undetected_counts_intact"] = row.get("undetected_counts_intact", 0) + intact
            row["problems"].append(f"{kind}: not detected; counts {'intact' if intact else reported}")
        else:
            row["tracebacks"] += 1
            row["problems"].append(f"{kind}: exit {result.returncode}: {result.stderr.strip()[-200:]}")
        shutil.rmtree(path)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


# ---------------------------------------------------------------------------------------- main


def run_suite(workdir: Path, label: int, ingest: int, inputs: int, requests: int, damages: int, seed: int) -> list:
    """Every part, in order; returns the rows."""
    rng = random.Random(seed)
    parts = [
        ("malformed", lambda d: malformed_inputs(d, inputs, rng)),
        ("server", lambda d: server_requests(requests, rng)),
        ("damage", lambda d: store_damage(d, damages, rng)),
        ("label", lambda d: label_kills(d, label, rng)),
        ("ingest", lambda d: ingest_kills(d, ingest, rng)),
    ]
    rows = []
    for name, part in parts:
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        rows.append(part(folder))
        logging.getLogger(__name__).info("%s done: %s", name, rows[-1])
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the table, write the results JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--label-kills", type=int, default=50)
    parser.add_argument("--ingest-kills", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=224, help="malformed files fed to the readers")
    parser.add_argument("--requests", type=int, default=150, help="hostile requests to mllm.serve")
    parser.add_argument("--damages", type=int, default=30, help="damaged store copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("retrieval").setLevel(logging.ERROR)
    logging.getLogger("agents").setLevel(logging.ERROR)
    from benchmarks.common import print_table, write_results

    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        rows = run_suite(Path(tmp), args.label_kills, args.ingest_kills, args.inputs, args.requests, args.damages,
                         args.seed)  # fmt: skip
    total = _row("total", **{c: sum(r[c] for r in rows) for c in COLUMNS[1:]})
    print_table([*rows, total], COLUMNS, title="Fault suite (kill -9, malformed inputs, hostile requests, damage)")
    if not args.no_write:
        path = write_results("reliability", {"seed": args.seed, "rows": rows, "total": total})
        print(f"wrote {path}")
    return 0 if total["data_lost"] == 0 and total["duplicated"] == 0 and total["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
