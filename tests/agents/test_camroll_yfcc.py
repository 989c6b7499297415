"""The camroll paper's YFCC rolls: both readers, conversion, ingest through CamrollMemory, answering and scoring."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from agents.camroll import yfcc
from agents.camroll.data import read_photos, read_qa
from agents.camroll.errors import CamrollDataError
from agents.camroll.tools import CamrollTools
from agents.camroll.yfcc_cli import main as yfcc_main
from mllm.backbones import TokenUsage
from retrieval import VectorStore
from retrieval.embed import HashingEmbedder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "camroll_yfcc"
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camroll_yfcc_public"


class ScriptedEndpoint:
    """A chat model replaying canned replies, counting tokens like an endpoint's usage field."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.seen, self.usage = list(replies), [], TokenUsage()

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None, **_) -> str:
        self.seen.append(messages)
        self.usage.record(sum(len(m["content"].split()) for m in messages), 7)
        return self.replies.pop(0)


# ----------------------------------------------------------------------------------------------- readers


def test_website_reader_on_the_fixture() -> None:
    [user] = yfcc.read_users(FIXTURES / "website")
    assert (user.user, user.layout, user.name) == ("yfcc3", "website", "Test User")
    assert [p.photo_id for p in user.photos] == ["5001", "5002", "5003", "5004", "5005", "5006"]
    assert user.photos[0].title == "Farm visit" and "ducklings" in user.photos[0].description
    assert user.photos[4].description == ""  # a photo the VLM said nothing of is kept
    assert user.events[0].photo_ids == ("5001", "5002")
    assert [q.answer for q in user.questions] == ["June 4, 2008", "red", "three"]
    assert user.question_date == dt.date(2009, 7, 21)
    assert [yfcc.qa_record(user, q).answer_type for q in user.questions] == ["date", "exact", "exact"]
    assert yfcc.qa_record(user, user.questions[0]).answer == "2008-06-04"


def test_release_reader_on_the_fixture() -> None:
    assert yfcc.detect_layout(FIXTURES / "release") == "release"
    [user] = yfcc.read_users(FIXTURES / "release", ["u7"])
    assert (user.user, user.layout) == ("yfcc7", "release")
    first, _, berlin = user.photos
    assert (first.lat, first.lon) == (30.2672, -97.7431)
    assert berlin.lat is None and berlin.lon is None  # Flickr's 0,0 means "no GPS"
    assert first.title == "Morning paper (tags: newspaper austin)" and first.image.name == "7001.jpg"
    assert [(q.kind, q.detail_type, q.evidence) for q in user.questions] == [
        ("semantic", "place", ()),
        ("episodic", "time", ("7001",)),
        ("episodic", "object", ("7003",)),
    ]


def _copy_release(tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "release"
    shutil.copytree(FIXTURES / "release", root)
    return root


def test_readers_name_file_line_and_field(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "website" / "u3.json").read_text())
    data["photos"][1]["date"] = "June the fourth"
    (tmp_path / "u3.json").write_text(json.dumps(data))
    with pytest.raises(CamrollDataError, match=r"u3\.json, photos\[1\], field 'date'"):
        yfcc.read_website_user(tmp_path / "u3.json")
    (tmp_path / "u4.json").write_text('{"photos": [\n{"id": "1",}\n]}')
    with pytest.raises(CamrollDataError, match=r"u4\.json:2: not valid JSON"):
        yfcc.read_website_user(tmp_path / "u4.json")
    data["photos"][1]["date"] = "2008-06-04T09:25:00"
    data["suggestedQs"][0].pop("answer")
    (tmp_path / "u5.json").write_text(json.dumps(data))
    with pytest.raises(CamrollDataError, match=r"suggestedQs\[0\], field 'answer'"):
        yfcc.read_website_user(tmp_path / "u5.json")

    root = _copy_release(tmp_path)
    csv_path = root / "u7" / "photos.csv"
    good = csv_path.read_text()
    csv_path.write_text(good.replace("30.2675", "300.5"))
    with pytest.raises(CamrollDataError, match=r"photos\.csv:3, field 'latitude'"):
        yfcc.read_release_user(root / "u7")
    csv_path.write_text(good.replace("photo_id,datetaken", "name,when"))
    with pytest.raises(CamrollDataError, match=r"photos\.csv:1: header .* lacks an id column .* and datetaken"):
        yfcc.read_release_user(root / "u7")
    csv_path.write_text(good)
    qa_path = root / "u7" / "qa.json"
    qa_path.write_text(qa_path.read_text().replace('"7003"', '"9999"'))
    with pytest.raises(CamrollDataError, match=r"qa\.json, episodic_qa\[1\], field 'image_ref': '9999'"):
        yfcc.read_release_user(root / "u7")
    with pytest.raises(CamrollDataError, match=r"neither u<N>\.json"):
        yfcc.detect_layout(tmp_path / "release" / "u7")
    with pytest.raises(CamrollDataError, match=r"no user\(s\) \[4\]"):
        yfcc.read_users(FIXTURES / "website", [4])


def test_real_website_file() -> None:
    """u3.json of the paper's public timelines, read as shipped."""
    raw = json.loads((REAL / "u3.json").read_text(encoding="utf-8"))
    user = yfcc.read_website_user(REAL / "u3.json")
    assert len(user.photos) == raw["photoCount"] == 609 and len(user.questions) == 3
    assert all(a.timestamp <= b.timestamp for a, b in zip(user.photos, user.photos[1:], strict=False))
    assert sum(bool(p.description) for p in user.photos) > 600 and len(user.events) == len(raw["events"])
    assert user.questions[0].answer == "DEAD END"
    [dated] = [q for q in yfcc.read_website_user(REAL / "u6.json").questions if q.answer == "June 4, 2008"]
    assert yfcc.answer_type_of(dated.answer) == ("date", "2008-06-04")


# ------------------------------------------------------------------------------------------------ scoring


@pytest.mark.parametrize(
    ("prediction", "reference", "equal"),
    [
        ("November 18, 2007.", "2007-11-18", True),
        ("On November 18, 2007.", "2007-11-18", False),  # "on" is not an article: the typed match takes it
        ("18th Nov 2007", "November 18, 2007", True),
        ("Sunday, November 18, 2007", "11/18/2007", True),
        ("The Left Eye", "left eye", True),
        ("three", "3", True),
        ("1,000 photos", "1000 photos", True),
        ("DEAD-END!", "dead end", True),
        ("November 19, 2007", "November 18, 2007", False),
        ("green ball", "green", False),
    ],
)
def test_normaliser(prediction: str, reference: str, equal: bool) -> None:
    assert (yfcc.normalise_answer(prediction) == yfcc.normalise_answer(reference)) is equal


def test_score_answer_metrics() -> None:
    [user] = yfcc.read_users(FIXTURES / "website")
    kite = yfcc.qa_record(user, user.questions[1])
    scores = yfcc.score_answer(kite, "red", "It was a red kite shaped like a fish")
    assert not scores["exact"] and scores["contains"] and 0 < scores["token_f1"] < 0.5
    assert yfcc.score_answer(kite, "red", "Red.")["exact"]
    date = yfcc.qa_record(user, user.questions[0])
    assert yfcc.score_answer(date, "June 4, 2008", "It was on 2008-06-04, at the farm")["typed"]
    assert not yfcc.score_answer(date, "June 4, 2008", "It was on 2008-06-05")["typed"]


# ------------------------------------------------------------------------------------ ingest and answering


@pytest.fixture()
def ingested(tmp_path: Path):
    users = yfcc.read_users(FIXTURES / "website") + yfcc.read_users(FIXTURES / "release")
    roll = yfcc.write_roll(users, tmp_path / "roll", progress=False)
    with VectorStore(tmp_path / "store") as store:
        memory = yfcc.open_memory(store, roll, embedder=HashingEmbedder(), cache_dir=tmp_path / "cache")
        reports = yfcc.ingest_users(memory, users, progress=False)
        yield memory, users, reports, roll


def test_conversion_and_ingest_use_captions_not_events(ingested) -> None:
    memory, (web, _release), reports, roll = ingested
    assert [r["photos"] for r in reports] == [6, 3]
    assert reports[0]["visual_labelled"] == 5 and reports[0]["visual_unlabelled"] == 1  # the empty caption
    photos = read_photos(roll / "useryfcc3")
    assert photos[0].file == "captions/5001.txt" and photos[0].caption == "Farm visit"
    assert read_photos(roll / "useryfcc7")[0].file == "images/7001.jpg"
    assert [q.answer for q in read_qa(roll / "useryfcc3")] == ["2008-06-04", "red", "three"]
    [nest] = memory.store.get(memory.collection, ids=["useryfcc3/photo/5001"])
    assert "Caption: Farm visit" in nest["document"] and "freshly hatched brood" in nest["document"]
    events = memory.store.get(memory.collection, where={"$and": [{"user": "yfcc3"}, {"level": "event"}]})
    # Our events come from time gaps (09:10 and 09:25 together; 15:40 apart), not from the paper's eventIds.
    assert sorted(len(e["metadata"]["photo_ids"]) for e in events) == [1, 1, 2, 2]
    assert yfcc.event_agreement(memory, web)["adjusted_rand_index"] == 1.0
    # Per-user isolation: one store, two users; user 3's tools never see user 7's photos.
    hits = CamrollTools(memory, "yfcc3").call("search_by_text", {"query": "newspaper Austin", "k": 20})
    assert hits["results"] and all(r["id"].startswith("useryfcc3/") for r in hits["results"])
    again = memory.ingest("yfcc3", progress=False)
    assert again["upserted"] == {} and again["visual_cached"] == 6  # a second ingest writes nothing


def test_answers_end_to_end_with_planner_and_scripted_endpoint(ingested) -> None:
    memory, (web, _), _, _ = ingested
    rows = yfcc.answer_user(memory, web, yfcc.answerer_factory("planner"))
    assert len(rows) == 9 and {r["system"] for r in rows} == {"hierarchical", "flat_rag", "long_context"}
    count = next(r for r in rows if r["system"] == "hierarchical" and r["qa_id"] == "u3-s3")
    assert count["prediction"] == "3" and count["exact"] and count["tokens"] > 0 and count["seconds"] >= 0
    summary = yfcc.summarise_rows(rows)
    assert summary["hierarchical"]["n"] == 3 and summary["hierarchical"]["exact"] > 0.3
    # the default answerer (the typed query layer) answers the count in a sentence ("3 photos."): contained, not exact
    [default] = [r for r in yfcc.answer_user(memory, web, systems=("hierarchical",)) if r["qa_id"] == "u3-s3"]
    assert default["answerer"].startswith("query") and default["prediction"].split()[0] == "3" and default["contains"]

    endpoint = ScriptedEndpoint([
        '{"action": "search_by_text", "args": {"query": "freshly hatched ducklings", "k": 3}}',
        '{"action": "answer", "answer": "June 4, 2008", "photo_ids": ["5001"]}',
    ])  # fmt: skip
    one = yfcc.YfccUser(web.number, web.layout, web.source, web.photos, web.questions[:1])
    factory = yfcc.answerer_factory("endpoint", model=endpoint)
    [row] = yfcc.answer_user(memory, one, factory, systems=("hierarchical",), judge_model=ScriptedEndpoint(["yes"]))
    assert row["answerer"] == "endpoint" and row["exact"] and row["typed"] and row["judge"] is True
    assert row["cited"] == ["useryfcc3/photo/5001"] and row["evidence_day_hit"] is True
    assert row["tokens"] == endpoint.usage.total_tokens > 0
    assert "freshly hatched brood" in endpoint.seen[0][-1]["content"]  # prefetched: in its first prompt already
    assert endpoint.seen[1][-1]["content"].startswith("Answer now")  # one action of its own, then it must answer


def test_cli_ask_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data", str(FIXTURES / "website"), "--dir", str(tmp_path), "--embedder", "hashing", "--quiet"]
    assert yfcc_main(["ask", *common, "--user", "3", "How many photos did I take on June 4, 2008?"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["user"] == "yfcc3" and answer["answer"].split()[0] == "3" and answer["today"] == "2009-07-21"
    out = tmp_path / "eval"
    assert yfcc_main(["eval", *common, "--systems", "hierarchical", "--out", str(out)]) == 0
    report = json.loads((out / "camroll_yfcc.json").read_text())
    assert report["n_questions"] == 3 and len(report["rows"]) == 3 and report["answerer"] == "query"
    assert "| query | hierarchical | 3 |" in (out / "camroll_yfcc.md").read_text()
    capsys.readouterr()
    assert yfcc_main(["ask", *common, "--user", "x9", "hello?"]) == 2
    assert "expected a YFCC user number" in capsys.readouterr().err


def test_yfcc_verb_mounts_on_another_cli() -> None:
    """``add_parser`` is what ``python -m agents.camroll`` calls to offer ``yfcc VERB``."""
    import argparse

    from agents.camroll import yfcc_cli

    parser = argparse.ArgumentParser()
    yfcc_cli.add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["yfcc", "ask", "--user", "3", "--answerer", "planner", "What day was it?"])
    assert args.run is yfcc_cli._ask and args.user == "3" and args.question == "What day was it?"


def test_hybrid_default_reads_the_caption_detail_and_scores_declines_as_nothing(ingested) -> None:
    memory, (web, _), _, _ = ingested
    kite = yfcc.YfccUser(web.number, web.layout, web.source, web.photos, web.questions[1:2])
    assert kite.questions[0].answer == "red"
    reader = ScriptedEndpoint(["red [1]"])
    factory = yfcc.answerer_factory("query", model=reader, reader="endpoint")
    [row] = yfcc.answer_user(memory, kite, factory, systems=("hierarchical",))
    assert row["answerer"] == "query-rules+endpoint-reader" and row["prediction"].startswith("red (your photo of")
    assert row["cited"] == ["useryfcc3/photo/5004"] and row["contains"]
    assert "red kite" in reader.seen[0][1]["content"]  # the caption reached the reader, the question after it
    offline = yfcc.answer_user(memory, kite, yfcc.answerer_factory("query", reader="none"), systems=("hierarchical",))
    assert offline[0]["prediction"].startswith("I can't turn that question")  # no reader: declined, as before
    record = yfcc.qa_record(kite, kite.questions[0])
    declined = yfcc.score_answer(record, "red", "I can't answer that from your photos. The nearest: a red kite.")
    assert not any(declined[k] for k in ("exact", "typed", "contains")) and declined["token_f1"] == 0
