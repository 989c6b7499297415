"""The fault suite at CI size (benchmarks/reliability.py runs the long loops): kill -9 during labelling and ingest,
malformed inputs to every reader, hostile requests to mllm.serve on 127.0.0.1, damaged store files.

Run alone with ``pytest -m reliability``; every check asserts zero data lost, zero duplicates, zero tracebacks.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.reliability import ingest_kills, label_kills, malformed_inputs, server_requests, store_damage

pytestmark = pytest.mark.reliability


def _clean(row: dict) -> None:
    assert row["data_lost"] == 0 and row["duplicated"] == 0 and row["tracebacks"] == 0, row
    assert row["survived"] == row["faults_injected"] > 0, row


def test_kill_9_during_labelling_labels_each_item_exactly_once_as_an_uninterrupted_run(tmp_path: Path) -> None:
    row = label_kills(tmp_path, kills=2, rng=random.Random(1), items=300, per_round=2, delay=3.0)
    _clean(row)
    assert row["labels_differing_from_uninterrupted_run"] == 0


def test_kill_9_during_camroll_ingest_leaves_the_store_as_an_uninterrupted_ingest(tmp_path: Path) -> None:
    _clean(ingest_kills(tmp_path, kills=2, rng=random.Random(2), users=2, per_round=2, delay=3.0, photos_per_user=60))


def test_malformed_inputs_to_every_reader_are_named_or_read_never_a_traceback(tmp_path: Path) -> None:
    row = malformed_inputs(tmp_path, 112, random.Random(3))  # 8 readers x 14 kinds of damage
    _clean(row)
    assert row["rejected_clear"] >= 40 and set(row["by_reader"]) >= {"pcf catalogue .csv", "camroll photos.jsonl"}


def test_hostile_requests_to_the_server_get_clear_errors_and_it_keeps_serving() -> None:
    row = server_requests(30, random.Random(4))
    _clean(row)
    assert row["rejected_clear"] >= 20 and row["concurrent_burst"].get(200, 0) >= 1


def test_damaged_store_files_are_refused_in_one_line_and_left_as_they_were(tmp_path: Path) -> None:
    row = store_damage(tmp_path, 4, random.Random(5))  # sqlite emptied, truncated, overwritten, deleted (the
    _clean(row)  # HNSW segment files: tests/retrieval/test_store_integrity.py, and the benchmark)
    assert row["rewritten"] == 0 and row["rejected_clear"] >= 3, row
