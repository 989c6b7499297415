"""Question -> :class:`~agents.camroll.query.Query` translators behind one interface.

Every translator has ``translate(question, today, vocab, previous=None) -> Query | None`` (None: no query fits).

- :class:`RuleParser`: intent from general question cues (``how many``, ``different``, ``most``, ``when ...
  last``), slots from :func:`extract_slots`: time expressions (``dateparser`` for dates and ``N weeks ago``,
  ``holidays`` for holiday names, seasons with or without a year, ``last month``, ``the week before my trip``)
  and entities matched against the user's own memory vocabulary (:class:`~agents.camroll.facts.Vocabulary`).
- :class:`LearnedParser`: the intent frame (operation, unit, field) predicted by a logistic regression over
  sentence embeddings (the packaged MiniLM by default), trained on generated (question, frame) pairs; the same
  slot extractor fills the filter.
- :class:`LLMParser`: any chat model (an OpenAI-compatible endpoint) prompted with the query's JSON schema and
  the user's vocabulary; its reply is validated (one repair round).

Follow-ups ("and in 2022?", "where was that?") refine the previous turn's query: :func:`refine`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from agents.camroll.facts import Vocabulary, activity_of_words, words
from agents.camroll.geo import CITIES
from agents.camroll.query import Filter, Query, Relative, query_schema

logger = logging.getLogger(__name__)

SEASONS = {"winter": (12, 1, 2), "spring": (3, 4, 5), "summer": (6, 7, 8), "autumn": (9, 10, 11), "fall": (9, 10, 11)}
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name.lower() != "may"})
HOLIDAY_COUNTRIES = ("US", "GB", "CA", "AU", "IE")
# Observances that are not public holidays anywhere (so not in ``holidays``): fixed calendar dates.
OBSERVANCES = {"new year's eve": (12, 31), "christmas eve": (12, 24), "halloween": (10, 31),
               "valentine's day": (2, 14), "st patrick's day": (3, 17)}  # fmt: skip
WINDOW_WORDS = {"day": 1, "night": 1, "weekend": 3, "week": 7, "fortnight": 14, "month": 31, "year": 366}


class Translator(Protocol):
    """Question -> Query (None when no query fits)."""

    name: str

    def translate(
        self, question: str, today: dt.date, vocab: Vocabulary, previous: Query | None = None
    ) -> Query | None: ...


# ------------------------------------------------------------------------------------------------- time


@dataclass
class TimeSlot:
    """A time expression: a [start, end) range, or recurring months (a season without a year)."""

    start: dt.date | None = None
    end: dt.date | None = None
    months: tuple[int, ...] = ()
    text: str = ""
    label: str = ""


def _month_range(year: int, month: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, month, 1), dt.date(year + (month == 12), month % 12 + 1, 1)


def season_range(season: str, year: int) -> tuple[dt.date, dt.date]:
    """A season of a year; winter YEAR is December YEAR-1 to February YEAR."""
    months = SEASONS[season]
    if months[0] == 12:
        return dt.date(year - 1, 12, 1), dt.date(year, 3, 1)
    return dt.date(year, months[0], 1), _month_range(year, months[-1])[1]


def _latest(make: Any, today: dt.date, include_current: bool = False) -> tuple[dt.date, dt.date]:
    """The most recent range ``make(year)`` that has started (ended, unless ``include_current``) by today."""
    for year in range(today.year + 1, today.year - 30, -1):
        start, end = make(year)
        if (start <= today) if include_current else (end <= today + dt.timedelta(days=1)):
            return start, end
    return make(today.year - 1)


@functools.cache
def _holiday_names(first_year: int, last_year: int) -> dict[str, list[dt.date]]:
    """Holiday name (lower case, without "(observed)") -> dates, from the ``holidays`` library plus observances."""
    import holidays

    names: dict[str, list[dt.date]] = {}
    years = list(range(first_year, last_year + 1))
    for country in HOLIDAY_COUNTRIES:
        for day, name in holidays.country_holidays(country, years=years).items():
            for part in name.split(";"):
                if "observed" in part.lower():
                    continue
                key = part.strip().lower()
                if day not in names.setdefault(key, []):
                    names[key].append(day)
    for key, (month, day) in OBSERVANCES.items():
        names.setdefault(key, []).extend(dt.date(y, month, day) for y in years)
    return {k: sorted(v) for k, v in names.items()}


def _holiday_pattern(name: str) -> str:
    """A holiday name as a regex that also accepts it without "day" and without the apostrophe ("new years")."""
    base = re.sub(r"\s+day$", "", name) if name not in ("boxing day", "may day", "labor day", "memorial day") else name
    base = re.escape(base).replace("'", "'?").replace("’", "'?").replace(r"\ ", r"\s+")
    return rf"\b{base}(?:\s+day)?\b(?!\s+eve)"


def parse_time(question: str, today: dt.date) -> TimeSlot | None:
    """The time expression of a question relative to ``today`` (None when it names no time)."""
    q = question.lower().replace("’", "'")
    year_match = re.search(r"\b(19[5-9]\d|20[0-4]\d)\b", q)
    year = int(year_match[1]) if year_match else None
    tomorrow = today + dt.timedelta(days=1)
    # Holidays ("New Year's Day 2022", "last Christmas", "on Thanksgiving").
    names = _holiday_names(today.year - 15, today.year + 1)
    for name in sorted(names, key=len, reverse=True):
        if len(name) < 5 or not re.search(_holiday_pattern(name), q):
            continue
        days = names[name]
        if year is not None:
            days = [d for d in days if d.year == year]
        else:
            days = [d for d in days if d <= today][-1:]
        if days:
            return TimeSlot(days[0], days[0] + dt.timedelta(days=1), text=name, label=name)
    if re.search(r"\byesterday\b", q):
        return TimeSlot(today - dt.timedelta(days=1), today, text="yesterday")
    if re.search(r"\btoday\b", q):
        return TimeSlot(today, tomorrow, text="today")
    seasons = "|".join(SEASONS)
    if m := re.search(rf"\b({seasons})\s*(?:of\s+|in\s+)?'?(\d{{4}})\b", q):
        start, end = season_range(m[1], int(m[2]))
        return TimeSlot(start, end, text=m[0], label=m[0])
    if m := re.search(rf"\b(last|this|past|previous)\s+({seasons})\b", q):
        include = m[1] == "this"
        start, end = _latest(lambda y, s=m[2]: season_range(s, y), today, include_current=include)
        return TimeSlot(start, min(end, tomorrow) if include else end, text=m[0], label=m[0])
    if m := re.search(rf"\b({seasons})s?\b", q):
        return TimeSlot(months=SEASONS[m[1]], text=m[0], label=m[1])
    if re.search(r"\blast week\b", q):
        monday = today - dt.timedelta(days=today.weekday())
        return TimeSlot(monday - dt.timedelta(days=7), monday, text="last week")
    if re.search(r"\bthis week\b", q):
        return TimeSlot(today - dt.timedelta(days=today.weekday()), tomorrow, text="this week")
    if re.search(r"\b(last|previous|past) month\b", q):
        previous = today.replace(day=1) - dt.timedelta(days=1)
        return TimeSlot(*_month_range(previous.year, previous.month), text="last month")
    if re.search(r"\bthis month\b", q):
        return TimeSlot(today.replace(day=1), tomorrow, text="this month")
    if re.search(r"\b(last|previous|past) year\b", q):
        return TimeSlot(dt.date(today.year - 1, 1, 1), dt.date(today.year, 1, 1), text="last year")
    if re.search(r"\bthis year\b", q):
        return TimeSlot(dt.date(today.year, 1, 1), tomorrow, text="this year")
    if m := re.search(r"\b(\d+|a|an|one|two|three|four|five|six)\s+(day|week|month|year)s?\s+ago\b", q):
        import dateparser

        moment = dateparser.parse(m[0], settings={"RELATIVE_BASE": dt.datetime.combine(today, dt.time.min)})
        if moment is not None:
            span = {"day": 1, "week": 7, "month": 31, "year": 366}[m[2]]
            day = moment.date()
            return TimeSlot(day, day + dt.timedelta(days=1 if m[2] == "day" else span), text=m[0])
    month_names = "|".join(sorted(MONTHS, key=len, reverse=True))
    date_text = (
        rf"\b(?:(?:{month_names})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
        rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{month_names})(?:,?\s+\d{{4}})?"
        r"|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})\b"
    )
    if m := re.search(date_text, q):
        import dateparser

        settings = {"RELATIVE_BASE": dt.datetime.combine(today, dt.time.min), "PREFER_DATES_FROM": "past"}
        moment = dateparser.parse(m[0].replace(" of ", " "), settings=settings)
        if moment is not None:
            return TimeSlot(moment.date(), moment.date() + dt.timedelta(days=1), text=m[0])
    if m := re.search(rf"\b({month_names})\.?,?\s+(?:of\s+)?(\d{{4}})\b", q):
        start, end = _month_range(int(m[2]), MONTHS[m[1]])
        return TimeSlot(start, end, text=m[0], label=m[0])
    if m := re.search(rf"\b(?:in|during|last|this)\s+({month_names})\b", q):
        start, end = _latest(lambda y, mo=MONTHS[m[1]]: _month_range(y, mo), today, include_current=True)
        return TimeSlot(start, min(end, tomorrow), text=m[0])
    if year is not None:
        return TimeSlot(dt.date(year, 1, 1), dt.date(year + 1, 1, 1), text=str(year), label=str(year))
    return None


# ---------------------------------------------------------------------------------------------- entities


def _norm_words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in words(text)]


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxh":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@dataclass
class EntityMatch:
    """A vocabulary entry found in a question."""

    kind: str  # item | place | city | person
    value: str  # the vocabulary's own spelling
    position: int  # word index in the question


def match_entities(question: str, vocab: Vocabulary) -> list[EntityMatch]:
    """Vocabulary entries named in the question (longest match first, no overlaps; plurals accepted)."""
    tokens = _norm_words(question)
    singular = [_singular(t) for t in tokens]
    table: dict[tuple[str, ...], tuple[str, str]] = {}
    gazetteer = {c[0]: 1 for c in CITIES}
    for kind, entries in (("city", {**gazetteer, **vocab.cities}), ("person", vocab.people), ("item", vocab.items),
                          ("place", vocab.places)):  # fmt: skip
        for value in entries:
            key = tuple(_norm_words(value))
            if key and (len(key) > 1 or len(key[0]) > 2):
                table[key] = (kind, value)
                table.setdefault(tuple(_singular(w) for w in key), (kind, value))
    found: list[EntityMatch] = []
    used: set[int] = set()
    for size in range(6, 0, -1):
        for i in range(len(tokens) - size + 1):
            if used & set(range(i, i + size)):
                continue
            for seq in (tuple(tokens[i : i + size]), tuple(singular[i : i + size])):
                if seq in table:
                    kind, value = table[seq]
                    found.append(EntityMatch(kind, value, i))
                    used.update(range(i, i + size))
                    break
    return sorted(found, key=lambda e: e.position)


# --------------------------------------------------------------------------------------------------- slots


@dataclass
class Slots:
    """What a question names: time, entities, activity, and a relation to an anchor trip or event."""

    time: TimeSlot | None = None
    years: list[int] = field(default_factory=list)
    cities: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    activity: str | None = None
    unknown: list[str] = field(default_factory=list)  # content words the vocabulary does not know
    proper: list[str] = field(default_factory=list)  # the unknown runs written as names (capitalised)
    relation: str | None = None  # before | after | during
    window_days: int | None = None
    anchor_trip: bool = False


_RELATION = re.compile(
    r"\b(?:(?:the\s+)?(day|night|weekend|week|fortnight|month|year)\s+)?(before|after|during|on|while on|prior to|"
    r"by the time of|on my way to)\s+(?:my|the|our)\s+(?:\w+\s+){0,3}?(trip|holiday|vacation|visit|journey|travels?)\b"
    r"|\b(before|after|during)\s+(?:my|the|our)\s+(?:\w+\s+){0,3}?(?:trip|holiday|vacation|visit)\b"
)


# General English function words and question vocabulary: what a question says besides its entities and time.
_FUNCTION_TEXT = """
trip trips start started starts begin began begins end ended ends holiday holidays vacation journey stay stayed
a an the i me my mine we us our you your it its this that these those there here what which who whom whose when
where why how did do does done have has had having was were is are be been being am will would could should can
may might must shall of in on at to for from with without by about into onto over under after before during
since until till while as than then so and or but not no yes ever never any some all every each many much more
most less least few first last latest earliest recent recently most-recent once again also just only very really
time times day days date dates week weeks month months year years season ago get got go went gone going come
came eat ate eaten eating try tried trying take took taken make made see saw seen visit visited photo photos
picture pictures pics shots images snap snapped shoot shot show shows showed tell remind list name count number
kind sort type up out back around somewhere something anything point spend spent look like looks plans happen
happened happening whole long longer often usually show-up photographed order ordered taste tasted plate dinner
lunch breakfast meal meals food foods dish dishes thing things place places restaurant restaurants there's
what's when's where's i've i'd i'm me- along
"""
FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())


def leftover_words(question: str, slots: Slots) -> list[str]:
    """Runs of content words a question names that are neither entities, cues, time words nor function words."""
    taken = {w for v in [*slots.items, *slots.people, *slots.places, *slots.cities] for w in _norm_words(v)}
    if slots.time is not None:
        taken |= set(_norm_words(slots.time.text))
    runs, current = [], []
    for token in _norm_words(question):
        content = not (token in FUNCTION_WORDS or token in taken or activity_of_words([token]) or token.isdigit()
                       or token in MONTHS or token in SEASONS)  # fmt: skip
        if content:
            current.append(token)
        elif current:
            runs.append(" ".join(current))
            current = []
    if current:
        runs.append(" ".join(current))
    return runs


_NAME_RUN = re.compile(r"\b[A-Z][\w'’&-]*(?:\s+(?:of\s+|de\s+)?[A-Z][\w'’&-]*)*")


def unknown_names(question: str, slots: Slots) -> list[str]:
    """Capitalised runs (not the first word, not "I") that name nothing of the vocabulary, a month or a holiday."""
    known = {" ".join(_norm_words(v)) for v in [*slots.items, *slots.people, *slots.places, *slots.cities]}
    time_words = set(_norm_words(slots.time.text)) if slots.time is not None else set()
    names = []
    text = question.strip()
    for match in _NAME_RUN.finditer(text):
        tokens = _norm_words(match[0])
        if match.start() == 0 or re.search(r"[.?!:]\s*$", text[: match.start()]):
            tokens = tokens[1:]  # a capital that only starts the sentence
        tokens = [t for t in tokens if t != "i" and t not in MONTHS and t not in time_words]
        phrase = f" {' '.join(tokens)} "
        for k in sorted(known, key=len, reverse=True):
            phrase = phrase.replace(f" {k} ", " ") if k else phrase
        phrase = phrase.strip()
        if phrase and not all(activity_of_words([t]) for t in phrase.split()):
            names.append(phrase)
    return names


def extract_slots(question: str, today: dt.date, vocab: Vocabulary) -> Slots:
    """The slots of a question (the rules are general; the entities come from the user's vocabulary)."""
    slots = Slots(time=parse_time(question, today))
    slots.years = [int(y) for y in re.findall(r"\b(19[5-9]\d|20[0-4]\d)\b", question)]
    for match in match_entities(question, vocab):
        target = {"city": slots.cities, "place": slots.places, "item": slots.items, "person": slots.people}[match.kind]
        if match.value not in target:
            target.append(match.value)
    entity_words = {w for v in [*slots.places, *slots.items] for w in _norm_words(v)}
    cue_tokens = [t for t in _norm_words(question) if t not in entity_words]
    kinds = activity_of_words(cue_tokens)
    if kinds:
        slots.activity = kinds[0]
    lowered = question.lower()
    slots.unknown = leftover_words(question, slots)
    slots.proper = unknown_names(question, slots)
    if m := _RELATION.search(lowered):
        relation = m[2] or m[4]
        slots.relation = {"on": "during", "while on": "during", "on my way to": "before", "prior to": "before",
                          "by the time of": "before"}.get(relation, relation)  # fmt: skip
        slots.window_days = WINDOW_WORDS.get(m[1] or "")
        slots.anchor_trip = True
    elif re.search(r"\b(trip|holiday|vacation|journey)\b", lowered):
        slots.anchor_trip = True
    return slots


def _time_filter(slots: Slots) -> dict[str, Any]:
    if slots.time is None:
        return {}
    if slots.time.months:
        return {"months": list(slots.time.months)}
    return {"start": slots.time.start, "end": slots.time.end}


# ----------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """The shape of a query: operation, unit and field (what the learned parser predicts)."""

    op: str
    unit: str = "event"
    field: str | None = None

    def key(self) -> str:
        """``op/unit/field`` (a class label)."""
        return f"{self.op}/{self.unit}/{self.field or '-'}"

    @classmethod
    def from_key(cls, key: str) -> Frame:
        """The inverse of :meth:`key`."""
        op, unit, name = key.split("/")
        return cls(op, unit, None if name == "-" else name)


_NOUN_FIELD = (
    (r"\b(restaurants?|places?|spots?|venues?|bars?|cafes?|parks?|beaches|museums?|where)\b", "place"),
    (r"\b(cit(?:y|ies)|towns?|countr(?:y|ies))\b", "city"),
    (r"\b(dish(?:es)?|foods?|meals?|things? (?:i )?(?:ate|eat|had)|cuisines?|eat|ate)\b", "item"),
    (r"\b(people|persons?|friends?|who|whom|whose)\b", "person"),
    (r"\b(months?)\b", "month"),
    (r"\b(years?)\b", "year"),
)


def _field_of(text: str, default: str | None = None) -> str | None:
    for pattern, name in _NOUN_FIELD:
        if re.search(pattern, text):
            return name
    return default


def rule_frame(question: str, slots: Slots) -> Frame | None:
    """The frame of a question from general question cues (None when none fits)."""
    q = " ".join(question.lower().replace("’", "'").split())
    recent = re.search(r"\bmost recent(?:ly)?\b", q)
    q_most = re.sub(r"\bmost recent(?:ly)?\b", "latest", q)
    first_cue = re.search(r"\b(first|earliest|start|began|begin|initially)\b", q)
    last_cue = recent or re.search(r"\b(last|latest|recently|final)\b", q)
    which = "first" if first_cue and not last_cue else "last" if last_cue else None
    asks_length = re.search(r"\bhow (?:long|many days|many nights)\b|\blength\b|\bnumber of days\b|\blasted\b", q)
    if re.search(
        r"\b(recommend|suggest|should (?:i|we) (?:eat|try|visit|go)|something new|never (?:eaten|had|tried|been))", q
    ):
        if re.search(r"\b(cit(?:y|ies)|trip|travel|visit|destination|go next)\b", q):
            return Frame("recommend", "trip", "city")
        return Frame("recommend", "event", "item")
    if (
        asks_length
        and slots.relation is None
        and (slots.anchor_trip or slots.cities or re.search(r"\b(stay|visit|away)\b", q))
    ):
        return Frame("duration", "trip")
    if re.search(r"\b(how many|how often|number of|count|how much)\b", q):
        if re.search(r"\b(different|distinct|unique|separate|various)\b", q):
            return Frame("count_distinct", "event", _field_of(q, "place"))
        if re.search(r"\b(photos?|pictures?|pics|shots|images|snaps)\b", q):
            return Frame("count", "photo")
        if re.search(r"\btrips\b", q) and not re.search(r"\b(beach|park|museum) trips\b", q):
            return Frame("count", "trip")
        return Frame("count", "day")
    if re.search(r"\b(more|bigger|larger|higher|busier)\b", q) and (
        len(slots.years) >= 2 or len(slots.cities) + len(slots.places) >= 2
    ):
        return Frame("compare", "day")
    if re.search(r"\b(most|favou?rite|usual|usually|more than any)\b", q_most):
        return Frame("most_frequent", "event", _field_of(q, "item"))
    if re.match(r"(did|have|had|was|were|do|is there|are there|any) ?(i|we|there|\w+)?\b", q) and not re.match(
        r"(when|where|what|which|who)\b", q
    ):
        return Frame("exists", "event")
    if re.search(r"\bever\b", q) and not re.match(r"(when|where|what|which|who|how)\b", q):
        return Frame("exists", "event")
    if re.search(r"\bwhen\b|\bwhat (?:date|day)\b|\bwhich (?:date|day)\b|\bwhat day\b", q):
        return Frame(which or "first", "event", "date")
    if re.search(r"\bwhere\b", q):
        return Frame(which or "list", "event", "place")
    if m := re.search(r"\b(?:which|what)\s+((?:\w+\s+){0,1}\w+)", q):
        named = _field_of(m[1])
        if named in ("city", "place", "person", "item"):
            return Frame(which or "list", "event", named)
    if re.search(r"\b(who|whose|with whom)\b", q):
        return Frame(which or "list", "event", "person")
    if re.search(r"\b(eat|ate|eaten|order|ordered|tried|tasted|food|foods|dish|dishes|meals?|plate|dinner|lunch)\b", q):
        return Frame(which or "list", "event", "item")
    if re.search(
        r"\b(what did (?:i|we) do|what happened|where was i|show me|what was i (?:doing|up to)|tell me about|"
        r"spend|spent|look like|plans|up to)\b",
        q,
    ):
        return Frame("list", "event")
    return None


def assemble(frame: Frame, slots: Slots) -> Query:
    """A query from a frame and the question's slots."""
    base: dict[str, Any] = _time_filter(slots)
    entities = [*slots.items, *slots.people]
    if entities:
        base["entities"] = entities[:6]
    # Named but not in the roll's vocabulary: the words must occur in the summaries (so an unknown dish or place
    # gives an empty result, never every event). Lower-case leftovers count only where an entity is the point.
    if slots.proper and not entities:
        base["keywords"] = slots.proper[:3]
    elif slots.unknown and frame.op in ("exists", "first", "last") and not entities:
        base["keywords"] = slots.unknown[:3]
    activity = slots.activity if not (entities and slots.activity == "meal") else None
    if frame.field == "item" and not entities and activity is None:
        activity = "meal"
    if activity and not (frame.field == "place" and slots.places):
        base["activity"] = activity
    if frame.field == "place" and activity == "meal" and frame.op in ("count_distinct", "most_frequent"):
        base["activity"] = "meal"
    places, cities = list(slots.places), list(slots.cities)
    relative = None
    if slots.relation in ("before", "after") and slots.anchor_trip and cities:
        relative = Relative(relation=slots.relation, anchor=Filter(city=cities.pop(0)), window_days=slots.window_days)
    elif slots.relation in ("before", "after") and slots.anchor_trip:
        relative = Relative(relation=slots.relation, anchor=Filter(), window_days=slots.window_days)
    if relative is not None:
        base.pop("start", None), base.pop("end", None)
        if slots.time is not None and not slots.time.months:  # "before my trip in May 2022": the time picks the trip
            relative.anchor = relative.anchor.model_copy(update={"start": slots.time.start, "end": slots.time.end})
        base["relative"] = relative
    if frame.op == "compare":
        sides = _compare_sides(slots, base)
        return Query(op="compare", unit="day", filter=sides[0], other=sides[1])
    if (places and frame.field != "place") or (places and frame.op in ("first", "last", "exists", "count")):
        base["place"] = places[0]
    if cities and frame.field != "city":
        base["city"] = cities[0]
    unit = frame.unit
    if frame.op == "duration":
        unit = "trip"
        base.pop("activity", None)
    return Query(op=frame.op, unit=unit, field=frame.field, filter=Filter(**base))


def _compare_sides(slots: Slots, base: dict[str, Any]) -> tuple[Filter, Filter]:
    common = {k: v for k, v in base.items() if k not in ("start", "end", "months")}
    if len(slots.years) >= 2:
        a, b = slots.years[:2]
        return (Filter(**common, start=dt.date(a, 1, 1), end=dt.date(a + 1, 1, 1), label=str(a)),
                Filter(**common, start=dt.date(b, 1, 1), end=dt.date(b + 1, 1, 1), label=str(b)))  # fmt: skip
    named = [("place", p) for p in slots.places] + [("city", c) for c in slots.cities]
    common.update(_time_filter(slots))
    (ka, va), (kb, vb) = named[:2]
    return Filter(**common, **{ka: va}, label=va), Filter(**common, **{kb: vb}, label=vb)


# ----------------------------------------------------------------------------------------------- follow-ups

_FOLLOW_UP = re.compile(r"^\s*(and|what about|how about|and what about|same for|also|then)\b|^\s*(in|on|during) ")


def refine(previous: Query, question: str, slots: Slots, frame: Frame | None) -> Query | None:
    """The previous query changed by a follow-up ("and in 2022?", "where was that?"), or None if not one."""
    q = question.lower().strip()
    short = len(q.split()) <= 6
    if frame is None and not (_FOLLOW_UP.search(q) or short):
        return None
    flt = previous.filter.model_copy()
    updates: dict[str, Any] = {}
    if slots.time is not None:
        updates.update({"start": None, "end": None, "months": []} | _time_filter(slots))
    if slots.cities:
        updates["city"] = slots.cities[0]
    if slots.places:
        updates["place"] = slots.places[0]
    if slots.items or slots.people:
        updates["entities"] = [*slots.items, *slots.people]
    if slots.activity and frame is None:
        updates["activity"] = slots.activity
    refers = re.search(r"\b(that|this|it|there|then|those|them)\b", q)
    if frame is None:
        if not updates:
            return None
        return previous.model_copy(update={"filter": flt.model_copy(update=updates)})
    if refers and short:  # "where was that?": the previous filter, the new question's shape
        op = frame.op
        if previous.op in ("first", "last") and op in ("list", "first", "last"):
            op = previous.op
        return Query(op=op, unit=frame.unit, field=frame.field, filter=flt.model_copy(update=updates))
    return None


# ------------------------------------------------------------------------------------------------ parsers


class RuleParser:
    """General rules: question cues for the frame, :func:`extract_slots` for the filter."""

    name = "rules"

    def frame(self, question: str, slots: Slots) -> Frame | None:
        """The frame of a question (None when no rule fits)."""
        return rule_frame(question, slots)

    def translate(
        self, question: str, today: dt.date, vocab: Vocabulary, previous: Query | None = None
    ) -> Query | None:
        """A query for the question, a refinement of ``previous``, or None."""
        slots = extract_slots(question, today, vocab)
        frame = self.frame(question, slots)
        if previous is not None:
            refined = refine(previous, question, slots, frame)
            if refined is not None:
                return refined
        if frame is None:
            return None
        try:
            return assemble(frame, slots)
        except (ValidationError, ValueError) as exc:
            logger.debug("no query for %r: %s", question, exc)
            return None


class LearnedParser(RuleParser):
    """The frame from a classifier over sentence embeddings (trained on generated pairs); slots as the rules."""

    name = "learned"

    def __init__(self, embedder: Any = None, min_probability: float = 0.2, seed: int = 0) -> None:
        if embedder is None:
            from retrieval.embed import TextEmbedder

            embedder = TextEmbedder()
        self.embedder, self.min_probability, self.seed = embedder, min_probability, seed
        self.model: Any = None
        self.labels: list[str] = []

    def fit(self, questions: Sequence[str], frames: Sequence[Frame]) -> LearnedParser:
        """Train the frame classifier on (question, frame) pairs."""
        from sklearn.linear_model import LogisticRegression

        features = self.embedder.embed_texts(list(questions))
        targets = [f.key() for f in frames]
        self.model = LogisticRegression(C=4.0, max_iter=2000, random_state=self.seed).fit(features, targets)
        self.labels = list(self.model.classes_)
        return self

    def frame(self, question: str, slots: Slots) -> Frame | None:
        if self.model is None:
            raise ValueError("LearnedParser.fit must run before translate")
        probabilities = self.model.predict_proba(self.embedder.embed_texts([question]))[0]
        best = int(probabilities.argmax())
        if probabilities[best] < self.min_probability:
            return None
        return Frame.from_key(self.labels[best])


LLM_PROMPT = """Translate the user's question about their own camera roll into one JSON query. Today is {today}.
The query follows this JSON schema:
{schema}
Dates are YYYY-MM-DD; end is exclusive. Use names exactly as they appear in the user's vocabulary:
{vocab}
Reply with the JSON object only. If no query fits, reply {{"op": null}}."""


class LLMParser:
    """Any chat model (an endpoint) prompted with the schema and the vocabulary; the reply validated."""

    name = "llm"

    def __init__(self, model: Any, vocab_limit: int = 60) -> None:
        self.model, self.vocab_limit = model, vocab_limit
        self.format_errors = 0

    def messages(self, question: str, today: dt.date, vocab: Vocabulary, previous: Query | None) -> list[dict]:
        """The prompt: schema, vocabulary, the previous query (for follow-ups) and the question."""
        listed = {k: v[: self.vocab_limit] for k, v in vocab.as_dict().items()}
        system = LLM_PROMPT.format(today=today.isoformat(), schema=json.dumps(query_schema()), vocab=json.dumps(listed))
        content = question
        if previous is not None:
            content = f"Previous query: {previous.model_dump_json(exclude_none=True)}\nQuestion: {question}"
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]

    def translate(
        self, question: str, today: dt.date, vocab: Vocabulary, previous: Query | None = None
    ) -> Query | None:
        """Ask the model; one repair round when its reply is not a valid query."""
        messages = self.messages(question, today, vocab, previous)
        for _ in range(2):
            reply = self.model.generate(messages, max_new_tokens=256, temperature=0.0)
            try:
                start = reply.find("{")
                if start < 0:
                    raise ValueError("no JSON object in the reply")
                obj, _ = json.JSONDecoder().raw_decode(reply[start:])
                if isinstance(obj, dict) and obj.get("op") is None:
                    return None
                return Query.model_validate(obj)
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                self.format_errors += 1
                problem = str(exc).splitlines()[0][:300]
                fix = f"Invalid query ({problem}). Reply with one JSON object."
                messages = [*messages, {"role": "assistant", "content": reply[:500]}, {"role": "user", "content": fix}]
        return None
