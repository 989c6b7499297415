"""Rows that load but do not fit their format's types (``python -m recsys.data info`` reports them).

The loaders are lenient where the data still has a meaning (any string is an id to an id map, any number a
timestamp), so a GroupLens file with the user id ``abc`` or a timestamp of -100 loads. These checks name such
rows, with line numbers where the format's layout is known: GroupLens ids are integers, ratings 1 to 5 and
timestamps whole non-negative Unix seconds; any format's timestamps are non-negative.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.dataset import InteractionDataset
from recsys.data.loaders import _read_delimited

logger = logging.getLogger(__name__)

GROUPLENS_LAYOUTS = {"grouplens_ml100k": ("u.data", "\t"), "grouplens_ml1m": ("ratings.dat", "::")}
GROUPLENS_FIELDS = ("user_id", "item_id", "rating", "timestamp")
MAX_EXAMPLES = 5


def _grouplens_problems(path: Path, fmt: str) -> list[tuple[str, np.ndarray, pd.Series, str]]:
    """(field, line numbers, values, problem) per kind of misfit in a GroupLens ratings file."""
    name, separator = GROUPLENS_LAYOUTS[fmt]
    data_path = path / name if path.is_dir() else path
    frame, lines = _read_delimited(data_path, separator, GROUPLENS_FIELDS, header=False, encoding="latin-1")
    lines = np.asarray(lines)
    found = []
    for field in ("user_id", "item_id"):
        values = frame[field].astype(str).str.strip()
        bad = ~values.str.fullmatch(r"\d+").to_numpy(dtype=bool)
        found.append((field, lines[bad], values[bad], "not an integer id (GroupLens ids are integers)"))
    rating = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=float)
    bad = ~((rating >= 1) & (rating <= 5))
    found.append(("rating", lines[bad], frame["rating"][bad], "outside the 1 to 5 rating scale"))
    seconds = pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(dtype=float)
    bad = ~((seconds >= 0) & (np.floor(seconds) == seconds))
    found.append(("timestamp", lines[bad], frame["timestamp"][bad], "not whole non-negative Unix seconds"))
    return found


def format_problems(dataset: InteractionDataset, path: Path, fmt: str) -> dict[str, Any]:
    """``{"rows": n, "by_field": {field: n}, "examples": [{line, field, value, problem}]}``; logs a warning each."""
    by_field: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    rows: set[Any] = set()
    if fmt in GROUPLENS_LAYOUTS:
        for field, lines, values, problem in _grouplens_problems(Path(path), fmt):
            if len(lines):
                by_field[field] = len(lines)
                rows.update(int(line) for line in lines)
                shown = zip(lines[:MAX_EXAMPLES], values[:MAX_EXAMPLES], strict=True)
                examples += [{"line": int(n), "field": field, "value": str(v), "problem": problem} for n, v in shown]
    elif dataset.timestamps is not None:
        negative = np.flatnonzero(dataset.timestamps < 0)
        if len(negative):
            by_field["timestamp"] = len(negative)
            rows.update(f"row {i}" for i in negative)
            examples += [
                {"line": None, "field": "timestamp", "value": str(dataset.timestamps[i]), "problem": "negative"}
                for i in negative[:MAX_EXAMPLES]
            ]
    for example in examples:
        where = f"line {example['line']}" if example["line"] is not None else "a row"
        logger.warning("%s: %s: field %s: %r %s", path, where, example["field"], example["value"], example["problem"])
    if rows:
        logger.warning("%s: %d rows do not fit the %s format (see format_problems)", path, len(rows), fmt)
    return {"rows": len(rows), "by_field": by_field, "examples": examples}
