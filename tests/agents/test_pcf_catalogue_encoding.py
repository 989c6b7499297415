"""PCF catalogues with bytes that are not UTF-8: the row is rejected with its line, the job goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.pcf.label import read_catalogue, run_label_job
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_non_utf8_row_is_rejected_by_line_and_the_others_are_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    if suffix == ".jsonl":
        path.write_bytes(b'{"item_id": "U0", "title": "Tea"}\n{"item_id": "U1", "title": "Caf\xe9"}\n'
                         b'{"item_id": "U2", "title": "Caf\xc3\xa9 latte"}\n')  # fmt: skip
    else:
        sep = b"," if suffix == ".csv" else b"\t"
        path.write_bytes(sep.join([b"item_id", b"title"]) + b"\nU0" + sep + b"Tea\nU1" + sep + b"Caf\xe9\nU2" + sep
                         + "Café latte".encode() + b"\n")  # fmt: skip
    catalogue = read_catalogue(path)
    assert [(i.item_id, i.title) for i in catalogue.items] == [("U0", "Tea"), ("U2", "Café latte")]
    ((reject),) = catalogue.rejects
    line = 2 if suffix == ".jsonl" else 3
    assert (reject.line, reject.field) == (line, "(encoding)")
    assert "not valid UTF-8" in reject.error and "0xe9" in reject.error and "\\xe9" in reject.raw


def test_the_issue_example_labels_the_rest_and_writes_the_rejects_file(tmp_path: Path) -> None:
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(b"item_id,title\nU1,Caf\xe9\nU2,office chair\n")
    out = tmp_path / "labels.jsonl"
    with VectorStore(path=tmp_path / "store") as store:
        summary = run_label_job(catalog, out, store, HashingEmbedder(), progress=False)
    assert summary["labelled_now"] == 1 and summary["rejected_by_field"] == {"(encoding)": 1}
    assert [json.loads(line)["item_id"] for line in out.read_text().splitlines()] == ["U2"]
    (entry,) = [json.loads(line) for line in Path(summary["rejects_file"]).read_text().splitlines()]
    assert entry["line"] == 2 and entry["raw"] == "U1,Caf\\xe9"


def test_an_extra_column_reject_keeps_its_raw_row(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("item_id,title\nA1,Desk,surplus,cells\nA2,Lamp\n")
    catalogue = read_catalogue(path)
    assert [i.item_id for i in catalogue.items] == ["A2"]
    ((reject),) = catalogue.rejects
    assert (reject.line, reject.field) == (2, "(row)") and reject.raw == "A1,Desk,surplus,cells"
