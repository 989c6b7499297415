"""A second QA generator for the demo roll: many phrasings per intent and compositional questions.

Fourteen intents (what was eaten in a city, photos of a trip, last / first time a dish was eaten, trip length,
a holiday, distinct restaurants, the most frequent restaurant, beach days before a trip, yes/no, beach days in
a season, a comparison of two years, where a dish was last eaten, whose birthdays) with ten or more phrasings
each, written independently of any parser. Answers come from the timeline's ground truth (the same generator
state that wrote the roll). Templates are split BY TEMPLATE into ``seen`` (translators may be trained and tuned
on them) and ``unseen`` (reported only): :func:`template_split`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.camroll.data import QARecord
from agents.camroll.demo_data import DISHES, MANIFEST, Event, Timeline, build_timeline
from agents.camroll.errors import CamrollDataError
from agents.camroll.parsing import Frame, LearnedParser

# intent -> (frame "op/unit/field" the question asks for, templates)
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "items_in_city": ("list/event/item", (
        "What did I eat in {city}?", "Which dishes did I have in {city}?", "What food did I try while I was in {city}?",
        "List the meals I had in {city}.", "What did I have for dinner in {city}?",
        "Remind me what I ate during my stay in {city}.", "What were the dishes on my {city} trip?",
        "Tell me the foods I tasted in {city}.", "What kind of food did I get in {city}?", "In {city}, what did I eat?",
        "Which meals did I photograph in {city}?", "What was on my plate in {city}?",
    )),
    "photos_on_trip": ("count/photo/-", (
        "How many photos did I take on my {city} trip?", "How many pictures did I shoot in {city}?",
        "What's the number of photos from my trip to {city}?", "How many shots do I have from {city}?",
        "Count the photos I took in {city}.", "How many images came back from my {city} trip?",
        "How many pics did I snap while in {city}?", "My {city} trip: how many photos?",
        "How many photos are from {city}?", "How many pictures did I take during my visit to {city}?",
    )),
    "last_dish": ("last/event/date", (
        "When was the last time I had {dish}?", "When did I last eat {dish}?",
        "What's the most recent time I ate {dish}?", "When did I have {dish} most recently?",
        "Last time I ate {dish} was when?", "On what date did I last have {dish}?",
        "When did I most recently order {dish}?", "What was the latest date I had {dish}?",
        "When was my last {dish}?", "Which day did I last eat {dish}?",
    )),
    "first_dish": ("first/event/date", (
        "When was the first time I had {dish}?", "What's the earliest I ate {dish}?",
        "On what date did I first try {dish}?", "When did I have {dish} for the first time?",
        "My first {dish}: when was it?", "Which day did I first have {dish}?",
        "When did I try {dish} for the very first time?", "What was the first date I ordered {dish}?",
        "Earliest photo of {dish}: what day?", "When did I eat {dish} for the first time?",
    )),
    "trip_duration": ("duration/trip/-", (
        "How many days was my trip to {city}?", "How long was my {city} trip?", "How long did I stay in {city}?",
        "For how many days was I in {city}?", "How many days did I spend in {city}?",
        "What was the length of my trip to {city} in days?", "How long was I away in {city}?",
        "My {city} trip lasted how many days?", "Number of days I was in {city}?",
        "How long did my visit to {city} last?",
    )),
    "holiday": ("list/event/-", (
        "What did I do on {holiday} {year}?", "Where was I on {holiday} {year}?", "What happened on {holiday} {year}?",
        "Show me {holiday} {year}.", "How did I spend {holiday} {year}?", "What was I up to on {holiday} {year}?",
        "Tell me about {holiday} {year}.", "Where did I go on {holiday} {year}?",
        "What did my {holiday} {year} look like?", "What were my plans on {holiday} {year}?",
    )),
    "distinct_restaurants": ("count_distinct/event/place", (
        "How many different restaurants did I eat at in {city}?",
        "In {city}, how many distinct restaurants did I go to?",
        "How many unique places did I have dinner at in {city}?",
        "Count the different restaurants I visited in {city}.",
        "How many separate restaurants did I try in {city}?", "At how many different restaurants did I dine in {city}?",
        "How many restaurants in {city} have I eaten at?",
        "What's the number of different eateries I went to in {city}?",
        "How many distinct places did I eat in {city}?", "I ate out in {city} at how many different restaurants?",
    )),
    "top_restaurant": ("most_frequent/event/place", (
        "Which restaurant did I go to most often?", "What's my most visited restaurant?",
        "Where do I eat out the most?",
        "Which restaurant have I been to the most times?", "What is my favourite restaurant, going by visits?",
        "Which place did I have dinner at most frequently?", "Where did I eat most often?",
        "Which restaurant shows up most in my photos?", "Name the restaurant I visited the most.",
        "Most frequent restaurant?",
    )),
    "beach_before_trip": ("count/day/-", (
        "How many times did I go to the beach before my trip to {city}?",
        "Before my {city} trip, how many beach days did I have?",
        "How often was I at the beach before I went to {city}?",
        "How many beach visits did I make before travelling to {city}?",
        "Count my beach days prior to the {city} trip.",
        "How many times had I been to the beach by the time of my {city} trip?",
        "Number of beach outings before my {city} vacation?",
        "How many days at the beach did I have before my holiday in {city}?",
        "Before the trip to {city}, how many times did I hit the beach?",
        "How many beach outings came before my {city} trip?",
    )),
    "ever_dish": ("exists/event/-", (
        "Did I ever eat {dish}?", "Have I ever had {dish}?", "Have I tried {dish} before?",
        "Is there any photo of me eating {dish}?", "Did I have {dish} at some point?",
        "Was there ever a {dish} dinner?",
        "Have I eaten {dish}?", "Any {dish} in my photos?", "Did {dish} ever show up on my plate?",
        "Do I have pictures of {dish}?",
    )),
    "season_beach": ("count/day/-", (
        "How many times did I go to the beach in {season} {year}?",
        "How many beach days did I have in the {season} of {year}?",
        "How often did I visit the beach during {season} {year}?",
        "In {season} {year}, how many times was I at the beach?", "How many days at the beach in {season} {year}?",
        "How many beach outings did I have in {season} {year}?",
        "How many times did I go to the beach last {season}?", "Last {season}, how many beach days did I have?",
        "How often was I at the beach last {season}?", "How many visits to the beach did I make last {season}?",
    )),
    "compare_years": ("compare/day/-", (
        "Did I go to the beach more in {y1} or {y2}?", "Was I at the beach more often in {y1} or in {y2}?",
        "Which year had more beach days, {y1} or {y2}?", "More beach visits: {y1} or {y2}?",
        "In which year did I go to the beach more, {y1} or {y2}?",
        "{y1} or {y2}: when did I go to the beach more?",
        "Compare my beach days in {y1} and {y2}: which was more?",
        "Which had more days at the beach, {y1} or {y2}?", "Did I spend more days at the beach in {y1} or {y2}?",
        "Was {y1} or {y2} the bigger beach year?",
    )),
    "where_dish_last": ("last/event/place", (
        "Where did I last have {dish}?", "Where did I eat {dish} most recently?",
        "At which restaurant did I last have {dish}?", "Where was I the last time I ate {dish}?",
        "Which place served me {dish} the last time?", "Where did I get {dish} last?",
        "The last time I had {dish}, where was it?", "Most recent {dish}: where?",
        "Which restaurant did I last order {dish} at?", "Where did my latest {dish} come from?",
    )),
    "birthdays": ("list/event/person", (
        "Whose birthday did I celebrate in {year}?", "Whose birthday parties did I attend in {year}?",
        "Which friends had birthday parties I went to in {year}?", "Who did I celebrate a birthday with in {year}?",
        "In {year}, whose birthdays did I go to?", "List the people whose birthday I celebrated in {year}.",
        "Who had a birthday party in {year} that I photographed?", "Which birthdays did I attend in {year}?",
        "Name the friends whose birthdays I went to in {year}.", "Whose birthday party photos do I have from {year}?",
    )),
}  # fmt: skip
HOLIDAYS = (("New Year's Day", 1, 1), ("Valentine's Day", 2, 14), ("Independence Day", 7, 4), ("Halloween", 10, 31),
            ("Christmas Eve", 12, 24), ("Christmas Day", 12, 25), ("Boxing Day", 12, 26),
            ("New Year's Eve", 12, 31))  # fmt: skip
SEASON_MONTHS = {"spring": (3, 4, 5), "summer": (6, 7, 8), "autumn": (9, 10, 11)}
SEEN_SHARE = 0.6


def template_split(seed: int = 0) -> dict[str, str]:
    """``"intent#index" -> "seen" | "unseen"``: per intent, 60% of the templates seen, the rest unseen."""
    rng = random.Random(f"camroll-paraphrase-split:{seed}")
    split = {}
    for intent, (_, templates) in TEMPLATES.items():
        order = list(range(len(templates)))
        rng.shuffle(order)
        n_seen = round(SEEN_SHARE * len(templates))
        for rank, index in enumerate(order):
            split[f"{intent}#{index}"] = "seen" if rank < n_seen else "unseen"
    return split


def accuracy_by_template_split(rows: list[dict[str, Any]], split_seed: int) -> dict[str, dict[str, float | int]]:
    """Seen/unseen accuracy of scored rows (each with ``template`` and ``correct``) under another split seed.

    The questions do not depend on the split (one per template and user), so one run is re-scored under any
    split seed without asking again.
    """
    split = template_split(split_seed)
    out: dict[str, dict[str, float | int]] = {}
    for name in ("seen", "unseen"):
        mine = [bool(r["correct"]) for r in rows if split.get(r["template"]) == name]
        out[name] = {"n": len(mine), "accuracy": round(sum(mine) / len(mine), 4) if mine else float("nan")}
    return out


@dataclass(frozen=True)
class ParaphraseQA:
    """A generated question with its intent, template id, frame and split."""

    qa: QARecord
    intent: str
    template: str
    frame: str
    split: str


def _with_photo_ids(timeline: Timeline) -> Timeline:
    """The photo ids the roll writer gives each event (numbered in event order), filled into the timeline."""
    number = 0
    for event in timeline.events:
        event.photo_ids = [f"{number + i + 1:06d}" for i in range(event.n_photos)]
        number += event.n_photos
    return timeline


def _ids(events: list[Event]) -> list[str]:
    return [p for e in events for p in e.photo_ids]


def _say(day: dt.date) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def _season_range(season: str, year: int) -> tuple[dt.date, dt.date]:
    months = SEASON_MONTHS[season]
    end = dt.date(year + (months[-1] == 12), months[-1] % 12 + 1, 1)
    return dt.date(year, months[0], 1), end


def intent_instances(timeline: Timeline, rng: random.Random) -> dict[str, list[tuple[dict[str, str], Any, str, list]]]:
    """Per intent: (slot values, answer, answer type, evidence) candidates computed from the ground truth."""
    events, asked_on = timeline.events, timeline.end + dt.timedelta(days=7)
    dinners = [e for e in events if e.kind == "dinner"]
    beach = [e for e in events if e.kind == "beach"]
    out: dict[str, list] = defaultdict(list)
    for trip in timeline.trips:
        trip_events = [e for e in events if e.trip == trip.index]
        if sum(t.city == trip.city for t in timeline.trips) > 1:
            continue
        meals = [e for e in trip_events if e.kind == "dinner"]
        slots = {"city": trip.city}
        if meals:
            out["items_in_city"].append((slots, sorted({e.subject for e in meals}), "set", _ids(meals)))
            places = {e.place for e in meals}
            out["distinct_restaurants"].append((slots, len(places), "numeric", _ids(meals)))
        out["photos_on_trip"].append((slots, sum(e.n_photos for e in trip_events), "numeric", _ids(trip_events)))
        out["trip_duration"].append((slots, trip.days, "numeric", []))
        before = [e for e in beach if e.day < trip.start]
        out["beach_before_trip"].append((slots, len({e.day for e in before}), "numeric", _ids(before)))
    home_meals = [e for e in dinners if e.city == timeline.home_city]
    if home_meals:
        out["distinct_restaurants"].append(
            ({"city": timeline.home_city}, len({e.place for e in home_meals}), "numeric", _ids(home_meals))
        )
    by_dish: dict[str, list[Event]] = defaultdict(list)
    for event in dinners:
        by_dish[event.subject].append(event)
    for dish, times in sorted(by_dish.items()):
        slots = {"dish": dish}
        out["last_dish"].append((slots, times[-1].day.isoformat(), "date", times[-1].photo_ids))
        out["first_dish"].append((slots, times[0].day.isoformat(), "date", times[0].photo_ids))
        out["where_dish_last"].append((slots, times[-1].place, "exact", times[-1].photo_ids))
        out["ever_dish"].append((slots, "yes", "yesno", times[0].photo_ids))
    for dish in [d for d in DISHES if d not in by_dish]:
        out["ever_dish"].append(({"dish": dish}, "no", "yesno", []))
    visits = Counter(e.place for e in dinners)
    ranked = visits.most_common(2)
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        top = [e for e in dinners if e.place == ranked[0][0]]
        out["top_restaurant"].append(({}, ranked[0][0], "exact", _ids(top)))
    per_day: dict[dt.date, list[Event]] = defaultdict(list)
    for event in events:
        per_day[event.day].append(event)
    years = sorted({e.day.year for e in events})
    for name, month, day_of_month in HOLIDAYS:
        for year in years:
            day = dt.date(year, month, day_of_month)
            if per_day.get(day) and day < asked_on:
                places = sorted({e.place for e in per_day[day]})
                out["holiday"].append(({"holiday": name, "year": str(year)}, places, "set", _ids(per_day[day])))
    for season in SEASON_MONTHS:
        for year in years:
            start, end = _season_range(season, year)
            if end > asked_on:
                continue
            days = {e.day for e in beach if start <= e.day < end}
            is_last = all(_season_range(season, y)[1] > asked_on for y in range(year + 1, asked_on.year + 1))
            out["season_beach"].append(({"season": season, "year": str(year), "last": is_last}, len(days), "numeric",
                                        _ids([e for e in beach if start <= e.day < end])))  # fmt: skip
    beach_days = {y: len({e.day for e in beach if e.day.year == y}) for y in years}
    for a in years:
        for b in years:
            if a < b and beach_days[a] != beach_days[b]:
                winner = a if beach_days[a] > beach_days[b] else b
                out["compare_years"].append(({"y1": str(a), "y2": str(b)}, str(winner), "exact", []))
    for year in years:
        parties = [e for e in events if e.kind == "party" and e.day.year == year]
        if parties:
            out["birthdays"].append(({"year": str(year)}, sorted({e.subject for e in parties}), "set", _ids(parties)))
    return out


def generate_paraphrase_qa(user: str, seed: int, n_photos: int, split_seed: int = 0) -> list[ParaphraseQA]:
    """One question per template for a user of a demo roll written with (seed, n_photos)."""
    timeline = _with_photo_ids(build_timeline(user, seed, n_photos))
    rng = random.Random(f"camroll-paraphrase:{seed}:{user}")
    asked_on = timeline.end + dt.timedelta(days=7)
    split = template_split(split_seed)
    instances = intent_instances(timeline, rng)
    out: list[ParaphraseQA] = []
    for intent, (frame, templates) in TEMPLATES.items():
        pool = instances.get(intent, [])
        if not pool:
            continue
        for index, template in enumerate(templates):
            candidates = pool
            if intent == "season_beach":  # "last {season}" templates need the most recent such season
                wants_last = "last {season}" in template
                candidates = [c for c in pool if c[0]["last"] == wants_last] or []
            elif intent == "ever_dish":  # half yes, half no
                wanted = "yes" if index % 2 == 0 else "no"
                candidates = [c for c in pool if c[1] == wanted] or pool
            if not candidates:
                continue
            slots, answer, answer_type, evidence = rng.choice(candidates)
            question = template.format(**{k: v for k, v in slots.items() if isinstance(v, str)})
            record = QARecord(
                f"u{user}-p-{intent}-{index}", question, answer, answer_type, intent, tuple(evidence), asked_on
            )
            out.append(ParaphraseQA(record, intent, f"{intent}#{index}", frame, split[f"{intent}#{index}"]))
    return [dataclasses.replace(p) for p in out]


def training_pairs(
    users: list[str], seed: int, n_photos: int, split: str = "seen", split_seed: int = 0
) -> tuple[list[str], list[str]]:
    """(questions, frame keys) of one template split over some users: what a learned translator trains on.

    Every template of the split is filled with every candidate slot value (up to 8 per template and user), so
    the training set varies the values as much as the roll allows.
    """
    questions, frames = [], []
    templates = template_split(split_seed)
    for user in users:
        timeline = _with_photo_ids(build_timeline(user, seed, n_photos))
        rng = random.Random(f"camroll-paraphrase-train:{seed}:{user}")
        instances = intent_instances(timeline, rng)
        for intent, (frame, phrasings) in TEMPLATES.items():
            for index, template in enumerate(phrasings):
                if templates[f"{intent}#{index}"] != split:
                    continue
                pool = list(instances.get(intent, []))
                rng.shuffle(pool)
                for slots, *_ in pool[:8]:
                    questions.append(template.format(**{k: v for k, v in slots.items() if isinstance(v, str)}))
                    frames.append(frame)
    return questions, frames


def train_learned_parser(
    users: list[str], seed: int, n_photos: int, embedder: Any = None, split_seed: int = 0
) -> LearnedParser:
    """A learned translator trained on the SEEN templates, filled with these users' values."""
    questions, frames = training_pairs(users, seed, n_photos, split="seen", split_seed=split_seed)
    return LearnedParser(embedder).fit(questions, [Frame.from_key(f) for f in frames])


def roll_paraphrases(data: str | Path, users: list[str], split: str = "all") -> dict[str, list[ParaphraseQA]]:
    """The paraphrase questions of a demo roll's users (the roll's manifest gives the seed and size)."""
    manifest = Path(data) / MANIFEST
    if not manifest.is_file():
        raise CamrollDataError(f"{manifest}: not found; the paraphrase set needs a demo roll (it reads its seed)")
    info = json.loads(manifest.read_text(encoding="utf-8"))
    try:
        seed, n_photos = int(info["seed"]), int(info["photos_per_user"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CamrollDataError(f"{manifest}: field 'seed' or 'photos_per_user' missing or not a number") from exc
    out = {}
    for user in users:
        qas = generate_paraphrase_qa(user, seed, n_photos)
        out[user] = [p for p in qas if split == "all" or p.split == split]
    return out
