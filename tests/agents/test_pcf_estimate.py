"""PCF estimation: the reference loader and grouping, the LLM-answer parser/validator, kNN and its fallbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.pcf import (
    LLMAnswerError,
    Neighbour,
    PCFDataError,
    PCFEstimator,
    ReferenceProduct,
    SectorStats,
    TargetItem,
    build_messages,
    knn_estimate,
    load_carbon_catalogue,
    parse_llm_answer,
    validate_estimate,
)
from agents.pcf.evaluate import error_metrics, evaluate, grouped_folds
from retrieval.embed import HashingEmbedder


def product(ref_id: str, pcf: float, weight: float | None = None, sector: str = "Food & Beverage") -> ReferenceProduct:
    return ReferenceProduct(ref_id=ref_id, name=f"product {ref_id}", company="ACME", sector=sector, pcf_kg=pcf,
                            weight_kg=weight, group=ref_id)  # fmt: skip


NEIGHBOURS = [Neighbour(product("a", 10.0, 1.0), 0.9), Neighbour(product("b", 1000.0, 10.0), 0.3)]
STATS = SectorStats.from_products([n.product for n in NEIGHBOURS])  # Food & Beverage: 10 .. 1000 kg


class FakeChat:
    """A scripted chat model: returns the given replies in turn (or raises), recording each conversation."""

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None) -> str:
        self.calls.append(messages)
        reply = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        if isinstance(reply, Exception):
            raise reply
        return reply


# ---------------------------------------------------------------------------------------- reference catalogue


@pytest.fixture(scope="module")
def catalogue(shared_data: Path) -> list[ReferenceProduct]:
    return load_carbon_catalogue(shared_data / "carbon_catalogue")


def test_catalogue_loads_all_products_and_groups_reporting_years(catalogue: list[ReferenceProduct]) -> None:
    by_id = {p.ref_id: p for p in catalogue}
    assert len(catalogue) == 866
    # Same product in 2014 and 2015 (reworded name, same footprint) must share a group, other products not.
    assert by_id["10056-1-2014"].group == by_id["10056-1-2015"].group
    assert by_id["10056-1-2014"].group != by_id["10222-1-2013"].group
    assert by_id["10056-1-2014"].pcf_kg == 2.0 and by_id["10056-1-2014"].weight_kg == pytest.approx(0.7485)
    assert 500 < len({p.group for p in catalogue}) < 700
    # The industry placeholder of 2015 reports is dropped from the embedded text.
    assert "Not used" not in by_id["10056-1-2015"].text()


def test_catalogue_errors_name_file_line_and_field(tmp_path: Path, shared_data: Path) -> None:
    lines = (shared_data / "carbon_catalogue" / "product_level.csv").read_text(encoding="utf-8").splitlines()
    header, first = lines[0], lines[1]
    bad = tmp_path / "product_level.csv"
    bad.write_text("\n".join([header, first, first.replace("10056-1-2014", "X-1-2014").replace(",2.0,", ",-5,")]))
    with pytest.raises(PCFDataError, match=r"product_level.csv:3: field .*carbon footprint.* positive"):
        load_carbon_catalogue(bad)
    bad.write_text("\n".join([header, first, first]))
    with pytest.raises(PCFDataError, match=r":3: field '\*PCF-ID' = '10056-1-2014' repeats line 2"):
        load_carbon_catalogue(bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(PCFDataError, match=r"product_level.csv:1: missing column"):
        load_carbon_catalogue(bad)


# ---------------------------------------------------------------------------------------- parser and validator


@pytest.mark.parametrize(
    "reply",
    [
        '{"estimate_kg_co2e": 42.5, "unit": "kg CO2e", "rationale": "like the chair"}',
        'Sure! ```json\n{"estimate_kg_co2e": "42.5", "unit": "kgCO2e", "rationale": "like the chair"}\n``` done',
        '{"estimate_kg_co2e": 42.5, "unit": "kg CO2e", "rationale": "like the chair"',  # cut at the stop "}"
        'Thinking {not json} then {"estimate_kg_co2e": 4.25e1, "unit": "kg CO2-eq", "rationale": "like the chair"}',
    ],
)
def test_parse_accepts_json_wrapped_in_chatter(reply: str) -> None:
    answer = parse_llm_answer(reply)
    assert answer == {"estimate_kg_co2e": 42.5, "unit": "kg CO2e", "rationale": "like the chair"}


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("about 40 kg", "no JSON object"),
        ('{"estimate_kg_co2e": 40, "unit": "kg', "no JSON object"),  # truncated mid-string
        ('{"estimate": 40, "unit": "kg CO2e"}', "missing"),
        ('{"estimate_kg_co2e": "a lot", "unit": "kg CO2e"}', "not a number"),
        ('{"estimate_kg_co2e": true, "unit": "kg CO2e"}', "not a number"),
        ('{"estimate_kg_co2e": 40000, "unit": "g CO2e"}', "unit"),
        ('{"estimate_kg_co2e": 0.04, "unit": "t CO2e"}', "unit"),
        ('{"estimate_kg_co2e": 40}', "unit"),
        ('{"estimate_kg_co2e": NaN, "unit": "kg CO2e"}', "not finite"),
    ],
)
def test_parse_rejects_malformed_answers(reply: str, why: str) -> None:
    with pytest.raises(LLMAnswerError, match=why):
        parse_llm_answer(reply)


def test_validate_rejects_non_positive_and_absurd_values() -> None:
    assert validate_estimate(50.0, (1.0, 1000.0)) == 50.0
    for value, why in [(0.0, "not positive"), (-3.0, "not positive"), (1e9, "outside"), (1e-6, "outside")]:
        with pytest.raises(LLMAnswerError, match=why):
            validate_estimate(value, (1.0, 1000.0))
    # The plausible range of a sector is its observed span widened 10x each way.
    assert STATS.plausible_range("Food & Beverage") == pytest.approx((1.0, 10_000.0))


# ---------------------------------------------------------------------------------------- kNN


def test_knn_is_similarity_weighted_geometric_mean_scaled_by_weight() -> None:
    expected = math.exp((0.9 * math.log(10) + 0.3 * math.log(1000)) / 1.2)  # 10^1.5
    assert knn_estimate(NEIGHBOURS) == pytest.approx(expected)
    # With a 2 kg target: 10 kg/kg * 2 = 20 and 100 kg/kg * 2 = 200.
    expected_scaled = math.exp((0.9 * math.log(20) + 0.3 * math.log(200)) / 1.2)
    assert knn_estimate(NEIGHBOURS, target_weight_kg=2.0) == pytest.approx(expected_scaled)
    # A neighbour without a weight keeps its footprint unscaled.
    mixed = [Neighbour(product("c", 10.0, None), 1.0)]
    assert knn_estimate(mixed, target_weight_kg=5.0) == pytest.approx(10.0)


def test_prompt_shows_neighbours_as_worked_examples_most_similar_last() -> None:
    messages = build_messages(TargetItem("t", "oat cereal"), NEIGHBOURS)
    assert messages[0]["role"] == "system" and "estimate_kg_co2e" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert json.loads(messages[2]["content"])["estimate_kg_co2e"] == 1000.0  # least similar first
    assert json.loads(messages[4]["content"])["estimate_kg_co2e"] == 10.0
    assert "oat cereal" in messages[-1]["content"]


# ---------------------------------------------------------------------------------------- estimator paths


ITEM = TargetItem("item-1", "oat cereal", weight_kg=None)
GOOD = '{"estimate_kg_co2e": 55, "unit": "kg CO2e", "rationale": "between the references"}'


def test_valid_llm_answer_is_used_and_recorded() -> None:
    chat = FakeChat(GOOD)
    label = PCFEstimator(STATS, llm=chat, llm_name="fake").estimate([ITEM], [NEIGHBOURS])[0]
    assert label.method == "llm_few_shot" and label.pcf_kg == 55.0 and label.model == "fake"
    assert label.neighbours == ["a", "b"] and label.similarities == [0.9, 0.3]
    assert 0 < label.confidence <= 1 and label.rationale == "between the references"
    assert len(chat.calls) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I cannot answer that.", "llm_invalid: no JSON object"),
        ('{"estimate_kg_co2e": 55, "unit": "tonnes"}', "llm_invalid: unit"),
        ('{"estimate_kg_co2e": -4, "unit": "kg CO2e"}', "llm_invalid: estimate_kg_co2e = -4 is not positive"),
        ('{"estimate_kg_co2e": 1e12, "unit": "kg CO2e"}', "llm_invalid: estimate_kg_co2e = 1e+12 outside"),
        (RuntimeError("endpoint down"), "llm_error: endpoint down"),
    ],
)
def test_bad_or_failing_llm_falls_back_to_knn(reply: str | Exception, reason: str) -> None:
    label = PCFEstimator(STATS, llm=FakeChat(reply)).estimate([ITEM], [NEIGHBOURS])[0]
    assert label.method == "knn"
    assert label.pcf_kg == pytest.approx(knn_estimate(NEIGHBOURS))
    assert label.fallback_reason.startswith(reason)
    assert label.neighbours == ["a", "b"]


def test_low_similarity_skips_the_llm_and_no_llm_means_knn() -> None:
    chat = FakeChat(GOOD)
    weak = [Neighbour(n.product, 0.1) for n in NEIGHBOURS]
    label = PCFEstimator(STATS, llm=chat, similarity_threshold=0.3).estimate([ITEM], [weak])[0]
    assert chat.calls == [] and label.method == "knn" and label.fallback_reason.startswith("low_similarity")
    heavy = TargetItem("item-2", "big box", weight_kg=2.0)
    label = PCFEstimator(STATS, llm=None).estimate([heavy], [NEIGHBOURS])[0]
    assert label.method == "knn_weight_scaled" and label.fallback_reason == ""
    record = label.to_dict()
    assert {"item_id", "pcf_kg", "method", "confidence", "neighbours", "similarities"} <= set(record)
    json.dumps(record)


def test_concurrent_workers_keep_item_order() -> None:
    replies = [f'{{"estimate_kg_co2e": {v}, "unit": "kg CO2e"}}' for v in (20, 30, 40)]

    class EchoChat:
        def generate(self, messages, **kwargs):
            index = int(messages[-1]["content"].split("item ")[1].split(".")[0].split("\n")[0])
            return replies[index]

    items = [TargetItem(f"i{n}", f"item {n}") for n in range(3)]
    labels = PCFEstimator(STATS, llm=EchoChat(), workers=3).estimate(items, [NEIGHBOURS] * 3)
    assert [label.pcf_kg for label in labels] == [20.0, 30.0, 40.0]
    assert [label.item_id for label in labels] == ["i0", "i1", "i2"]


# ---------------------------------------------------------------------------------------- evaluation


def test_grouped_folds_never_split_a_group() -> None:
    groups = ["g1", "g1", "g2", "g3", "g3", "g3", "g4", "g5"]
    folds = grouped_folds(groups, 3, seed=1)
    for group in set(groups):
        assert len({folds[i] for i, g in enumerate(groups) if g == group}) == 1
    assert set(folds) == {0, 1, 2}
    with pytest.raises(ValueError, match="folds"):
        grouped_folds(groups, 9)


def test_error_metrics_by_hand() -> None:
    metrics = error_metrics(np.array([1.0, 10.0, 100.0, 1000.0]), np.array([2.0, 10.0, 1000.0, 900.0]))
    assert metrics["median_abs_log10_error"] == pytest.approx((math.log10(2) + abs(math.log10(0.9))) / 2)
    assert metrics["within_factor_2"] == 0.75  # 2x counts as within
    assert metrics["spearman"] == pytest.approx(0.8)
    assert metrics["median_abs_error_kg"] == pytest.approx((1 + 100) / 2)


def test_evaluate_on_the_catalogue_beats_the_sector_median(catalogue: list[ReferenceProduct]) -> None:
    embeddings = HashingEmbedder().embed_texts([p.text() for p in catalogue])
    chat = FakeChat('{"estimate_kg_co2e": 100, "unit": "kg CO2e"}')
    result = evaluate(catalogue, embeddings, n_folds=5, llm=chat, llm_name="fake", llm_limit=20)
    overall = result["all"]["overall"]
    assert overall["knn"]["n"] == 866 and overall["llm_few_shot"]["n"] == 20
    assert overall["knn_weight"]["spearman"] > overall["knn"]["spearman"] > overall["sector_median"]["spearman"]
    assert len(chat.calls) == 20 and result["llm_valid_share"] == 1.0
    assert result["llm_subset"]["overall"]["knn"]["n"] == 20
    assert "Food & Beverage" in result["all"]["per_sector"]["knn"]
