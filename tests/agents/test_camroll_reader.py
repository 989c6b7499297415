"""The hybrid default's caption readers, the threshold calibration, and the endpoint's lean tool loop."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from agents.camroll.answerers import Decision, LLMAnswerer, QueryAnswerer
from agents.camroll.errors import CamrollError
from agents.camroll.facts import Vocabulary
from agents.camroll.reader import (
    LLMReader,
    SentenceReader,
    calibrate_threshold,
    caption_sentences,
    make_reader,
)
from retrieval.embed import HashingEmbedder

TODAY = dt.date(2010, 1, 1)
HITS = [
    {"id": "useryfcc3/photo/5003", "date": "2008-06-04",
     "text": "Photo Wednesday June 4, 2008 15:40 at unknown place. Caption: Tractor. Seen: Later that afternoon my "
             "son sat on an old green tractor parked by the fence."},
    {"id": "useryfcc3/photo/5004", "date": "2009-07-19",
     "text": "Photo Sunday July 19, 2009 11:00 at unknown place. Caption: Beach day. Seen: At the beach my daughter "
             "flew a red kite shaped like a fish. Waves rolled in all day."},
]  # fmt: skip


class ScriptedChat:
    """A chat model replaying canned replies and recording what it was shown."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.seen = list(replies), []

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None, **_) -> str:
        self.seen.append(messages)
        return self.replies.pop(0)


def test_caption_sentences_drop_the_header_and_split_sentences() -> None:
    sentences = caption_sentences(HITS[1]["text"])  # "Beach day" is too short to quote; the header is dropped
    assert sentences == ["At the beach my daughter flew a red kite shaped like a fish", "Waves rolled in all day"]
    assert caption_sentences("Photo Monday May 1, 2023 10:00 at Gogi House, Seoul. Caption: kimchi stew at Gogi"
                             " House tonight") == ["kimchi stew at Gogi House tonight"]  # fmt: skip


def test_sentence_reader_answers_above_its_threshold_and_declines_below() -> None:
    reader = SentenceReader(HashingEmbedder(), threshold=0.3)
    found = reader.read("What color was the kite my daughter flew at the beach?", HITS)
    assert found.answer is not None and "red kite" in found.answer and found.photo_id == "useryfcc3/photo/5004"
    assert found.score >= 0.3 and found.date == "2009-07-19"
    strict = SentenceReader(HashingEmbedder(), threshold=0.99)
    declined = strict.read("What color was the kite my daughter flew at the beach?", HITS)
    assert declined.answer is None and declined.score == pytest.approx(found.score)
    assert SentenceReader(HashingEmbedder()).read("anything?", []).answer is None


def test_llm_reader_cites_the_note_it_names_and_declines_not_found() -> None:
    chat = ScriptedChat(["red [2]", "NOT FOUND", "a green tractor"])
    reader = LLMReader(chat, max_chars=400)
    first = reader.read("What color was the kite?", HITS)
    assert (first.answer, first.photo_id) == ("red", "useryfcc3/photo/5004")
    prompt = chat.seen[0][1]["content"]
    assert "[1] (2008-06-04)" in prompt and "red kite" in prompt and len(prompt) < 400 + 80  # bounded notes
    assert reader.read("What was the dog's name?", HITS).answer is None
    unnumbered = reader.read("What did my son sit on?", HITS)  # no number: the note sharing its words
    assert unnumbered.answer == "a green tractor" and unnumbered.photo_id == "useryfcc3/photo/5003"


def test_calibration_picks_the_f1_best_threshold_and_make_reader_checks_kinds() -> None:
    scores, supported = [0.9, 0.8, 0.7, 0.4, 0.3], [True, True, False, False, False]
    chosen = calibrate_threshold(scores, supported)  # best precision at recall >= 0.5: the stricter of two ties
    assert chosen["threshold"] == 0.9 and chosen["precision"] == 1.0 and chosen["recall"] == 0.5
    assert calibrate_threshold(scores, supported, min_recall=1.0)["threshold"] == 0.8
    assert chosen["f1_best"]["threshold"] == 0.8 and chosen["f1_best"]["f1"] == 1.0
    with pytest.raises(CamrollError, match="one 'supported' flag"):
        calibrate_threshold([0.1], [])
    assert make_reader("none") is None and isinstance(make_reader("sentence"), SentenceReader)
    with pytest.raises(CamrollError, match="needs a chat model"):
        make_reader("endpoint")
    with pytest.raises(CamrollError, match="--reader 'psychic'"):
        make_reader("psychic")


def _with_vocab(answerer: QueryAnswerer) -> QueryAnswerer:
    answerer.vocab = Vocabulary(**{k: Counter() for k in Vocabulary.__dataclass_fields__})
    return answerer


def test_hybrid_answerer_reads_captions_only_when_no_query_fits() -> None:
    answerer = _with_vocab(QueryAnswerer("yfcc3", reader=SentenceReader(HashingEmbedder(), threshold=0.3)))
    question = "What color was the kite my daughter flew at the beach in 2009?"
    [call] = answerer.step(question, TODAY, []).calls
    assert call["tool"] == "search_by_text" and call["args"]["level"] == "photo"
    assert call["args"]["start"] == "2009-01-01" and call["args"]["end"] == "2010-01-01"  # the named year
    observation = {"tool": "search_by_text", "args": call["args"], "result": {"results": HITS}}
    decision = answerer.step(question, TODAY, [observation])
    assert "red kite" in decision.answer and "July 19, 2009" in decision.answer
    assert decision.cited == ["useryfcc3/photo/5004"]
    strict = _with_vocab(QueryAnswerer("yfcc3", reader=SentenceReader(HashingEmbedder(), threshold=0.99)))
    declined = strict.step(question, TODAY, [observation])
    assert declined.answer.startswith("I can't answer that from your photos") and declined.cited == []
    assert "kite" not in declined.answer  # nothing found is presented as the answer
    counted = answerer.step("How many photos did I take in 2009?", TODAY, [])  # a query fits: no reading
    assert counted.calls[0]["tool"] == "query"
    plain = _with_vocab(QueryAnswerer("yfcc3"))  # without a reader: the old decline over events
    assert plain.step(question, TODAY, []).calls[0]["args"]["level"] == "event"


def test_endpoint_loop_prefetches_accepts_prose_and_bounds_repairs() -> None:
    chat = ScriptedChat(["The kite was red."])
    lean = LLMAnswerer(chat, "yfcc3", prefetch_k=4, prose_answers=True, max_repairs=1)
    first = lean.step("What color was the kite?", TODAY, [])
    assert first.calls == [{"tool": "search_by_text",
                            "args": {"query": "What color was the kite?", "k": 4, "level": "photo"}}]  # fmt: skip
    seen = [{"tool": "search_by_text", "args": first.calls[0]["args"], "result": {"results": HITS}}]
    answer = lean.step("What color was the kite?", TODAY, seen)
    assert answer == Decision(answer="The kite was red.", cited=["useryfcc3/photo/5004"])
    assert "red kite" in chat.seen[0][-1]["content"]  # the prefetched captions were in its first prompt
    broken = LLMAnswerer(ScriptedChat(['{"action": "nope"']), "yfcc3", prose_answers=True, max_repairs=1)
    repaired = [*seen, {"raw": "{", "error": "bad"}]
    assert broken.step("q?", TODAY, repaired).answer == '{"action": "nope"'  # one repair only, then it stops
    patient = LLMAnswerer(ScriptedChat(['{"action": "nope"']), "yfcc3")  # the default loop asks again
    assert patient.step("q?", TODAY, repaired).calls[0]["tool"] == "__invalid__"
