"""core.io: atomic writes leave the old file or the new one, never a torn one; JSONL errors name file and line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.io import (
    BadLine,
    JsonlError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    iter_jsonl,
    read_jsonl,
    read_keyed_jsonl,
)


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    atomic_write_json(target, {"a": 1, "path": tmp_path})
    assert target.read_text(encoding="utf-8") == '{\n  "a": 1,\n  "path": "' + str(tmp_path) + '"\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failing_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_jsonl_reads_objects_with_line_numbers_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n{"a": \n', r"rows\.jsonl:2: not valid JSON"),
        ('{"a": 1}\n\n[1, 2]\n', r"rows\.jsonl:3: expected a JSON object, got list"),
    ],
)
def test_a_bad_line_raises_the_callers_error_naming_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    class MyError(Exception):
        pass

    path = tmp_path / "rows.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MyError, match=message):
        read_jsonl(path, error=MyError)
    with pytest.raises(JsonlError, match=message):
        read_jsonl(path)


def test_keep_bad_yields_bad_lines_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\nnope\n"text"\n{"a": 2}\n', encoding="utf-8")
    rows = list(iter_jsonl(path, keep_bad=True))
    assert [number for number, _ in rows] == [1, 2, 3, 4]
    assert isinstance(rows[1][1], BadLine) and rows[1][1].text == "nope" and "not valid JSON" in rows[1][1].reason
    assert isinstance(rows[2][1], BadLine) and "got str" in rows[2][1].reason
    assert rows[3][1] == {"a": 2}


def test_a_torn_last_line_is_skipped_only_when_asked_and_only_at_the_end(tmp_path: Path, caplog) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path, torn_tail="skip") == [{"a": 1}]
    assert "rows.jsonl:2: unterminated last line" in caplog.text
    with pytest.raises(JsonlError, match=r":2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 2, "b\n{"a": 1}', encoding="utf-8")  # torn in the middle: a real error
    with pytest.raises(JsonlError, match=r":1: not valid JSON"):
        read_jsonl(path, torn_tail="skip")


def test_missing_and_undecodable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(JsonlError, match=r"absent\.jsonl: file not found"):
        read_jsonl(tmp_path / "absent.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(JsonlError, match=r"binary\.jsonl:1: not valid UTF-8 \(byte 0xff at character 1\)"):
        read_jsonl(binary)


def test_an_undecodable_line_is_one_bad_line_and_the_others_are_read(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "Caf\xe9"}\n{"c": 3}\n')
    rows = list(iter_jsonl(path, keep_bad=True))
    assert [n for n, _ in rows] == [1, 2, 3]
    bad = rows[1][1]
    assert isinstance(bad, BadLine) and bad.reason.startswith("not valid UTF-8") and "\\xe9" in bad.text
    assert rows[0][1] == {"a": 1} and rows[2][1] == {"c": 3}


def test_read_keyed_jsonl_drops_and_repairs_a_torn_tail_and_keeps_the_first(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    assert read_keyed_jsonl(path, "id") == {}
    path.write_bytes(b'{"id": 1, "v": "a"}\n\n{"id": "1", "v": "b"}\n{"id": 2, "v": "c"}\n{"id": 3, "v"')
    records = read_keyed_jsonl(path, "id")
    assert records == {"1": {"id": 1, "v": "a"}, "2": {"id": 2, "v": "c"}}
    assert path.read_bytes().endswith(b'{"id": 3, "v"')  # not repaired unless asked
    read_keyed_jsonl(path, "id", repair=True)
    assert path.read_bytes().endswith(b'{"id": 2, "v": "c"}\n')
    path.write_bytes(b'{"id": 1}\n{"other": 2}\n')
    with pytest.raises(JsonlError, match=r"cache.jsonl:2: not a teacher record"):
        read_keyed_jsonl(path, "id", what="a teacher record")
    path.write_bytes(b'{"id": 1}\n\xff\xfe\n')
    with pytest.raises(JsonlError, match=r"cache.jsonl:2: .*not valid UTF-8"):
        read_keyed_jsonl(path, "id")
