"""Carbon-aware re-ranking: normalisation, rerank, lambda grid, Pareto frontier, labels, the sweep and its CLI."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_clustered_interactions, write_atomic_inter

from recsys.carbon import (
    LabelsError,
    align_pcf,
    carbon_reduction_at_loss,
    lambda_grid,
    minmax_per_user,
    normalise_pcf,
    pareto_frontier,
    read_id_map,
    read_pcf_labels,
    rerank,
    top_candidates,
)
from recsys.carbon.__main__ import main as carbon_main
from recsys.data import IdMap
from recsys.train import train_from_args

# -- Pareto frontier ----------------------------------------------------------------------------------------


def test_pareto_drops_dominated_points_and_orders_by_pcf():
    ndcg = [0.30, 0.25, 0.20, 0.28, 0.10]
    pcf = [10.0, 6.0, 7.0, 12.0, 1.0]
    # (0.20, 7) is dominated by (0.25, 6); (0.28, 12) by (0.30, 10)
    assert pareto_frontier(ndcg, pcf) == [4, 1, 0]


def test_pareto_ties_and_duplicates():
    # same PCF: only the higher NDCG survives; same NDCG: only the lower PCF; exact duplicates: the first
    assert pareto_frontier([0.2, 0.3], [5.0, 5.0]) == [1]
    assert pareto_frontier([0.3, 0.3], [6.0, 5.0]) == [1]
    assert pareto_frontier([0.3, 0.1, 0.3], [5.0, 1.0, 5.0]) == [1, 0]


def test_pareto_single_point_and_bad_input():
    assert pareto_frontier([0.1], [3.0]) == [0]
    with pytest.raises(ValueError, match="finite"):
        pareto_frontier([math.nan, 0.1], [1.0, 2.0])
    with pytest.raises(ValueError, match="one length"):
        pareto_frontier([0.1, 0.2], [1.0])


# -- normalisation, candidates, rerank ---------------------------------------------------------------------


def test_minmax_per_user_constant_rows_and_invalid_entries():
    scores = torch.tensor([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0], [1.0, -math.inf, 3.0]])
    out = minmax_per_user(scores)
    assert torch.allclose(out[0], torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))
    assert torch.equal(out[1], torch.zeros(3, dtype=torch.float64))  # constant: no relevance signal
    assert torch.allclose(out[2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # -inf ignored


def test_normalise_pcf_minmax_log_and_constant():
    assert torch.allclose(
        normalise_pcf(np.array([1.0, 10.0, 100.0])), torch.tensor([0.0, 1 / 11, 1.0], dtype=torch.float64)
    )
    assert torch.allclose(
        normalise_pcf(np.array([1.0, 10.0, 100.0]), "log"), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    )
    assert torch.equal(normalise_pcf(np.array([4.0, 4.0])), torch.zeros(2, dtype=torch.float64))
    out = normalise_pcf(np.array([2.0, np.nan, 4.0]))
    assert out[0] == 0 and math.isnan(out[1]) and out[2] == 1
    with pytest.raises(ValueError, match="unknown"):
        normalise_pcf(np.array([1.0]), "zscore")


def test_rerank_extremes_follow_relevance_then_pcf():
    scores = torch.tensor([[0.9, 0.7, 0.5, 0.3, 0.1], [10.0, 8.0, 6.0, 4.0, 2.0]])
    pcf = torch.tensor([[0.8, 0.1, 1.0, 0.0, 0.5], [0.2, 0.4, 0.1, 0.9, 0.3]], dtype=torch.float64)
    assert rerank(scores, pcf, 0.0, k=5).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert rerank(scores, pcf, 1.0, k=5).tolist() == [[3, 1, 4, 0, 2], [2, 0, 4, 1, 3]]
    assert rerank(scores, pcf, 1.0, k=2).shape == (2, 2)
    # lambda 1 with equal PCF keeps the relevance order
    assert rerank(scores[:1], torch.zeros(1, 5, dtype=torch.float64), 1.0, k=5).tolist() == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="lambda"):
        rerank(scores, pcf, 1.5)


def test_rerank_intermediate_lambda_and_invalid_candidates_last():
    scores = torch.tensor([[1.0, 0.0, -math.inf]])
    pcf = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    assert rerank(scores, pcf, 0.4, k=3).tolist() == [[0, 1, 2]]  # 0.6 - 0.4 > 0
    assert rerank(scores, pcf, 0.6, k=3).tolist() == [[1, 0, 2]]  # 0.4 - 0.6 < 0; the masked item stays last


def test_rerank_matches_a_per_user_loop():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 20, generator=generator).sort(dim=1, descending=True).values
    pcf = torch.rand(6, 20, generator=generator, dtype=torch.float64)
    for lam in (0.3, 0.9):
        got = rerank(scores, pcf, lam, k=10)
        for u in range(6):
            rel = (scores[u] - scores[u].min()) / (scores[u].max() - scores[u].min())
            combined = [(1 - lam) * float(rel[i]) - lam * float(pcf[u, i]) for i in range(20)]
            assert got[u].tolist() == sorted(range(20), key=lambda i: -combined[i])[:10]


def test_top_candidates_breaks_ties_pessimistically():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, -math.inf]])
    relevant = torch.tensor([[True, False, False, False, False]])
    items, _, valid = top_candidates(scores, 3, relevant)
    assert 0 not in items.tolist()[0]  # a constant scorer never puts the test item first
    assert valid.all()
    items, _, valid = top_candidates(scores, 5, relevant)
    assert items.tolist()[0][3] == 0 and valid.tolist()[0] == [True] * 4 + [False]


def test_lambda_grid_is_dense_near_one():
    grid = lambda_grid()
    assert len(grid) == 25 and grid[0] == 0.0 and grid[-1] == 1.0
    assert grid == sorted(set(grid))
    assert sum(x >= 0.9 for x in grid) == 16


def test_headline_picks_largest_reduction_within_loss():
    rows = [
        {"lambda": 0.0, "ndcg@10": 0.100, "mean_pcf_kg": 10.0},
        {"lambda": 0.5, "ndcg@10": 0.097, "mean_pcf_kg": 6.0},
        {"lambda": 0.9, "ndcg@10": 0.095, "mean_pcf_kg": 3.0},
        {"lambda": 1.0, "ndcg@10": 0.080, "mean_pcf_kg": 1.0},
    ]
    head = carbon_reduction_at_loss(rows, 0.05)
    assert head["lambda"] == 0.9 and head["carbon_reduction_pct"] == pytest.approx(70.0)
    assert head["ndcg_loss_pct"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="lambda = 0"):
        carbon_reduction_at_loss(rows[1:])
    zero = carbon_reduction_at_loss([{**row, "ndcg@10": 0.0} for row in rows])
    assert zero["lambda"] == 1.0 and "meaningless" in zero["warning"]


# -- labels -----------------------------------------------------------------------------------------------


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_labels_duplicates_first_wins_and_extra_fields_ignored(tmp_path, caplog):
    path = _write(
        tmp_path / "l.jsonl",
        [
            '{"item_id": "a", "pcf_kg": 1.5, "method": "knn"}',
            "",
            '{"item_id": "b", "pcf_kg": 2}',
            '{"item_id": "a", "pcf_kg": 3.0}',
        ],
    )
    with caplog.at_level(logging.WARNING):
        labels = read_pcf_labels(path)
    assert labels == {"a": 1.5, "b": 2.0}  # as agents.pcf's own reader: the first line of an id wins
    assert "1 duplicate" in caplog.text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"pcf_kg": 1.0}', "'item_id'"),
        ('{"item_id": "a"}', "'pcf_kg'"),
        ('{"item_id": "a", "pcf_kg": "12"}', "'pcf_kg'"),
        ('{"item_id": "a", "pcf_kg": -1}', "> 0"),
        ('{"item_id": "a", "pcf_kg": 0}', "> 0"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", ['{"item_id": "x", "pcf_kg": 1.0}', line])
    with pytest.raises(LabelsError, match=message) as info:
        read_pcf_labels(path)
    assert f"{path}:2" in str(info.value)


def test_unterminated_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cut.jsonl"
    path.write_text('{"item_id": "a", "pcf_kg": 1.0}\n{"item_id": "b", "pcf')
    with caplog.at_level(logging.WARNING):
        assert read_pcf_labels(path) == {"a": 1.0}
    assert "cut.jsonl:2: unterminated" in caplog.text
    path.write_text('{"item_id": "b", "pcf\n{"item_id": "a", "pcf_kg": 1.0}')
    with pytest.raises(LabelsError, match=r"cut\.jsonl:1: not valid JSON"):
        read_pcf_labels(path)


def test_missing_policies_and_id_map(tmp_path, caplog):
    items = IdMap(["1", "2", "3", "4"])
    labels = {"1": 1.0, "2": 3.0, "3": 100.0, "zzz": 7.0}
    with caplog.at_level(logging.WARNING):
        excluded = align_pcf(labels, items, "exclude")
    assert excluded.allowed.tolist() == [True, True, True, False] and math.isnan(excluded.pcf_kg[3])
    assert excluded.stats["n_unlabelled_items"] == 1 and excluded.stats["n_unknown_label_ids"] == 1
    assert "1 of 4 items unlabelled" in caplog.text
    median = align_pcf(labels, items, "median")
    assert median.allowed.all() and median.pcf_kg[3] == 3.0
    with pytest.raises(LabelsError, match="have no label"):
        align_pcf(labels, items, "error")
    with pytest.raises(LabelsError, match="--id-map"):
        align_pcf({"B00X": 1.0}, items)
    id_map = read_id_map(_write(tmp_path / "map", ["B00X\t2", "B00Y\t4"]))
    assert align_pcf({"B00X": 5.0, "B00Y": 6.0}, items, "median", id_map=id_map).pcf_kg.tolist() == [5.5, 5.0, 5.5, 6.0]


# -- the sweep on tiny trained checkpoints -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """A pop and a 1-epoch BPR checkpoint on a tiny clustered dataset, plus a synthetic labels file."""
    root = tmp_path_factory.mktemp("carbon")
    data = write_atomic_inter(root, "tiny", make_clustered_interactions(n_users=40, n_items=40, per_user=8))
    runs = {}
    for model, extra in (("pop", []), ("bpr", ["--epochs", "1", "--batch_size", "256"])):
        out = root / model
        train_from_args(["--model", model, "--dataset", str(data), "--out", str(out), "--quiet", *extra])
        runs[model] = out
    rng = np.random.default_rng(0)
    lines = [json.dumps({"item_id": f"i{i}", "pcf_kg": float(np.exp(rng.normal(1.0, 1.0)))}) for i in range(40)]
    runs["labels"] = _write(root / "labels.jsonl", lines)
    runs["partial"] = _write(root / "partial.jsonl", lines[:30])
    return runs


def test_sweep_cli_writes_reports_and_matches_full_ranking(tiny_runs, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--checkpoint", str(tiny_runs["pop"]), "--checkpoint", str(tiny_runs["bpr"])]
    assert carbon_main([*args, "--labels", str(tiny_runs["labels"]), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "carbon_sweep.json").read_text())
    assert [r["model"] for r in report["results"]] == ["pop", "bpr"]
    assert (out / "pareto_tiny.png").stat().st_size > 1000 and report["plots"] == [str(out / "pareto_tiny.png")]
    assert "| pop |" in (out / "carbon_sweep.md").read_text()
    for result in report["results"]:
        rows = result["rows"]
        assert [r["lambda"] for r in rows] == lambda_grid()
        # with every item labelled and 100 >= 40 candidates, lambda 0 is the model's own full ranking
        run = json.loads((Path(result["checkpoint"]) / "run.json").read_text())
        assert rows[0]["ndcg@10"] == pytest.approx(run["result"]["ndcg@10"], abs=1e-9)
        assert rows[0]["recall@10"] == pytest.approx(run["result"]["recall@10"], abs=1e-9)
        assert rows[0]["pcf_reduction_pct"] == 0.0
        assert rows[-1]["mean_pcf_kg"] < rows[0]["mean_pcf_kg"]  # lambda 1 recommends the greenest items
        assert any(r["pareto"] for r in rows) and result["pareto_lambdas"]
        assert result["headline"]["carbon_reduction_pct"] >= 0.0
        assert result["n_test_users"] == 40


def test_sweep_exclude_policy_never_recommends_unlabelled(tiny_runs, tmp_path, caplog):
    from recsys.carbon import read_pcf_labels, sweep_checkpoint

    labels = read_pcf_labels(tiny_runs["partial"])
    with caplog.at_level(logging.WARNING):
        result = sweep_checkpoint(tiny_runs["bpr"], labels, [0.0, 1.0], missing="exclude", progress=False)
    assert "10 of 40 items unlabelled" in caplog.text
    assert all(math.isfinite(r["mean_pcf_kg"]) for r in result["rows"])
    assert result["labels"]["n_unlabelled_items"] == 10
    median = sweep_checkpoint(tiny_runs["bpr"], labels, [0.0, 1.0], missing="median", n_candidates=5, progress=False)
    assert median["labels"]["missing_policy"] == "median" and len(median["rows"]) == 2


def test_cli_bad_input_gives_one_line_and_exit_2(tiny_runs, tmp_path, capsys):
    bad = _write(tmp_path / "bad.jsonl", ['{"item_id": "i1", "pcf_kg": 1}', '{"item_id": "i2", "pcf_kg": -3}'])
    code = carbon_main(["sweep", "--checkpoint", str(tiny_runs["pop"]), "--labels", str(bad), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and f"{bad}:2" in err[-1]
    code = carbon_main(
        [
            "sweep",
            "--checkpoint",
            str(tmp_path / "nope"),
            "--labels",
            str(tiny_runs["labels"]),
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 2 and "run.json" in capsys.readouterr().err
    code = carbon_main(
        [
            "sweep",
            "--checkpoint",
            str(tiny_runs["pop"]),
            "--labels",
            str(tiny_runs["labels"]),
            "--out",
            str(tmp_path),
            "--lambdas",
            "0.5,1",
            "--quiet",
        ]
    )
    assert code == 2 and "including 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        carbon_main(["sweep", "--help"])
    assert info.value.code == 0


# -- PCF scalings and uncertainty-aware variants --------------------------------------------------------------


def test_rank_scaling_uses_only_the_order_with_average_ties():
    out = normalise_pcf(np.array([1.0, 1e6, 10.0, np.nan, 10.0]), "rank")
    assert out[:3].tolist() == [0.0, 1.0, pytest.approx(1.5 / 3)] and math.isnan(out[3]) and out[4] == out[2]
    # an absurd label moves min-max, not rank
    assert normalise_pcf(np.array([1.0, 2.0, 3.0, 1e9]), "rank").tolist() == [0.0, 1 / 3, 2 / 3, 1.0]


def test_label_variants_penalise_the_upper_end_or_drop_implausible(tmp_path):
    path = _write(
        tmp_path / "labels.jsonl",
        [
            '{"item_id": "a", "pcf_kg": 1.0, "pcf_high_kg": 50.0, "plausible": true}',
            '{"item_id": "b", "pcf_kg": 2.0, "pcf_high_kg": 3.0, "plausible": false}',
            '{"item_id": "c", "pcf_kg": 4.0}',
        ],
    )
    from recsys.carbon import labels_for_variant, read_pcf_records

    records = read_pcf_records(path)
    assert labels_for_variant(records, "none") == ({"a": 1.0, "b": 2.0, "c": 4.0},) * 2
    assert labels_for_variant(records, "upper") == ({"a": 1.0, "b": 2.0, "c": 4.0}, {"a": 50.0, "b": 3.0, "c": 4.0})
    assert labels_for_variant(records, "skip_implausible")[0] == {"a": 1.0, "c": 4.0}
    bad = _write(tmp_path / "bad.jsonl", ['{"item_id": "a", "pcf_kg": 5.0, "pcf_high_kg": 1.0}'])
    with pytest.raises(LabelsError, match=r"bad.jsonl:1: field 'pcf_high_kg'"):
        read_pcf_records(bad)


def test_sweep_reports_every_scaling_and_variant_side_by_side(tiny_runs, tmp_path):
    rng = np.random.default_rng(1)
    lines = []
    for i in range(40):
        value = float(np.exp(rng.normal(1.0, 1.0)))
        lines.append(
            json.dumps(
                {"item_id": f"i{i}", "pcf_kg": value, "pcf_high_kg": value * (1 + (i % 5)), "plausible": i % 8 != 0}
            )
        )
    labels = _write(tmp_path / "labels.jsonl", lines)
    out = tmp_path / "sweep"
    args = ["sweep", "--checkpoint", str(tiny_runs["bpr"]), "--labels", str(labels), "--out", str(out), "--quiet"]
    assert carbon_main([*args, "--pcf-scale", "all", "--uncertainty", "all", "--lambdas", "0,0.5,0.9,1"]) == 0
    report = json.loads((out / "carbon_sweep.json").read_text())
    configs = [(r["pcf_scale"], r["uncertainty"]) for r in report["results"]]
    assert configs == [(s, u) for s in ("minmax", "log", "rank") for u in ("none", "upper", "skip_implausible")]
    by_config = {(r["pcf_scale"], r["uncertainty"]): r for r in report["results"]}
    assert by_config[("log", "skip_implausible")]["labels"]["n_labelled_items"] == 35  # 5 of 40 implausible
    for scale in ("minmax", "log", "rank"):
        none, upper = by_config[(scale, "none")]["rows"], by_config[(scale, "upper")]["rows"]
        assert none[0] == upper[0]  # lambda 0 ignores the PCF
        # lambda 1 ranks by the penalty: by the point estimate, the lowest mean PCF of all variants' lists
        assert none[-1]["mean_pcf_kg"] <= upper[-1]["mean_pcf_kg"] + 1e-12
    table = (out / "carbon_sweep.md").read_text()
    assert "| rank | skip_implausible |" in table and "| minmax | upper |" in table
    assert carbon_main([*args, "--pcf-scale", "zscore"]) == 2
