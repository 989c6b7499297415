"""The PCF labelling batch job: catalogue formats and rejects, sharding, the CLI, and exactly-once after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from agents.pcf.errors import PCFDataError
from agents.pcf.label import (
    LABEL_COLLECTION,
    in_shard,
    parse_shard,
    read_catalogue,
    read_labels,
    run_label_job,
)
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ["office chair", "stapler", "laser printer", "notebook paper", "ballpoint pen", "desk lamp", "laptop",
            "cereal box", "plastic bottle", "cotton t-shirt", "steel shelf", "monitor 24 inch"]  # fmt: skip


def write_items(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"item_id": f"B{i:05d}", "title": f"{PRODUCTS[i % len(PRODUCTS)]} model {i}"}) for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def store(tmp_path: Path):
    with VectorStore(path=tmp_path / "store") as opened:
        yield opened


def label_ids(path: Path) -> list[str]:
    return [json.loads(line)["item_id"] for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- reading catalogues


def test_csv_tsv_and_parquet_catalogues_with_rejects_by_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "items.csv"
    csv_path.write_text(
        'item_id,title,category,weight_kg\n1,"Chair, black",Furniture,7.5\n,No id,,\n3,,Paper,\n'
        "4,Lamp,Lighting,heavy\n1,Chair again,,\n6,Pen,,0.01\n"
    )
    catalogue = read_catalogue(csv_path)
    assert [i.item_id for i in catalogue.items] == ["1", "6"]
    assert catalogue.items[0].title == "Chair, black" and catalogue.items[0].weight_kg == 7.5
    assert [(r.line, r.field) for r in catalogue.rejects] == [
        (3, "item_id"),
        (4, "title"),
        (5, "weight_kg"),
        (6, "item_id"),
    ]
    assert "first on line 2" in catalogue.rejects[3].error

    text_path = tmp_path / "Office.text"  # the UniSRec/ReChorus item-text format: id<TAB>text
    text_path.write_text("id\ttext\nB00000JBLU\tTexas Instruments calculator\nB00000JBNX\tScientific calculator\n")
    assert [i.item_id for i in read_catalogue(text_path).items] == ["B00000JBLU", "B00000JBNX"]

    parquet_path = tmp_path / "items.parquet"
    pd.DataFrame({"asin": ["A1", "A2"], "title": ["Desk", None], "brand": ["IKEA", "x"]}).to_parquet(parquet_path)
    catalogue = read_catalogue(parquet_path)
    assert [(i.item_id, i.brand) for i in catalogue.items] == [("A1", "IKEA")]
    assert [(r.line, r.field) for r in catalogue.rejects] == [(2, "title")]

    bad = tmp_path / "bad.csv"
    bad.write_text("sku,label\n1,2\n")
    with pytest.raises(PCFDataError, match=r"bad.csv:1: no id column"):
        read_catalogue(bad)


def test_shards_partition_the_catalogue() -> None:
    ids = [f"B{i:05d}" for i in range(200)]
    shards = [{i for i in ids if in_shard(i, (s, 3))} for s in range(3)]
    assert set().union(*shards) == set(ids) and sum(map(len, shards)) == len(ids)
    assert all(len(s) > 30 for s in shards)
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(PCFDataError, match="--shard"):
            parse_shard(bad)


def test_read_labels_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"item_id": "a", "pcf_kg": 1}\n{"item_id": "b", "pcf_kg": 2}\n{"item_id": "c", "pc')
    assert list(read_labels(path)) == ["a", "b"]
    assert path.read_text().endswith('"pc')  # untouched without repair
    assert list(read_labels(path, repair=True)) == ["a", "b"]
    assert path.read_text().endswith("}\n")
    path.write_text('{"item_id": "a"}\nnot json\n')
    with pytest.raises(PCFDataError, match=r"labels.jsonl:2: not a label line"):
        read_labels(path)


# ---------------------------------------------------------------------------------------- the job


def test_job_labels_each_item_once_upserts_the_store_and_resumes(tmp_path: Path, store: VectorStore) -> None:
    items = write_items(tmp_path / "items.jsonl", 30)
    out = tmp_path / "labels.jsonl"
    embedder = HashingEmbedder()
    summary = run_label_job(items, out, store, embedder, batch_size=7, progress=False)
    assert summary["labelled_now"] == 30 and summary["rejected"] == 0
    assert sorted(label_ids(out)) == sorted(f"B{i:05d}" for i in range(30))
    assert store.count(LABEL_COLLECTION) == 30 and store.count("pcf_reference") == 866
    stored = store.get(LABEL_COLLECTION, ids=["B00003"])[0]["metadata"]
    first = json.loads(out.read_text().splitlines()[3])
    assert stored["pcf_kg"] == pytest.approx(first["pcf_kg"]) and stored["neighbours"] == first["neighbours"]
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["pcf_kg"] > 0 and record["method"] == "hierarchical" and len(record["neighbours"]) == 5
        assert record["pcf_low_kg"] < record["pcf_kg"] < record["pcf_high_kg"] and record["interval_coverage"] == 0.8
        assert isinstance(record["plausible"], bool) and isinstance(record["flags"], list)
        assert len(record["similarities"]) == 5 and 0 <= record["confidence"] <= 1
    # A rerun does nothing; a grown catalogue labels only the new items.
    assert run_label_job(items, out, store, embedder, progress=False)["labelled_now"] == 0
    write_items(items, 40)
    again = run_label_job(items, out, store, embedder, progress=False)
    assert (again["already_labelled"], again["labelled_now"]) == (30, 10)
    assert sorted(label_ids(out)) == sorted(f"B{i:05d}" for i in range(40))


def test_sharded_runs_cover_the_catalogue_once(tmp_path: Path, store: VectorStore) -> None:
    items = write_items(tmp_path / "items.jsonl", 25)
    outs = [tmp_path / f"labels.{s}.jsonl" for s in range(2)]
    for s, out in enumerate(outs):
        run_label_job(items, out, store, HashingEmbedder(), shard=(s, 2), progress=False)
    ids = label_ids(outs[0]) + label_ids(outs[1])
    assert sorted(ids) == sorted(f"B{i:05d}" for i in range(25))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agents.pcf", *args]


def test_kill_9_mid_run_then_rerun_labels_every_item_exactly_once(tmp_path: Path) -> None:
    n = 300
    items = write_items(tmp_path / "items.jsonl", n)
    out = tmp_path / "labels.jsonl"
    args = _cli("label", "--catalog", str(items), "--out", str(out), "--store", str(tmp_path / "store"),
                "--embedder", "hashing", "--batch-size", "3", "--no-progress")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 30:
            break
        time.sleep(0.02)
    assert process.poll() is None, f"finished before it could be killed: {process.stderr.read().decode()[-500:]}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    done_at_kill = len(read_labels(out))
    assert 30 <= done_at_kill < n
    with out.open("ab") as handle:  # and as if the kill had torn a line in half
        handle.write(b'{"item_id": "B00299", "pcf_kg": 1.')
    finished = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout)
    assert summary["already_labelled"] == done_at_kill and summary["labelled_now"] == n - done_at_kill
    ids = label_ids(out)
    assert len(ids) == n and sorted(ids) == sorted(f"B{i:05d}" for i in range(n))
    with VectorStore(path=tmp_path / "store", read_only=True) as store:
        assert store.count(LABEL_COLLECTION) == n


def test_cli_bad_input_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    bad = tmp_path / "items.csv"
    bad.write_text("sku,label\n1,2\n")
    result = subprocess.run(
        _cli(
            "label",
            "--catalog",
            str(bad),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--store",
            str(tmp_path / "s"),
            "--embedder",
            "hashing",
        ),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:1: no id column")
    result = subprocess.run(_cli("label", "--shard", "5/2", "--catalog", str(bad), "--out", "x"),
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "--shard '5/2'" in result.stderr


def test_a_catalogue_with_typed_headers_is_read(tmp_path: Path) -> None:
    path = tmp_path / "typed.tsv"
    path.write_text("item_id:token\ttitle:token_seq\tweight_kg:float\nA1\tsteel water bottle\t0.3\nA2\t\t1\n")
    catalogue = read_catalogue(path)
    assert [(i.item_id, i.title, i.weight_kg) for i in catalogue.items] == [("A1", "steel water bottle", 0.3)]
    assert [(r.line, r.field, r.error) for r in catalogue.rejects] == [(3, "title", "missing title")]
