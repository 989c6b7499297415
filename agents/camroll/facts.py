"""Typed facts of the memory: what each event is about, extracted at ingest by general rules.

From one event's captions, visual labels, EXIF/GPS (the named place from the user's places, the nearest city)
the rules read: the activity kind, the things shown (dishes or objects: the noun phrases a caption names beyond
its places, people and activity words; visual labels), the named place (the user's own place, else a capitalised
place phrase in a caption), the people (a possessive or ``birthday``/``with`` name) and the city. Day, trip and
month nodes aggregate their events' facts. The vocabulary a question is matched against is the union of these
fields over the user's own roll (:func:`vocabulary`), never a generator's list.

The only fixed word lists are general English cues: which words signal an activity (``dinner`` -> meal,
``hiking`` -> hike, ``Bistro`` -> meal) and which words are filler (articles, times of day). They say what kind
of thing a word is, not which dishes or places exist.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# General cue words per activity kind (lower case); a multi-word cue matches as a phrase.
ACTIVITY_CUES: dict[str, tuple[str, ...]] = {
    "meal": ("ate", "eat", "eating", "tried", "dinner", "lunch", "breakfast", "brunch", "supper", "meal", "food",
             "dish", "dishes", "restaurant", "restaurants", "cafe", "café", "bistro", "grill", "kitchen", "diner",
             "trattoria", "brasserie", "cantina", "pizzeria", "tavern", "eatery", "steakhouse", "noodle bar",
             "dined", "dining", "tasting", "eateries", "bar"),
    "beach": ("beach", "beaches", "sea", "seaside", "swim", "swimming", "surf", "surfing", "shore"),
    "walk": ("walk", "walks", "walked", "stroll", "park", "parks", "garden", "gardens", "picnic", "commons"),
    "party": ("birthday", "birthdays", "party", "parties", "celebration", "celebrated", "wedding"),
    "hike": ("hike", "hikes", "hiking", "hiked", "trail", "trails", "hills", "mountain", "mountains", "summit"),
    "museum": ("museum", "museums", "exhibition", "exhibitions", "gallery", "galleries", "exhibit"),
    "sightseeing": ("exploring", "explored", "sightseeing", "sights", "tour", "old town", "cathedral", "tower",
                    "harbour", "harbor", "market", "castle", "landmark", "landmarks"),
}  # fmt: skip
FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "at",
        "in",
        "on",
        "of",
        "for",
        "with",
        "and",
        "or",
        "to",
        "my",
        "our",
        "some",
        "this",
        "that",
        "day",
        "days",
        "morning",
        "afternoon",
        "evening",
        "night",
        "tonight",
        "today",
        "yesterday",
        "here",
        "there",
        "views",
        "view",
        "photo",
        "photos",
        "pic",
        "pics",
        "picture",
        "again",
        "so",
        "very",
        "great",
        "nice",
        "fun",
        "happy",
        "lovely",
        "first",
        "last",
        "new",
        "is",
        "was",
        "are",
        "were",
        "be",
        "it",
        "its",
        "we",
        "i",
        "me",
        "you",
        "visited",
        "visit",
        "went",
        "saw",
        "seen",
        "got",
    ]
)
_CUE_OF = {cue: kind for kind, cues in ACTIVITY_CUES.items() for cue in cues}
_PLACE_INTRO = re.compile(
    r"\b(?i:at|in|to|visited|visiting|visit|exploring|explored|near|from)\s+(?i:the\s+)?"
    r"((?:[A-Z][\w'’&.-]*)(?:\s+(?:of\s+|de\s+|la\s+|the\s+)?[A-Z][\w'’&.-]*)*)"
)
_CAPITAL_CHUNK = re.compile(r"^(?:the\s+)?([A-Z][\w'’&.-]*(?:\s+(?:of\s+|de\s+|la\s+)?[A-Z][\w'’&.-]*)*)$")
_POSSESSIVE = re.compile(r"\b([A-Z][a-z]+)['’]s\b")
_NAMED_AFTER = re.compile(r"\b(?:birthday|with|and)\s+([A-Z][a-z]+)\b")
MAX_ITEM_WORDS = 4


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes and hyphens kept inside words)."""
    return re.findall(r"[a-z0-9]+(?:['’-][a-z0-9]+)*", text.lower())


def activity_of_words(tokens: Sequence[str]) -> list[str]:
    """Activity kinds cued by a token list (one- and two-word cues), in order of first appearance."""
    found: list[str] = []
    for i, token in enumerate(tokens):
        for cue in (f"{token} {tokens[i + 1]}" if i + 1 < len(tokens) else "", token):
            kind = _CUE_OF.get(cue)
            if kind and kind not in found:
                found.append(kind)
    return found


def place_kind(name: str) -> str:
    """The activity a place's name implies from its last cue word ("Harbor Noodle Bar" -> meal), else ""."""
    kinds = activity_of_words(words(name))
    tokens = words(name)
    for i in range(len(tokens) - 1, -1, -1):
        for cue in (f"{tokens[i - 1]} {tokens[i]}" if i else "", tokens[i]):
            if cue in _CUE_OF:
                return _CUE_OF[cue]
    return kinds[0] if kinds else ""


@dataclass
class CaptionFacts:
    """What one caption says: places, people, things and activity kinds."""

    places: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    activities: list[str] = field(default_factory=list)


def read_caption(caption: str, known_places: Iterable[str] = (), cities: Iterable[str] = ()) -> CaptionFacts:
    """The facts of one caption (general rules; see the module docstring)."""
    facts = CaptionFacts()
    text = " ".join(caption.split())
    if not text:
        return facts
    remove: list[str] = []
    for name in sorted({*known_places, *cities}, key=len, reverse=True):
        if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE):
            remove.append(name)
            if name in known_places:
                facts.places.append(name)
    for match in _PLACE_INTRO.finditer(text):
        phrase = match[1].strip(" .'’")
        if phrase and phrase not in remove and phrase.lower() not in {c.lower() for c in cities}:
            facts.places.append(phrase)
            remove.append(phrase)
    for chunk in re.split(r"[,:;!|?]", text):
        found = _CAPITAL_CHUNK.match(chunk.strip(" ."))
        if found and len(found[1].split()) >= 2 and not any(r in found[1] for r in remove):
            facts.places.append(found[1])
            remove.append(found[1])
    for pattern in (_POSSESSIVE, _NAMED_AFTER):
        for match in pattern.finditer(text):
            name = match[1]
            if not any(name in r for r in remove) and name.lower() not in FILLER:
                facts.people.append(name)
                remove.append(name)
    stripped = text
    for name in sorted(remove, key=len, reverse=True):
        stripped = re.sub(rf"(?<!\w){re.escape(name)}(?:['’]s)?(?!\w)", " | ", stripped, flags=re.IGNORECASE)
    # Activity cues of the caption's own words (a place name's words are not what the caption says it did)...
    facts.activities = activity_of_words(words(stripped))
    for chunk in re.split(r"[,:;!|?.]|\s(?:at|in|with|from|near)\s", stripped):
        tokens = words(chunk)
        while tokens and (tokens[0] in FILLER or tokens[0] in _CUE_OF):
            tokens.pop(0)
        while tokens and (tokens[-1] in FILLER or tokens[-1] in _CUE_OF):
            tokens.pop()
        if tokens and len(tokens) <= MAX_ITEM_WORDS and not any(t.isdigit() for t in tokens):
            facts.items.append(" ".join(tokens))
    # ... then each place's type, read from its head noun (the last cue of its name: "Harbor Noodle Bar" -> meal).
    facts.places = [p for p in dict.fromkeys(facts.places) if not any(p != q and p in q for q in facts.places)]
    for kind in [place_kind(p) for p in facts.places]:
        if kind and kind not in facts.activities:
            facts.activities.append(kind)
    facts.people = list(dict.fromkeys(facts.people))
    facts.items = list(dict.fromkeys(facts.items))
    return facts


def event_facts(
    captions: Sequence[str],
    labels: Sequence[str],
    gps_place: str,
    city: str,
    known_places: Sequence[str],
    cities: Sequence[str],
) -> dict[str, Any]:
    """Typed fields of one event: activity, items, place, people (lists only where non-empty)."""
    read = [read_caption(c, known_places, cities) for c in captions if c.strip()]
    places = Counter(p for r in read for p in r.places)
    ranked = sorted(places.items(), key=lambda kv: (-kv[1], -len(kv[0])))
    longer = [p for p, _ in ranked if gps_place and gps_place in p and p != gps_place]
    place = longer[0] if longer else gps_place or (ranked[0][0] if ranked else "")
    kinds = Counter(a for r in read for a in r.activities)
    if place_kind(place):
        kinds[place_kind(place)] += 0.5  # breaks ties towards the place's own type
    items = list(dict.fromkeys(i for r in read for i in r.items))
    objects = list(dict.fromkeys(label.lower() for label in labels if label and len(label.split()) <= MAX_ITEM_WORDS))
    people = list(dict.fromkeys(p for r in read for p in r.people))
    names = {n.lower() for n in [*people, *places, place, city] if n}
    items = [i for i in items if i not in names]
    facts: dict[str, Any] = {"place": place, "activity": kinds.most_common(1)[0][0] if kinds else ""}
    if items:
        facts["items"] = items[:12]
    if objects:
        facts["objects"] = objects[:8]
    if people:
        facts["people"] = people[:8]
    return facts


def fill_activity_from_place(events: list[dict[str, Any]]) -> None:
    """An event with no activity cue takes its place's most common activity in the user's roll (in place)."""
    by_place: dict[str, Counter] = {}
    for meta in events:
        if meta.get("place") and meta.get("activity"):
            by_place.setdefault(meta["place"], Counter())[meta["activity"]] += 1
    for meta in events:
        if not meta.get("activity") and meta.get("place") in by_place:
            meta["activity"] = by_place[meta["place"]].most_common(1)[0][0]


def aggregate(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The facts of a day, trip or month: the union of its events' items, people, places and activities."""
    out: dict[str, Any] = {}
    for key, source in (("items", "items"), ("people", "people"), ("places", "place"), ("activities", "activity")):
        values: list[str] = []
        for meta in events:
            value = meta.get(source)
            for v in value if isinstance(value, list) else [value]:
                if v and v not in values:
                    values.append(v)
        if values:
            out[key] = values[:40]
    return out


@dataclass
class Vocabulary:
    """A user's own vocabulary: what the roll's events name, with how many events name each."""

    items: Counter = field(default_factory=Counter)
    places: Counter = field(default_factory=Counter)
    cities: Counter = field(default_factory=Counter)
    people: Counter = field(default_factory=Counter)
    activities: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, list[str]]:
        """The vocabulary as sorted lists (for prompts and reports)."""
        return {k: sorted(getattr(self, k)) for k in ("items", "places", "cities", "people", "activities")}


def vocabulary(events: Iterable[dict[str, Any]]) -> Vocabulary:
    """The vocabulary of a user's event metadata (see :class:`Vocabulary`)."""
    vocab = Vocabulary()
    for meta in events:
        vocab.items.update(meta.get("items") or [])
        vocab.items.update(meta.get("objects") or [])
        vocab.people.update(meta.get("people") or [])
        for key, target in (("place", vocab.places), ("city", vocab.cities), ("activity", vocab.activities)):
            if meta.get(key):
                target[meta[key]] += 1
    return vocab
