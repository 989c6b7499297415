"""Integrity checks of a local Chroma store directory, run before Chroma opens it (and never writing to it).

Chroma itself repairs nothing and checks little: a zero-length ``chroma.sqlite3`` is silently initialised as a
new empty store, a SQLite file with overwritten pages answers counts as if whole, and damaged HNSW segment
files end in a Rust panic. :func:`check_store_integrity` reads the files read-only and raises
:class:`StoreDamagedError` with one line naming the file and the damage:

- ``chroma.sqlite3``: the SQLite header, then ``PRAGMA quick_check`` through a read-only connection, then the
  tables Chroma needs;
- each persisted HNSW segment folder: ``header.bin`` (100 bytes, plausible fields), ``data_level0.bin`` and
  ``length.bin`` of a size the header allows, every level-0 link pointing at a stored element (hnswlib
  follows them unchecked), ``link_lists.bin`` present, and ``index_metadata.pickle``
  a complete pickle stream (walked opcode by opcode with :mod:`pickletools`, never unpickled).

A segment folder that does not exist yet is fine (Chroma keeps small collections in SQLite until it flushes).
"""

from __future__ import annotations

import pickletools
import sqlite3
import struct
import time
from pathlib import Path

import numpy as np

from retrieval.errors import StoreError

CHROMA_DB_FILE = "chroma.sqlite3"
SQLITE_MAGIC = b"SQLite format 3\x00"
HNSW_HEADER_FORMAT = "<iQQQQQQiIQQQdQ"  # version, offset_level0, max_elements, count, size_per_element, ...
HNSW_HEADER_BYTES = struct.calcsize(HNSW_HEADER_FORMAT)
REQUIRED_TABLES = ("collections", "segments", "embeddings", "embedding_metadata", "embeddings_queue", "max_seq_id")
HNSW_SEGMENT_TYPE = "urn:chroma:segment/vector/hnsw-local-persisted"
SEGMENT_ATTEMPTS = 3
REBUILD_HINT = "move the directory aside and rebuild the store from its source data"


class StoreDamagedError(StoreError):
    """A store directory whose files fail an integrity check; the message names the file and the damage."""


def _damaged(path: Path, what: str) -> StoreDamagedError:
    return StoreDamagedError(f"{path}: cannot open the Chroma store, it is damaged: {what}; {REBUILD_HINT}")


def check_sqlite(db_path: Path, writable: bool = False, unfinished_ok: bool = False) -> list[tuple[str, str]]:
    """Check ``chroma.sqlite3``; returns its (segment id, segment type) rows; raises StoreDamagedError.

    Read-only, except that a writer (``writable``, holding the store's lock, so no other writer lives) lets
    SQLite roll back a hot journal left by a killed writer: SQLite's own crash recovery, which restores the last
    committed state and is what Chroma would do on open anyway. ``unfinished_ok``: an empty file or missing
    tables are a creation that a kill interrupted (nothing else was ever written), which the writer lets Chroma
    finish.
    """
    size = db_path.stat().st_size
    if size == 0:
        if unfinished_ok:
            return []
        raise _damaged(db_path, "the file is empty (0 bytes)")
    with db_path.open("rb") as handle:
        magic = handle.read(len(SQLITE_MAGIC))
    if magic != SQLITE_MAGIC:
        raise _damaged(db_path, f"not a SQLite database (the first {len(SQLITE_MAGIC)} bytes are {magic[:16]!r})")
    try:
        # mode=ro: never create, migrate or roll anything forward; a hot journal makes this fail, which we report.
        journal = db_path.with_name(db_path.name + "-journal")
        mode = "rw" if writable and journal.is_file() and journal.stat().st_size > 0 else "ro"
        connection = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode={mode}", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise _damaged(db_path, f"SQLite cannot open it ({exc})") from None
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            shown = " / ".join(" ".join(str(p).split()) for p in problems[:3])[:300]
            shown += " ..." if len(problems) > 3 else ""
            raise _damaged(db_path, f"SQLite integrity check failed ({shown})")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [table for table in REQUIRED_TABLES if table not in tables]
        if missing:
            if unfinished_ok:
                return []
            raise _damaged(db_path, f"Chroma's tables {', '.join(missing)} are missing")
        return [(str(r[0]), str(r[1])) for r in connection.execute("SELECT id, type FROM segments")]
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed", ...
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StoreError(f"{db_path}: the database is locked by another process; try again") from None
        if "readonly" in str(exc) or "read-only" in str(exc):  # a hot journal that only a writer may roll back
            raise StoreError(
                f"{db_path}: a killed writer left an unfinished write (a hot journal); open the store once for "
                "writing (e.g. an ingest) so SQLite rolls it back, then read it"
            ) from None
        raise _damaged(db_path, f"SQLite error ({exc})") from None
    finally:
        connection.close()


def check_hnsw_segment(folder: Path) -> None:
    """Check one persisted HNSW segment folder (sizes against its header); raises StoreDamagedError."""
    header_path = folder / "header.bin"
    if not header_path.is_file():
        raise _damaged(folder, "header.bin is missing from the vector segment")
    header = header_path.read_bytes()
    if len(header) != HNSW_HEADER_BYTES:
        raise _damaged(header_path, f"{len(header)} bytes, expected {HNSW_HEADER_BYTES}")
    fields = struct.unpack(HNSW_HEADER_FORMAT, header)
    _version, offset_level0, max_elements, count, per_element, label_offset, offset_data = fields[:7]
    max_level, entry_point, _max_m, max_m0 = fields[7:11]
    if not (offset_level0 == 0 and count <= max_elements < 2**40 and 0 < per_element < 2**24):
        raise _damaged(header_path, f"implausible header (elements {count}/{max_elements}, {per_element} B each)")
    if not (offset_data < label_offset < per_element and per_element % 4 == 0 and 4 + 4 * max_m0 <= offset_data):
        raise _damaged(header_path, "implausible header (field offsets out of order)")
    if count and not (entry_point < count and 0 <= max_level < 64):
        raise _damaged(header_path, f"implausible header (entry point {entry_point} of {count} elements)")
    # Chroma writes these files up to the element count or up to the capacity (both seen): either is whole.
    for name, unit in (("data_level0.bin", per_element), ("length.bin", 4)):
        path = folder / name
        actual = path.stat().st_size if path.is_file() else None
        if actual is None or actual % unit or not count * unit <= actual <= max_elements * unit:
            found = "missing" if actual is None else f"{actual} bytes"
            expected = f"{count * unit} to {max_elements * unit} bytes in steps of {unit}"
            raise _damaged(path, f"{found}, expected {expected} from header.bin")
    check_level0_links(folder / "data_level0.bin", count, per_element, max_m0)
    if not (folder / "link_lists.bin").is_file():
        raise _damaged(folder / "link_lists.bin", "missing from the vector segment")
    pickle_path = folder / "index_metadata.pickle"
    if pickle_path.exists():
        data = pickle_path.read_bytes()
        try:
            opcodes = [opcode.name for opcode, _arg, _position in pickletools.genops(data)]
        except Exception as exc:  # pickletools raises ValueError and others on a torn or garbled stream
            raise _damaged(pickle_path, f"not a complete pickle ({exc})") from None
        if not opcodes or opcodes[-1] != "STOP":
            raise _damaged(pickle_path, "not a complete pickle (no STOP opcode)")


def check_level0_links(path: Path, count: int, per_element: int, max_m0: int) -> None:
    """Each element's level-0 neighbour list: at most ``max_m0`` links, each to an existing element.

    hnswlib follows these links without bounds checks, so a garbled one crashes the process (a segfault).
    """
    if count == 0:
        return
    rows = np.fromfile(path, dtype="<u4", count=count * per_element // 4).reshape(count, per_element // 4)
    sizes = rows[:, 0] & 0xFFFF  # hnswlib keeps the list length in the low two bytes
    if (sizes > max_m0).any():
        bad = int(np.argmax(sizes > max_m0))
        raise _damaged(path, f"element {bad} has {int(sizes[bad])} level-0 links, at most {max_m0} allowed")
    links = rows[:, 1 : 1 + max_m0]
    used = np.arange(max_m0)[None, :] < sizes[:, None]
    out_of_range = used & (links >= count)
    if out_of_range.any():
        bad = int(np.argmax(out_of_range.any(axis=1)))
        raise _damaged(path, f"element {bad} links to an element beyond the {count} stored")


def check_store_integrity(path: str | Path, writable: bool = False) -> None:
    """Check a store directory's SQLite file and its persisted vector segments; raises StoreDamagedError.

    ``writable``: the caller holds the store's writer lock (a hot journal may then be rolled back).
    """
    path = Path(path)
    db_path = path / CHROMA_DB_FILE
    if not db_path.is_file():
        return  # a new or empty directory: nothing to check
    # Only the SQLite file and no segment folder: a store whose creation may have been killed half way.
    fresh = not any(entry.is_dir() for entry in path.iterdir())
    segments = check_sqlite(db_path, writable, unfinished_ok=writable and fresh)
    for attempt in range(SEGMENT_ATTEMPTS):
        try:
            for segment_id, segment_type in segments:
                folder = path / segment_id
                if segment_type == HNSW_SEGMENT_TYPE and folder.is_dir():
                    check_hnsw_segment(folder)
            return
        except StoreDamagedError:
            if attempt == SEGMENT_ATTEMPTS - 1:
                raise
            time.sleep(0.3)  # a writer process may be flushing the segment right now: look again
