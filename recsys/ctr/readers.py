"""Readers for the CTR file formats users bring, with bad rows counted and reported by line number.

Formats (``read_ctr_file(path, fmt=None)`` detects them; see docs/ctr.md):

- ``criteo``: the Criteo Kaggle/Terabyte text files, tab-separated, no header: label, 13 integer fields
  ``I1..I13`` (log-binned, as the Kaggle winners and FuxiCTR do) and 26 hashed categorical fields ``C1..C26``.
- ``avazu``: the Avazu CSV with header (``id, click, hour, C1, banner_pos, ...``): ``click`` is the label,
  ``id`` is dropped, ``hour`` (YYMMDDHH) becomes ``hour_of_day`` and ``weekday``; all other columns categorical.
- ``libfm``: ``label idx:value idx:value ...`` per line (Frappe, MovieLens-tag as released by NFM/AFN):
  the i-th pair is field ``f{i}``, categorical by feature index; labels ``1``/``0``, and ``-1`` as the
  negative label of that format; values other than 1 are rejected (one-hot fields only).
- ``bars``: the CSV files of the BARS benchmark (``Criteo_x1``, ``Avazu_x1``, ``MovielensLatest_x1``, ...):
  header with ``label``; ``I1..I13`` are numeric, every other column categorical.
- ``table``: any CSV/TSV/Parquet file plus a schema file (YAML or JSON: ``label`` and ``fields`` mapping each
  name to ``categorical``/``numeric``/``sequence`` or to a dict of FieldSpec options).

Bad rows (wrong number of fields, a non-numeric value in a numeric field, a label other than 0/1) are never
coerced: with ``bad_rows="error"`` (default) reading fails with a message naming the file, the counts and the
first line numbers; with ``bad_rows="skip"`` they are dropped and listed in the returned ``RejectReport``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from recsys.ctr.features import CTRDataError, FieldSpec, Schema

logger = logging.getLogger(__name__)

FORMATS = ("criteo", "avazu", "libfm", "bars", "table")
BAD_ROWS = ("error", "skip")
MAX_EXAMPLES = 20
MAX_LINES = 10_000
CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]
SCHEMA_SUFFIXES = (".schema.yaml", ".schema.yml", ".schema.json")

csv.field_size_limit(2**31 - 1)


@dataclasses.dataclass
class RejectReport:
    """Rows of one source that were refused, counted by reason, with line numbers (1-based, header included)."""

    source: str
    rows_read: int = 0
    rejected: int = 0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    lines: list[int] = dataclasses.field(default_factory=list)

    def add(self, line: int, reason: str, detail: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((int(line), f"{reason}: {detail}"))
        if len(self.lines) < MAX_LINES:
            self.lines.append(int(line))

    def summary(self) -> str:
        if not self.rejected:
            return f"{self.source}: {self.rows_read} rows, none rejected"
        counts = ", ".join(f"{n} {reason}" for reason, n in self.reasons.most_common())
        shown = "; ".join(f"line {line}: {text}" for line, text in self.examples[:5])
        return f"{self.source}: {self.rejected} of {self.rows_read} rows rejected ({counts}); {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rejected": self.rejected,
            "reasons": dict(self.reasons),
            "examples": [{"line": line, "problem": text} for line, text in self.examples],
            "lines": self.lines,
        }


@dataclasses.dataclass
class CTRTable:
    """Raw CTR rows: ``frame`` holds the schema's fields (strings, or floats for numeric) and an int8 label.

    ``fold`` (0 train, 1 valid, 2 test) is set only when the data ships its own split (a BARS folder).
    """

    frame: pd.DataFrame
    schema: Schema
    source: str
    rejects: list[RejectReport] = dataclasses.field(default_factory=list)
    fold: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame)


# -- line parsing -----------------------------------------------------------------------------------
def _rows(path: Path, delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank line."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            yield reader.line_num, fields


def _collect(
    rows: Iterator[tuple[int, list[str]]], n_fields: int, report: RejectReport
) -> tuple[list[list[str]], list[int]]:
    """Keep rows with exactly ``n_fields`` fields; the others are rejected with their line numbers."""
    kept, lines = [], []
    for line, fields in rows:
        report.rows_read += 1
        if len(fields) != n_fields:
            report.add(line, "wrong number of fields", f"{len(fields)} fields, expected {n_fields}")
            continue
        kept.append(fields)
        lines.append(line)
    return kept, lines


def _validate(
    frame: pd.DataFrame,
    lines: np.ndarray,
    schema: Schema,
    report: RejectReport,
    label_values: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Check labels (0/1) and numeric fields; return the valid rows with typed columns (label int8)."""
    label_values = label_values or {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
    keep = np.ones(len(frame), dtype=bool)
    raw_label = frame[schema.label].astype(str).str.strip()
    label = raw_label.map(label_values)
    bad = label.isna().to_numpy()
    for i in np.flatnonzero(bad):
        report.add(lines[i], "label not 0/1", f"label {raw_label.iloc[i]!r}")
    keep &= ~bad
    numeric_columns: dict[str, np.ndarray] = {}
    for spec in schema.fields:
        if spec.kind != "numeric":
            continue
        text = frame[spec.name].astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        empty = (text == "").to_numpy() | frame[spec.name].isna().to_numpy()
        bad = np.isnan(values) & ~empty
        bad |= np.isinf(values)
        for i in np.flatnonzero(bad & keep):
            report.add(lines[i], "non-numeric value", f"field {spec.name} = {text.iloc[i]!r}")
        keep &= ~bad
        numeric_columns[spec.name] = np.where(empty, np.nan, values)
    out = frame.loc[keep, [f.name for f in schema.fields]].copy()
    for name, values in numeric_columns.items():
        out[name] = values[keep]
    out[schema.label] = label[keep].astype(np.int8).to_numpy()
    return out.reset_index(drop=True)


def _finish(frame: pd.DataFrame, schema: Schema, report: RejectReport, bad_rows: str) -> CTRTable:
    report.lines.sort()
    report.examples.sort()
    if report.rejected:
        if bad_rows == "error":
            raise CTRDataError(
                report.summary() + ". Fix or remove these rows, or pass bad_rows='skip' (--bad-rows skip) to drop them"
            )
        logger.warning("%s", report.summary())
    if frame.empty:
        raise CTRDataError(f"{report.source}: no usable rows")
    return CTRTable(frame=frame, schema=schema, source=report.source, rejects=[report])


def _check_bad_rows(bad_rows: str) -> None:
    if bad_rows not in BAD_ROWS:
        raise CTRDataError(f"bad_rows must be one of {BAD_ROWS}, got {bad_rows!r}")


# -- formats ----------------------------------------------------------------------------------------
def criteo_schema() -> Schema:
    """13 log-binned numeric fields and 26 categorical fields (rare tokens, < 10 times, share the OOV slot)."""
    fields = [FieldSpec(n, "numeric", transform="log_bin", min_count=10) for n in CRITEO_NUMERIC]
    fields += [FieldSpec(n, "categorical", min_count=10) for n in CRITEO_CATEGORICAL]
    return Schema(fields, label="label")


def read_criteo(path: str | Path, bad_rows: str = "error", schema: Schema | None = None) -> CTRTable:
    """The Criteo tab-separated text format: label, I1..I13, C1..C26, no header."""
    _check_bad_rows(bad_rows)
    path = Path(path)
    schema = schema or criteo_schema()
    columns = ["label", *CRITEO_NUMERIC, *CRITEO_CATEGORICAL]
    report = RejectReport(str(path))
    kept, lines = _collect(_rows(path, "\t", csv.QUOTE_NONE), len(columns), report)
    frame = pd.DataFrame(kept, columns=columns, dtype=object)
    frame = _validate(frame, np.asarray(lines), schema, report)
    return _finish(frame, schema, report, bad_rows)


def read_avazu(path: str | Path, bad_rows: str = "error") -> CTRTable:
    """The Avazu CSV: header, ``click`` label, ``hour`` as YYMMDDHH; ``id`` dropped."""
    _check_bad_rows(bad_rows)
    path = Path(path)
    report = RejectReport(str(path))
    rows = _rows(path, ",")
    try:
        _, header = next(rows)
    except StopIteration:
        raise CTRDataError(f"{path}: empty file") from None
    header = [h.strip() for h in header]
    if "click" not in header:
        raise CTRDataError(f"{path}: line 1: no 'click' column in the header {header}")
    kept, lines = _collect(rows, len(header), report)
    frame = pd.DataFrame(kept, columns=header, dtype=object)
    names = [h for h in header if h not in ("id", "click", "hour")]
    has_hour = "hour" in header
    if has_hour:
        names += ["hour_of_day", "weekday"]
        stamp = pd.to_datetime(frame["hour"].str.strip(), format="%y%m%d%H", errors="coerce")
        line_array = np.asarray(lines)
        for i in np.flatnonzero(stamp.isna().to_numpy()):
            report.add(line_array[i], "bad hour", f"hour {frame['hour'].iloc[i]!r} is not YYMMDDHH")
        ok = stamp.notna().to_numpy()
        frame, stamp, lines = frame[ok].reset_index(drop=True), stamp[ok].reset_index(drop=True), line_array[ok]
        frame["hour_of_day"] = stamp.dt.hour.astype(str).to_numpy()
        frame["weekday"] = stamp.dt.day_of_week.astype(str).to_numpy()
    frame = frame.rename(columns={"click": "label"})
    schema = Schema([FieldSpec(n, "categorical", min_count=2) for n in names], label="label")
    frame = _validate(frame, np.asarray(lines), schema, report)
    return _finish(frame, schema, report, bad_rows)


def read_libfm(path: str | Path, bad_rows: str = "error", n_fields: int | None = None) -> CTRTable:
    """libFM lines ``label idx:value ...``: position i is categorical field ``f{i}`` (one-hot values only)."""
    _check_bad_rows(bad_rows)
    path = Path(path)
    report = RejectReport(str(path))
    labels, features, lines = [], [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, text in enumerate(handle, start=1):
            parts = text.split()
            if not parts:
                continue
            report.rows_read += 1
            if n_fields is None:
                n_fields = len(parts) - 1
                if n_fields < 1:
                    raise CTRDataError(f"{path}: line {line_no}: no features after the label")
            if len(parts) - 1 != n_fields:
                report.add(line_no, "wrong number of fields", f"{len(parts) - 1} features, expected {n_fields}")
                continue
            row, problem = [], None
            for pair in parts[1:]:
                index, colon, value = pair.partition(":")
                if not colon or not index:
                    problem = ("wrong number of fields", f"{pair!r} is not index:value")
                    break
                try:
                    number = float(value)
                except ValueError:
                    problem = ("non-numeric value", f"{pair!r}")
                    break
                if number != 1.0:
                    problem = ("non-numeric value", f"{pair!r}: only one-hot (value 1) features are supported")
                    break
                row.append(index)
            if problem:
                report.add(line_no, *problem)
                continue
            labels.append(parts[0])
            features.append(row)
            lines.append(line_no)
    names = [f"f{i}" for i in range(n_fields or 0)]
    frame = pd.DataFrame(features, columns=names, dtype=object)
    frame["label"] = labels
    schema = Schema([FieldSpec(n, "categorical") for n in names], label="label")
    label_values = {"0": 0, "1": 1, "-1": 0, "+1": 1, "1.0": 1, "0.0": 0, "-1.0": 0}
    frame = _validate(frame, np.asarray(lines), schema, report, label_values)
    return _finish(frame, schema, report, bad_rows)


def bars_schema(header: list[str], label: str = "label") -> Schema:
    """BARS CSV columns: ``I1..I13`` numeric (Criteo_x1), everything else categorical."""
    if label not in header:
        raise CTRDataError(f"no {label!r} column in the header {header}")
    fields = [
        FieldSpec(name, "numeric") if name in CRITEO_NUMERIC else FieldSpec(name, "categorical")
        for name in header
        if name != label
    ]
    return Schema(fields, label=label)


def read_schema(path: str | Path) -> Schema:
    """A schema file (YAML or JSON): ``label`` and ``fields`` (list of FieldSpec dicts, or name -> kind)."""
    path = Path(path)
    if not path.is_file():
        raise CTRDataError(f"{path}: schema file not found")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CTRDataError(f"{path}: cannot parse the schema ({exc})") from None
    return Schema.from_dict(data, str(path))


def read_table(
    path: str | Path, schema: Schema | str | Path | None = None, bad_rows: str = "error", sep: str | None = None
) -> CTRTable:
    """A CSV/TSV (header required) or Parquet file; without a schema, the BARS convention is assumed."""
    _check_bad_rows(bad_rows)
    path = Path(path)
    if schema is not None and not isinstance(schema, Schema):
        schema = read_schema(schema)
    report = RejectReport(str(path))
    if path.suffix in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
        header = [str(c) for c in raw.columns]
        schema = schema or bars_schema(header)
        _require_columns(path, header, schema)
        report.rows_read = len(raw)
        frame = raw.astype(object).where(raw.notna(), None)
        lines = np.arange(1, len(raw) + 1)  # Parquet has no lines: row numbers (1-based)
        report.source = f"{path} (row numbers)"
    else:
        delimiter = sep or ("\t" if path.suffix in (".tsv", ".tab", ".txt") else ",")
        rows = _rows(path, delimiter)
        try:
            _, header = next(rows)
        except StopIteration:
            raise CTRDataError(f"{path}: empty file") from None
        header = [h.strip() for h in header]
        schema = schema or bars_schema(header)
        _require_columns(path, header, schema)
        kept, line_list = _collect(rows, len(header), report)
        frame = pd.DataFrame(kept, columns=header, dtype=object)
        lines = np.asarray(line_list)
    frame = _validate(frame, lines, schema, report)
    return _finish(frame, schema, report, bad_rows)


def _require_columns(path: Path, header: list[str], schema: Schema) -> None:
    missing = [name for name in [schema.label, *(f.name for f in schema.fields)] if name not in header]
    if missing:
        raise CTRDataError(f"{path}: line 1: columns {missing} of the schema are not in the header {header}")


# -- detection --------------------------------------------------------------------------------------
def sidecar_schema(path: Path) -> Path | None:
    """``data.schema.yaml`` next to ``data.csv``, or ``schema.yaml``/``schema.json`` in its folder."""
    folder = path if path.is_dir() else path.parent
    candidates = [] if path.is_dir() else [path.with_name(path.stem + s) for s in SCHEMA_SUFFIXES]
    candidates += [folder / name for name in ("schema.yaml", "schema.yml", "schema.json")]
    return next((c for c in candidates if c.is_file()), None)


def detect_format(path: Path) -> str:
    """Guess a file's CTR format from its suffix and first line."""
    suffix = path.suffix.lower()
    if suffix in (".libfm", ".libsvm", ".svm"):
        return "libfm"
    if sidecar_schema(path) is not None or suffix in (".parquet", ".pq"):
        return "table"
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline().rstrip("\n")
    if first.count("\t") == 39:
        return "criteo"
    header = [h.strip().strip('"') for h in first.split(",")]
    if "click" in header and "hour" in header:
        return "avazu"
    if "label" in header:
        return "bars"
    tokens = first.split()
    if len(tokens) > 1 and all(":" in t for t in tokens[1:]):
        return "libfm"
    raise CTRDataError(
        f"{path}: line 1: cannot tell the CTR format (criteo: 40 tab-separated fields; avazu: CSV header with "
        "click and hour; bars: CSV header with label; libfm: label idx:value ...; or add a schema file "
        f"{path.stem}.schema.yaml)"
    )


def read_ctr_file(
    path: str | Path, fmt: str | None = None, schema: Schema | str | Path | None = None, bad_rows: str = "error"
) -> CTRTable:
    """Read one CTR file in ``fmt`` (detected when None)."""
    path = Path(path)
    if not path.is_file():
        raise CTRDataError(f"{path}: file not found")
    if schema is None and fmt in (None, "table"):
        schema = sidecar_schema(path)
    fmt = fmt or ("table" if schema is not None else detect_format(path))
    if fmt not in FORMATS:
        raise CTRDataError(f"unknown CTR format {fmt!r}; use one of {FORMATS}")
    if fmt == "criteo":
        return read_criteo(path, bad_rows)
    if fmt == "avazu":
        return read_avazu(path, bad_rows)
    if fmt == "libfm":
        return read_libfm(path, bad_rows)
    return read_table(path, schema, bad_rows)
