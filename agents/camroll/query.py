"""A small query language over the typed facts of one user's memory, executed deterministically.

A :class:`Query` is a filter (time range, place or city, activity, entities, keywords, relative to another event
such as "before my Marseille trip") and an operation (list, count, count_distinct, first, last, most_frequent,
exists, duration, compare) with the field it reports or groups by. :func:`query_schema` is its JSON schema (what
an LLM translator is prompted with). :func:`execute` runs a query over the node metadata that the tools read
(events and trips of the user); :func:`answer_text` turns a result into a short sentence. An empty result is
said to be empty, with the nearest events offered (never an unrelated hit presented as the answer).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.camroll.memory import from_seconds, to_seconds

Operation = Literal[
    "list", "count", "count_distinct", "first", "last", "most_frequent", "exists", "duration", "compare", "recommend"
]
Unit = Literal["event", "day", "trip", "photo"]
FieldName = Literal["date", "item", "place", "city", "person", "activity", "year", "month"]
OPERATIONS: tuple[str, ...] = Operation.__args__  # type: ignore[attr-defined]
MAX_CITED = 12


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Filter(_Strict):
    """Which events: every given condition must hold (entities and keywords are ANDed)."""

    start: dt.date | None = None  # inclusive
    end: dt.date | None = None  # exclusive
    months: list[int] = Field(default_factory=list, max_length=12)  # recurring months (a season without a year)
    city: str | None = Field(None, max_length=100)
    place: str | None = Field(None, max_length=200)
    activity: str | None = Field(None, max_length=40)
    entities: list[str] = Field(default_factory=list, max_length=6)  # things, dishes, people, named in the roll
    keywords: list[str] = Field(default_factory=list, max_length=6)  # whole words of the summaries
    relative: Relative | None = None
    label: str | None = Field(None, max_length=60)  # how an answer names this side of a comparison

    @model_validator(mode="after")
    def _ordered(self) -> Filter:
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def is_empty(self) -> bool:
        """Whether no condition is set."""
        conditions = (self.start, self.end, self.months, self.city, self.place, self.activity, self.entities)
        return not any((*conditions, self.keywords, self.relative))


class Relative(_Strict):
    """Events before / after / during an anchor (the first trip or event matching ``anchor``)."""

    relation: Literal["before", "after", "during"]
    anchor: Filter
    anchor_level: Literal["event", "trip"] = "trip"
    window_days: int | None = Field(None, ge=1, le=3660)  # "the week before": 7


class Query(_Strict):
    """One question as an operation over a filter; ``field`` is what is reported, counted distinct or grouped."""

    op: Operation
    unit: Unit = "event"
    field: FieldName | None = None
    filter: Filter = Field(default_factory=Filter)
    other: Filter | None = None  # compare: the second side

    @model_validator(mode="after")
    def _complete(self) -> Query:
        if self.op == "compare" and self.other is None:
            raise ValueError("compare needs 'other', the second filter")
        if self.op in ("count_distinct", "most_frequent", "recommend") and self.field is None:
            raise ValueError(f"{self.op} needs 'field' (what to count distinct or group by)")
        return self


Filter.model_rebuild()


def query_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Query` (for LLM prompts and validation elsewhere)."""
    return Query.model_json_schema()


# ----------------------------------------------------------------------------------------------- matching


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", str(text).lower()))


def _contains(haystack: str, needle: str) -> bool:
    needle = _norm(needle)
    return bool(needle) and f" {needle} " in f" {_norm(haystack)} "


def values(meta: dict[str, Any], field: str) -> list[str]:
    """A node's values of one field (lists for items and people; one value for the rest)."""
    if field == "item":
        items = list(meta.get("items") or [])
        if items and meta.get("activity") == "meal":  # at a meal the caption names the dishes; the objects the
            return items  # visual back end saw there (plate, table, fork) are not what was eaten
        return items + [o for o in meta.get("objects") or [] if o not in items]
    if field == "person":
        return list(meta.get("people") or [])
    if field == "date":
        return [meta["date"]] if meta.get("date") else []
    if field == "year":
        return [meta["date"][:4]] if meta.get("date") else []
    if field == "month":
        return [meta["date"][:7]] if meta.get("date") else []
    if field == "place" and meta.get("level") == "trip":
        return list(meta.get("places") or [])
    if field == "activity" and meta.get("level") == "trip":
        return list(meta.get("activities") or [])
    value = meta.get(field)
    return [value] if value else []


def _entity_match(meta: dict[str, Any], entity: str) -> bool:
    pool = [*values(meta, "item"), *values(meta, "person"), *(meta.get("places") or []), meta.get("place") or "",
            meta.get("city") or ""]  # fmt: skip
    wanted = _norm(entity)
    return any(_norm(v) == wanted or _contains(v, entity) for v in pool if v)


def _in_time(meta: dict[str, Any], start: dt.date | None, end: dt.date | None) -> bool:
    if start is not None and meta["end_ts"] < to_seconds(dt.datetime.combine(start, dt.time.min)):
        return False
    return end is None or meta["start_ts"] < to_seconds(dt.datetime.combine(end, dt.time.min))


def _matches(node: dict[str, Any], flt: Filter, anchor_span: tuple[int, int] | None, loose: bool = False) -> bool:
    meta = node["metadata"]
    if not _in_time(meta, flt.start, flt.end):
        return False
    if flt.months and int(meta["date"][5:7]) not in flt.months:
        return False
    if flt.city and _norm(meta.get("city") or "") != _norm(flt.city):
        return False
    if flt.place and not any(
        _norm(p) == _norm(flt.place) or (loose and _contains(p, flt.place)) for p in values(meta, "place")
    ):
        return False
    if flt.activity and _norm(flt.activity) not in {_norm(a) for a in values(meta, "activity")}:
        return False
    if not all(_entity_match(meta, e) for e in flt.entities):
        return False
    if flt.keywords and not all(_contains(node.get("document") or "", k) for k in flt.keywords):
        return False
    if flt.relative is not None:
        if anchor_span is None:
            return False
        start, end = anchor_span
        window = (flt.relative.window_days or 0) * 86400
        if flt.relative.relation == "before":
            if not (meta["end_ts"] < start and (not window or meta["start_ts"] >= start - window)):
                return False
        elif flt.relative.relation == "after":
            if not (meta["start_ts"] > end and (not window or meta["start_ts"] <= end + window)):
                return False
        elif not (meta["start_ts"] >= start and meta["end_ts"] <= end):
            return False
    return True


def _anchor(nodes: dict[str, list[dict[str, Any]]], relative: Relative | None) -> dict[str, Any] | None:
    if relative is None:
        return None
    pool = nodes.get(relative.anchor_level, [])
    found = [n for n in pool if _matches(n, relative.anchor, None)]
    if not found and relative.anchor_level == "trip":  # no trip there: the first matching event
        found = [n for n in nodes.get("event", []) if _matches(n, relative.anchor, None)]
    return min(found, key=lambda n: n["metadata"]["start_ts"]) if found else None


def select(nodes: dict[str, list[dict[str, Any]]], flt: Filter, unit: str) -> tuple[list[dict[str, Any]], Any]:
    """(matching nodes of the unit's level, oldest first; the anchor node or None)."""
    anchor = _anchor(nodes, flt.relative)
    if flt.relative is not None and anchor is None:
        return [], None
    span = (anchor["metadata"]["start_ts"], anchor["metadata"]["end_ts"]) if anchor else None
    level = "trip" if unit == "trip" else "event"
    found = [n for n in nodes.get(level, []) if _matches(n, flt, span)]
    if not found and flt.place:  # no place of exactly that name: places whose name contains it
        found = [n for n in nodes.get(level, []) if _matches(n, flt, span, loose=True)]
    return sorted(found, key=lambda n: (n["metadata"]["start_ts"], n["id"])), anchor


def _size(found: list[dict[str, Any]], unit: str) -> int:
    if unit == "photo":
        return sum(int(n["metadata"].get("n_photos") or 0) for n in found)
    if unit == "day":
        return len({n["metadata"]["date"] for n in found})
    return len(found)


def _photo_ids(found: list[dict[str, Any]], limit: int = MAX_CITED) -> list[str]:
    ids: list[str] = []
    for node in found:
        for pid in node["metadata"].get("photo_ids") or []:
            if pid not in ids:
                ids.append(pid)
            if len(ids) >= limit:
                return ids
    return ids


def _brief(node: dict[str, Any]) -> dict[str, Any]:
    meta = node["metadata"]
    row = {"id": node["id"], "date": meta.get("date"), "place": meta.get("place") or None,
           "city": meta.get("city") or None, "activity": meta.get("activity") or None,
           "items": (meta.get("items") or [])[:4] or None, "people": meta.get("people") or None,
           "n_photos": meta.get("n_photos")}  # fmt: skip
    if meta.get("level") == "trip":
        row["end_date"] = meta.get("end_date")
    return {k: v for k, v in row.items() if v is not None}


# ---------------------------------------------------------------------------------------------- execution


def execute(
    query: Query, nodes: dict[str, list[dict[str, Any]]], catalogue: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Run a query over ``{"event": [...], "trip": [...]}`` node dicts (id, document, metadata).

    ``recommend`` proposes entries of ``catalogue[field]`` (general knowledge, not the roll) that no matching
    event names.
    """
    if query.op == "recommend":
        found, _ = select(nodes, query.filter, query.unit)
        had = {_norm(v) for n in found for v in values(n["metadata"], query.field or "item")}
        if query.field == "city":
            had |= {_norm(v) for n in nodes.get("trip", []) for v in values(n["metadata"], "city")}
        fresh = [c for c in (catalogue or {}).get(query.field or "item", []) if _norm(c) not in had]
        return {"op": "recommend", "unit": query.unit, "field": query.field, "value": fresh[:3], "photo_ids": []}
    found, anchor = select(nodes, query.filter, query.unit)
    result: dict[str, Any] = {"op": query.op, "unit": query.unit, "field": query.field, "n_matches": len(found)}
    if anchor is not None:
        result["anchor"] = _brief(anchor)
    op = query.op
    if op == "compare":
        other, _ = select(nodes, query.other, query.unit)  # type: ignore[arg-type]
        sides = [
            (query.filter.label or "the first", _size(found, query.unit)),
            (query.other.label or "the second", _size(other, query.unit)),
        ]  # type: ignore[union-attr]
        result.update(sides=sides, photo_ids=_photo_ids(found + other))
        return result
    result["photo_ids"] = _photo_ids(found)
    result["matches"] = [_brief(n) for n in found[:20]]
    if op == "count":
        result["value"] = _size(found, query.unit)
    elif op == "exists":
        result["value"] = bool(found)
    elif op == "count_distinct":
        seen = list(dict.fromkeys(v for n in found for v in values(n["metadata"], query.field or "item")))
        result["value"], result["distinct"] = len(seen), seen[:30]
    elif op == "most_frequent":
        counts: Counter = Counter()
        for node in found:  # each event counts once per value (a unit of days counts each day once)
            for v in set(values(node["metadata"], query.field or "item")):
                counts[(v, node["metadata"]["date"]) if query.unit == "day" else (v, node["id"])] += 1
        per_value = Counter(v for v, _ in counts)
        ranked = per_value.most_common()
        if ranked:
            best = ranked[0][1]
            result["value"] = [v for v, c in ranked if c == best]
            result["times"] = best
            result["ranking"] = ranked[:5]
            result["photo_ids"] = _photo_ids(
                [n for n in found if set(values(n["metadata"], query.field or "item")) & set(result["value"])]
            )
    elif op in ("first", "last"):
        if found:
            pick = found[0] if op == "first" else found[-1]
            result["pick"] = _brief(pick)
            result["value"] = values(pick["metadata"], query.field or "date")
            result["photo_ids"] = _photo_ids([pick])
    elif op == "list":
        if query.field:
            result["value"] = list(dict.fromkeys(v for n in found for v in values(n["metadata"], query.field)))
    elif op == "duration":
        trips = found if query.unit == "trip" else ([anchor] if anchor is not None else [])
        if not trips and found:  # a span of events: from the first to the last
            first, last = found[0]["metadata"], found[-1]["metadata"]
            days = (from_seconds(last["end_ts"]).date() - from_seconds(first["start_ts"]).date()).days + 1
            result["value"], result["span"] = days, (first["date"], last["date"])
        elif trips:
            meta = trips[0]["metadata"]
            start, end = from_seconds(meta["start_ts"]).date(), from_seconds(meta["end_ts"]).date()
            result["value"], result["span"] = (end - start).days + 1, (start.isoformat(), end.isoformat())
            result["photo_ids"] = _photo_ids(trips)
    return result


def is_empty(result: dict[str, Any]) -> bool:
    """Whether a result has nothing to report (counts and yes/no are never empty: 0 and no are answers)."""
    if result["op"] in ("count", "exists", "compare", "recommend"):
        return False
    if result["op"] == "count_distinct":
        return False
    return not result.get("value") and not (result["op"] == "list" and result.get("matches"))


def nearest(nodes: dict[str, list[dict[str, Any]]], query: Query, limit: int = 3) -> list[dict[str, Any]]:
    """Events closest to an empty query: the filter relaxed (time, then place, then entities), nearest in time."""
    flt = query.filter
    relaxations = [
        flt.model_copy(update={"start": None, "end": None, "months": [], "relative": None}),
        flt.model_copy(
            update={"start": None, "end": None, "months": [], "relative": None, "place": None, "city": None}
        ),
        flt.model_copy(update={"entities": [], "keywords": [], "activity": None}),
    ]
    centre = None
    if flt.start or flt.end:
        a = flt.start or flt.end
        b = flt.end or flt.start
        centre = (
            to_seconds(dt.datetime.combine(a, dt.time.min)) / 2 + to_seconds(dt.datetime.combine(b, dt.time.min)) / 2
        )
    for relaxed in relaxations:
        if relaxed.is_empty():
            continue
        found, _ = select(nodes, relaxed, "event")
        if found:
            if centre is not None:
                found.sort(key=lambda n: abs(n["metadata"]["start_ts"] - centre))
            return [_brief(n) for n in found[:limit]]
    if centre is not None:  # nothing shares the filter's terms: the events nearest in time
        found = sorted(nodes.get("event", []), key=lambda n: abs(n["metadata"]["start_ts"] - centre))
        return [_brief(n) for n in found[:limit]]
    return []


# ------------------------------------------------------------------------------------------------ answers


def say_date(value: str) -> str:
    """``2023-05-14`` -> ``May 14, 2023``."""
    day = dt.date.fromisoformat(value[:10])
    return f"{day:%B} {day.day}, {day.year}"


def _join(items: list[str]) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def _where(row: dict[str, Any]) -> str:
    return ", ".join(x for x in (row.get("place"), row.get("city")) if x) or "an unknown place"


def _field_text(field: str | None, vals: list[str]) -> str:
    if field == "date":
        return _join([say_date(v) for v in vals])
    return _join(vals)


def describe(flt: Filter) -> str:
    """A filter in words (for honest failures)."""
    parts = []
    if flt.activity:
        parts.append(flt.activity)
    if flt.entities:
        parts.append(" and ".join(flt.entities))
    if flt.keywords:
        parts.append("'" + " ".join(flt.keywords) + "'")
    if flt.place:
        parts.append(f"at {flt.place}")
    if flt.city:
        parts.append(f"in {flt.city}")
    if flt.start or flt.end:
        first = say_date(flt.start.isoformat()) if flt.start else "the beginning"
        last = say_date((flt.end - dt.timedelta(days=1)).isoformat()) if flt.end else "now"
        parts.append(f"on {first}" if first == last else f"between {first} and {last}")
    if flt.months:
        parts.append("in " + "/".join(dt.date(2000, m, 1).strftime("%B") for m in flt.months))
    if flt.relative is not None:
        parts.append(f"{flt.relative.relation} {describe(flt.relative.anchor)}")
    return " ".join(parts) or "anything"


def _what(flt: Filter) -> str:
    text = describe(flt)
    return (
        text
        if not text.startswith(("on ", "between ", "in ", "at ", "before ", "after ", "during "))
        else ("anything " + text)
    )


def failure_text(query: Query, near: list[dict[str, Any]]) -> str:
    """The honest answer to an empty result, with the nearest events offered."""
    text = f"I found no photos of {_what(query.filter)}."
    if near:
        offered = "; ".join(
            f"{say_date(r['date'])} at {_where(r)}" + (f" ({', '.join(r['items'][:2])})" if r.get("items") else "")
            for r in near
        )
        text += f" Nearest I have: {offered}."
    return text


def answer_text(query: Query, result: dict[str, Any]) -> str:
    """A short sentence from a (non-empty) result."""
    op, unit, value = query.op, query.unit, result.get("value")
    noun = {"photo": "photos", "day": "days", "event": "times", "trip": "trips"}[unit]
    if op == "count":
        return f"{value} {noun}." if value != 1 else f"1 {noun.rstrip('s')}."
    if op == "exists":
        if not value:
            return f"No, I found no {_what(query.filter)}."
        first = result["matches"][0]
        return f"Yes, on {say_date(first['date'])} at {_where(first)}."
    if op == "count_distinct":
        listed = f": {_join(result['distinct'][:8])}" if result.get("distinct") else ""
        return f"{value} different {query.field}s{listed}."
    if op == "most_frequent":
        return f"{_field_text(query.field, value)} ({result['times']} {noun})."
    if op in ("first", "last"):
        pick = result["pick"]
        if query.field in (None, "date"):
            return f"{say_date(pick['date'])}, at {_where(pick)}."
        return f"{_field_text(query.field, value)}, on {say_date(pick['date'])}."
    if op == "duration":
        start, end = result["span"]
        return f"{value} days ({say_date(start)} to {say_date(end)})."
    if op == "compare":
        (label_a, a), (label_b, b) = result["sides"]
        if a == b:
            return f"The same: {a} {noun} each."
        winner = label_a if a > b else label_b
        return f"{winner} ({a} vs {b} {noun})."
    if op == "recommend":
        return f"You could try {_join(value)}." if value else "I have nothing new to suggest."
    if op == "list":
        if query.field:
            return _field_text(query.field, value or []) + "."
        return "; ".join(f"{say_date(r['date'])} at {_where(r)}" for r in result["matches"][:5]) + "."
    return str(value)
