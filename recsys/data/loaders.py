"""Readers for the interaction formats we meet: RecBole atomic files, MovieLens, LightGCN lists, tables.

Every reader takes a path, parses with pandas/numpy (no per-row Python loops on the big files), and raises
``DataError`` naming the file, the 1-based line and the field when a row is malformed. Item (user) side
information is aligned with the item (user) map: rows of ``item_features`` are dense item indices; items
that appear only in the ``.item`` file and never in an interaction are dropped (their count is logged),
so that ``n_items`` is the number of items that can be trained on and evaluated.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.io import untyped
from recsys.data.dataset import FOLD_TEST, FOLD_TRAIN, DataError, IdMap, InteractionDataset, Split

logger = logging.getLogger(__name__)

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_COLUMNS = ("movie_title", "title", "item_name", "name")
GENRE_COLUMNS = ("genre", "genres", "class", "categories", "category")
YEAR_COLUMNS = ("release_year", "year")
USER_COLUMN_NAMES = ("user_id", "userId", "user", "UserID", "uid")
ITEM_COLUMN_NAMES = ("item_id", "itemId", "item", "movieId", "MovieID", "iid", "asin")
RATING_COLUMN_NAMES = ("rating", "Rating", "score")
TIME_COLUMN_NAMES = ("timestamp", "Timestamp", "time", "unixReviewTime")
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


# -- low-level reading -----------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty (no interactions): empty dataset")
    return raw


def _check_utf8(path: Path, raw: bytes) -> None:
    """DataError naming the line of the first byte that is not UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start]
        raise DataError(f"{path}: line {line}: not valid UTF-8 (byte 0x{byte:02x}); re-save it as UTF-8") from None


def _scan_lines(raw: bytes, separator: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Per line: the number of ``separator`` bytes and whether the line is blank (vectorised)."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    ends = newlines if buf.size and buf[-1] == 10 else np.append(newlines, buf.size)
    starts = np.concatenate(([0], newlines + 1))[: ends.size]
    seps = np.flatnonzero(buf == separator[0])
    counts = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
    lengths = ends - starts
    has_cr = np.zeros(ends.size, dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = buf[ends[nonempty] - 1] == 13
    blank = (lengths - has_cr) == 0
    return counts, blank


def _read_delimited(
    path: Path,
    separator: str,
    fields: Sequence[str],
    *,
    header: bool,
    encoding: str = "utf-8",
    raw: bytes | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a headerless-or-one-header-line delimited file as strings; check every line's field count.

    Returns the frame (columns ``fields``) and the 1-based file line number of each row.
    ``separator`` "::" (MovieLens 1M) is read as ":" with empty columns in between.
    """
    raw = _read_bytes(path) if raw is None else raw
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        _check_utf8(path, raw)
    double = separator == "::"
    sep_byte = b":" if double else separator.encode()
    expected_seps = (len(fields) - 1) * (2 if double else 1)
    counts, blank = _scan_lines(raw, sep_byte)
    line_numbers = np.arange(1, counts.size + 1)
    body = np.ones(counts.size, dtype=bool)
    if header:
        body[0] = False
    body &= ~blank
    bad = np.flatnonzero(body & (counts != expected_seps))
    if bad.size:
        line = int(bad[0])
        text = raw.split(b"\n", line + 1)[line].decode(encoding, errors="replace").rstrip("\r")
        found = text.count(separator) + 1
        raise DataError(
            f"{path}: line {line + 1}: expected {len(fields)} fields ({', '.join(fields)}) separated by "
            f"{separator!r}, found {found}: {text[:120]!r} ({bad.size} malformed line(s) in all)"
        )
    rows = line_numbers[body]
    if rows.size == 0:
        raise DataError(f"{path}: no data rows (empty dataset)")
    width = expected_seps + 1
    frame = pd.read_csv(
        io.BytesIO(raw),
        sep=":" if double else separator,
        header=None,
        names=range(width),
        skiprows=1 if header else 0,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=True,
        encoding=encoding,
        engine="c",
    )
    if double:
        frame = frame.iloc[:, ::2]
    frame.columns = list(fields)
    if len(frame) != rows.size:  # only if a line holds only "\r" or the like
        raise DataError(f"{path}: read {len(frame)} rows but counted {rows.size} non-blank lines")
    return frame, rows


def _to_float(values: pd.Series, path: Path, field: str, lines: np.ndarray, allow_empty: bool = False) -> np.ndarray:
    """Column as float64; a non-numeric (or, unless ``allow_empty``, missing) entry raises DataError."""
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        bad = np.isnan(numbers) if not allow_empty else np.zeros(numbers.size, dtype=bool)
    else:
        try:
            numbers = values.astype(np.float64).to_numpy()
            bad = np.isnan(numbers) if not allow_empty else np.zeros(numbers.size, dtype=bool)
        except (ValueError, TypeError):
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            bad = np.isnan(numbers)
            if allow_empty:
                bad &= values.astype(str).str.strip().to_numpy() != ""
    where = np.flatnonzero(bad)
    if where.size:
        i = int(where[0])
        raise DataError(
            f"{path}: line {int(lines[i])}: field {field!r}: {values.iloc[i]!r} is not a number "
            f"({where.size} bad value(s) in this column)"
        )
    return numbers


def _dedupe(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None,
    source: Path | str,
    keep_duplicates: bool,
    fold: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask keeping the first of duplicate (user, item[, timestamp][, fold]) rows; logs the count."""
    keys = {"u": users, "i": items}
    if timestamps is not None:
        keys["t"] = timestamps
    if fold is not None:
        keys["f"] = fold
    duplicated = pd.DataFrame(keys).duplicated(keep="first").to_numpy()
    count = int(duplicated.sum())
    if count:
        what = "(user, item" + (", timestamp" if timestamps is not None else "") + ")"
        if keep_duplicates:
            logger.warning("%s: %d duplicate %s rows kept (keep_duplicates=True)", source, count, what)
            return np.ones(users.size, dtype=bool)
        logger.warning("%s: dropped %d duplicate %s rows (keep the first)", source, count, what)
    return ~duplicated


def build_dataset(
    name: str,
    users_raw: Any,
    items_raw: Any,
    ratings: np.ndarray | None,
    timestamps: np.ndarray | None,
    source: Path | str,
    *,
    keep_duplicates: bool = False,
    user_order: Sequence[str] | None = None,
    item_order: Sequence[str] | None = None,
    fold: np.ndarray | None = None,
) -> InteractionDataset:
    """Factorise raw ids into dense maps (first appearance, or the given full orders) and drop duplicates."""
    users_raw = pd.Series(np.asarray(users_raw, dtype=object))
    items_raw = pd.Series(np.asarray(items_raw, dtype=object))
    if users_raw.size == 0:
        raise DataError(f"{source}: no interactions (empty dataset)")
    if user_order is None:
        users, user_uniques = pd.factorize(users_raw)
        user_map = IdMap(list(user_uniques), kind="user")
    else:
        user_map = IdMap(user_order, kind="user")
        users = user_map.index_array(users_raw.to_numpy())
    if item_order is None:
        items, item_uniques = pd.factorize(items_raw)
        item_map = IdMap(list(item_uniques), kind="item")
    else:
        item_map = IdMap(item_order, kind="item")
        items = item_map.index_array(items_raw.to_numpy())
    keep = _dedupe(users, items, timestamps, source, keep_duplicates, fold)
    report = {"rows_read": int(users.size), "duplicates_dropped": int(users.size - keep.sum())}
    dataset = InteractionDataset(
        name=name,
        users=users,
        items=items,
        ratings=ratings,
        timestamps=timestamps,
        user_map=user_map,
        item_map=item_map,
        source=str(source),
        fold=fold,
    )
    dataset = dataset if keep.all() else dataset.subset(keep)
    dataset.read_report = {**report, "interactions": int(dataset.users.size)}
    return dataset


# -- side information ------------------------------------------------------------------------------
def _align_features(frame: pd.DataFrame, id_column: str, id_map: IdMap, path: Path, lines: np.ndarray) -> pd.DataFrame:
    """Index a features table by the map's dense index (rows = 0..len(map)-1); log dropped/missing ids."""
    frame = frame.assign(_line=lines)
    duplicated = frame[id_column].duplicated(keep="first")
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        logger.warning(
            "%s: %d duplicate %s rows ignored (first at line %d)",
            path,
            int(duplicated.sum()),
            id_column,
            int(lines[first]),
        )
        frame = frame[~duplicated.to_numpy()]
    frame = frame.set_index(id_column)
    known = frame.index.isin(id_map.raw)
    if (~known).any():
        logger.info(
            "%s: %d of %d rows describe %ss with no interaction; dropped",
            path,
            int((~known).sum()),
            len(frame),
            id_map.kind,
        )
    aligned = frame.reindex(pd.Index(id_map.raw, dtype=object))
    missing = int(aligned["_line"].isna().sum())
    if missing:
        logger.warning(
            "%s: %d %ss with interactions have no row here (features left empty)", path, missing, id_map.kind
        )
    aligned = aligned.drop(columns="_line")
    aligned.index = pd.RangeIndex(len(id_map))
    aligned.index.name = f"{id_map.kind}_index"
    aligned.insert(0, id_column, id_map.raw)
    return aligned


def make_item_text(features: pd.DataFrame, item_map: IdMap) -> list[str] | None:
    """Item descriptions from a title-like column, the release year and genres/classes where present."""
    title_col = next((c for c in TITLE_COLUMNS if c in features.columns), None)
    genre_col = next((c for c in GENRE_COLUMNS if c in features.columns), None)
    year_col = next((c for c in YEAR_COLUMNS if c in features.columns), None)
    if title_col is None and genre_col is None:
        return None

    def clean(column: str | None) -> list[str]:
        if column is None:
            return [""] * len(features)
        values = features[column]
        if pd.api.types.is_numeric_dtype(values):
            return ["" if pd.isna(v) else (f"{v:.0f}" if float(v).is_integer() else str(v)) for v in values]
        return ["" if pd.isna(v) else str(v).strip() for v in values]

    titles, genres, years = clean(title_col), clean(genre_col), clean(year_col)
    texts = []
    for raw, title, genre, year in zip(item_map.raw, titles, genres, years, strict=True):
        text = title or str(raw)
        if year and f"({year})" not in text:
            text = f"{text} ({year})"
        if genre:
            text = f"{text}; genres: {genre}"
        texts.append(text)
    return texts


# -- RecBole atomic files --------------------------------------------------------------------------
def _atomic_header(path: Path, raw: bytes) -> list[tuple[str, str]]:
    first = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    fields = []
    for token in first.split("\t"):
        name, _, kind = token.partition(":")
        if not name or kind not in ATOMIC_TYPES:
            raise DataError(
                f"{path}: line 1: field {token!r}: RecBole atomic headers are name:type with type one of "
                f"{', '.join(ATOMIC_TYPES)}"
            )
        fields.append((name, kind))
    return fields


def _read_atomic(path: Path) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """Read one atomic file as strings; float columns converted (a bad number names line and field)."""
    raw = _read_bytes(path)
    header = _atomic_header(path, raw)
    names = [n for n, _ in header]
    frame, lines = _read_delimited(path, "\t", names, header=True, raw=raw)
    kinds = dict(header)
    return frame, lines, kinds


def _typed_features(frame: pd.DataFrame, kinds: dict[str, str], path: Path, lines: np.ndarray, id_column: str):
    out = frame.copy()
    for column, kind in kinds.items():
        if column != id_column and kind == "float":
            out[column] = _to_float(frame[column], path, column, lines, allow_empty=True)
    return out


def find_atomic_file(path: Path, name: str | None = None) -> tuple[Path, str]:
    """The ``.inter`` file for a folder or file path, and the dataset name (the file's stem)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".inter":
            raise DataError(f"{path}: not a RecBole .inter file")
        return path, path.name[: -len(".inter")]
    if name and (path / f"{name}.inter").is_file():
        return path / f"{name}.inter", name
    if (path / f"{path.name}.inter").is_file():
        return path / f"{path.name}.inter", path.name
    plain = sorted(p for p in path.glob("*.inter") if not re.search(r"\.(train|valid|test)\.inter$", p.name))
    if len(plain) == 1:
        return plain[0], plain[0].stem
    if not plain:
        raise DataError(f"{path}: no .inter file found")
    raise DataError(f"{path}: several .inter files ({', '.join(p.name for p in plain)}); name the one to load")


def load_atomic(path: str | Path, name: str | None = None, keep_duplicates: bool = False) -> InteractionDataset:
    """Load RecBole atomic files ``<dir>/<name>.inter`` plus ``.item`` / ``.user`` when present."""
    inter_path, stem = find_atomic_file(Path(path), name)
    frame, lines, _ = _read_atomic(inter_path)
    for required in ("user_id", "item_id"):
        if required not in frame.columns:
            raise DataError(
                f"{inter_path}: line 1: field {required!r} missing; the header has {', '.join(frame.columns)}"
            )
    ratings = _to_float(frame["rating"], inter_path, "rating", lines) if "rating" in frame else None
    timestamps = _to_float(frame["timestamp"], inter_path, "timestamp", lines) if "timestamp" in frame else None
    ignored = [c for c in frame.columns if c not in ("user_id", "item_id", "rating", "timestamp")]
    if ignored:
        logger.info("%s: columns not used as interactions: %s", inter_path, ", ".join(ignored))
    dataset = build_dataset(
        name or stem,
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        None if ratings is None else ratings.astype(np.float32),
        timestamps,
        inter_path,
        keep_duplicates=keep_duplicates,
    )
    folder = inter_path.parent
    item_path = folder / f"{stem}.item"
    if item_path.is_file():
        item_frame, item_lines, item_kinds = _read_atomic(item_path)
        if "item_id" not in item_frame.columns:
            raise DataError(f"{item_path}: line 1: field 'item_id' missing; the header has {list(item_frame.columns)}")
        typed = _typed_features(item_frame, item_kinds, item_path, item_lines, "item_id")
        dataset.item_features = _align_features(typed, "item_id", dataset.item_map, item_path, item_lines)
        dataset.item_text = make_item_text(dataset.item_features, dataset.item_map)
    user_path = folder / f"{stem}.user"
    if user_path.is_file():
        user_frame, user_lines, user_kinds = _read_atomic(user_path)
        if "user_id" not in user_frame.columns:
            raise DataError(f"{user_path}: line 1: field 'user_id' missing; the header has {list(user_frame.columns)}")
        typed = _typed_features(user_frame, user_kinds, user_path, user_lines, "user_id")
        dataset.user_features = _align_features(typed, "user_id", dataset.user_map, user_path, user_lines)
    return dataset


SEQUENCE_FIELDS = ("item_id_list", "item_id")  # RecBole / UniSRec sequential benchmark files: history, target


def load_atomic_benchmark(path: str | Path, name: str | None = None) -> InteractionDataset:
    """Load ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter`` (RecBole benchmark files) with folds.

    Sequential benchmark files (RecBole, UniSRec) hold ``user_id:token item_id_list:token_seq item_id:token``:
    each row is a history and its next item. Each user's history is expanded back into interactions (the items
    only ever seen in histories, such as every user's first item, go to the train fold) and ``<name>.text``
    (``item_id:token text:token_seq``) attaches item titles.
    """
    folder = Path(path)
    if name is None:
        trains = sorted(folder.glob("*.train.inter"))
        if len(trains) != 1:
            raise DataError(f"{folder}: expected one <name>.train.inter file, found {len(trains)}")
        name = trains[0].name[: -len(".train.inter")]
    parts = []
    for fold, part in enumerate(("train", "valid", "test")):
        part_path = folder / f"{name}.{part}.inter"
        if not part_path.is_file():
            if part == "valid":
                continue
            raise DataError(f"{part_path}: file not found (benchmark files need train and test)")
        frame, lines, kinds = _read_atomic(part_path)
        for required in ("user_id", "item_id"):
            if required not in frame.columns:
                raise DataError(
                    f"{part_path}: line 1: field {required!r} missing; the header has {list(frame.columns)}"
                )
        frame = frame.assign(
            rating=_to_float(frame["rating"], part_path, "rating", lines) if "rating" in frame else np.nan,
            timestamp=_to_float(frame["timestamp"], part_path, "timestamp", lines) if "timestamp" in frame else np.nan,
            fold=fold,
            line=lines,
            path=str(part_path),
        )
        if "item_id_list" in frame.columns:
            if kinds["item_id_list"] != "token_seq":
                raise DataError(f"{part_path}: line 1: field 'item_id_list' must be token_seq, not its type")
            parts.append(frame[["user_id", "item_id_list", "item_id", "fold", "line", "path"]])
        else:
            parts.append(frame[["user_id", "item_id", "rating", "timestamp", "fold"]])
    if any("item_id_list" in p.columns for p in parts):
        if not all("item_id_list" in p.columns for p in parts):
            raise DataError(f"{folder}: some {name}.*.inter files have item_id_list and some do not")
        dataset = _expand_histories(name, pd.concat(parts, ignore_index=True), folder)
    else:
        table = pd.concat(parts, ignore_index=True)
        ratings = table["rating"].to_numpy(np.float32)
        timestamps = table["timestamp"].to_numpy(np.float64)
        dataset = build_dataset(
            name,
            table["user_id"].to_numpy(),
            table["item_id"].to_numpy(),
            None if np.isnan(ratings).any() else ratings,
            None if np.isnan(timestamps).any() else timestamps,
            folder,
            fold=table["fold"].to_numpy(np.int8),
        )
    text_path = folder / f"{name}.text"
    if text_path.is_file():
        dataset.item_text = read_item_text(text_path, dataset.item_map)
    else:
        logger.info("%s: no %s beside the .inter files: items have no titles", folder, text_path.name)
    return dataset


def _expand_histories(name: str, table: pd.DataFrame, folder: Path) -> InteractionDataset:
    """Rebuild each user's item sequence from (history, next item) rows, in file order (train, valid, test).

    Every row must continue its user's sequence: its history is the end of what the user's earlier rows gave
    (histories may be cut to a maximum length). Items known only from a history are train interactions.
    """
    sequences: dict[str, list[str]] = {}
    folds: dict[str, list[int]] = {}
    from_history = 0
    for user, history_text, item, fold, line, path in table.itertuples(index=False, name=None):
        history = history_text.split()
        seq = sequences.get(user)
        if seq is None:
            sequences[user] = [*history, item]
            folds[user] = [0] * len(history) + [int(fold)]
            from_history += len(history)
            continue
        if history and seq[-len(history) :] != history:
            raise DataError(
                f"{path}: line {line}: user {user!r}: field 'item_id_list' does not continue the user's earlier "
                f"rows (expected the history to end with {' '.join(seq[-3:])!r}); rows must list each user's "
                "next items in order"
            )
        seq.append(item)
        folds[user].append(int(fold))
    users = [u for u, seq in sequences.items() for _ in seq]
    items = [i for seq in sequences.values() for i in seq]
    fold = np.fromiter((f for fs in folds.values() for f in fs), dtype=np.int8, count=len(items))
    # a repeated item is a repeated interaction in a sequence, so duplicates are kept (as for sequence lines)
    dataset = build_dataset(name, users, items, None, None, folder, keep_duplicates=True, fold=fold)
    dataset.read_report.update(rows_read=len(table), interactions_from_histories=from_history)
    logger.info(
        "%s: %d sequence rows -> %d interactions of %d users (%d only seen in histories, put in train)",
        folder, len(table), len(items), len(sequences), from_history,
    )  # fmt: skip
    return dataset


def read_item_text(path: Path, item_map: IdMap) -> list[str]:
    """Item titles from a tab-separated file with an id column and a text column, typed (RecBole/UniSRec
    ``item_id:token text:token_seq``) or plain (``id text``); items without a row get "" (logged)."""
    raw = _read_bytes(path)
    first = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r").split("\t")
    columns = [untyped(c) for c in first]
    id_column = next((c for c in ("item_id", "id") if c in columns), None)
    if id_column is None or "text" not in columns:
        raise DataError(
            f"{path}: line 1: expected an id column (item_id or id) and a text column, the header has {first}"
        )
    frame, _ = _read_delimited(path, "\t", columns, header=True, raw=raw)
    by_id = dict(zip(frame[id_column], frame["text"], strict=True))
    titles = [by_id.get(raw_id, "") for raw_id in item_map.raw]
    missing = sum(1 for t in titles if not t)
    if missing:
        logger.warning("%s: %d of %d items have no text", path, missing, len(titles))
    return titles


RECHORUS_PARTS = (("train.csv", 0), ("dev.csv", 1), ("test.csv", 2))


def load_rechorus(path: str | Path, name: str | None = None) -> InteractionDataset:
    """ReChorus ``train.csv`` / ``dev.csv`` / ``test.csv`` (tab-separated ``user_id item_id time``) as one
    dataset whose folds give the "given" split (dev = valid). The ``neg_items`` column of dev/test (ReChorus'
    sampled candidates) is not used: evaluation here ranks the full catalogue. Item text, where the folder
    has ``<Name>.item2index`` (raw id, ReChorus index) and ``<Name>.text`` (raw id, text), is attached."""
    folder = Path(path)
    frames = []
    for file_name, fold in RECHORUS_PARTS:
        part_path = folder / file_name
        if not part_path.is_file():
            raise DataError(f"{part_path}: file not found (ReChorus folders hold train.csv, dev.csv and test.csv)")
        raw = _read_bytes(part_path)
        try:
            frame = pd.read_csv(io.BytesIO(raw), sep="\t", dtype=str, keep_default_na=False, engine="c")
        except pd.errors.ParserError as exc:
            raise DataError(f"{part_path}: {str(exc).replace('Error tokenizing data. C error: ', '')}") from None
        for required in ("user_id", "item_id"):
            if required not in frame.columns:
                raise DataError(
                    f"{part_path}: line 1: field {required!r} missing; the header has {list(frame.columns)}"
                )
        lines = np.arange(2, len(frame) + 2)
        for column in ("user_id", "item_id"):
            empty = np.flatnonzero(frame[column].str.strip().to_numpy() == "")
            if empty.size:
                raise DataError(f"{part_path}: line {int(lines[empty[0]])}: field {column!r} is empty")
        times = _to_float(frame["time"], part_path, "time", lines) if "time" in frame else np.full(len(frame), np.nan)
        if "neg_items" in frame.columns:
            logger.info("%s: neg_items (sampled candidates) not used; evaluation ranks all items", part_path)
        frames.append(
            pd.DataFrame({"user_id": frame["user_id"], "item_id": frame["item_id"], "t": times, "fold": fold})
        )
    table = pd.concat(frames, ignore_index=True)
    timestamps = table["t"].to_numpy(np.float64)
    dataset = build_dataset(
        name or folder.name,
        table["user_id"].to_numpy(),
        table["item_id"].to_numpy(),
        None,
        None if np.isnan(timestamps).any() else timestamps,
        folder,
        fold=table["fold"].to_numpy(np.int8),
    )
    dataset.item_text = _rechorus_item_text(folder, dataset.item_map)
    return dataset


def _rechorus_item_text(folder: Path, item_map: IdMap) -> list[str] | None:
    """Titles via ``*.item2index`` (raw id -> ReChorus index) and ``*.text`` (raw id -> text), when present."""
    index_files, text_files = sorted(folder.glob("*.item2index")), sorted(folder.glob("*.text"))
    if len(index_files) != 1 or len(text_files) != 1:
        return None
    index = pd.read_csv(index_files[0], sep="\t", header=None, names=["raw", "index"], dtype=str, keep_default_na=False)
    text = pd.read_csv(text_files[0], sep="\t", dtype=str, keep_default_na=False, quoting=3)
    text.columns = ["id" if c == "item_id" else c for c in (untyped(c) for c in text.columns)]
    if not {"id", "text"} <= set(text.columns):
        raise DataError(
            f"{text_files[0]}: line 1: expected an id column (id or item_id, typed or not) and a text column, "
            f"the header has {list(text.columns)}"
        )
    by_raw = dict(zip(text["id"], text["text"], strict=True))
    by_index = {i: by_raw.get(r, "") for r, i in zip(index["raw"], index["index"], strict=True)}
    titles = [by_index.get(str(item_map.to_raw(i)), "") for i in range(len(item_map))]
    missing = sum(1 for t in titles if not t)
    if missing:
        logger.warning("%s: %d of %d items have no text", text_files[0], missing, len(titles))
    return titles


# -- MovieLens in the original GroupLens layouts ----------------------------------------------------
def load_movielens_100k(path: str | Path, keep_duplicates: bool = False) -> InteractionDataset:
    """GroupLens ml-100k: ``u.data`` (tab: user item rating timestamp), ``u.item``/``u.user`` (``|``, latin-1)."""
    folder = Path(path)
    data_path = folder / "u.data" if folder.is_dir() else folder
    folder = data_path.parent
    fields = ("user_id", "item_id", "rating", "timestamp")
    frame, lines = _read_delimited(data_path, "\t", fields, header=False, encoding="latin-1")
    dataset = build_dataset(
        "ml-100k",
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        _to_float(frame["rating"], data_path, "rating", lines).astype(np.float32),
        _to_float(frame["timestamp"], data_path, "timestamp", lines),
        data_path,
        keep_duplicates=keep_duplicates,
    )
    item_path = folder / "u.item"
    if item_path.is_file():
        genres = ML100K_GENRES
        genre_path = folder / "u.genre"
        if genre_path.is_file():
            listed = [line.split("|")[0] for line in genre_path.read_text(encoding="latin-1").splitlines() if line]
            genres = tuple(listed) if len(listed) == len(ML100K_GENRES) else genres
        names = ("item_id", "movie_title", "release_date", "video_release_date", "url", *genres)
        items, item_lines = _read_delimited(item_path, "|", names, header=False, encoding="latin-1")
        flags = items[list(genres)].to_numpy() == "1"
        genre_names = np.asarray(genres, dtype=object)
        items["genre"] = [" ".join(genre_names[row]) for row in flags]
        title_year = items["movie_title"].str.extract(r"^(.*?)\s*\((\d{4})\)\s*$")
        items["release_year"] = pd.to_numeric(title_year[1], errors="coerce")
        items = items[["item_id", "movie_title", "release_year", "release_date", "url", "genre"]]
        dataset.item_features = _align_features(items, "item_id", dataset.item_map, item_path, item_lines)
        dataset.item_text = make_item_text(dataset.item_features, dataset.item_map)
    user_path = folder / "u.user"
    if user_path.is_file():
        names = ("user_id", "age", "gender", "occupation", "zip_code")
        users, user_lines = _read_delimited(user_path, "|", names, header=False, encoding="latin-1")
        users["age"] = _to_float(users["age"], user_path, "age", user_lines, allow_empty=True)
        dataset.user_features = _align_features(users, "user_id", dataset.user_map, user_path, user_lines)
    return dataset


def _split_double_colon(path: Path, fields: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Small ``::`` files whose text fields may contain ':' (movies.dat titles): split in Python."""
    rows, lines = [], []
    for number, line in enumerate(_read_bytes(path).decode("latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != len(fields):
            raise DataError(
                f"{path}: line {number}: expected {len(fields)} fields ({', '.join(fields)}) separated by '::', "
                f"found {len(parts)}"
            )
        rows.append(parts)
        lines.append(number)
    return pd.DataFrame(rows, columns=list(fields)), np.asarray(lines)


def load_movielens_1m(path: str | Path, keep_duplicates: bool = False) -> InteractionDataset:
    """GroupLens ml-1m: ``ratings.dat`` (``::``), ``movies.dat``, ``users.dat`` (latin-1)."""
    folder = Path(path)
    data_path = folder / "ratings.dat" if folder.is_dir() else folder
    folder = data_path.parent
    fields = ("user_id", "item_id", "rating", "timestamp")
    frame, lines = _read_delimited(data_path, "::", fields, header=False, encoding="latin-1")
    dataset = build_dataset(
        "ml-1m",
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        _to_float(frame["rating"], data_path, "rating", lines).astype(np.float32),
        _to_float(frame["timestamp"], data_path, "timestamp", lines),
        data_path,
        keep_duplicates=keep_duplicates,
    )
    movies_path = folder / "movies.dat"
    if movies_path.is_file():
        movies, movie_lines = _split_double_colon(movies_path, ("item_id", "movie_title", "genre"))
        movies["genre"] = movies["genre"].str.replace("|", " ", regex=False)
        year = movies["movie_title"].str.extract(r"\((\d{4})\)\s*$")[0]
        movies["release_year"] = pd.to_numeric(year, errors="coerce")
        dataset.item_features = _align_features(movies, "item_id", dataset.item_map, movies_path, movie_lines)
        dataset.item_text = make_item_text(dataset.item_features, dataset.item_map)
    users_path = folder / "users.dat"
    if users_path.is_file():
        users, user_lines = _split_double_colon(users_path, ("user_id", "gender", "age", "occupation", "zip_code"))
        for column in ("age", "occupation"):
            users[column] = _to_float(users[column], users_path, column, user_lines, allow_empty=True)
        dataset.user_features = _align_features(users, "user_id", dataset.user_map, users_path, user_lines)
    return dataset


def load_movielens_csv(path: str | Path, keep_duplicates: bool = False, name: str | None = None) -> InteractionDataset:
    """GroupLens ml-20m / ml-25m / ml-32m / ml-latest: ``ratings.csv`` (``userId,movieId,rating,timestamp``,
    with a header) and, when present, ``movies.csv`` (``movieId,title,genres``).

    Read with numeric dtypes and factorised as integers, so 32M rows take ~1 GB rather than the string path's
    several; a malformed file falls back to ``load_table``, whose errors name the line and field.
    """
    folder = Path(path)
    data_path = folder / "ratings.csv" if folder.is_dir() else folder
    folder = data_path.parent
    if not data_path.is_file():
        raise DataError(f"{data_path}: file not found")
    columns = {"userId": np.int64, "movieId": np.int64, "rating": np.float32, "timestamp": np.int64}
    try:
        frame = pd.read_csv(data_path, usecols=list(columns), dtype=columns, engine="c")
    except (ValueError, pd.errors.ParserError):  # a bad row or header: re-read as text for a precise message
        load_table(data_path, "userId", "movieId", "rating", "timestamp", sep=",")
        raise DataError(f"{data_path}: not a MovieLens ratings.csv (userId,movieId,rating,timestamp)") from None
    if len(frame) == 0:
        raise DataError(f"{data_path}: no data rows (empty dataset)")
    users, user_uniques = pd.factorize(frame["userId"].to_numpy())
    items, item_uniques = pd.factorize(frame["movieId"].to_numpy())
    timestamps = frame["timestamp"].to_numpy(np.float64)
    keep = _dedupe(users, items, timestamps, data_path, keep_duplicates, None)
    dataset = InteractionDataset(
        name=name or (folder.name if folder.name.startswith("ml-") else "movielens"),
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        ratings=frame["rating"].to_numpy(np.float32),
        timestamps=timestamps,
        user_map=IdMap([str(u) for u in user_uniques], kind="user"),
        item_map=IdMap([str(i) for i in item_uniques], kind="item"),
        source=str(data_path),
    )
    if not keep.all():
        dataset = dataset.subset(keep)
    movies_path = folder / "movies.csv"
    if movies_path.is_file():
        movies = pd.read_csv(movies_path, dtype=str, keep_default_na=False, engine="c")
        if {"movieId", "title"} <= set(movies.columns):
            movies = movies.rename(columns={"movieId": "item_id", "title": "movie_title", "genres": "genre"})
            if "genre" in movies:
                movies["genre"] = movies["genre"].str.replace("|", " ", regex=False)
            lines = np.arange(2, len(movies) + 2)
            dataset.item_features = _align_features(movies, "item_id", dataset.item_map, movies_path, lines)
            dataset.item_text = make_item_text(dataset.item_features, dataset.item_map)
    return dataset


# -- LightGCN-style adjacency lists ---------------------------------------------------------------
def _read_adjacency_lists(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse ``user item item ...`` lines; returns (users, items, largest user id). Users may list no item."""
    text = _read_bytes(path).decode("utf-8", errors="replace")
    lines = text.splitlines()
    tokens = [line.split() for line in lines]
    counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    flat = list(itertools.chain.from_iterable(tokens))
    try:
        values = np.array(flat, dtype=np.int64)
    except (ValueError, OverflowError):
        for number, line_tokens in enumerate(tokens, start=1):
            for position, token in enumerate(line_tokens):
                try:
                    int(token)
                except ValueError:
                    field = "user" if position == 0 else f"item (position {position})"
                    raise DataError(f"{path}: line {number}: field {field}: {token!r} is not an integer id") from None
        raise DataError(f"{path}: unreadable ids") from None
    line_of_token = np.repeat(np.arange(1, len(tokens) + 1), counts)
    negative = np.flatnonzero(values < 0)
    if negative.size:
        k = int(negative[0])
        number = int(line_of_token[k])
        start = int(np.searchsorted(np.cumsum(counts), k, side="right"))
        position = k - int(counts[:start].sum())
        field = "user" if position == 0 else f"item (position {position})"
        raise DataError(f"{path}: line {number}: field {field}: negative id {int(values[k])}")
    nonempty = counts > 0
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
    user_per_line = values[first]
    is_user_token = np.zeros(values.size, dtype=bool)
    is_user_token[first] = True
    users = np.repeat(user_per_line, counts[nonempty] - 1)
    items = values[~is_user_token]
    if user_per_line.size == 0:
        raise DataError(f"{path}: no users (empty dataset)")
    return users, items, int(user_per_line.max())


def _read_id_list(path: Path) -> pd.Series | None:
    """LightGCN ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id``): org ids indexed by remap id."""
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep=" ", dtype=str, engine="c")
    if table.shape[1] < 2:
        return None
    return pd.Series(table.iloc[:, 0].to_numpy(), index=table.iloc[:, 1].astype(np.int64).to_numpy())


def load_lightgcn(
    path: str | Path,
    valid_ratio: float = 0.0,
    seed: int | None = 2024,
    keep_duplicates: bool = False,
    name: str | None = None,
) -> tuple[InteractionDataset, Split]:
    """LightGCN ``train.txt``/``test.txt`` (0-based ids): the dataset (ids = indices) and its given split."""
    from recsys.data.splits import given_split

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    train_path, test_path = folder / "train.txt", folder / "test.txt"
    train_users, train_items, max_train_user = _read_adjacency_lists(train_path)
    if test_path.is_file():
        test_users, test_items, max_test_user = _read_adjacency_lists(test_path)
    else:
        logger.warning("%s: no test.txt beside train.txt; the given split has an empty test part", folder)
        test_users, test_items, max_test_user = np.zeros(0, np.int64), np.zeros(0, np.int64), -1
    users = np.concatenate([train_users, test_users])
    items = np.concatenate([train_items, test_items])
    if items.size == 0:
        raise DataError(f"{train_path}: no interactions (empty dataset)")
    fold = np.concatenate([np.full(train_users.size, FOLD_TRAIN), np.full(test_users.size, FOLD_TEST)]).astype(np.int8)
    n_users = max(max_train_user, max_test_user, int(users.max(initial=-1))) + 1
    n_items = int(items.max()) + 1
    keep = _dedupe(users, items, None, folder, keep_duplicates, fold)
    dataset = InteractionDataset(
        name=name or folder.name,
        users=users,
        items=items,
        ratings=None,
        timestamps=None,
        user_map=IdMap([str(i) for i in range(n_users)], kind="user"),
        item_map=IdMap([str(i) for i in range(n_items)], kind="item"),
        source=str(folder),
        fold=fold,
    )
    if not keep.all():
        dataset = dataset.subset(keep)
    overlap = pd.MultiIndex.from_arrays([test_users, test_items]).isin(
        pd.MultiIndex.from_arrays([train_users, train_items])
    )
    if overlap.any():
        logger.warning("%s: %d test interactions also appear in train.txt (kept)", folder, int(overlap.sum()))
    for list_name, id_map, attribute in (
        ("user_list.txt", dataset.user_map, "user_features"),
        ("item_list.txt", dataset.item_map, "item_features"),
    ):
        org = _read_id_list(folder / list_name)
        if org is not None:
            frame = pd.DataFrame({"org_id": org.reindex(np.arange(len(id_map))).to_numpy()})
            frame.index.name = f"{id_map.kind}_index"
            setattr(dataset, attribute, frame)
    return dataset, given_split(dataset, valid_ratio=valid_ratio, seed=seed)


def load_lightgcn_lastfm(
    path: str | Path, valid_ratio: float = 0.0, seed: int | None = 2024, keep_duplicates: bool = False
) -> tuple[InteractionDataset, Split]:
    """LightGCN's LastFM: ``data1.txt`` / ``test1.txt`` (tab: user artist count, 1-based); ids sorted numerically."""
    from recsys.data.splits import given_split

    folder = Path(path)
    fields = ("user_id", "item_id", "count")
    frames = []
    for fold, file_name in ((FOLD_TRAIN, "data1.txt"), (FOLD_TEST, "test1.txt")):
        file_path = folder / file_name
        frame, lines = _read_delimited(file_path, "\t", fields, header=False)
        for column in fields:
            values = _to_float(frame[column], file_path, column, lines)
            if column != "count" and (values < 0).any():
                line = int(lines[np.flatnonzero(values < 0)[0]])
                raise DataError(f"{file_path}: line {line}: field {column!r}: negative id")
            frame[column] = values
        frames.append(frame.assign(fold=fold))
    table = pd.concat(frames, ignore_index=True)
    user_order = [str(int(u)) for u in np.unique(table["user_id"].to_numpy())]
    item_order = [str(int(i)) for i in np.unique(table["item_id"].to_numpy())]
    dataset = build_dataset(
        "lastfm",
        table["user_id"].astype(np.int64).astype(str).to_numpy(),
        table["item_id"].astype(np.int64).astype(str).to_numpy(),
        table["count"].to_numpy(np.float32),
        None,
        folder,
        keep_duplicates=keep_duplicates,
        user_order=user_order,
        item_order=item_order,
        fold=table["fold"].to_numpy(np.int8),
    )
    return dataset, given_split(dataset, valid_ratio=valid_ratio, seed=seed)


# -- plain tables ----------------------------------------------------------------------------------
def _times_to_seconds(values: pd.Series, path: Path, field: str, lines: np.ndarray) -> np.ndarray:
    """Numbers as they are; date/time strings as Unix seconds (UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
        return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    numbers = pd.to_numeric(values, errors="coerce")
    if not numbers.isna().any():
        return numbers.to_numpy(np.float64)
    stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(stamps.isna().to_numpy() & numbers.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: line {int(lines[i])}: field {field!r}: {values.iloc[i]!r} is neither a number nor a date"
        )
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return numbers.fillna(seconds).to_numpy(np.float64)


def load_table(
    path: str | Path,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    sep: str | None = None,
    name: str | None = None,
    keep_duplicates: bool = False,
    guess_columns: bool = True,
) -> InteractionDataset:
    """CSV / TSV / Parquet with a header row: interactions from the named columns.

    A column left as None is guessed from common names (user_id/userId/user, item_id/movieId/item/asin,
    rating, timestamp/time) when ``guess_columns``; user and item columns must exist either way.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        lines = np.arange(1, len(frame) + 1)  # row numbers (Parquet has no lines)
    else:
        raw = _read_bytes(path)
        if sep is None:
            first = raw.split(b"\n", 1)[0]
            sep = "\t" if (path.suffix.lower() in (".tsv", ".tab") or b"\t" in first) else ","
        try:
            frame = pd.read_csv(
                io.BytesIO(raw), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False, engine="c"
            )
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: {str(exc).replace('Error tokenizing data. C error: ', '')}") from None
        blank = (frame == "").all(axis=1).to_numpy()
        lines = np.arange(2, len(frame) + 2)[~blank]
        frame = frame[~blank].reset_index(drop=True)
    frame.columns = [untyped(str(c)) for c in frame.columns]  # typed headers (user_id:token) read as plain
    columns = [str(c) for c in frame.columns]
    if guess_columns:
        user_col = user_col or next((c for c in USER_COLUMN_NAMES if c in columns), None)
        item_col = item_col or next((c for c in ITEM_COLUMN_NAMES if c in columns), None)
        rating_col = rating_col or next((c for c in RATING_COLUMN_NAMES if c in columns), None)
        time_col = time_col or next((c for c in TIME_COLUMN_NAMES if c in columns), None)
    if user_col is None or item_col is None:
        raise DataError(
            f"{path}: line 1: no {'user' if user_col is None else 'item'} column recognised among the file's "
            f"columns {', '.join(columns)}; name it with user_col=/item_col="
        )
    wanted = {"user_col": user_col, "item_col": item_col, "rating_col": rating_col, "time_col": time_col}
    for option, column in wanted.items():
        if column is not None and column not in frame.columns:
            raise DataError(
                f"{path}: line 1: field {column!r} ({option}) not found; the file's columns are "
                f"{', '.join(map(str, frame.columns))}"
            )
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows (empty dataset)")
    ratings = None
    if rating_col is not None:
        ratings = _to_float(frame[rating_col], path, rating_col, lines).astype(np.float32)
    timestamps = _times_to_seconds(frame[time_col], path, time_col, lines) if time_col is not None else None
    users = frame[user_col].astype(str).str.strip().to_numpy()
    items = frame[item_col].astype(str).str.strip().to_numpy()
    for field, values in ((user_col, users), (item_col, items)):
        empty = np.flatnonzero(values == "")
        if empty.size:
            raise DataError(f"{path}: line {int(lines[empty[0]])}: field {field!r}: empty id")
    return build_dataset(name or path.stem, users, items, ratings, timestamps, path, keep_duplicates=keep_duplicates)


# -- implicit sequences, one line per user (S3-Rec) or per event (SASRec) --------------------------------
def load_sequence_lines(path: str | Path, name: str | None = None, keep_duplicates: bool = True) -> InteractionDataset:
    """Time-ordered implicit sequences: lines ``user item [item ...]`` (space separated integer ids).

    Reads the S3-Rec files (``Beauty.txt``, ``Sports_and_Outdoors.txt``, any other S3-Rec category: one line
    per user, items oldest first) and the SASRec files (``Video.txt``: one ``user item`` line per event,
    grouped by user in time order) alike. These files carry no timestamps: ``timestamps`` is None, the row
    order is the time order (leave-one-out then splits by order), and sequence models see every gap as one
    step. Repeated (user, item) events are kept by default: in a sequence they are events, not duplicates.
    """
    path = Path(path)
    users, items, _ = _read_adjacency_lists(path)
    if users.size == 0:
        raise DataError(f"{path}: no interactions (every line lists a user without items)")
    return build_dataset(
        name or path.stem.lower(),
        users.astype(str),
        items.astype(str),
        None,
        None,
        path,
        keep_duplicates=keep_duplicates,
    )
