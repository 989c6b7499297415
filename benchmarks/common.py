"""Shared pieces of the benchmark scripts: result files (provenance from core.provenance) and table printing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from core.io import atomic_write_json
from core.provenance import environment

__all__ = ["RESULTS_DIR", "environment", "print_table", "write_results"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, payload: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``payload`` plus the command and environment to ``benchmarks/results/<name>.json`` atomically."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(),
        **payload,
    }
    atomic_write_json(path, record)
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> str:
    """Print rows as a fixed-width text table (also returned as a string)."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
        return "" if value is None else str(value)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    text = "\n".join(lines)
    print(text)
    return text
