"""Yes/no preference data in CoLLM's protocol: readers for CoLLM's ML-1M (TSV) and Amazon-Book files, and an
Amazon Office set built from ReChorus files with sampled negatives; codebook facets for semantic user profiles.

Every set is a :class:`YesNoData`: ``train``/``valid``/``test`` rows of (user, candidate item, label, earlier
items, warm flag), a title per item id and, optionally, the facets (genres, categories) of each item.
"""

from __future__ import annotations

import ast
import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mllm.backbones import MllmError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
COLLM_COLUMNS = ("uid", "iid", "label", "timestamp", "history", "not_cold")


class SailRecDataError(MllmError, ValueError):
    """A data file is missing or malformed; the message names the file, line and field."""


@dataclass
class YesNoRows:
    """Rows of one split: user, candidate item, 0/1 label, earlier items (oldest first), warm flag."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    histories: list[np.ndarray]
    warm: np.ndarray
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.float32)
        self.warm = np.asarray(self.warm, dtype=bool)
        n = len(self.users)
        if not (len(self.items) == len(self.labels) == len(self.histories) == len(self.warm) == n):
            raise SailRecDataError("YesNoRows: users, items, labels, histories and warm differ in length")

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, index: np.ndarray) -> YesNoRows:
        """The rows at ``index`` (an integer array), in that order."""
        index = np.asarray(index, dtype=np.int64)
        return YesNoRows(
            self.users[index],
            self.items[index],
            self.labels[index],
            [self.histories[i] for i in index],
            self.warm[index],
            None if self.timestamps is None else self.timestamps[index],
        )

    def sample(self, n: int, seed: int) -> YesNoRows:
        """A fixed random subsample of ``n`` rows (all rows when ``n`` <= 0 or >= len), drawn with ``seed``."""
        if n <= 0 or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=n, replace=False)))


@dataclass
class YesNoData:
    """A yes/no preference data set: three splits, a title per item id (index 0 = padding), item facets."""

    name: str
    train: YesNoRows
    valid: YesNoRows
    test: YesNoRows
    titles: list[str]
    item_facets: list[list[str]] | None = None
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.titles)

    @property
    def n_users(self) -> int:
        return int(max(int(part.users.max(initial=0)) for part in (self.train, self.valid, self.test))) + 1

    def info(self) -> dict[str, object]:
        """Row counts, label rates and warm shares per split."""
        out: dict[str, object] = {"name": self.name, "n_users": self.n_users, "n_items": self.n_items}
        for name in SPLITS:
            part = getattr(self, name)
            out[name] = {
                "rows": len(part),
                "label_rate": round(float(part.labels.mean()), 4) if len(part) else None,
                "warm_rows": int(part.warm.sum()),
            }
        return out


# ----------------------------------------------------------------------------------------------------------
# CoLLM's ML-1M (TSV conversion in ../shared/data/collm_ml1m)
# ----------------------------------------------------------------------------------------------------------


def _parse_history(text: str, where: str) -> np.ndarray:
    try:
        values = np.array([int(t) for t in str(text).split()], dtype=np.int64)
    except ValueError as err:
        raise SailRecDataError(f"{where}: field 'history' must be space-separated item ids ({err})") from err
    return values[values > 0]


def read_collm_tsv(path: str | Path, n_items: int | None = None) -> YesNoRows:
    """Read one CoLLM split file (uid, iid, label, timestamp, history, flag, not_cold; tab separated)."""
    path = Path(path)
    if not path.is_file():
        raise SailRecDataError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise SailRecDataError(f"{path}: empty file")
        missing = [c for c in COLLM_COLUMNS if c not in header]
        if missing:
            raise SailRecDataError(f"{path}:1: missing column(s) {', '.join(missing)} (have {', '.join(header)})")
        col = {name: header.index(name) for name in COLLM_COLUMNS}
        users, items, labels, times, histories, warm = [], [], [], [], [], []
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if len(row) != len(header):
                raise SailRecDataError(f"{where}: expected {len(header)} tab-separated fields, got {len(row)}")
            try:
                user, item, label = int(row[col["uid"]]), int(row[col["iid"]]), int(float(row[col["label"]]))
                stamp, not_cold = float(row[col["timestamp"]]), int(float(row[col["not_cold"]]))
            except ValueError as err:
                raise SailRecDataError(f"{where}: non-numeric uid/iid/label/timestamp/not_cold ({err})") from err
            if label not in (0, 1):
                raise SailRecDataError(f"{where}: field 'label' must be 0 or 1, got {label}")
            if item <= 0 or (n_items is not None and item >= n_items):
                raise SailRecDataError(f"{where}: field 'iid' = {item} outside the item table [1, {n_items})")
            history = _parse_history(row[col["history"]], where)
            if n_items is not None and len(history) and history.max() >= n_items:
                raise SailRecDataError(f"{where}: field 'history' holds item {history.max()} >= {n_items}")
            users.append(user)
            items.append(item)
            labels.append(label)
            times.append(stamp)
            histories.append(history)
            warm.append(bool(not_cold))
    return YesNoRows(users, items, labels, histories, warm, np.asarray(times))


def read_titles(path: str | Path) -> list[str]:
    """``items.tsv`` (iid, title) as a list indexed by iid; index 0 (padding) is the empty string."""
    path = Path(path)
    if not path.is_file():
        raise SailRecDataError(f"{path}: file not found")
    frame = pd.read_csv(path, sep="\t", dtype={"iid": "Int64", "title": str}, keep_default_na=False)
    if list(frame.columns[:2]) != ["iid", "title"]:
        raise SailRecDataError(f"{path}:1: expected columns iid, title; got {', '.join(frame.columns)}")
    if frame["iid"].isna().any() or (frame["iid"] <= 0).any():
        bad = int(np.flatnonzero((frame["iid"].isna() | (frame["iid"].fillna(0) <= 0)).to_numpy())[0]) + 2
        raise SailRecDataError(f"{path}:{bad}: field 'iid' must be a positive integer")
    titles = [""] * (int(frame["iid"].max()) + 1)
    for iid, title in zip(frame["iid"].to_numpy(), frame["title"], strict=True):
        titles[int(iid)] = title
    return titles


def read_movielens_genres(item_file: str | Path, titles: list[str]) -> list[list[str]]:
    """Genres of each titled item from ML-1M's ``ml-1m.item`` (title -> space-separated genres)."""
    path = Path(item_file)
    if not path.is_file():
        raise SailRecDataError(f"{path}: file not found")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "item_id:token" not in frame.columns or "genre:token" not in frame.columns:
        raise SailRecDataError(f"{path}:1: expected columns item_id:token and genre:token")
    by_title = dict(zip(frame["item_id:token"], frame["genre:token"], strict=True))
    facets = [by_title.get(t, "").split() if t else [] for t in titles]
    unmatched = sum(1 for t, f in zip(titles, facets, strict=True) if t and not f)
    if unmatched:
        logger.warning("%d of %d titles have no genres in %s", unmatched, len(titles) - 1, path)
    return facets


def load_collm_ml1m(folder: str | Path, genres_file: str | Path | None = None) -> YesNoData:
    """CoLLM's ML-1M split: ``{train,valid,test}.tsv`` + ``items.tsv``; genres from ML-1M's item file if given."""
    folder = Path(folder)
    titles = read_titles(folder / "items.tsv")
    parts = {name: read_collm_tsv(folder / f"{name}.tsv", len(titles)) for name in SPLITS}
    facets = read_movielens_genres(genres_file, titles) if genres_file is not None else None
    return YesNoData("collm_ml1m", titles=titles, item_facets=facets, source=str(folder), **parts)


# ----------------------------------------------------------------------------------------------------------
# CoLLM's Amazon-Book files
# ----------------------------------------------------------------------------------------------------------

BOOK_COLUMNS = ("uid", "iid", "label", "title", "his")


def _book_frame_to_rows(frame: pd.DataFrame, where: str, titles: dict[int, str]) -> YesNoRows:
    """Rows from a CoLLM Amazon-Book frame (uid, iid, label, title, his[, his_title, timestamp, not_cold])."""
    missing = [c for c in BOOK_COLUMNS if c not in frame.columns]
    if missing:
        raise SailRecDataError(
            f"{where}: missing column(s) {', '.join(missing)} (have {', '.join(map(str, frame.columns))})"
        )
    histories = []
    for line, (his, his_titles) in enumerate(
        zip(frame["his"], frame["his_title"] if "his_title" in frame.columns else [None] * len(frame), strict=True)
    ):
        if isinstance(his, str):
            try:
                his = ast.literal_eval(his) if his.strip().startswith("[") else his.split()
            except (ValueError, SyntaxError) as err:
                raise SailRecDataError(f"{where}: row {line + 1}: field 'his' is not a list of ids ({err})") from err
        history = np.asarray([int(i) for i in list(his)], dtype=np.int64)
        if his_titles is not None and not isinstance(his_titles, float):
            if isinstance(his_titles, str):
                his_titles = ast.literal_eval(his_titles) if his_titles.strip().startswith("[") else [his_titles]
            for iid, title in zip(history, list(his_titles), strict=False):
                titles.setdefault(int(iid), str(title))
        histories.append(history[history > 0])
    for iid, title in zip(frame["iid"], frame["title"], strict=True):
        titles.setdefault(int(iid), str(title))
    labels = frame["label"].astype(float).to_numpy()
    if not np.isin(labels, (0.0, 1.0)).all():
        raise SailRecDataError(f"{where}: field 'label' must be 0 or 1")
    warm = frame["not_cold"].astype(bool).to_numpy() if "not_cold" in frame.columns else np.ones(len(frame), bool)
    stamps = frame["timestamp"].astype(float).to_numpy() if "timestamp" in frame.columns else None
    return YesNoRows(frame["uid"].astype(int), frame["iid"].astype(int), labels, histories, warm, stamps)


def load_collm_book(folder: str | Path, allow_pickle: bool = False) -> YesNoData:
    """CoLLM's Amazon-Book split: ``{train,valid,test}_ood2.pkl`` (pickled pandas frames) or ``{split}.tsv``.

    The pickles are CoLLM's own release format; unpickling runs code, so it needs ``allow_pickle=True``
    (only for files you trust). The TSV form has the same columns, ``his`` space-separated or a list literal.
    """
    folder = Path(folder)
    titles: dict[int, str] = {}
    parts = {}
    for name in SPLITS:
        tsv, pkl = folder / f"{name}.tsv", folder / f"{name}_ood2.pkl"
        if tsv.is_file():
            frame = pd.read_csv(tsv, sep="\t", keep_default_na=False)
            parts[name] = _book_frame_to_rows(frame, str(tsv), titles)
        elif pkl.is_file():
            if not allow_pickle:
                raise SailRecDataError(
                    f"{pkl}: CoLLM ships pickles, and unpickling runs code; pass allow_pickle=True "
                    "(CLI: --allow-pickle) for a file you trust, or convert it to TSV"
                )
            frame = pd.read_pickle(pkl)
            parts[name] = _book_frame_to_rows(frame, str(pkl), titles)
        else:
            raise SailRecDataError(f"{folder}: neither {tsv.name} nor {pkl.name} found")
    table = [""] * (max(titles, default=0) + 1)
    for iid, title in titles.items():
        table[iid] = title
    return YesNoData("collm_book", titles=table, source=str(folder), **parts)


# ----------------------------------------------------------------------------------------------------------
# Amazon Office (ReChorus files) turned into yes/no rows with sampled negatives
# ----------------------------------------------------------------------------------------------------------


def _read_rechorus_csv(path: Path, with_negatives: bool) -> pd.DataFrame:
    if not path.is_file():
        raise SailRecDataError(f"{path}: file not found")
    frame = pd.read_csv(path, sep="\t")
    need = ["user_id", "item_id", "time"] + (["neg_items"] if with_negatives else [])
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise SailRecDataError(f"{path}:1: missing column(s) {', '.join(missing)}")
    return frame


def load_amazon_office(folder: str | Path, seed: int = 0, max_history: int = 50) -> YesNoData:
    """Amazon Office (ReChorus) as yes/no rows: each interaction is a positive, paired with one negative.

    Train: every train.csv interaction (label 1) plus, at the same time and with the same history, one item
    drawn uniformly (``seed``) among those the user never interacted with in any split (label 0). Valid/test:
    the dev/test interaction (label 1) plus the first of ReChorus' own 99 sampled ``neg_items`` (label 0).
    History = the user's earlier train interactions by time. Warm = user and item both seen in train.
    Facets = the item's ``i_category`` from item_meta.csv (ids only: the file has no category names).
    """
    folder = Path(folder)
    item2index = pd.read_csv(folder / "Office.item2index", sep="\t", header=None, names=["asin", "iid"], dtype=str)
    text = pd.read_csv(folder / "Office.text", sep="\t", dtype=str, keep_default_na=False)
    asin_text = dict(zip(text["id"], text["text"], strict=True))
    n_items = int(item2index["iid"].astype(int).max()) + 1
    titles = [""] * n_items
    for asin, iid in zip(item2index["asin"], item2index["iid"].astype(int), strict=True):
        titles[iid] = asin_text.get(asin, "")
    meta = pd.read_csv(folder / "item_meta.csv", sep="\t")
    facets: list[list[str]] = [[] for _ in range(n_items)]
    for iid, category in zip(meta["item_id"].astype(int), meta["i_category"].astype(int), strict=True):
        facets[iid] = [f"category {category}"]
    train = _read_rechorus_csv(folder / "train.csv", False).sort_values(["user_id", "time"], kind="stable")
    dev = _read_rechorus_csv(folder / "dev.csv", True)
    test = _read_rechorus_csv(folder / "test.csv", True)
    seen: dict[int, set[int]] = {}
    for frame in (train, dev, test):
        for user, item in zip(frame["user_id"].astype(int), frame["item_id"].astype(int), strict=True):
            seen.setdefault(user, set()).add(item)
    train_users, train_items = set(train["user_id"].astype(int)), set(train["item_id"].astype(int))
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"users": [], "items": [], "labels": [], "histories": [], "warm": [], "timestamps": []}
    history_of: dict[int, list[int]] = {}

    def add(target: dict[str, list], user: int, item: int, label: int, history: list[int], stamp: float) -> None:
        target["users"].append(user)
        target["items"].append(item)
        target["labels"].append(label)
        target["histories"].append(np.asarray(history[-max_history:], dtype=np.int64))
        target["warm"].append(user in train_users and item in train_items)
        target["timestamps"].append(stamp)

    for user, item, stamp in zip(
        train["user_id"].astype(int), train["item_id"].astype(int), train["time"], strict=True
    ):
        history = history_of.setdefault(user, [])
        add(rows, user, item, 1, history, float(stamp))
        while True:  # rejection sampling: 5-core users have a few dozen items among 2,420
            negative = int(rng.integers(1, n_items))
            if negative not in seen[user]:
                break
        add(rows, user, negative, 0, history, float(stamp))
        history.append(item)
    parts = {"train": YesNoRows(**{k: np.asarray(v) if k != "histories" else v for k, v in rows.items()})}
    for name, frame in (("valid", dev), ("test", test)):
        split_rows: dict[str, list] = {k: [] for k in rows}
        for line, (user, item, stamp, negatives) in enumerate(
            zip(
                frame["user_id"].astype(int),
                frame["item_id"].astype(int),
                frame["time"],
                frame["neg_items"],
                strict=True,
            ),
            start=2,
        ):
            try:
                first_negative = int(ast.literal_eval(negatives)[0])
            except (ValueError, SyntaxError, IndexError, TypeError) as err:
                raise SailRecDataError(
                    f"{folder / (name if name == 'test' else 'dev')}.csv:{line}: bad neg_items"
                ) from err
            history = history_of.get(user, [])
            add(split_rows, user, item, 1, history, float(stamp))
            add(split_rows, user, first_negative, 0, history, float(stamp))
        parts[name] = YesNoRows(**{k: np.asarray(v) if k != "histories" else v for k, v in split_rows.items()})
    notes = {"negatives": f"train: 1 uniform unseen item per positive (seed {seed}); valid/test: ReChorus neg_items[0]"}
    return YesNoData("amazon_office", titles=titles, item_facets=facets, source=str(folder), notes=notes, **parts)


# ----------------------------------------------------------------------------------------------------------
# Codebook-based semantic user profiles
# ----------------------------------------------------------------------------------------------------------


def user_profiles(data: YesNoData, top_k: int = 3, disliked_weight: float = -0.5) -> dict[int, list[str]]:
    """Each train user's top-``top_k`` facets from the codebook (the set of all item facets), by weighted votes.

    A train row votes for its item's facets with weight 1 (liked) or ``disliked_weight`` (not liked), split
    evenly across the item's facets, so a three-genre film counts as much as a one-genre film. Users with
    no positive vote get no profile.
    """
    if data.item_facets is None:
        raise SailRecDataError(f"{data.name}: the data set has no item facets (genres/categories) for profiles")
    votes: dict[int, Counter] = {}
    for user, item, label in zip(data.train.users, data.train.items, data.train.labels, strict=True):
        facets = data.item_facets[int(item)]
        if not facets:
            continue
        weight = (1.0 if label > 0 else disliked_weight) / len(facets)
        counter = votes.setdefault(int(user), Counter())
        for facet in facets:
            counter[facet] += weight
    profiles = {}
    for user, counter in votes.items():
        ranked = sorted(((v, f) for f, v in counter.items() if v > 0), key=lambda x: (-x[0], x[1]))
        if ranked:
            profiles[user] = [f for _, f in ranked[:top_k]]
    return profiles


def profile_text(facets: list[str]) -> str:
    """The text whose LLM representation a user's projection is aligned with."""
    return "Likes: " + ", ".join(facets) if facets else "Likes: anything"


DATASETS = ("collm_ml1m", "amazon_office", "collm_book")


def load_yes_no(
    name: str, folder: str | Path, genres_file: str | Path | None = None, seed: int = 0, allow_pickle: bool = False
) -> YesNoData:
    """Load a yes/no data set by kind: collm_ml1m, amazon_office or collm_book."""
    if name == "collm_ml1m":
        return load_collm_ml1m(folder, genres_file)
    if name == "amazon_office":
        return load_amazon_office(folder, seed=seed)
    if name == "collm_book":
        return load_collm_book(folder, allow_pickle=allow_pickle)
    raise SailRecDataError(f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
