"""`benchmarks/cf.py` on a small planted dataset: a table, a JSON with metrics, timings and the learning curve."""

from __future__ import annotations

import json

from benchmarks import cf


def test_cf_benchmark_writes_metrics_timings_and_curve(clustered_dataset_dir, tmp_path, capsys):
    out = tmp_path / "cf.json"
    argv = ["--dataset", str(clustered_dataset_dir), "--split", "loo", "--models", "pop", "bpr", "--seeds", "0", "1"]
    argv += ["--epochs", "4", "--curve-every", "2", "--batch-size", "128", "--lr", "0.01", "--out", str(out)]
    assert cf.main([*argv, "--sampling", "device"]) == 0
    result = json.loads(out.read_text())
    runs = {(r["model"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {("pop", 0), ("pop", 1), ("bpr", 0), ("bpr", 1)}
    for run in runs.values():
        assert run["eval_seconds"] > 0 and run["eval_users_per_second"] > 0
    bpr = runs[("bpr", 0)]
    assert [point["epoch"] for point in bpr["curve"]] == [2, 4] and bpr["epochs_run"] == 4
    assert bpr["seconds_per_epoch"] > 0
    summary = {row["model"]: row for row in result["summary"]}
    assert summary["bpr"]["seeds"] == 2 and summary["bpr"]["ndcg@10"] > summary["pop"]["ndcg@10"]
    assert "bpr" in capsys.readouterr().out
