"""``python -m recsys.data info NAME_OR_PATH`` and ``python -m recsys.data split NAME --protocol P --out DIR``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.cli import add_verbosity_args, configure_from_args, run_cli
from recsys.data.checks import format_problems
from recsys.data.dataset import DataError, InteractionDataset, Split
from recsys.data.registry import detect_format, load_dataset, resolve_dataset
from recsys.data.splits import PROTOCOLS, kcore_filter, make_split

logger = logging.getLogger(__name__)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def dataset_info(name_or_path: str, data_dir: str | None = None) -> dict[str, Any]:
    """Statistics of a dataset (counts, density, first/last timestamp raw and ISO 8601, source, format)."""
    path = resolve_dataset(name_or_path, data_dir)
    dataset = load_dataset(name_or_path, data_dir=data_dir)
    info = dataset.info()
    out: dict[str, Any] = {"name": dataset.name, **info}
    out["first_timestamp_iso"] = _iso(info["first_timestamp"])
    out["last_timestamp_iso"] = _iso(info["last_timestamp"])
    out["has_ratings"] = dataset.ratings is not None
    out["item_features"] = [] if dataset.item_features is None else [str(c) for c in dataset.item_features.columns]
    out["user_features"] = [] if dataset.user_features is None else [str(c) for c in dataset.user_features.columns]
    if dataset.fold is not None:
        counts = np.bincount(dataset.fold, minlength=3)
        out["given_split"] = {"train": int(counts[0]), "valid": int(counts[1]), "test": int(counts[2])}
    if dataset.item_text is not None:
        out["item_text"] = {"items": dataset.n_items, "with_text": sum(1 for t in dataset.item_text if t)}
    # what the loader read and what it skipped (duplicates dropped, items known only from histories, ...)
    out["read"] = dataset.read_report or {"interactions": dataset.n_interactions}
    out["source"] = str(path.resolve())
    out["format"] = detect_format(path)
    out["format_problems"] = format_problems(dataset, path, out["format"])
    return out


def write_atomic(dataset: InteractionDataset, path: Path) -> int:
    """Write interactions (raw ids) as a RecBole atomic ``.inter`` file; returns the row count."""
    frame = pd.DataFrame(
        {
            "user_id:token": dataset.user_map.raw_array(dataset.users),
            "item_id:token": dataset.item_map.raw_array(dataset.items),
        }
    )
    if dataset.ratings is not None:
        frame["rating:float"] = dataset.ratings
    if dataset.timestamps is not None:
        frame["timestamp:float"] = dataset.timestamps
    for column in ("user_id:token", "item_id:token"):
        has_tab = frame[column].astype(str).str.contains("[\t\n\r]", regex=True)
        if has_tab.any():
            raise DataError(f"{path}: field {column!r}: id {frame[column][has_tab].iloc[0]!r} contains a tab/newline")
    frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE, float_format="%.10g", lineterminator="\n")
    return len(frame)


def write_split(split: Split, out: Path, name: str) -> dict[str, Any]:
    """Write ``<out>/<name>.{train,valid,test}.inter`` (RecBole ``benchmark_filename``) and ``split.json``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for part in ("train", "valid", "test"):
        path = out / f"{name}.{part}.inter"
        rows = write_atomic(getattr(split, part), path)
        files[part] = {"path": str(path), "rows": rows}
    summary = {"dataset": name, **split.info(), "files": files}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m recsys.data``."""
    parser = argparse.ArgumentParser(prog="python -m recsys.data", description=__doc__)
    add_verbosity_args(parser)
    verbs = parser.add_subparsers(dest="verb", required=True)
    info = verbs.add_parser("info", help="print a dataset's statistics as JSON")
    info.add_argument("dataset", help="a known name (ml-100k, ml-1m, gowalla, lastfm) or a folder/file path")
    info.add_argument("--data-dir", help="folder searched first for dataset names")
    info.add_argument(
        "--allow-format-problems",
        action="store_true",
        help="exit 0 even when rows do not fit the format's types (default: exit 1, the JSON still printed)",
    )
    split = verbs.add_parser("split", help="split a dataset and write RecBole train/valid/test .inter files")
    split.add_argument("dataset", help="a known name or a folder/file path")
    split.add_argument("--data-dir", help="folder searched first for dataset names")
    split.add_argument("--protocol", default="loo", choices=sorted(PROTOCOLS), help="split protocol (default loo)")
    split.add_argument("--seed", type=int, default=2024)
    split.add_argument("--ratios", type=float, nargs="+", help="train [valid] test shares (temporal, random)")
    split.add_argument("--valid-ratio", type=float, help="given: share of each user's train carved as valid")
    split.add_argument("--no-valid", action="store_true", help="loo: no validation item")
    split.add_argument("--user-core", type=int, default=0, help="k-core filter: minimum rows per user")
    split.add_argument("--item-core", type=int, default=0, help="k-core filter: minimum rows per item")
    split.add_argument("--name", help="file name stem (default: the dataset's name)")
    split.add_argument("--out", required=True, help="output folder")
    return parser


def _split_command(args: argparse.Namespace) -> dict[str, Any]:
    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    if args.user_core or args.item_core:
        dataset = kcore_filter(dataset, args.user_core, args.item_core)
    options: dict[str, Any] = {}
    if args.ratios:
        options["ratios"] = tuple(args.ratios)
    if args.valid_ratio is not None:
        options["valid_ratio"] = args.valid_ratio
    if args.no_valid:
        options["valid"] = False
    split = make_split(dataset, args.protocol, seed=args.seed, **options)
    return write_split(split, Path(args.out), args.name or Path(dataset.name).name)


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints JSON on success, one error line on stderr (exit 2) on bad input.

    ``info`` exits 1 (after printing its JSON) when rows do not fit the format, unless ``--allow-format-problems``.
    """
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    if args.verb != "info":
        return run_cli(lambda: _split_command(args), errors=(DataError, OSError))
    found: dict[str, Any] = {}

    def info() -> dict[str, Any]:
        found.update(dataset_info(args.dataset, args.data_dir))
        return found

    code = run_cli(info, errors=(DataError, OSError))
    problems = found.get("format_problems") or {}
    if code == 0 and problems.get("rows"):
        first = problems["examples"][0] if problems.get("examples") else {}
        print(
            f"error: {found['source']}: {problems['rows']} rows do not fit the {found['format']} format "
            f"(first: line {first.get('line')}, field {first.get('field')!r} = {first.get('value')!r}); "
            "see format_problems above, or pass --allow-format-problems",
            file=sys.stderr,
        )
        return 0 if args.allow_format_problems else 1
    return code


if __name__ == "__main__":
    sys.exit(main())
