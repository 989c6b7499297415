"""The channel-audit harness: paired statistics, the geometric probe, a tiny end-to-end run and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from evals.channel_audit import (
    AuditError,
    attention_mask_cost,
    baseline_nlls,
    gap_by_epoch,
    geometric_probe,
    main,
    merge_reports,
    paired_comparison,
    step_time,
    summarise,
    train_one,
)
from recsys.data.channel_series import ChannelSplit, QuantileBinner, synthetic_benchmark
from recsys.models.channel_encoders import ChannelTransformer, ChannelTransformerConfig


def test_paired_comparison_against_scipy_and_by_hand() -> None:
    a = [2.0, 2.1, 2.2, 2.3, 2.4]
    b = [2.1, 2.3, 2.25, 2.5, 2.45]
    out = paired_comparison(a, b)
    diff = np.subtract(b, a)
    assert out["mean_diff"] == pytest.approx(0.12)
    assert out["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert out["t_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    # five positive differences: the exact two-sided Wilcoxon p is 2 / 2^5
    assert out["wilcoxon_p"] == pytest.approx(2 / 32)
    with pytest.raises(AuditError, match="equal"):
        paired_comparison([1.0], [1.0, 2.0])


def test_summarise_orders_by_nll_and_pairs_by_seed() -> None:
    runs = [
        {"n_channels": 4, "encoder": enc, "seed": s, "valid_nll": v}
        for enc, values in (("linear", [2.0, 2.2, 2.1]), ("sum", [3.2, 3.3, 3.25]))
        for s, v in enumerate(values)
    ]
    rows = summarise(runs, "valid_nll", "linear", 32)
    assert [r["encoder"] for r in rows] == ["linear", "sum"]
    assert rows[1]["mean_diff"] == pytest.approx(1.15)
    assert rows[0]["uniform"] == pytest.approx(math.log(32))
    assert "t_p" not in rows[0]


def test_geometric_probe_sees_orthogonal_and_aligned_directions() -> None:
    model = ChannelTransformer(ChannelTransformerConfig(encoder="linear-ppe", n_channels=2, d_model=8, n_heads=2))
    with torch.no_grad():
        # positions projected onto the first 4 dims; channels in dims 4 and 5 (orthogonal), then in dim 0 (aligned)
        model.encoder.position_proj.weight.copy_(torch.diag(torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])))
        weight = torch.zeros(8, 2)
        weight[4, 0] = weight[5, 1] = 1.0
        model.encoder.proj.weight.copy_(weight)
    orthogonal = geometric_probe(model, steps=50)
    assert orthogonal["max_abs_cos"] < 1e-5 and orthogonal["channel_energy_in_pos_subspace"] < 1e-5
    with torch.no_grad():
        model.encoder.proj.weight.zero_()
        model.encoder.proj.weight[0, :] = 1.0
    aligned = geometric_probe(model, steps=50)
    assert aligned["mean_abs_cos"] > 0.1 and aligned["channel_energy_in_pos_subspace"] > 0.5
    assert aligned["pos_effective_rank"] <= 4


def test_train_one_keeps_the_best_validation_epoch() -> None:
    torch.set_num_threads(1)
    data = synthetic_benchmark(n_channels=4, n_series=12, steps=16, seed=0)
    config = ChannelTransformerConfig(encoder="linear", n_channels=4, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    result = train_one(data, config, seed=0, epochs=2, batch_size=8)
    assert result["valid_nll"] == min(h["valid_nll"] for h in result["history"])
    assert result["steps"] == 2 * math.ceil(11 / 8)
    assert "probe" in result and result["n_parameters"] > 0
    again = train_one(data, config, seed=0, epochs=2, batch_size=8)
    assert again["valid_nll"] == result["valid_nll"]  # seeded: the same numbers twice


def test_cli_end_to_end_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit.json"
    options = "--encoders linear sum --channels 4 --seeds 2 --epochs 1 --n-series 10 --quiet --out"
    code = main([*options.split(), str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith(f"python -m evals.channel_audit {options}")
    assert {"commit", "packages", "machine"} <= set(report["environment"])
    assert len(report["runs"]) == 4 and report["uniform_nll"] == pytest.approx(math.log(32))
    assert report["protocol"]["data"]["4"]["bins_fit"] == "train"
    assert report["protocol"]["device"] == "cpu"
    printed = capsys.readouterr().out
    assert "uniform" in printed and "sum" in printed
    merged = merge_reports([out, out])
    assert merged["table"][0]["seeds"] == 2
    assert main(["report", str(out)]) == 0


def test_cli_bad_encoder_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--encoders", "fourier", "--epochs", "1", "--out", "/nonexistent/x.json"]) == 2
    assert "error: --encoders: unknown fourier" in capsys.readouterr().err


def test_baselines_by_hand() -> None:
    y = np.array([[0, 1, 0, 1, 1]])
    x = np.zeros((1, 5, 4), dtype=np.float32)
    data = ChannelSplit("toy", x, y, x, y, binner=QuantileBinner(2))
    out = baseline_nlls(data, smoothing=0.0)["valid"]
    # training bins 0,1,0,1,1: marginal (2/5, 3/5); transitions 0->1 (2 of 2), 1->0 (1 of 2), 1->1 (1 of 2)
    following = [1, 0, 1, 1]
    marginal = {0: 0.4, 1: 0.6}
    assert out["marginal"] == pytest.approx(-np.mean([math.log(marginal[b]) for b in following]))
    assert out["markov"] == pytest.approx(-np.mean([math.log(1.0), math.log(0.5), math.log(1.0), math.log(0.5)]))
    assert out["uniform"] == pytest.approx(math.log(2))


@pytest.mark.parametrize(("encoder", "tokens", "sequences"), [("linear", 8, 2), ("cat", 24, 2), ("ci", 8, 6)])
def test_step_time_reports_what_each_encoder_multiplies(encoder: str, tokens: int, sequences: int) -> None:
    """cat multiplies the sequence length by C, ci the batch by C; the rest keep one token per step."""
    row = step_time(encoder, 3, steps=1, warmup=0, batch_size=2, length=8)
    assert (row["tokens_per_series"], row["sequences_per_batch"]) == (tokens, sequences)
    assert row["cpu_seconds_per_step"] > 0
    with pytest.raises(AuditError, match="--steps"):
        step_time(encoder, 3, steps=0)


def test_attention_mask_cost_times_both_masks_at_cats_length() -> None:
    cost = attention_mask_cost(3, length=8, batch_size=2, repeats=1)
    assert cost["tokens"] == 24 and cost["block_mask_cpu_seconds"] > 0 and cost["causal_cpu_seconds"] >= 0


def test_benchmark_plot_writes_a_png(tmp_path: Path) -> None:
    from benchmarks.channel_audit import plot

    out = tmp_path / "audit.json"
    assert (
        main(
            [
                "--encoders",
                "linear",
                "sum",
                "--seeds",
                "2",
                "--epochs",
                "2",
                "--n-series",
                "10",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    png = tmp_path / "nll.png"
    plot([out], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_gap_by_epoch_pairs_seeds_and_runs_of_one_length() -> None:
    def run(encoder: str, seed: int, curve: list[float], steps: int = 30) -> dict:
        history = [{"epoch": i + 1, "valid_nll": v} for i, v in enumerate(curve)]
        return {"encoder": encoder, "seed": seed, "n_channels": 4, "steps": steps, "history": history}

    runs = [
        run("linear", 0, [3.0, 2.0]),
        run("linear", 1, [3.2, 2.2]),
        run("ci", 0, [2.9, 2.3]),
        run("ci", 1, [3.1, 2.5]),
        run("ci", 2, [9.0, 9.0]),  # no linear partner: left out
        run("sum", 0, [3.0, 2.0, 1.0], steps=45),  # another run length: not paired with the 30-step linear
    ]
    (row,) = gap_by_epoch(runs)
    assert (row["encoder"], row["seeds"], row["epochs"]) == ("ci", [0, 1], [1, 2])
    np.testing.assert_allclose(row["mean_gap"], [-0.1, 0.3])


def test_profile_skips_what_would_not_fit_in_memory() -> None:
    from benchmarks.channel_audit import attention_gb, profile

    assert attention_gb("cat", 8) > 4.0 > attention_gb("cat", 4) > attention_gb("linear", 4)
    result = profile([8], ["cat"], steps=1)
    assert result["rows"] == [{"encoder": "cat", "n_channels": 8, "skipped": "attention needs ~7.5 GB"}]
    assert result["attention_at_cat_length"] == []


def test_cli_bad_device_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--encoders", "linear", "--device", "nodevice", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device 'nodevice'") and "\n" not in err
