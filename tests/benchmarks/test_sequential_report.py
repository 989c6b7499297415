"""`benchmarks/sequential.py report`: runs from separate processes merge into one summary."""

from __future__ import annotations

import json
import logging

import pytest

from benchmarks import sequential


def _run(model: str, seed: int, hr: float) -> dict:
    return {"preset": "ml-100k", "model": model, "seed": seed, "hr@10": hr, "ndcg@10": hr / 2, "epochs_run": 3}


def test_report_merges_files_and_skips_duplicates(tmp_path, caplog, capsys):
    first, second, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "merged.json"
    first.write_text(json.dumps({"runs": [_run("sasrec", 0, 0.2), _run("gdn", 0, 0.1)]}))
    second.write_text(json.dumps({"runs": [_run("sasrec", 1, 0.4), _run("gdn", 0, 0.9)]}))
    with caplog.at_level(logging.WARNING):
        assert sequential.main(["report", str(first), str(second), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    rows = {row["model"]: row for row in merged["summary"]}
    assert rows["sasrec"]["seeds"] == 2 and rows["sasrec"]["hr@10"] == pytest.approx(0.3)
    assert rows["gdn"]["seeds"] == 1 and rows["gdn"]["hr@10"] == pytest.approx(0.1)  # the first file wins
    assert "already merged" in caplog.text and "b.json" in caplog.text
    assert "sasrec" in capsys.readouterr().out


def test_runs_under_another_ranking_mask_get_their_own_row(tmp_path):
    recbole, hstu, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "merged.json"
    history = {**_run("sasrec", 0, 0.2), "preset": "ml-1m-hstu"}  # runs written before eval_mask mean "history"
    recbole.write_text(json.dumps({"runs": [history]}))
    hstu.write_text(json.dumps({"runs": [{**history, "hr@10": 0.3, "eval_mask": "input"}]}))
    assert sequential.main(["report", str(recbole), str(hstu), "--out", str(out)]) == 0
    rows = {row["model"]: row for row in json.loads(out.read_text())["summary"]}
    assert set(rows) == {"sasrec", "sasrec (eval_mask input)"}  # same seed, not a duplicate, not averaged
    assert rows["sasrec"]["hr@10"] == pytest.approx(0.2)
    assert rows["sasrec (eval_mask input)"]["hr@10"] == pytest.approx(0.3)
    for row in rows.values():  # HSTU's number, measured with their mask, beside both
        assert row["anchor_hr@10"] == 0.2853 and row["anchor_eval_mask"] == "input"


def test_runs_with_other_batching_get_their_own_row(tmp_path):
    plain = _run("gdn", 0, 0.2)
    bucketed = {**plain, "hr@10": 0.1, "train_config": {"length_buckets": 50, "target_weighting": "batch"}}
    weighted = {**plain, "hr@10": 0.15, "train_config": {"length_buckets": 50, "target_weighting": "global"}}
    files = [tmp_path / f"{i}.json" for i in range(3)]
    for file, run in zip(files, (plain, bucketed, weighted), strict=True):
        file.write_text(json.dumps({"runs": [run]}))
    out = tmp_path / "merged.json"
    assert sequential.main(["report", *map(str, files), "--out", str(out)]) == 0
    rows = {row["model"]: row["hr@10"] for row in json.loads(out.read_text())["summary"]}
    assert rows == {
        "gdn": pytest.approx(0.2),
        "gdn (length_buckets 50)": pytest.approx(0.1),
        "gdn (length_buckets 50, target_weighting global)": pytest.approx(0.15),
    }


def test_report_names_a_file_that_is_not_a_quality_result(tmp_path):
    bad = tmp_path / "scaling.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match=r"scaling\.json"):
        sequential.main(["report", str(bad)])


def test_report_compares_runs_at_equal_epochs(tmp_path, caplog, capsys):
    curved = _run("sinkrec", 0, 0.2) | {"valid_curve": [{"epoch": e, "ndcg@10": e / 100} for e in (1, 2, 3)]}
    short = _run("gdn", 0, 0.1) | {"valid_curve": [{"epoch": 1, "ndcg@10": 0.05}]}
    bare = _run("sasrec", 0, 0.3)  # written before curves were recorded
    file, out = tmp_path / "runs.json", tmp_path / "merged.json"
    file.write_text(json.dumps({"runs": [curved, short, bare]}))
    with caplog.at_level(logging.WARNING):
        assert sequential.main(["report", str(file), "--at-epochs", "1", "3", "--out", str(out)]) == 0
    rows = {row["model"]: row for row in json.loads(out.read_text())["at_epochs"]}
    assert rows["sinkrec"]["valid_ndcg@10@1"] == 0.01 and rows["sinkrec"]["valid_ndcg@10@3"] == 0.03
    assert rows["gdn"]["valid_ndcg@10@1"] == 0.05 and rows["gdn"]["valid_ndcg@10@3"] is None  # stopped before 3
    assert "sasrec" not in rows and "sasrec seed 0 has no valid_curve" in caplog.text
    assert "equal epochs" in capsys.readouterr().out


def test_quality_run_records_the_valid_curve_per_epoch(monkeypatch):
    from recsys.data.splits import leave_one_out_split

    data = sequential.planted_repetition_dataset(n_users=12, n_items=20, length=10, seed=0)
    split = leave_one_out_split(data)
    monkeypatch.setitem(sequential.PRESETS, "tiny", {"data": {}, "max_len": 10})
    run = sequential.run_quality("tiny", split, "gdn", 0, {"epochs": 3, "patience": 0, "batch_size": 8})
    assert [point["epoch"] for point in run["valid_curve"]] == [1, 2, 3]
    assert all(0.0 <= point["ndcg@10"] <= 1.0 and point["seconds"] > 0 for point in run["valid_curve"])
    best = max(run["valid_curve"], key=lambda point: point["ndcg@10"])
    assert run["best_epoch"] == best["epoch"] and run["valid_ndcg@10"] == best["ndcg@10"]
    assert run["codebook_usage"] is None and run["diagnostics_curve"] == []  # GDN has no memory
    small = {"hidden_dim": 16, "n_heads": 2, "codebook_size": 8, "memory_window": 3, "max_len": 10}
    monkeypatch.setitem(sequential.VARIANTS, "sinkrec-tiny", ("sinkrec", small))
    run = sequential.run_quality("tiny", split, "sinkrec-tiny", 0, {"epochs": 2, "patience": 0, "batch_size": 8})
    assert [point["epoch"] for point in run["diagnostics_curve"]] == [1, 2]
    assert run["diagnostics_curve"][-1]["rvq"] == run["codebook_usage"]  # the last epoch's is the final state
    assert [set(point) for point in run["loss_curve"]] == [{"epoch", "loss", "main", "aux"}] * 2


def test_report_keeps_runs_of_different_lengths_apart(tmp_path):
    runs = [_run("gdn", 0, 0.3) | {"epochs_run": 23}, _run("gdn", 1, 0.2) | {"epochs_run": 13}]
    runs.append(_run("gdn", 2, 0.4) | {"epochs_run": 13})
    path, out = tmp_path / "runs.json", tmp_path / "merged.json"
    path.write_text(json.dumps({"runs": runs}))
    assert sequential.main(["report", str(path), "--out", str(out)]) == 0
    rows = {row["epochs_run"]: row for row in json.loads(out.read_text())["summary"]}
    assert rows[23]["seeds"] == 1 and rows[23]["hr@10"] == pytest.approx(0.3)
    assert rows[13]["seeds"] == 2 and rows[13]["hr@10"] == pytest.approx(0.3)  # mean of 0.2 and 0.4


def test_report_averages_seeds_at_equal_epochs(tmp_path):
    def curved(seed, values):
        return _run("gdn", seed, 0.1) | {"valid_curve": [{"epoch": e + 1, "ndcg@10": v} for e, v in enumerate(values)]}

    runs = [curved(0, [0.10, 0.20, 0.30]), curved(1, [0.12, 0.24]), curved(2, [0.14, 0.22, 0.34])]
    file, out = tmp_path / "runs.json", tmp_path / "merged.json"
    file.write_text(json.dumps({"runs": runs}))
    assert sequential.main(["report", str(file), "--at-epochs", "1", "3", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["at_epochs_mean"]
    assert row["seeds@1"] == 3 and row["mean@1"] == pytest.approx(0.12) and row["std@1"] == pytest.approx(0.02)
    assert row["seeds@3"] == 2 and row["mean@3"] == pytest.approx(0.32)  # seed 1 stopped at epoch 2
    assert row["std@3"] == pytest.approx(0.02 * 2**0.5)
