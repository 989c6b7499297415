"""Hierarchical memory of a camera roll: photo -> event -> day -> trip / month, stored in the shared VectorStore.

Events cluster consecutive photos by time and place (a new event starts after a gap of more than
``event_gap_minutes`` or a move of more than ``event_km``); days group events; trips are runs of days spent
away from the home city (the city with most photo days), and months summarise the days at home. Every node
has a text summary built from what the visual back end sees (ImageNet labels from EfficientNet-lite0 by
default; open_clip labels or a VLM's caption when the user supplies weights), the captions, the named places
and the nearest city.

Strictly per user: every id starts with ``user<id>/`` and every node carries ``user`` in its metadata.
Incremental and restartable: each node stores a hash of its content; an ingest upserts only the nodes whose
hash changed and deletes nodes that no longer exist, so new photos touch only the nodes they affect, and a
killed ingest run again ends in the same state as an uninterrupted one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from agents.camroll.data import (
    PhotoRecord,
    Place,
    check_user_id,
    read_photos,
    read_places,
    resolve_inside,
    user_dir,
)
from agents.camroll.errors import CamrollDataError
from agents.camroll.facts import aggregate, event_facts, fill_activity_from_place
from agents.camroll.geo import CITIES, haversine_km, nearest_city

logger = logging.getLogger(__name__)

LEVELS = ("photo", "event", "day", "trip", "month")
DEFAULT_COLLECTION = "camroll_memory"
EPOCH = dt.datetime(1970, 1, 1)


def to_seconds(moment: dt.datetime) -> int:
    """Naive local wall-clock time as seconds since 1970-01-01 (the same clock for every comparison)."""
    return int((moment - EPOCH).total_seconds())


def from_seconds(seconds: int) -> dt.datetime:
    """The inverse of ``to_seconds``."""
    return EPOCH + dt.timedelta(seconds=int(seconds))


def node_id(user: str, level: str, key: str) -> str:
    """The stable global id of a node, e.g. ``user12/event/000341``."""
    return f"user{user}/{level}/{key}"


def default_cache_dir() -> Path:
    """``$RECAGENTS_CACHE/camroll`` (default ``~/.cache/recagents/camroll``)."""
    import os

    base = os.environ.get("RECAGENTS_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "recagents") / "camroll"


# ------------------------------------------------------------------------------------------ visual back ends


class VisualBackend(Protocol):
    """What the memory needs from a vision model: a few words per photo."""

    name: str

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        """Short labels per image ([] where an image cannot be read)."""
        ...


class NoVisual:
    """No vision model: summaries use captions, time and place only (fast, for tests and huge rolls)."""

    name = "none"

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        return [[] for _ in paths]


class EfficientNetLabels:
    """ImageNet-1k labels from the packaged EfficientNet-lite0 (the top ones above ``min_probability``)."""

    name = "efficientnet-lite0-labels"

    def __init__(self, top_k: int = 3, min_probability: float = 0.15, batch_size: int = 32) -> None:
        from retrieval.embed import ImageEmbedder

        self.embedder = ImageEmbedder(batch_size=batch_size)
        self.top_k, self.min_probability = top_k, min_probability

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        from retrieval.errors import EmbedError

        try:
            ranked = self.embedder.classify(list(paths), top_k=self.top_k)
        except EmbedError:  # one unreadable image: label the batch one by one
            ranked = []
            for path in paths:
                try:
                    ranked.extend(self.embedder.classify([path], top_k=self.top_k))
                except EmbedError as exc:
                    logger.warning("no visual labels for %s (%s)", path, exc)
                    ranked.append([])
        labels = []
        for row in ranked:
            kept = [name for i, (name, p) in enumerate(row) if i == 0 or p >= self.min_probability]
            labels.append(kept if row and row[0][1] >= 0.05 else [])
        return labels


class ScriptedVisual:
    """Labels looked up by file name (tests): ``{"000001.jpg": ["pizza"]}``."""

    name = "scripted"

    def __init__(self, labels: dict[str, list[str]]) -> None:
        self.labels = labels

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        return [list(self.labels.get(Path(p).name, [])) for p in paths]


class OpenClipLabels:
    """Zero-shot labels from an open_clip model with the user's weights: the vocabulary words closest to the photo.

    The vocabulary defaults to the 1,000 ImageNet class names, each as "a photo of a {name}" (the CLIP paper's
    prompt). No CLIP weights ship offline, so ``pretrained`` is a local weights file; without one the model is
    randomly initialised and its labels are meaningless (tests only).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | Path | None = None,
        vocabulary: Sequence[str] | None = None,
        top_k: int = 3,
        batch_size: int = 32,
    ) -> None:
        from retrieval.embed import OpenClipEmbedder, imagenet_categories

        self.embedder = OpenClipEmbedder(model_name, pretrained=pretrained, batch_size=batch_size)
        self.vocabulary = list(vocabulary) if vocabulary is not None else list(imagenet_categories())
        if not self.vocabulary:
            raise CamrollDataError("open_clip labels: the vocabulary is empty")
        self.top_k = top_k
        self.name = f"{self.embedder.name}-labels"
        self._text: Any = None

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        from retrieval.errors import EmbedError

        if self._text is None:  # the vocabulary's text embeddings, computed once
            self._text = self.embedder.embed_texts([f"a photo of a {word}" for word in self.vocabulary])
        labels: list[list[str]] = []
        for path in paths:
            try:
                image = self.embedder.embed_images([path])[0]
            except EmbedError as exc:
                logger.warning("no visual labels for %s (%s)", path, exc)
                labels.append([])
                continue
            best = (self._text @ image).argsort()[::-1][: self.top_k]
            labels.append([self.vocabulary[i] for i in best])
        return labels


class VLMCaptions:
    """One caption per photo from a vision-language model the user supplies (``mllm.vision.ImageCaptioner``).

    ``describe`` returns ``[caption]`` (a one-item list, so the caption lands whole in the "Seen:" part of the
    photo and event summaries; splitting a sentence into phrases would lose what it says), or ``[]`` where the
    image cannot be read or the model says nothing. No VLM weights ship offline: ``model`` is a local Hugging Face
    folder (captioners such as BLIP, GIT, ViT-GPT2, or chat VLMs such as SmolVLM, Qwen2-VL, LLaVA). ``name``, the
    label cache's folder, carries the folder's name and a hash of its config, weight files, prompt and
    ``max_new_tokens``, so another model or setting never reads this one's cached captions.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        captioner: Any = None,
        max_new_tokens: int = 30,
        **captioner_options: Any,
    ) -> None:
        if captioner is None:
            if model is None:
                raise CamrollDataError("VLM captions need a model folder (--visual vlm:FOLDER)")
            from mllm.vision import ImageCaptioner

            captioner = ImageCaptioner(model, **captioner_options)
        self.captioner = captioner
        self.max_new_tokens = max_new_tokens
        self.name = f"{captioner.name}-{max_new_tokens}tok"

    def describe(self, paths: Sequence[Path]) -> list[list[str]]:
        from mllm.vision import CaptionError, open_image

        images, positions = [], []
        for position, path in enumerate(paths):
            try:
                images.append(open_image(path))
                positions.append(position)
            except CaptionError as exc:
                logger.warning("no visual labels for %s (%s)", path, exc)
        labels: list[list[str]] = [[] for _ in paths]
        if images:
            for position, caption in zip(positions, self.captioner.caption(images, self.max_new_tokens), strict=True):
                caption = _clip(caption, 200).rstrip(" .")  # the summaries add their own full stop
                labels[position] = [caption] if caption else []
        return labels


VISUAL_CHOICES = "efficientnet, none, open_clip:MODEL:WEIGHTS_FILE, or vlm:FOLDER"


def make_visual(name: str) -> VisualBackend:
    """A visual back end from its CLI name; see ``VISUAL_CHOICES``.

    ``"efficientnet"`` (default, packaged weights), ``"none"``, ``"open_clip:MODEL[:WEIGHTS_FILE]"``, or
    ``"vlm:FOLDER"``: captions from a local VLM folder; everything after ``vlm:`` is the folder, so a path may
    itself hold colons.
    """
    if name in ("none", "off"):
        return NoVisual()
    if name in ("efficientnet", "efficientnet-lite0", "default"):
        return EfficientNetLabels()
    if name.startswith("open_clip:"):
        model_name, _, weights = name.removeprefix("open_clip:").partition(":")
        return OpenClipLabels(model_name or "ViT-B-32", pretrained=weights or None)
    if name.startswith("vlm:"):
        folder = name.removeprefix("vlm:")
        if not folder.strip():
            raise CamrollDataError("--visual vlm:FOLDER: the model folder is missing after 'vlm:'")
        return VLMCaptions(folder)
    raise CamrollDataError(f"--visual {name!r}: use {VISUAL_CHOICES}")


class VisualCache:
    """Labels per photo kept in a JSONL file keyed by (photo id, size, mtime), appended per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by a kill: relabel that photo

    @staticmethod
    def key(photo: PhotoRecord, path: Path) -> str:
        stat = path.stat()
        return f"{photo.photo_id}:{stat.st_size}:{stat.st_mtime_ns}"

    def get(self, key: str) -> list[str] | None:
        row = self.entries.get(key)
        return list(row["labels"]) if row is not None else None

    def add(self, rows: list[tuple[str, list[str]]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for key, labels in rows:
                self.entries[key] = {"key": key, "labels": labels}
                handle.write(json.dumps(self.entries[key]) + "\n")


# ------------------------------------------------------------------------------------------------ nodes


@dataclass
class Node:
    """One memory node: a stable id, a text summary and filterable metadata."""

    id: str
    level: str
    document: str
    metadata: dict[str, Any]

    def content_hash(self) -> str:
        payload = json.dumps([self.document, self.metadata], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]


def named_place(lat: float | None, lon: float | None, places: list[Place]) -> str:
    """The nearest of the user's named places whose radius covers (lat, lon), else ""."""
    if lat is None or lon is None:
        return ""
    best, best_km = "", float("inf")
    for place in places:
        km = haversine_km(lat, lon, place.lat, place.lon)
        if km <= place.radius_km and km < best_km:
            best, best_km = place.name, km
    return best


def _top(values: list[str], n: int) -> list[str]:
    return [v for v, _ in Counter(v for v in values if v).most_common(n)]


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cluster_events(photos: list[PhotoRecord], gap_minutes: float, max_km: float) -> list[list[PhotoRecord]]:
    """Consecutive photos (sorted by time) in one event unless the time gap or the move is too large."""
    events: list[list[PhotoRecord]] = []
    for photo in photos:
        if events:
            last = events[-1][-1]
            gap = (photo.timestamp - last.timestamp).total_seconds() / 60.0
            moved = (
                haversine_km(photo.lat, photo.lon, last.lat, last.lon)
                if None not in (photo.lat, photo.lon, last.lat, last.lon)
                else 0.0
            )
            if gap <= gap_minutes and moved <= max_km and photo.timestamp.date() == last.timestamp.date():
                events[-1].append(photo)
                continue
        events.append([photo])
    return events


def build_nodes(
    user: str,
    photos: list[PhotoRecord],
    labels: dict[str, list[str]],
    places: list[Place],
    gap_minutes: float = 90.0,
    event_km: float = 0.5,
) -> list[Node]:
    """Every node of one user's memory, computed from the photos (a pure function: same input, same nodes)."""
    user = check_user_id(user)
    photos = sorted(photos, key=lambda p: (p.timestamp, p.photo_id))
    place_of = {p.photo_id: named_place(p.lat, p.lon, places) for p in photos}
    city_of = {p.photo_id: nearest_city(p.lat, p.lon) for p in photos}
    clusters = cluster_events(photos, gap_minutes, event_km)

    # Home: the city with most photo days; trips are runs of days (1-day gaps allowed) spent elsewhere.
    day_city: dict[dt.date, str] = {}
    for day, group in _group_by_day(photos).items():
        cities = _top([city_of[p.photo_id] for p in group], 1)
        day_city[day] = cities[0] if cities else ""
    home = _top(list(day_city.values()), 1)
    home_city = home[0] if home else ""
    trips: list[list[dt.date]] = []
    for day in sorted(day_city):
        if day_city[day] in ("", home_city):
            continue
        if trips and (day - trips[-1][-1]).days <= 2 and day_city[trips[-1][-1]] == day_city[day]:
            trips[-1].append(day)
        else:
            trips.append([day])
    trip_of_day = {day: trip[0].isoformat() for trip in trips for day in trip}

    known_places = [p.name for p in places]
    city_names = [c[0] for c in CITIES]
    nodes: list[Node] = []
    event_of_photo: dict[str, str] = {}
    events_by_day: dict[dt.date, list[Node]] = defaultdict(list)
    for cluster in clusters:
        first, last = cluster[0], cluster[-1]
        event_key = first.photo_id
        event_id = node_id(user, "event", event_key)
        day = first.timestamp.date()
        place = _top([place_of[p.photo_id] for p in cluster], 1)
        city = _top([city_of[p.photo_id] for p in cluster], 1)
        captions = list(dict.fromkeys(_clip(p.caption) for p in cluster if p.caption.strip()))[:4]
        seen = _top([label for p in cluster for label in labels.get(p.photo_id, [])], 4)
        located = [p for p in cluster if p.lat is not None]
        facts = event_facts(
            [p.caption for p in cluster], seen, place[0] if place else "", city[0] if city else "",
            known_places, city_names,
        )  # fmt: skip
        place = [facts["place"]] if facts["place"] else []
        where = ", ".join(x for x in (place[0] if place else "", city[0] if city else "") if x) or "unknown place"
        document = (
            f"Event on {day:%A %B} {day.day}, {day.year} {first.timestamp:%H:%M}-{last.timestamp:%H:%M} at {where}: "
            f"{len(cluster)} photos."
            + (f" Captions: {' | '.join(captions)}." if captions else "")
            + (f" Seen: {', '.join(seen)}." if seen else "")
        )
        metadata: dict[str, Any] = {
            "user": user,
            "level": "event",
            "key": event_key,
            "start_ts": to_seconds(first.timestamp),
            "end_ts": to_seconds(last.timestamp),
            "date": day.isoformat(),
            "place": place[0] if place else "",
            "city": city[0] if city else "",
            "n_photos": len(cluster),
            "photo_ids": [p.photo_id for p in cluster],
            "trip": trip_of_day.get(day, ""),
            **facts,
        }
        if located:
            metadata["lat"] = round(sum(p.lat for p in located) / len(located), 6)
            metadata["lon"] = round(sum(p.lon for p in located) / len(located), 6)
        node = Node(event_id, "event", document, metadata)
        nodes.append(node)
        events_by_day[day].append(node)
        for photo in cluster:
            event_of_photo[photo.photo_id] = event_key

    fill_activity_from_place([n.metadata for n in nodes])
    for photo in photos:
        day = photo.timestamp.date()
        seen = labels.get(photo.photo_id, [])
        where = ", ".join(x for x in (place_of[photo.photo_id], city_of[photo.photo_id]) if x) or "unknown place"
        document = (
            f"Photo {photo.timestamp:%A %B} {day.day}, {day.year} {photo.timestamp:%H:%M} at {where}."
            + (f" Caption: {_clip(photo.caption, 300)}." if photo.caption.strip() else "")
            + (f" Seen: {', '.join(seen)}." if seen else "")
        )
        metadata = {
            "user": user,
            "level": "photo",
            "key": photo.photo_id,
            "start_ts": to_seconds(photo.timestamp),
            "end_ts": to_seconds(photo.timestamp),
            "date": day.isoformat(),
            "place": place_of[photo.photo_id],
            "city": city_of[photo.photo_id],
            "n_photos": 1,
            "photo_ids": [photo.photo_id],
            "event": event_of_photo[photo.photo_id],
            "trip": trip_of_day.get(day, ""),
            "file": photo.file,
            "device": photo.device,
            "orientation": photo.orientation,
        }
        if photo.lat is not None:
            metadata["lat"], metadata["lon"] = photo.lat, photo.lon
        nodes.append(Node(node_id(user, "photo", photo.photo_id), "photo", document, metadata))

    months: dict[str, list[dt.date]] = defaultdict(list)
    for day, day_events in sorted(events_by_day.items()):
        parts = []
        for event in day_events:
            meta = event.metadata
            start = from_seconds(meta["start_ts"])
            label = meta["place"] or meta["city"] or "somewhere"
            caption = (
                event.document.split("Captions: ", 1)[1].split(" | ")[0].rstrip(".")
                if "Captions: " in event.document
                else ""
            )
            parts.append(f"{start:%H:%M} {label}" + (f" ({caption})" if caption else ""))
        photo_ids = [pid for event in day_events for pid in event.metadata["photo_ids"]]
        document = (
            f"Day {day:%A %B} {day.day}, {day.year} in {day_city[day] or 'unknown city'}: {len(photo_ids)} photos; "
            + "; ".join(parts)
            + "."
        )
        nodes.append(
            Node(
                node_id(user, "day", day.isoformat()),
                "day",
                document,
                {
                    "user": user,
                    "level": "day",
                    "key": day.isoformat(),
                    "start_ts": to_seconds(dt.datetime.combine(day, dt.time.min)),
                    "end_ts": to_seconds(dt.datetime.combine(day, dt.time.max.replace(microsecond=0))),
                    "date": day.isoformat(),
                    "city": day_city[day],
                    "n_photos": len(photo_ids),
                    "n_events": len(day_events),
                    "event_ids": [e.metadata["key"] for e in day_events],
                    "photo_ids": photo_ids,
                    "trip": trip_of_day.get(day, ""),
                    **aggregate([e.metadata for e in day_events]),
                },
            )
        )
        if day not in trip_of_day:
            months[f"{day:%Y-%m}"].append(day)

    for trip in trips:
        trip_events = [e for day in trip for e in events_by_day[day]]
        city = day_city[trip[0]]
        highlights = _top([e.metadata["place"] or e.metadata["city"] for e in trip_events], 5)
        photo_ids = [pid for e in trip_events for pid in e.metadata["photo_ids"]]
        document = (
            f"Trip to {city} from {trip[0]:%B} {trip[0].day}, {trip[0].year} to {trip[-1]:%B} {trip[-1].day}, "
            f"{trip[-1].year} ({len(trip)} days with photos, {len(trip_events)} events, {len(photo_ids)} photos)"
            + (f"; places: {', '.join(highlights)}" if highlights else "")
            + "."
        )
        nodes.append(
            Node(
                node_id(user, "trip", trip[0].isoformat()),
                "trip",
                document,
                {
                    "user": user,
                    "level": "trip",
                    "key": trip[0].isoformat(),
                    "start_ts": to_seconds(dt.datetime.combine(trip[0], dt.time.min)),
                    "end_ts": to_seconds(dt.datetime.combine(trip[-1], dt.time.max.replace(microsecond=0))),
                    "date": trip[0].isoformat(),
                    "end_date": trip[-1].isoformat(),
                    "city": city,
                    "n_photos": len(photo_ids),
                    "n_days": len(trip),
                    "n_events": len(trip_events),
                    "photo_ids": photo_ids,
                    **aggregate([e.metadata for e in trip_events]),
                },
            )
        )

    for month, days in sorted(months.items()):
        month_events = [e for day in days for e in events_by_day[day]]
        top_places = _top([e.metadata["place"] for e in month_events], 6)
        photo_ids = [pid for e in month_events for pid in e.metadata["photo_ids"]]
        first = dt.date.fromisoformat(f"{month}-01")
        document = (
            f"{first:%B %Y} at home in {home_city or 'unknown city'}: {len(days)} days with photos, "
            f"{len(month_events)} events, {len(photo_ids)} photos"
            + (f"; places: {', '.join(top_places)}" if top_places else "")
            + "."
        )
        nodes.append(
            Node(
                node_id(user, "month", month),
                "month",
                document,
                {
                    "user": user,
                    "level": "month",
                    "key": month,
                    "start_ts": to_seconds(dt.datetime.combine(days[0], dt.time.min)),
                    "end_ts": to_seconds(dt.datetime.combine(days[-1], dt.time.max.replace(microsecond=0))),
                    "date": days[0].isoformat(),
                    "city": home_city,
                    "n_photos": len(photo_ids),
                    "n_days": len(days),
                    "photo_ids": photo_ids,
                    **aggregate([e.metadata for e in month_events]),
                },
            )
        )
    return nodes


def _group_by_day(photos: list[PhotoRecord]) -> dict[dt.date, list[PhotoRecord]]:
    days: dict[dt.date, list[PhotoRecord]] = defaultdict(list)
    for photo in photos:
        days[photo.timestamp.date()].append(photo)
    return days


# ----------------------------------------------------------------------------------------------- memory


def collection_name(embedder: Any, base: str = DEFAULT_COLLECTION) -> str:
    """One collection per text embedder (a collection never mixes embedders): ``camroll_memory__minilm-l6-v2``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(embedder.name)).strip("-._")
    return f"{base}__{slug}"[:500]


class CamrollMemory:
    """The hierarchical memory of the users of one camera roll, kept in a VectorStore collection."""

    def __init__(
        self,
        store: Any,
        data_root: str | Path,
        embedder: Any = None,
        visual: VisualBackend | None = None,
        cache_dir: str | Path | None = None,
        collection: str | None = None,
    ) -> None:
        if embedder is None:
            from retrieval.embed import TextEmbedder

            embedder = TextEmbedder()
        self.store = store
        self.data_root = Path(data_root)
        self.embedder = embedder
        self.visual = visual if visual is not None else NoVisual()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.collection = collection or collection_name(embedder)
        store.collection(self.collection, embedder=embedder)

    def user_folder(self, user: str) -> Path:
        return user_dir(self.data_root, user)

    def photo_path(self, user: str, file: str) -> Path:
        """A photo's file inside the user's folder (refusing any path that leaves it)."""
        return resolve_inside(self.user_folder(user), file)

    def _labels(self, user: str, photos: list[PhotoRecord], progress: bool) -> tuple[dict[str, list[str]], int, int]:
        """Visual labels per photo id, from the cache where the file is unchanged.

        Returns (labels, photos labelled now, photos tried now that got no label: unreadable or unrecognised).
        """
        if isinstance(self.visual, NoVisual):
            return {}, 0, 0
        folder = self.user_folder(user).resolve()
        digest = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
        cache = VisualCache(self.cache_dir / "visual" / self.visual.name / f"user{user}-{digest}.jsonl")
        labels: dict[str, list[str]] = {}
        todo: list[tuple[PhotoRecord, Path, str]] = []
        for photo in photos:
            path = self.photo_path(user, photo.file)
            key = VisualCache.key(photo, path)
            cached = cache.get(key)
            if cached is None:
                todo.append((photo, path, key))
            else:
                labels[photo.photo_id] = cached
        batch = 64
        with tqdm(total=len(todo), desc=f"visual user{user}", unit="photo", disable=not progress or not todo) as bar:
            for start in range(0, len(todo), batch):
                chunk = todo[start : start + batch]
                described = self.visual.describe([path for _, path, _ in chunk])
                cache.add([(key, found) for (_, _, key), found in zip(chunk, described, strict=True)])
                for (photo, _, _), found in zip(chunk, described, strict=True):
                    labels[photo.photo_id] = found
                bar.update(len(chunk))
        labelled = sum(1 for photo, _, _ in todo if labels.get(photo.photo_id))
        return labels, labelled, len(todo) - labelled

    def _plan(self, user: str, progress: bool) -> tuple[list[PhotoRecord], list[Any], list[Any], list[str], int, int]:
        """(photos, nodes, changed, stale ids, photos labelled now, tried but unlabelled): what an ingest writes."""
        folder = self.user_folder(user)
        photos = read_photos(folder)
        places = read_places(folder)
        labels, labelled, unlabelled = self._labels(user, photos, progress)
        nodes = build_nodes(user, photos, labels, places)
        stored = {
            item["id"]: (item["metadata"] or {}).get("content_hash")
            for item in self.store.get(self.collection, where={"user": user})
        }
        changed = [n for n in nodes if stored.get(n.id) != n.content_hash()]
        current = {n.id for n in nodes}
        stale = [node for node in stored if node not in current]
        return photos, nodes, changed, stale, labelled, unlabelled

    def needs_ingest(self, user: str | int, progress: bool = False) -> bool:
        """Whether the store's memory of ``user`` differs from the photos on disk (reads only)."""
        _photos, _nodes, changed, stale, _labelled, _unlabelled = self._plan(check_user_id(user), progress)
        return bool(changed or stale)

    def ingest(self, user: str | int, progress: bool = True) -> dict[str, Any]:
        """Bring one user's memory up to date with the photos on disk; returns what changed per level."""
        user = check_user_id(user)
        started = time.perf_counter()
        photos, nodes, changed, stale, labelled, unlabelled = self._plan(user, progress)
        if stale:
            self.store.delete(self.collection, ids=stale)
        # Lowest level first, so a kill leaves at worst missing parents, which the next run adds.
        order = {level: i for i, level in enumerate(LEVELS)}
        changed.sort(key=lambda n: order[n.level])
        for start in range(0, len(changed), 256):
            chunk = changed[start : start + 256]
            self.store.upsert(
                self.collection,
                ids=[n.id for n in chunk],
                documents=[n.document for n in chunk],
                metadatas=[{**n.metadata, "content_hash": n.content_hash()} for n in chunk],
            )
        per_level = Counter(n.level for n in nodes)
        upserted = Counter(n.level for n in changed)
        seconds = time.perf_counter() - started
        return {
            "user": user,
            "photos": len(photos),
            "nodes": dict(per_level),
            "upserted": dict(upserted),
            "deleted": len(stale),
            "unchanged": len(nodes) - len(changed),
            "visual_backend": self.visual.name,
            "visual_labelled": labelled,  # photos that got labels now (not those it failed to read or recognise)
            "visual_unlabelled": unlabelled,
            "visual_cached": len(photos) - labelled - unlabelled if not isinstance(self.visual, NoVisual) else 0,
            "seconds": round(seconds, 3),
            "photos_per_second": round(len(photos) / seconds, 1) if seconds > 0 else None,
        }

    def is_ingested(self, user: str | int) -> bool:
        """Whether the store holds any node of this user."""
        user = check_user_id(user)
        return bool(self.store.get(self.collection, where={"user": user}, limit=1))
