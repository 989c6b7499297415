"""camroll typed facts, the query language, the translators, follow-ups, honest failure and the default path."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from agents.camroll.answerers import QueryAnswerer
from agents.camroll.data import read_photos
from agents.camroll.demo_data import DISHES, make_demo_roll
from agents.camroll.facts import Vocabulary, event_facts, read_caption, vocabulary
from agents.camroll.geo import CITIES
from agents.camroll.graph import ask, build_graph, conversation, sqlite_checkpointer, thread_key
from agents.camroll.memory import CamrollMemory, NoVisual, to_seconds
from agents.camroll.paraphrase import TEMPLATES, generate_paraphrase_qa, template_split, training_pairs
from agents.camroll.parsing import Frame, LearnedParser, LLMParser, RuleParser, extract_slots, parse_time
from agents.camroll.qa import is_correct
from agents.camroll.query import Filter, Query, Relative, execute, failure_text, is_empty, nearest, values
from agents.camroll.tools import CamrollTools
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder

TODAY = dt.date(2024, 1, 4)
CITY_NAMES = [c[0] for c in CITIES]


# ------------------------------------------------------------------------------------------------- facts


def test_caption_rules_read_places_people_items_and_activity() -> None:
    facts = read_caption("Tried the okonomiyaki at Harbor Noodle Bar Osaka", ["Home"], CITY_NAMES)
    assert facts.items == ["okonomiyaki"] and facts.places == ["Harbor Noodle Bar Osaka"]
    assert facts.activities == ["meal"]  # "Harbor" is a sight, but the place's head noun says restaurant
    party = read_caption("Zoe's birthday party", [], CITY_NAMES)
    assert party.people == ["Zoe"] and party.activities == ["party"] and party.items == []
    museum = read_caption("Visited the Dubai Museum of Art", [], CITY_NAMES)
    assert museum.places == ["Dubai Museum of Art"] and museum.activities == ["museum"]
    event = event_facts(["kimchi stew at Gogi House tonight", "kimchi stew"], ["plate"], "", "Seoul", [], CITY_NAMES)
    assert event["items"] == ["kimchi stew"] and event["objects"] == ["plate"] and event["place"] == "Gogi House"


def test_vocabulary_comes_from_the_roll_not_the_generator_lists() -> None:
    events = [
        {"items": ["okonomiyaki"], "place": "Gogi House", "city": "Seoul", "activity": "meal", "people": ["Zoe"]},
        {"items": ["kimchi stew"], "place": "Gogi House", "city": "Seoul", "activity": "meal"},
    ]
    vocab = vocabulary(events)
    assert vocab.items == Counter({"okonomiyaki": 1, "kimchi stew": 1}) and vocab.places["Gogi House"] == 2
    assert "okonomiyaki" not in DISHES  # a dish no generator list knows is still matched
    slots = extract_slots("When did I last have okonomiyaki at Gogi House?", TODAY, vocab)
    assert slots.items == ["okonomiyaki"] and slots.places == ["Gogi House"]
    assert extract_slots("Did I ever eat pizza?", TODAY, vocab).items == []  # in DISHES, not in this roll
    assert extract_slots("Did I ever eat pizza?", TODAY, vocab).unknown == ["pizza"]


# ------------------------------------------------------------------------------------------- the executor


def _event(key: str, when: str, place: str, city: str, activity: str, items=(), people=(), n: int = 2) -> dict:
    start = dt.datetime.fromisoformat(when)
    meta = {"user": "1", "level": "event", "key": key, "date": start.date().isoformat(), "place": place,
            "city": city, "activity": activity, "n_photos": n, "start_ts": to_seconds(start),
            "end_ts": to_seconds(start + dt.timedelta(minutes=30))}  # fmt: skip
    meta["photo_ids"] = [f"{key}-{i}" for i in range(n)]
    if items:
        meta["items"] = list(items)
    if people:
        meta["people"] = list(people)
    return {"id": f"user1/event/{key}", "document": f"{place} {' '.join(items)}", "metadata": meta}


@pytest.fixture()
def nodes() -> dict[str, list[dict]]:
    events = [
        _event("e1", "2022-01-01T19:00", "Luigi's", "London", "meal", ["ramen"]),
        _event("e2", "2022-03-05T19:00", "Sakura", "London", "meal", ["sushi"]),
        _event("e3", "2022-04-23T10:00", "Old Town", "Marseille", "sightseeing", n=5),
        _event("e4", "2022-04-24T19:00", "Chez Nous", "Marseille", "meal", ["bouillabaisse"], n=3),
        _event("e5", "2022-07-02T15:00", "Sunset Beach", "London", "beach"),
        _event("e6", "2022-07-09T15:00", "Sunset Beach", "London", "beach"),
        _event("e7", "2023-05-01T19:00", "Luigi's", "London", "meal", ["ramen"]),
        _event("e8", "2023-06-10T18:00", "Home", "London", "party", people=["Zoe"]),
        _event("e9", "2023-08-15T15:00", "Sunset Beach", "London", "beach"),
    ]
    trip = {"id": "user1/trip/2022-04-23", "document": "Trip to Marseille",
            "metadata": {"user": "1", "level": "trip", "date": "2022-04-23", "end_date": "2022-04-25",
                         "city": "Marseille", "start_ts": to_seconds(dt.datetime(2022, 4, 23)),
                         "end_ts": to_seconds(dt.datetime(2022, 4, 25, 23, 59, 59)), "n_photos": 8,
                         "photo_ids": ["e3-0"], "places": ["Old Town", "Chez Nous"]}}  # fmt: skip
    return {"event": events, "trip": [trip]}


def test_executor_runs_every_operation(nodes: dict[str, list[dict]]) -> None:
    def run(**kwargs) -> dict:
        return execute(Query(**kwargs), nodes)

    ramen = Filter(entities=["ramen"])
    assert run(op="list", field="item", filter=Filter(city="Marseille", activity="meal"))["value"] == ["bouillabaisse"]
    assert run(op="count", unit="photo", filter=Filter(city="Marseille"))["value"] == 8
    assert run(op="count", unit="day", filter=Filter(activity="beach"))["value"] == 3
    assert run(op="count", unit="trip")["value"] == 1
    assert run(op="count_distinct", field="place", filter=Filter(activity="meal", city="London"))["value"] == 2
    assert run(op="first", field="date", filter=ramen)["value"] == ["2022-01-01"]
    assert run(op="last", field="date", filter=ramen)["value"] == ["2023-05-01"]
    assert run(op="last", field="place", filter=Filter(entities=["sushi"]))["value"] == ["Sakura"]
    top = run(op="most_frequent", field="place", filter=Filter(activity="meal"))
    assert top["value"] == ["Luigi's"] and top["times"] == 2
    assert run(op="exists", filter=Filter(entities=["sushi"]))["value"] is True
    assert run(op="exists", filter=Filter(keywords=["pizza"]))["value"] is False
    assert run(op="duration", unit="trip", filter=Filter(city="Marseille"))["value"] == 3
    before = Filter(activity="beach", relative=Relative(relation="before", anchor=Filter(city="Marseille")))
    assert run(op="count", unit="day", filter=before)["value"] == 0
    after = before.model_copy(update={"relative": Relative(relation="after", anchor=Filter(city="Marseille"))})
    assert run(op="count", unit="day", filter=after)["value"] == 3
    week = Relative(relation="before", anchor=Filter(city="Marseille"), window_days=60)
    assert run(op="list", field="item", filter=Filter(activity="meal", relative=week))["value"] == ["sushi"]
    summer = Filter(activity="beach", months=[6, 7, 8])  # a season without a year
    assert run(op="count", unit="day", filter=summer)["value"] == 3
    y22 = Filter(activity="beach", start=dt.date(2022, 1, 1), end=dt.date(2023, 1, 1), label="2022")
    y23 = Filter(activity="beach", start=dt.date(2023, 1, 1), end=dt.date(2024, 1, 1), label="2023")
    assert run(op="compare", unit="day", filter=y22, other=y23)["sides"] == [("2022", 2), ("2023", 1)]
    recommended = execute(Query(op="recommend", field="item", filter=Filter(activity="meal")), nodes,
                          catalogue={"item": ["ramen", "tacos", "sushi", "pho"]})  # fmt: skip
    assert recommended["value"] == ["tacos", "pho"]
    assert run(op="list", field="person", filter=Filter(activity="party"))["value"] == ["Zoe"]
    with pytest.raises(ValueError, match="compare needs"):
        Query(op="compare", filter=y22)


def test_empty_results_are_said_to_be_empty_with_the_nearest_events(nodes: dict[str, list[dict]]) -> None:
    query = Query(op="list", filter=Filter(start=dt.date(2022, 1, 2), end=dt.date(2022, 1, 3)))
    result = execute(query, nodes)
    assert is_empty(result)
    near = nearest(nodes, query)
    assert near[0]["date"] == "2022-01-01"  # the nearest in time, offered as such
    text = failure_text(query, near)
    assert text.startswith("I found no photos") and "Nearest I have: January 1, 2022" in text
    assert not is_empty(execute(Query(op="count", filter=Filter(entities=["pizza"])), nodes))  # 0 is an answer


# ------------------------------------------------------------------------------------------- time and rules


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("What did I do on New Year's Day 2022?", "2022-01-01", "2022-01-02"),
        ("Where was I on New Year's Eve 2021?", "2021-12-31", "2022-01-01"),
        ("What did I do last Christmas?", "2023-12-25", "2023-12-26"),
        ("How often did I swim in the summer of 2022?", "2022-06-01", "2022-09-01"),
        ("Beach days last summer?", "2023-06-01", "2023-09-01"),
        ("What did I eat last month?", "2023-12-01", "2024-01-01"),
        ("Where was I in May 2023?", "2023-05-01", "2023-06-01"),
        ("What did I do 3 weeks ago?", "2023-12-14", "2023-12-21"),
        ("What did I eat yesterday?", "2024-01-03", "2024-01-04"),
        ("What did I eat on July 14th, 2022?", "2022-07-14", "2022-07-15"),
        ("Where was I on Thanksgiving 2022?", "2022-11-24", "2022-11-25"),
        ("What did I do in 2022?", "2022-01-01", "2023-01-01"),
    ],
)
def test_time_expressions(text: str, start: str, end: str) -> None:
    slot = parse_time(text, TODAY)
    assert slot is not None and (slot.start.isoformat(), slot.end.isoformat()) == (start, end)


def test_season_without_a_year_and_the_week_before_a_trip() -> None:
    assert parse_time("How many times did I go to the beach in summer?", TODAY).months == (6, 7, 8)
    vocab = Vocabulary(items=Counter({"ramen": 2}), cities=Counter({"Marseille": 3, "London": 9}))
    query = RuleParser().translate("What did I eat the week before my trip to Marseille?", TODAY, vocab)
    assert query.op == "list" and query.field == "item"
    relative = query.filter.relative
    assert relative.relation == "before" and relative.window_days == 7 and relative.anchor.city == "Marseille"
    assert query.filter.city is None


def test_rule_parser_issue_examples() -> None:
    vocab = Vocabulary(items=Counter({"carbonara": 4}), cities=Counter({"Marseille": 3, "London": 9}))
    parser = RuleParser()

    def frame(question: str) -> tuple:
        q = parser.translate(question, TODAY, vocab)
        return q.op, q.unit, q.field, q.filter.city, q.filter.activity, tuple(q.filter.entities)

    assert frame("What did I eat in Marseille?") == ("list", "event", "item", "Marseille", "meal", ())
    assert frame("How many different restaurants did I eat at in London?")[:5] == (
        "count_distinct", "event", "place", "London", "meal")  # fmt: skip
    assert frame("How many photos did I take on my Marseille trip?")[:4] == ("count", "photo", None, "Marseille")
    assert frame("When was the last time I had carbonara?") == ("last", "event", "date", None, None, ("carbonara",))
    assert frame("How many days was my trip to Marseille?")[:4] == ("duration", "trip", None, "Marseille")
    assert parser.translate("What is the meaning of life?", TODAY, vocab) is None


def test_follow_ups_refine_the_previous_query() -> None:
    vocab = Vocabulary(items=Counter({"ramen": 2}), cities=Counter({"London": 9}))
    parser = RuleParser()
    first = parser.translate("How many times did I go to the beach in 2023?", TODAY, vocab)
    again = parser.translate("and in 2022?", TODAY, vocab, previous=first)
    assert again.op == "count" and again.filter.activity == "beach"
    assert (again.filter.start, again.filter.end) == (dt.date(2022, 1, 1), dt.date(2023, 1, 1))
    last = parser.translate("When did I last have ramen?", TODAY, vocab)
    where = parser.translate("where was that?", TODAY, vocab, previous=last)
    assert where.op == "last" and where.field == "place" and where.filter.entities == ["ramen"]
    fresh = parser.translate("How many photos did I take in 2022?", TODAY, vocab, previous=last)
    assert fresh.op == "count" and fresh.filter.entities == []  # a full question is not a follow-up


# ------------------------------------------------------------------------------------------- translators


class ScriptedModel:
    """A chat model that replies from a script and records the prompts."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.prompts = list(replies), []

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None) -> str:
        self.prompts.append(messages)
        return self.replies.pop(0)


def test_llm_parser_validates_repairs_and_declines() -> None:
    vocab = Vocabulary(items=Counter({"ramen": 2}))
    good = '{"op": "last", "field": "date", "filter": {"entities": ["ramen"]}}'
    model = ScriptedModel(['Sure! ```json\n{"op": "last", "filter": {"when": 1}}```', good])
    query = LLMParser(model).translate("When did I last have ramen?", TODAY, vocab)
    assert query == Query(op="last", field="date", filter=Filter(entities=["ramen"]))
    assert "Invalid query" in model.prompts[1][-1]["content"]  # the validation error went back to the model
    assert '"op"' in model.prompts[0][0]["content"] and "ramen" in model.prompts[0][0]["content"]  # schema, vocab
    assert LLMParser(ScriptedModel(['{"op": null}'])).translate("Hi?", TODAY, vocab) is None
    assert LLMParser(ScriptedModel(["no", "still no"])).translate("Hi?", TODAY, vocab) is None


def test_learned_parser_predicts_frames_from_generated_pairs() -> None:
    questions, frames = training_pairs(["1", "2"], seed=0, n_photos=200, split="seen")
    assert len(questions) > 100 and len(set(frames)) >= 10
    parser = LearnedParser(HashingEmbedder(), min_probability=0.0).fit(questions, [Frame.from_key(f) for f in frames])
    vocab = Vocabulary(cities=Counter({"Marseille": 1}))
    query = parser.translate("How many photos did I take on my Marseille trip?", TODAY, vocab)
    assert (query.op, query.unit) == ("count", "photo")


def test_paraphrase_set_is_split_by_template() -> None:
    assert all(len(templates) >= 10 for _, templates in TEMPLATES.values()) and len(TEMPLATES) >= 10
    split = template_split()
    assert set(split.values()) == {"seen", "unseen"}
    for intent in TEMPLATES:
        kinds = [v for k, v in split.items() if k.startswith(f"{intent}#")]
        assert kinds.count("seen") >= 5 and kinds.count("unseen") >= 3
    qas = generate_paraphrase_qa("3", seed=0, n_photos=300)
    assert {p.intent for p in qas} >= {"last_dish", "ever_dish", "compare_years", "trip_duration"}
    assert all(p.split == split[p.template] for p in qas)
    questions, _ = training_pairs(["3"], seed=0, n_photos=300, split="seen")
    unseen_templates = {TEMPLATES[p.intent][1][int(p.template.split("#")[1])] for p in qas if p.split == "unseen"}
    assert not any(q.startswith(t.split("{")[0]) and t.split("{")[0] for q in questions for t in unseen_templates
                   if len(t.split("{")[0]) > 25)  # fmt: skip


def test_yes_no_answers_are_matched_on_the_first_word() -> None:
    from agents.camroll.data import QARecord

    qa = QARecord("q", "Did I ever eat sushi?", "no", "yesno", "ever_dish", (), TODAY)
    assert is_correct(qa, "No, I found no meal 'sushi'.") and not is_correct(qa, "Yes, on May 1, 2022.")
    # a declined answer never scores, even when the nearest events it offers happen to hold the gold answer
    dated = QARecord("d", "When did I last have ramen?", "2022-01-09", "date", "last_dish", (), TODAY)
    assert is_correct(dated, "January 9, 2022, at Luigi's.")
    assert not is_correct(dated, "I found no photos of 'ramen'. Nearest I have: January 9, 2022 at Luigi's.")


# -------------------------------------------------------------------------------------- the default path


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory):
    roll = tmp_path_factory.mktemp("qroll")
    make_demo_roll(roll, users=["12", "13"], photos_per_user=150, questions_per_user=10, seed=0, progress=False)
    store = VectorStore(tmp_path_factory.mktemp("qstore"))
    mem = CamrollMemory(store, roll, embedder=HashingEmbedder(), visual=NoVisual(), cache_dir=roll / "cache")
    for user in ("12", "13"):
        mem.ingest(user, progress=False)
    yield mem
    store.close()


def _events(memory: CamrollMemory, user: str) -> list[dict]:
    return memory.store.get(memory.collection, where={"$and": [{"user": user}, {"level": "event"}]})


@pytest.mark.slow
def test_default_path_end_to_end_with_follow_ups_and_isolation(memory: CamrollMemory, tmp_path: Path) -> None:
    events = sorted(_events(memory, "12"), key=lambda e: e["metadata"]["start_ts"])
    dish_events = [e for e in events if e["metadata"].get("activity") == "meal" and e["metadata"].get("items")]
    dish = dish_events[-1]["metadata"]["items"][0]
    last = max(
        (e for e in events if dish in (e["metadata"].get("items") or [])), key=lambda e: e["metadata"]["start_ts"]
    )
    tools = CamrollTools(memory, "12")
    with sqlite_checkpointer(tmp_path / "threads.sqlite") as saver:
        graph = build_graph(tools, QueryAnswerer("12"), checkpointer=saver)
        thread = thread_key("12", "t")
        answer = ask(graph, f"When was the last time I had {dish}?", TODAY, thread)
        day = dt.date.fromisoformat(last["metadata"]["date"])
        assert f"{day:%B} {day.day}, {day.year}" in answer["answer"]
        assert answer["cited"] and all(c.startswith("user12/photo/") for c in answer["cited"])
        assert {c.rsplit("/", 1)[1] for c in answer["cited"]} <= set(last["metadata"]["photo_ids"])
        where = ask(graph, "where was that?", TODAY, thread)
        assert last["metadata"]["place"] in where["answer"]
    with sqlite_checkpointer(tmp_path / "threads.sqlite") as saver:  # a restart: the follow-up still refines
        graph = build_graph(tools, QueryAnswerer("12"), checkpointer=saver)
        assert len(conversation(graph, thread)) == 2
        city = ask(graph, "which city was that in?", TODAY, thread)
        assert last["metadata"]["city"] in city["answer"]
    honest = ask(build_graph(tools, QueryAnswerer("12")), "When did I last have unicorn steak?", TODAY)
    assert honest["answer"].startswith("I found no photos") and honest["cited"] == []
    declined = ask(build_graph(tools, QueryAnswerer("12")), "What is the meaning of life?", TODAY)
    assert declined["answer"].startswith("I can't turn that question into a query") and declined["cited"] == []
    # isolation: user 13's vocabulary and photos never reach user 12's answers
    own = tools.call("vocabulary", {})
    other = CamrollTools(memory, "13").call("vocabulary", {})
    only_13 = [p for p in other["places"] if p not in own["places"] and p != "Home"]
    assert only_13
    result = ask(build_graph(tools, QueryAnswerer("12")), f"How many times did I go to {only_13[0]}?", TODAY)
    assert result["cited"] == [] and all("user13" not in c for c in result["cited"])
    assert result["answer"] == "0 days."  # an unknown name counts nothing, not every day
    counted = tools.call("query", {"op": "count", "unit": "photo"})
    assert counted["value"] == len(read_photos(memory.user_folder("12")))


def test_cli_default_agent_is_the_query_layer(memory: CamrollMemory, tmp_path: Path, capsys) -> None:
    from agents.camroll.__main__ import build_parser, main

    assert build_parser().parse_args(["ask", "--user", "12", "q"]).agent == "query"
    argv = ["ask", "--user", "12", "--data", str(memory.data_root), "--store", str(tmp_path / "s"), "--embedder",
            "hashing", "--visual", "none", "--threads-db", str(tmp_path / "t.sqlite"), "--today", "2030-01-01",
            "--quiet", "How many photos did I take in 2022?"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["tool"] for c in out["tool_calls"]] == ["vocabulary", "query"]
    assert out["answer"].endswith("photos.") and out["answer"].split()[0].isdigit()


def test_paraphrase_set_needs_a_demo_roll_manifest(tmp_path: Path, memory: CamrollMemory) -> None:
    from agents.camroll.errors import CamrollDataError
    from agents.camroll.paraphrase import roll_paraphrases

    with pytest.raises(CamrollDataError, match=r"camroll\.json: not found"):
        roll_paraphrases(tmp_path, ["1"])
    sets = roll_paraphrases(memory.data_root, ["12"], split="unseen")
    assert sets["12"] and {p.split for p in sets["12"]} == {"unseen"}


def test_dishes_at_a_meal_are_not_mixed_with_the_objects_seen_there() -> None:
    meal = {"level": "event", "activity": "meal", "items": ["carbonara"], "objects": ["plate", "dining table"]}
    assert values(meal, "item") == ["carbonara"]  # "what did I eat" reports the dish, not the plate
    assert values({**meal, "items": []}, "item") == ["plate", "dining table"]  # no dish named: what was seen
    walk = {"level": "event", "activity": "park", "items": ["kite"], "objects": ["kite", "dog"]}
    assert values(walk, "item") == ["kite", "dog"]  # elsewhere the things seen are items too


def test_rows_are_rescored_under_another_template_split() -> None:
    from agents.camroll.paraphrase import accuracy_by_template_split

    split0 = template_split(0)
    rows = [{"template": t, "correct": s == "seen"} for t, s in split0.items()]
    same = accuracy_by_template_split(rows, 0)
    assert same["seen"]["accuracy"] == 1.0 and same["unseen"]["accuracy"] == 0.0
    other = accuracy_by_template_split(rows, 1)
    assert other["seen"]["n"] == same["seen"]["n"] and 0.0 < other["unseen"]["accuracy"] < 1.0
