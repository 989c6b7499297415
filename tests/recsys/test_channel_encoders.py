"""The eight channel encoders, the causal categorical Transformer, and the audit's data (bins, scalers, splits)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.data.channel_series import (
    QuantileBinner,
    StandardScaler,
    etth1_benchmark,
    etth1_borders,
    synthetic_benchmark,
    synthetic_outcome,
)
from recsys.data.dataset import DataError
from recsys.models.channel_encoders import (
    ENCODERS,
    ChannelTransformer,
    ChannelTransformerConfig,
    EncoderConfigError,
    build_channel_encoder,
    next_step_nll,
)

ETTH1 = Path(__file__).resolve().parents[3] / "shared" / "data" / "ett" / "ETTh1.csv"
B, T, C, D = 2, 5, 4, 16


def expected_parameters(name: str, c: int, d: int) -> int:
    """Encoder parameter counts written out by hand."""
    return {
        "sum": d + c * d,  # shared w (1 -> d, no bias) + C channel constants
        "linear": c * d + d,  # nn.Linear(C, d)
        "linear-ortho": c * d + d,
        "linear-ppe": c * d + d + d * d,  # + the positional projection (d -> d, no bias)
        "mlp": (c * d + d) + (d * d + d),  # hidden width d
        "concat": 2 * d,  # C blocks of d / C weights and biases
        "ci": 2 * d,  # nn.Linear(1, d) shared by the channels
        "cat": 2 * d + c * d,  # nn.Linear(1, d) + C channel embeddings
    }[name]


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_shapes_and_parameter_counts(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_channel_encoder(name, C, D, max_len=32)
    assert sum(p.numel() for p in encoder.parameters()) == expected_parameters(name, C, D)
    x = torch.randn(B, T, C)
    tokens = encoder.encode(x)
    expected_tokens = {"ci": (B * C, T, D), "cat": (B, T * C, D)}.get(name, (B, T, D))
    assert tokens.shape == expected_tokens
    assert encoder.attention_mask(T).shape == (tokens.shape[1], tokens.shape[1])
    readout = encoder.readout(tokens, B, T)
    assert readout.shape == (B, T, C * D if name == "ci" else D)
    model = ChannelTransformer(ChannelTransformerConfig(encoder=name, n_channels=C, d_model=D, n_heads=2, d_ff=32))
    assert model(x).shape == (B, T, 32)


def test_public_model_size() -> None:
    # the public code reports ~0.15M parameters for the C = 4 backbone with d_model 64
    model = ChannelTransformer(ChannelTransformerConfig(encoder="linear", n_channels=4))
    assert 0.14e6 < sum(p.numel() for p in model.parameters()) < 0.16e6


@pytest.mark.parametrize("name", list(ENCODERS))
def test_no_step_sees_the_future(name: str) -> None:
    torch.manual_seed(0)
    model = ChannelTransformer(ChannelTransformerConfig(encoder=name, n_channels=C, d_model=D, n_heads=2, d_ff=32))
    model.eval()
    x = torch.randn(1, T, C)
    changed = x.clone()
    changed[:, 3:] += 5.0
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert torch.allclose(before[:, :3], after[:, :3], atol=1e-5)
    assert not torch.allclose(before[:, 3:], after[:, 3:], atol=1e-3)


def test_shared_scalar_cannot_tell_permuted_channels_apart() -> None:
    torch.manual_seed(0)
    x = torch.randn(B, T, C)
    permuted = x[..., [2, 0, 3, 1]]
    for name, same in (("sum", True), ("linear", False)):
        model = ChannelTransformer(ChannelTransformerConfig(encoder=name, n_channels=C, d_model=D, n_heads=2, d_ff=32))
        model.eval()
        with torch.no_grad():
            assert torch.allclose(model(x), model(permuted), atol=1e-5) is same


def test_next_step_nll_matches_a_hand_computed_case() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0], [5.0, -5.0]]])  # (1, 3, 2)
    targets = torch.tensor([[0, 1, 0]])
    # step 0 predicts bin 1 of step 1 with p = 3/4; step 1 predicts bin 0 of step 2 with p = 1/2; step 2 unused
    expected = (math.log(4 / 3) + math.log(2)) / 2
    assert next_step_nll(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert next_step_nll(logits, targets, reduction="sum").item() == pytest.approx(2 * expected, rel=1e-6)


def test_uniform_logits_give_log_k() -> None:
    logits = torch.zeros(3, 7, 32)
    targets = torch.randint(0, 32, (3, 7), generator=torch.Generator().manual_seed(0))
    assert next_step_nll(logits, targets).item() == pytest.approx(math.log(32), rel=1e-6)


def test_orthogonality_penalty_by_hand() -> None:
    encoder = build_channel_encoder("linear-ortho", 3, 4, ortho_lambda=0.5)
    with torch.no_grad():
        encoder.proj.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 1.0]]))
    # W_0 = (1,0,0,0), W_1 = (1,1,0,0), W_2 = (0,0,2,1): dot products 1, 0, 0
    assert encoder.aux_loss().item() == pytest.approx(0.5 * 1.0)
    assert build_channel_encoder("linear", 3, 4).aux_loss().item() == 0.0


def test_bad_configurations_name_the_field() -> None:
    with pytest.raises(EncoderConfigError, match="encoder: unknown"):
        build_channel_encoder("fourier", 4, 16)
    with pytest.raises(EncoderConfigError, match="d_model: concat"):
        build_channel_encoder("concat", 3, 16)
    with pytest.raises(EncoderConfigError, match="x: expected"):
        build_channel_encoder("linear", 4, 16).encode(torch.zeros(1, 5, 3))


# ------------------------------------------------------------------------------------------------------- data


def test_synthetic_outcome_formula_and_distractors() -> None:
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(6, 30)).astype(np.float32)
    y = synthetic_outcome(signals)
    assert np.all(y[:7] == 0)
    t = 12
    s = signals
    expected = np.tanh(s[0, t - 3] * s[1, t]) + 0.6 * np.sin(1.3 * s[2, t - 7]) + 0.4 * (s[3, t] > 0) * s[0, t]
    assert y[t] == pytest.approx(expected, rel=1e-5)
    distracted = signals.copy()
    distracted[4:] = rng.normal(size=(2, 30))
    np.testing.assert_array_equal(synthetic_outcome(distracted), y)


def test_quantile_binner_equal_mass_and_clipping() -> None:
    binner = QuantileBinner(4).fit(np.arange(100.0))
    counts = np.bincount(binner.transform(np.arange(100.0)), minlength=4)
    assert counts.tolist() == [25, 25, 25, 25]
    assert binner.transform(np.array([-1e9, 1e9])).tolist() == [0, 3]
    with pytest.raises(DataError, match="fit before"):
        QuantileBinner(4).transform(np.zeros(3))


def test_synthetic_bins_fit_on_training_series_only() -> None:
    train_only = synthetic_benchmark(n_channels=4, n_series=40, steps=30, seed=1)
    pooled = synthetic_benchmark(n_channels=4, n_series=40, steps=30, seed=1, bins_fit="pooled")
    assert train_only.params["n_train"] == 36 and train_only.params["n_valid"] == 4
    assert train_only.binner.n_fitted == 36 * 30
    assert pooled.binner.n_fitted == 40 * 30
    np.testing.assert_array_equal(train_only.train_x, pooled.train_x)
    # the training series fill the K bins evenly (to within quantile ties); the leak changes the edges
    assert not np.allclose(train_only.binner.edges, pooled.binner.edges)


def test_etth1_scaler_and_bins_never_see_validation_or_test_rows(tmp_path: Path) -> None:
    assert etth1_borders(17420, "standard") == (8640, 11520, 14400)
    assert etth1_borders(17420, "public") == (12194, 14807, 17420)
    lines = ETTH1.read_text().splitlines()
    # multiply every value after the training rows by 100: nothing fitted on train may move
    changed = lines[: 8640 + 1]
    for line in lines[8640 + 1 :]:
        date, *values = line.split(",")
        changed.append(",".join([date, *(str(float(v) * 100) for v in values)]))
    altered = tmp_path / "ETTh1.csv"
    altered.write_text("\n".join(changed) + "\n")
    original, perturbed = etth1_benchmark(ETTH1), etth1_benchmark(altered)
    np.testing.assert_array_equal(original.binner.edges, perturbed.binner.edges)
    np.testing.assert_array_equal(original.train_x, perturbed.train_x)
    np.testing.assert_array_equal(original.train_y, perturbed.train_y)
    assert not np.allclose(original.valid_x, perturbed.valid_x)
    assert original.params["scaler_rows"] == original.params["bin_rows"] == 8640
    assert original.train_x.shape == (1061, 160, 7) and original.test_x.shape == (341, 160, 7)
    # train inputs are standardised with train statistics: mean 0, std 1 over the training rows
    rows = np.loadtxt(ETTH1, delimiter=",", skiprows=1, usecols=range(1, 8))[:8640]
    scaled = StandardScaler().fit(rows).transform(rows)
    np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(original.train_x[0], scaled[:160], atol=1e-5)


def test_etth1_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,HUFL,HULL\n2016-07-01,1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 1: missing column"):
        etth1_benchmark(bad)
    with pytest.raises(DataError, match="split: expected"):
        etth1_borders(100, "random")
