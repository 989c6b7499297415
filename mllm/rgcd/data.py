"""Two-domain data sets for RGCD-Rep: a source domain rich in behaviour, a cold target domain, shared users.

Three builders, each described in docs/rgcd.md (the SOURCE-style construction):

- ``movielens_genre_domains``: ML-1M split by genre (a movie with a target genre goes to the target domain);
  content = title, year and genres.
- ``amazon_beauty_sports``: S3-Rec Beauty -> Sports_and_Outdoors joined on the raw reviewer ids of the id maps
  (behaviour only; content = the anonymous attribute ids).
- ``synthetic_two_domain``: planted shared topics (transferable) and per-domain styles (residual).

``cold_start_task`` splits the target domain leave-one-out by time and thins a stated share of the users who
also have source behaviour to at most N target training interactions (the cold users).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mllm.rgcd.errors import RGCDDataError
from recsys.data.dataset import IdMap, InteractionDataset, Split

logger = logging.getLogger(__name__)

ML1M_TARGET_GENRES = ("Comedy",)
DATA_ROOT_PARTS = ("..", "shared", "data")


@dataclass
class DomainLog:
    """One domain's items (raw ids and content text) and its interactions (user/item indices, time order)."""

    item_ids: list[str]
    item_texts: list[str]
    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    item_topics: np.ndarray | None = None  # synthetic only: the planted shared topic of each item

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.item_texts):
            raise RGCDDataError(f"{len(self.item_ids)} item ids but {len(self.item_texts)} item texts")
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.times = np.asarray(self.times, dtype=np.float64)
        if not (self.users.shape == self.items.shape == self.times.shape):
            raise RGCDDataError("users, items and times must have the same length")


@dataclass
class TwoDomainData:
    """A source and a target domain over one user id space."""

    name: str
    user_ids: list[str]
    source: DomainLog
    target: DomainLog
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        """Users in the shared id space."""
        return len(self.user_ids)

    def info(self) -> dict[str, Any]:
        """Counts per domain and the number of users active in both."""
        both = np.intersect1d(np.unique(self.source.users), np.unique(self.target.users))
        return {
            "name": self.name,
            "n_users": self.n_users,
            "source_items": len(self.source.item_ids),
            "source_interactions": int(self.source.users.size),
            "target_items": len(self.target.item_ids),
            "target_interactions": int(self.target.users.size),
            "users_in_both": int(both.size),
            **self.description,
        }


@dataclass
class ColdStartTask:
    """The target split (train/valid/test over target items), the source log and the cold users."""

    data: TwoDomainData
    split: Split
    source: InteractionDataset
    cold_users: np.ndarray
    cold_share: float
    max_cold_interactions: int
    # target items held out of every training signal (their content is all a model may use); empty: none
    cold_items: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    cold_item_share: float = 0.0

    @property
    def warm_items(self) -> np.ndarray:
        """Target item indices that are not cold (sorted)."""
        return np.setdiff1d(np.arange(len(self.data.target.item_ids)), self.cold_items)

    def info(self) -> dict[str, Any]:
        """Sizes of every part."""
        info = {
            **self.data.info(),
            "cold_share": self.cold_share,
            "max_cold_interactions": self.max_cold_interactions,
            "n_cold_users": int(self.cold_users.size),
            "target_train": self.split.train.n_interactions,
            "target_valid": self.split.valid.n_interactions,
            "target_test": self.split.test.n_interactions,
        }
        if self.cold_items.size:
            info.update(
                {
                    "cold_item_share": self.cold_item_share,
                    "n_cold_items": int(self.cold_items.size),
                    "cold_item_seed": int(self.split.params.get("item_seed", 0)),
                    "cold_item_valid": int(np.isin(self.split.valid.items, self.cold_items).sum()),
                    "cold_item_test": int(np.isin(self.split.test.items, self.cold_items).sum()),
                }
            )
        return info


def default_data_root() -> Path:
    """``../shared/data`` beside the repository root."""
    return Path(__file__).resolve().parents[2].joinpath(*DATA_ROOT_PARTS).resolve()


def _domain_log(
    frame: pd.DataFrame, user_index: dict[str, int], item_ids: list[str], item_texts: list[str]
) -> DomainLog:
    item_index = {item: i for i, item in enumerate(item_ids)}
    return DomainLog(
        item_ids=item_ids,
        item_texts=item_texts,
        users=frame["user"].map(user_index).to_numpy(),
        items=frame["item"].map(item_index).to_numpy(),
        times=frame["time"].to_numpy(dtype=np.float64),
    )


def _sample_users(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    users = np.unique(users)
    if max_users is not None and users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    return users


def movielens_genre_domains(
    folder: str | Path | None = None,
    target_genres: tuple[str, ...] = ML1M_TARGET_GENRES,
    max_users: int | None = None,
    min_rating: float = 0.0,
    seed: int = 0,
    max_source_items: int | None = None,
    max_target_items: int | None = None,
) -> TwoDomainData:
    """ML-1M as two domains: movies with any of ``target_genres`` form the target, all others the source.

    ``max_users`` keeps a seeded user sample; ``max_*_items`` keep each domain's most-rated movies (by the
    sampled users; ties by title) and drop the ratings of the others."""
    folder = Path(folder) if folder is not None else default_data_root() / "movielens" / "ml-1m"
    inter_path, item_path = folder / "ml-1m.inter", folder / "ml-1m.item"
    for path in (inter_path, item_path):
        if not path.is_file():
            raise RGCDDataError(f"{path}: file not found (MovieLens-1M RecBole atomic files expected)")
    items = pd.read_csv(item_path, sep="\t", dtype=str, keep_default_na=False)
    inter = pd.read_csv(inter_path, sep="\t", dtype={0: str, 1: str})
    items.columns = [c.split(":")[0] for c in items.columns]
    inter.columns = [c.split(":")[0] for c in inter.columns]
    for column, frame, path in (("genre", items, item_path), ("item_id", inter, inter_path)):
        if column not in frame.columns:
            raise RGCDDataError(f"{path}: column {column!r} missing (columns: {list(frame.columns)})")
    if min_rating > 0:
        inter = inter[inter["rating"] >= min_rating]
    users = _sample_users(inter["user_id"].to_numpy(), max_users, seed)
    inter = inter[inter["user_id"].isin(set(users))]
    genres = dict(zip(items["item_id"], items["genre"].str.split(), strict=True))
    texts = {
        row.item_id: f"{row.movie_title} ({row.release_year.split('.')[0]}). Genres: {', '.join(row.genre.split())}."
        for row in items.itertuples()
    }
    targets = set(target_genres)
    inter = inter[inter["item_id"].isin(genres)]
    is_target = inter["item_id"].map(lambda item: bool(targets & set(genres[item]))).to_numpy()
    frame = pd.DataFrame({"user": inter["user_id"], "item": inter["item_id"], "time": inter["timestamp"]})
    user_ids = sorted(frame["user"].unique())
    user_index = {u: i for i, u in enumerate(user_ids)}
    logs = []
    for part, limit in ((frame[~is_target], max_source_items), (frame[is_target], max_target_items)):
        if limit is not None:
            counts = part["item"].value_counts()
            ranked = sorted(counts.index, key=lambda item: (-counts[item], item))
            part = part[part["item"].isin(set(ranked[:limit]))]
        ids = sorted(part["item"].unique())
        logs.append(_domain_log(part, user_index, ids, [texts[i] for i in ids]))
    return TwoDomainData(
        name="ml1m-genre",
        user_ids=user_ids,
        source=logs[0],
        target=logs[1],
        description={
            "target_genres": list(target_genres),
            "max_users": max_users,
            "user_sample_seed": seed,
            "max_source_items": max_source_items,
            "max_target_items": max_target_items,
        },
    )


def _read_s3rec(folder: Path, category: str) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    seq_path = folder / f"{category}.txt"
    map_path = folder / f"{category}_id_map.tsv"
    attr_path = folder / f"{category}_item2attributes.json"
    for path in (seq_path, map_path, attr_path):
        if not path.is_file():
            raise RGCDDataError(f"{path}: file not found (S3-Rec Amazon files expected)")
    id_map = pd.read_csv(map_path, sep="\t", dtype=str)
    users, items = id_map[id_map["kind"] == "user"], id_map[id_map["kind"] == "item"]
    reviewers = dict(zip(users["id"], users["raw_id"], strict=True))
    asins = dict(zip(items["id"], items["raw_id"], strict=True))
    rows = []
    for line_number, line in enumerate(seq_path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) < 2:
            raise RGCDDataError(f"{seq_path}:{line_number}: expected 'user item item ...'")
        if parts[0] not in reviewers:
            raise RGCDDataError(f"{seq_path}:{line_number}: user id {parts[0]} missing from {map_path}")
        for position, item in enumerate(parts[1:]):
            rows.append((reviewers[parts[0]], f"{category}:{asins.get(item, item)}", float(position), item))
    frame = pd.DataFrame(rows, columns=["user", "item", "time", "local_id"])
    attributes = json.loads(attr_path.read_text())
    by_item = {f"{category}:{asins.get(k, k)}": v for k, v in attributes.items()}
    return frame, by_item


def amazon_beauty_sports(folder: str | Path | None = None) -> TwoDomainData:
    """Amazon Beauty (source) -> Sports_and_Outdoors (target) over the reviewers present in both (raw ids)."""
    folder = Path(folder) if folder is not None else default_data_root() / "amazon_s3rec"
    source, source_attrs = _read_s3rec(folder, "Beauty")
    target, target_attrs = _read_s3rec(folder, "Sports_and_Outdoors")
    shared = sorted(set(source["user"]) & set(target["user"]))
    if not shared:
        raise RGCDDataError(f"{folder}: Beauty and Sports_and_Outdoors share no reviewer id")
    user_index = {u: i for i, u in enumerate(shared)}
    logs = []
    for frame, attrs, label in ((source, source_attrs, "Beauty"), (target, target_attrs, "Sports and Outdoors")):
        frame = frame[frame["user"].isin(user_index)]
        ids = sorted(frame["item"].unique())
        texts = [f"{label} product. Attributes: {' '.join(f'a{a}' for a in attrs.get(i, []))}." for i in ids]
        logs.append(_domain_log(frame, user_index, ids, texts))
    return TwoDomainData(
        name="amazon-beauty-sports",
        user_ids=shared,
        source=logs[0],
        target=logs[1],
        description={"join": "raw reviewer id (S3-Rec *_id_map.tsv)", "order": "S3-Rec sequence position"},
    )


SYNTHETIC_TOPICS = (
    "cooking", "football", "travel", "music", "gaming", "fitness", "fashion", "science",
    "pets", "cars", "comedy", "painting", "history", "gardening", "finance", "dance",
)  # fmt: skip
SYNTHETIC_STYLES = {"source": ("clip", "short", "edit"), "target": ("live", "stream", "broadcast")}


def synthetic_two_domain(
    n_users: int = 300,
    n_items_per_domain: int = 120,
    n_topics: int = 8,
    interactions_per_user: int = 12,
    seed: int = 0,
) -> TwoDomainData:
    """Two domains whose items share planted topics; users like topics in both domains alike.

    Each item has a topic (shared semantics, the transferable part) and its domain's style words (the
    residual part); a user's interactions in both domains come from the same topic preferences.
    """
    if not 2 <= n_topics <= len(SYNTHETIC_TOPICS):
        raise RGCDDataError(f"n_topics must lie in [2, {len(SYNTHETIC_TOPICS)}], got {n_topics}")
    rng = np.random.default_rng(seed)
    preferences = rng.dirichlet(np.full(n_topics, 0.3), size=n_users)
    logs = {}
    for domain in ("source", "target"):
        topics = np.arange(n_items_per_domain) % n_topics
        rng.shuffle(topics)
        styles = SYNTHETIC_STYLES[domain]
        texts = [
            f"{SYNTHETIC_TOPICS[t]} {styles[i % len(styles)]} number {i}: a {domain} item about {SYNTHETIC_TOPICS[t]}."
            for i, t in enumerate(topics)
        ]
        users, items = [], []
        for user in range(n_users):
            chosen_topics = rng.choice(n_topics, size=interactions_per_user, p=preferences[user])
            for topic in chosen_topics:
                candidates = np.flatnonzero(topics == topic)
                users.append(user)
                items.append(int(rng.choice(candidates)))
        frame = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
        logs[domain] = DomainLog(
            item_ids=[f"{domain}/{i:04d}" for i in range(n_items_per_domain)],
            item_texts=texts,
            users=frame["user"].to_numpy(),
            items=frame["item"].to_numpy(),
            times=rng.permutation(len(frame)).astype(np.float64),
            item_topics=topics,
        )
    return TwoDomainData(
        name="synthetic",
        user_ids=[f"u{u:05d}" for u in range(n_users)],
        source=logs["source"],
        target=logs["target"],
        description={"n_topics": n_topics, "seed": seed, "planted": "topic shared, style per domain"},
    )


def synthetic_contents(data: TwoDomainData, dim: int = 24, noise: float = 0.3, seed: int = 0):
    """Planted content vectors for the synthetic set: topic vector (shared by both domains) + the item's style
    vector (its own per domain) + noise. Returns (source, target) float32 arrays."""
    if data.source.item_topics is None or data.target.item_topics is None:
        raise RGCDDataError(f"{data.name}: no planted topics (only the synthetic set has them)")
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(int(max(data.source.item_topics.max(), data.target.item_topics.max())) + 1, dim))
    out = []
    for log in (data.source, data.target):
        styles = rng.normal(size=(len(SYNTHETIC_STYLES["source"]), dim))
        style_of_item = np.arange(len(log.item_ids)) % styles.shape[0]
        vectors = topics[log.item_topics] + styles[style_of_item] + noise * rng.normal(size=(len(log.item_ids), dim))
        out.append(vectors.astype(np.float32))
    return out[0], out[1]


def attribute_contents(data: TwoDomainData, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Content vectors from the anonymous attribute ids in the item texts (``Attributes: a1 a2``): a seeded random
    projection of each item's multi-hot attributes, with separate projections per domain (attribute ids of two
    categories are different id spaces, so nothing is shared by construction)."""
    out = []
    for domain, log in (("source", data.source), ("target", data.target)):
        rng = np.random.default_rng([seed, 0 if domain == "source" else 1])
        bags = [text.split("Attributes:", 1)[-1].replace(".", " ").split() for text in log.item_texts]
        vocabulary = {a: i for i, a in enumerate(sorted({a for bag in bags for a in bag}))}
        projection = rng.normal(size=(max(len(vocabulary), 1), dim)) / np.sqrt(dim)
        vectors = np.zeros((len(bags), dim))
        for row, bag in enumerate(bags):
            if bag:
                vectors[row] = projection[[vocabulary[a] for a in bag]].sum(0)
        out.append(vectors.astype(np.float32))
    return out[0], out[1]


def _dataset(name: str, log_users: np.ndarray, log_items: np.ndarray, user_map: IdMap, item_map: IdMap):
    return InteractionDataset(
        name=name,
        users=log_users,
        items=log_items,
        ratings=None,
        timestamps=None,
        user_map=user_map,
        item_map=item_map,
    )


def cold_start_task(
    data: TwoDomainData,
    cold_share: float = 0.5,
    max_cold_interactions: int = 2,
    seed: int = 0,
    cold_items: float = 0.0,
    item_seed: int | None = None,
) -> ColdStartTask:
    """Leave-one-out (by time) split of the target domain; ``cold_share`` of the users with behaviour in both
    domains keep at most ``max_cold_interactions`` target training interactions (their earliest ones).

    ``cold_items`` > 0: that share of the target items with any interaction (drawn with ``item_seed``, default
    ``seed``, independently of the cold users) becomes cold: every TRAINING interaction on them is dropped, so
    nothing trained on the split (the retrieval model, the behavioural labels of the decomposition) sees them;
    their validation and test interactions stay, to be ranked from content alone (a new live stream). The split
    of the users and the cold users are the same as without cold items."""
    if not 0.0 <= cold_share <= 1.0:
        raise RGCDDataError(f"cold_share must lie in [0, 1], got {cold_share}")
    if not 0.0 <= cold_items < 1.0:
        raise RGCDDataError(f"cold_items must lie in [0, 1), got {cold_items}")
    if max_cold_interactions < 0:
        raise RGCDDataError(f"max_cold_interactions must be >= 0, got {max_cold_interactions}")
    target = data.target
    order = np.lexsort((target.times, target.users))
    users, items = target.users[order], target.items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, users.size])
    rank = np.arange(users.size) - np.repeat(starts, counts)
    from_end = np.repeat(counts, counts) - rank  # 1 = the user's last interaction
    enough = np.repeat(counts, counts) >= 3
    is_test = enough & (from_end == 1)
    is_valid = enough & (from_end == 2)
    is_train = ~(is_test | is_valid)
    eligible = np.intersect1d(np.unique(data.source.users), np.unique(users[enough]))
    rng = np.random.default_rng(seed)
    n_cold = round(cold_share * eligible.size)
    cold = np.sort(rng.choice(eligible, size=n_cold, replace=False)) if n_cold else np.array([], dtype=np.int64)
    cold_row = np.isin(users, cold)
    is_train &= ~cold_row | (rank < max_cold_interactions)
    active_items = np.unique(items)
    n_cold_items = round(cold_items * active_items.size)
    held_items = np.array([], dtype=np.int64)
    if n_cold_items:  # a separate stream: the cold users do not depend on whether items are held out
        item_rng = np.random.default_rng([seed if item_seed is None else item_seed, 1])
        held_items = np.sort(item_rng.choice(active_items, size=n_cold_items, replace=False)).astype(np.int64)
        is_train &= ~np.isin(items, held_items)
    user_map = IdMap(data.user_ids, kind="user")
    item_map = IdMap(target.item_ids, kind="item")
    split = Split(
        train=_dataset(f"{data.name}-target", users[is_train], items[is_train], user_map, item_map),
        valid=_dataset(f"{data.name}-target", users[is_valid], items[is_valid], user_map, item_map),
        test=_dataset(f"{data.name}-target", users[is_test], items[is_test], user_map, item_map),
        protocol="leave_one_out_by_time+cold_thinning",
        seed=seed,
        params={
            "cold_share": cold_share,
            "max_cold_interactions": max_cold_interactions,
            "cold_items": cold_items,
            "item_seed": seed if item_seed is None else item_seed,
        },
    )
    source = _dataset(
        f"{data.name}-source", data.source.users, data.source.items, user_map, IdMap(data.source.item_ids, kind="item")
    )
    logger.info("%s: %d cold users of %d eligible, %d cold items", data.name, cold.size, eligible.size, held_items.size)
    return ColdStartTask(data, split, source, cold, cold_share, max_cold_interactions, held_items, cold_items)


DATASETS = {
    "ml1m": movielens_genre_domains,
    "amazon": amazon_beauty_sports,
    "synthetic": synthetic_two_domain,
}


def load_two_domain(name: str, **kwargs: Any) -> TwoDomainData:
    """A two-domain data set by name (``ml1m``, ``amazon``, ``synthetic``)."""
    if name not in DATASETS:
        raise RGCDDataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](**kwargs)
