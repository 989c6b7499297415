"""Atomic file writes (temporary file + ``os.replace``) and JSONL reading with line-numbered errors."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError

logger = logging.getLogger(__name__)


class JsonlError(UserError, ValueError):
    """A JSONL file that cannot be read: missing, undecodable, or a line that is not a JSON object."""


def atomic_write(path: str | Path, writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp_path)`` then rename the temporary file onto ``path`` (never a half-written file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, payload: Any, indent: int | None = 2) -> None:
    """Write ``payload`` as JSON (non-JSON values through ``str``) to ``path`` atomically, newline-terminated."""
    atomic_write_text(path, json.dumps(payload, indent=indent, default=str) + "\n")


@dataclass(frozen=True)
class BadLine:
    """A JSONL line that is not a JSON object: its number, why, and its first 300 characters."""

    number: int
    reason: str
    text: str


UNDECODABLE_PREFIX = "not valid UTF-8"


def printable(text: str) -> str:
    """``text`` read with ``surrogateescape``, its undecodable bytes spelled ``\\xNN`` (for messages and rejects)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def undecodable_reason(text: str) -> str | None:
    """Why ``text`` (read with ``surrogateescape``) is not UTF-8, naming the first bad byte; None when it is."""
    bad = next((i for i, char in enumerate(text) if "\udc80" <= char <= "\udcff"), None)
    if bad is None:
        return None
    byte = ord(text[bad]) - 0xDC00
    return f"{UNDECODABLE_PREFIX} (byte 0x{byte:02x} at character {bad + 1}); re-save the file as UTF-8"


def iter_jsonl(
    path: str | Path,
    *,
    error: type[Exception] = JsonlError,
    keep_bad: bool = False,
    torn_tail: str = "raise",
) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """(line number, object) for every non-blank line of a JSONL file.

    A line that is not a JSON object raises ``error`` naming ``path:line`` or, with ``keep_bad``, is yielded as
    a ``BadLine``. ``torn_tail="skip"`` drops an unterminated, undecodable last line with a warning (what an
    appending writer that was killed leaves behind) instead of treating it as a bad line.
    """
    path = Path(path)
    if torn_tail not in ("raise", "skip"):
        raise ValueError(f"torn_tail must be 'raise' or 'skip', got {torn_tail!r}")
    try:
        # surrogateescape: a line with bytes that are not UTF-8 is one bad line, not a failed file
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc})") from None
    lines = text.split("\n")
    last = len(lines) if text.endswith("\n") else len(lines) - 1  # index of an unterminated last line, if any
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        number = index + 1
        undecodable = undecodable_reason(line)
        if undecodable is not None:
            if torn_tail == "skip" and index == last:
                logger.warning(
                    "%s:%d: unterminated last line is not valid UTF-8 (a killed writer?); skipped", path, number
                )
                return
            if not keep_bad:
                raise error(f"{path}:{number}: {undecodable}")
            yield number, BadLine(number, undecodable, printable(line)[:300])
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if torn_tail == "skip" and index == last:
                logger.warning(
                    "%s:%d: unterminated last line is not valid JSON (a killed writer?); skipped", path, number
                )
                return
            reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
            if not keep_bad:
                raise error(f"{path}:{number}: {reason}") from None
            yield number, BadLine(number, reason, line[:300])
            continue
        if not isinstance(record, dict):
            reason = f"expected a JSON object, got {type(record).__name__}"
            if not keep_bad:
                raise error(f"{path}:{number}: {reason}")
            yield number, BadLine(number, reason, line[:300])
            continue
        yield number, record


def read_jsonl(
    path: str | Path, *, error: type[Exception] = JsonlError, torn_tail: str = "raise"
) -> list[dict[str, Any]]:
    """Every object of a JSONL file, in order; the first bad line raises ``error`` naming ``path:line``."""
    return [record for _, record in iter_jsonl(path, error=error, torn_tail=torn_tail)]  # type: ignore[misc]


def write_jsonl(path: str | Path, rows: Any) -> None:
    """Write an iterable of JSON-able objects as JSONL, atomically."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def untyped(column: str) -> str:
    """A column name without its RecBole type (``item_id:token`` -> ``item_id``); other names unchanged."""
    name, sep, kind = str(column).rpartition(":")
    return name if sep and name and kind in RECBOLE_TYPES else str(column)


def cut_torn_tail(path: str | Path, *, repair: bool = False) -> bytes:
    """The bytes of an append-only file up to its last newline.

    A killed appender can leave an unterminated last line; it is dropped with a warning and, with ``repair``,
    truncated away on disk (then fsynced) so that the next append starts on a fresh line.
    """
    path = Path(path)
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        logger.warning(
            "%s: dropping a torn last line (%d bytes) left by an interrupted run", path, len(data) - complete
        )
        if repair:
            with path.open("r+b") as handle:
                handle.truncate(complete)
                handle.flush()
                os.fsync(handle.fileno())
    return data[:complete]


def read_keyed_jsonl(
    path: str | Path,
    key: str,
    *,
    repair: bool = False,
    error: type[Exception] = JsonlError,
    what: str = "a record",
) -> dict[str, dict[str, Any]]:
    """Records of an append-only JSONL file by ``record[key]`` (the first one wins; a missing file is empty).

    A torn last line is ignored (see ``cut_torn_tail``); any complete line that is not valid UTF-8, not JSON or
    lacks ``key`` raises ``error`` naming ``path:line`` and ``what`` the line should have been.
    """
    path = Path(path)
    if not path.exists():
        return {}
    data = cut_torn_tail(path, repair=repair)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not {what} (not valid UTF-8); move the file aside to start over") from None
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record_id = str(record[key])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise error(f"{path}:{number}: not {what} ({exc}); move the file aside to start over") from None
        if record_id in records:
            logger.warning("%s:%d: %s %r appears twice; keeping the first", path, number, key, record_id)
            continue
        records[record_id] = record
    return records
