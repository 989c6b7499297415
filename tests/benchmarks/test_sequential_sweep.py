"""`benchmarks/sequential.py quality --jobs N`: one process per run, resumable, one merged result."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from benchmarks import sequential, sequential_quality


@pytest.fixture()
def beauty_dir(tmp_path):
    """A small S3-Rec-format Beauty.txt (user item item ...): chains i -> i + 1 the models can learn."""
    rng = np.random.default_rng(0)
    lines = []
    for user in range(40):
        start = int(rng.integers(0, 30))
        lines.append(" ".join([str(user + 1), *(str((start + t) % 30 + 1) for t in range(8))]))
    (tmp_path / "Beauty.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def _sweep(data_dir, out, *extra):
    argv = ["quality", "--presets", "beauty", "--models", "gdn", "sasrec", "--seeds", "0", "--threads", "1"]
    return sequential.main(
        [*argv, "--epochs", "1", "--jobs", "2", "--data-dir", str(data_dir), "--out", str(out), *extra]
    )


def test_parallel_sweep_merges_its_runs_and_resumes(beauty_dir, tmp_path, caplog):
    out = tmp_path / "quality.json"
    assert _sweep(beauty_dir, out, "--eval-mask", "input") == 0
    runs = json.loads(out.read_text())["runs"]
    assert [(r["model"], r["seed"], r["epochs_run"]) for r in runs] == [("gdn", 0, 1), ("sasrec", 0, 1)]
    assert [r["eval_mask"] for r in runs] == ["input", "input"]  # a train setting reaches every process
    assert [[point["epoch"] for point in r["loss_curve"]] for r in runs] == [[1], [1]]
    assert runs[0]["split"]["n_users"] == 40 and all(0 <= r["hr@10"] <= 1 for r in runs)
    assert sorted(p.name for p in out.with_suffix(".runs").glob("*.json")) == [
        "beauty_gdn_seed0.json",
        "beauty_sasrec_seed0.json",
        "sweep.json",
    ]
    # started again: nothing left to run, the same merged result
    (out.with_suffix(".runs") / "beauty_gdn_seed0.log").unlink()
    with caplog.at_level(logging.INFO, logger="benchmarks.sequential"):
        assert _sweep(beauty_dir, out, "--eval-mask", "input") == 0
    assert "2 of 2 runs already in" in caplog.text
    assert not (out.with_suffix(".runs") / "beauty_gdn_seed0.log").exists()  # no process was started
    assert json.loads(out.read_text())["runs"] == runs


def test_parallel_sweep_refuses_runs_made_with_other_settings(beauty_dir, tmp_path):
    out = tmp_path / "quality.json"
    runs_dir = out.with_suffix(".runs")
    runs_dir.mkdir()
    (runs_dir / "sweep.json").write_text(json.dumps({"settings": ["--threads", "1", "--epochs", "9"]}))
    with pytest.raises(SystemExit, match=r"quality\.runs: holds runs made with other settings"):
        _sweep(beauty_dir, out)


def test_parallel_sweep_names_the_log_of_a_failed_run(beauty_dir, tmp_path, caplog):
    out = tmp_path / "quality.json"
    with caplog.at_level(logging.ERROR, logger="benchmarks.sequential"):
        assert _sweep(beauty_dir, out, "--batch-size", "0") == 1
    log = out.with_suffix(".runs") / "beauty_gdn_seed0.log"
    assert "beauty gdn seed 0 failed (exit" in caplog.text and str(log) in caplog.text
    assert "batch_size" in log.read_text()
    assert not out.exists()


def test_parallel_sweep_stopped_leaves_no_run_going(beauty_dir, tmp_path, monkeypatch):
    import subprocess

    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    monkeypatch.setattr(sequential_quality.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _sweep(beauty_dir, tmp_path / "quality.json")
    assert len(started) == 2 and all(process.poll() is not None for process in started)


@pytest.mark.parametrize("variant", sorted(sequential.VARIANTS))
def test_every_benchmark_variant_builds_and_takes_a_training_step(beauty_dir, variant):
    """A typo in a variant's overrides would only surface hours into a sweep; here it fails at once."""
    from recsys.data import load_dataset, make_split
    from recsys.models import build_model

    split = make_split(load_dataset("beauty", data_dir=beauty_dir), "loo")
    name, overrides = sequential.VARIANTS[variant]
    model = build_model(name, split.train.n_users, split.train.n_items, {**overrides, "max_len": 8})
    batch = model.train_dataset(split.train).__getitems__(list(range(4)))
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    for key, value in overrides.items():
        assert getattr(model.config, key) == value
