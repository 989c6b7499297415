"""DFPL: masks, never reading a missing input, each loss moving its own quantity, diverse prototypes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mllm.dfpl.data import MultimodalData, missing_masks, synthetic_data
from mllm.dfpl.errors import DfplError
from mllm.dfpl.models import DFPL, MODELS, ModelConfig, build_model, soft_assign
from mllm.dfpl.train import TrainConfig, evaluate, fit

SMALL = ModelConfig(dim=16, shared_prototypes=4, specific_prototypes=3)


@pytest.fixture(scope="module")
def data() -> MultimodalData:
    return synthetic_data(240, seed=0)


def _build(name: str, data: MultimodalData, config: ModelConfig = SMALL, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, config, data.schema, (data.image.shape[1], data.image.shape[2]), data.num_classes)


# ------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("pattern", ["image", "table", "mixed"])
def test_missing_masks_are_seeded_exact_and_never_drop_both(pattern: str) -> None:
    image, table = missing_masks(1000, 0.3, pattern, seed=4)
    again = missing_masks(1000, 0.3, pattern, seed=4)
    other = missing_masks(1000, 0.3, pattern, seed=5)
    assert np.array_equal(image, again[0]) and np.array_equal(table, again[1])
    assert not (np.array_equal(image, other[0]) and np.array_equal(table, other[1]))
    assert (~image | ~table).sum() == 300
    assert not np.any(~image & ~table)
    if pattern == "image":
        assert table.all()
    if pattern == "table":
        assert image.all()
    if pattern == "mixed":
        assert 100 < (~image).sum() < 200


def test_missing_masks_reject_bad_input() -> None:
    with pytest.raises(DfplError, match="pattern"):
        missing_masks(10, 0.3, "audio", 0)
    with pytest.raises(DfplError, match="rate"):
        missing_masks(10, 1.0, "image", 0)


def test_batch_never_copies_a_missing_input(data: MultimodalData) -> None:
    index = np.arange(8)
    image_mask = np.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    table_mask = np.array([1, 1, 0, 1, 1, 0, 1, 1], dtype=bool)
    batch = data.batch(index, image_mask, table_mask)
    assert torch.isnan(batch["image"][~torch.from_numpy(image_mask)]).all()
    assert torch.isfinite(batch["image"][torch.from_numpy(image_mask)]).all()
    assert torch.isnan(batch["numeric"][~torch.from_numpy(table_mask)]).all()
    assert (batch["categorical"][~torch.from_numpy(table_mask)] == -1).all()


def _poisoned(batch: dict[str, torch.Tensor], value: float) -> dict[str, torch.Tensor]:
    """The batch with every missing slot overwritten by ``value`` (categorical by a random valid-looking code)."""
    poisoned = {k: v.clone() for k, v in batch.items()}
    poisoned["image"][~batch["image_mask"]] = value
    poisoned["numeric"][~batch["table_mask"]] = value
    poisoned["categorical"][~batch["table_mask"]] = 10**6 if np.isnan(value) else 1
    return poisoned


@pytest.mark.parametrize("name", sorted(MODELS))
def test_missing_input_is_never_read(name: str, data: MultimodalData) -> None:
    """Poison the masked inputs with NaN (and with other values): outputs stay finite and identical."""
    model = _build(name, data).eval()
    index = np.arange(64)
    image_mask, table_mask = missing_masks(64, 0.5, "mixed", seed=1)
    batch = data.batch(index, image_mask, table_mask)
    with torch.no_grad():
        nan_out = model(_poisoned(batch, float("nan")))["logits"]
        big_out = model(_poisoned(batch, 1e6))["logits"]
    assert torch.isfinite(nan_out).all()
    assert torch.equal(nan_out, big_out)
    # training on a poisoned batch gives finite gradients everywhere
    model.train()
    loss, _ = model.loss(_poisoned(batch, float("nan")))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_model_that_reads_missing_inputs_would_be_caught(data: MultimodalData) -> None:
    """The poison check can fail: zero-filling then reading (the bug it guards against) gives NaN."""
    batch = data.batch(np.arange(8), np.array([1, 0] * 4, dtype=bool), np.ones(8, dtype=bool))
    model = _build("early_concat", data)
    naive = model.image_encoder(batch["image"])  # encoder run on every row, masked one included
    assert torch.isnan(naive).any()


# ------------------------------------------------------------------------------------------ DFPL losses
LOSS_GROUPS = {
    "compact": "sspm_losses",
    "diversity": "sspm_losses",
    "disentangle": "sspm_losses",
    "distribution": "pfa_losses",
    "semantic": "pfa_losses",
    "anchor_ce": "pfa_losses",
    "global_ce": "cma_losses",
    "prototype_ce": "cma_losses",
}


@pytest.mark.parametrize("term", sorted(LOSS_GROUPS))
def test_each_dfpl_loss_is_differentiable_and_moves_its_own_quantity(term: str, data: MultimodalData) -> None:
    model = _build("dfpl", data)
    model.dropout.p = 0.0
    index = np.arange(96)
    image_mask, table_mask = missing_masks(96, 0.3, "mixed", seed=2)
    batch = data.batch(index, image_mask, table_mask)

    def value() -> torch.Tensor:
        out = model(batch)
        return getattr(model, LOSS_GROUPS[term])(out, batch)[term]

    start = value()
    start.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        value().backward()
        optimizer.step()
    with torch.no_grad():
        end = value()
    start, end = float(start.detach()), float(end)
    assert end < 0.8 * start, f"{term}: {start:.4f} -> {end:.4f}"


@pytest.mark.parametrize("term", ["dao", "dcl"])
def test_shaspec_auxiliary_losses_move_their_quantity(term: str, data: MultimodalData) -> None:
    model = _build("shaspec", data)
    model.eval()  # no dropout: the quantity is a deterministic function of the parameters
    batch = data.batch(np.arange(96), *missing_masks(96, 0.3, "mixed", seed=2))

    def value() -> torch.Tensor:
        return model.aux_losses(model(batch), batch)[term]

    start = float(value().detach())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        value().backward()
        optimizer.step()
    assert float(value().detach()) < 0.8 * start


def test_switches_turn_the_loss_groups_off(data: MultimodalData) -> None:
    batch = data.batch(np.arange(32), np.ones(32, dtype=bool), np.ones(32, dtype=bool))
    full = _build("dfpl", data).loss(batch)[1]
    assert {"compact", "diversity", "distribution", "semantic", "global_ce"} <= set(full)
    off = _build("dfpl", data, dataclasses.replace(SMALL, sspm=False, pfa=False, cma=False)).loss(batch)[1]
    assert set(off) == {"ce"}


def _max_off_diagonal_cosine(vectors: torch.Tensor) -> float:
    v = torch.nn.functional.normalize(vectors, dim=-1)
    gram = v @ v.T
    return float((gram - torch.eye(len(v))).abs().max())


def test_prototypes_stay_diverse_after_training(data: MultimodalData) -> None:
    """No collapse: trained prototypes stay apart, and the shared prototypes summarise samples differently."""
    model = _build("dfpl", data)
    fit(model, data, TrainConfig(epochs=8, batch_size=48, seed=0))
    assert _max_off_diagonal_cosine(model.prototypes().detach()) < 0.6
    batch = data.batch(np.arange(120), np.ones(120, dtype=bool), np.ones(120, dtype=bool))
    with torch.no_grad():
        out = model(batch)
    for m in range(2):  # tokens spread over the shared prototypes: usage perplexity well above 1 (collapse)
        _, assignment = soft_assign(out["shared_tokens"][m], model.shared_prototypes.detach(), model.config.temperature)
        usage = assignment.mean((0, 1))
        perplexity = float(torch.exp(-(usage * usage.log()).sum()))
        assert perplexity > 2.0, f"modality {m}: shared-prototype usage perplexity {perplexity:.2f} of 4"
    # and the diversity loss is what keeps them apart: without SSPM the prototypes end up more similar
    collapsed = _build("dfpl", data, dataclasses.replace(SMALL, sspm=False))
    fit(collapsed, data, TrainConfig(epochs=8, batch_size=48, seed=0))
    assert (
        model.sspm_losses(model(batch), batch)["diversity"]
        < collapsed.sspm_losses(collapsed(batch), batch)["diversity"]
    )


@pytest.mark.slow
def test_dfpl_uses_both_complementary_modalities() -> None:
    """On the synthetic set, fusion beats each single modality, and degrades gracefully when one is missing."""
    data = synthetic_data(900, seed=3)
    train, test = data.subset(np.arange(600)), data.subset(np.arange(600, 900))
    config = TrainConfig(epochs=12, batch_size=64, seed=0)
    accuracy = {}
    for name in ("dfpl", "image_only", "table_only"):
        model = _build(name, train)
        fit(model, train, config)
        accuracy[name] = evaluate(model, test, 0.0, "none", 0)["accuracy"]
    assert accuracy["dfpl"] > max(accuracy["image_only"], accuracy["table_only"]) + 0.2
    assert DFPL is MODELS["dfpl"]


def test_image_encoder_can_fine_tune_the_packaged_efficientnet() -> None:
    from mllm.dfpl.encoders import ImageEncoder

    encoder = ImageEncoder(1280, n_tokens=2, dim=8, finetune=True)
    pixels = torch.randn(2, 2, 3, 32, 32)  # two samples, two photos each
    tokens = encoder(pixels)
    assert tokens.shape == (2, 2, 8)
    tokens.sum().backward()
    first = next(encoder.trunk.parameters())
    assert first.grad is not None and float(first.grad.abs().sum()) > 0


def test_a_fine_tuned_trunk_learns_at_the_scaled_rate_and_frozen_models_keep_one_group() -> None:
    from mllm.dfpl.train import parameter_groups

    data = synthetic_data(40, seed=0)
    frozen = _build("image_only", data)
    config = TrainConfig(lr=1e-3, backbone_lr_scale=0.1)
    groups = parameter_groups(frozen, config)
    assert len(groups) == 1 and groups[0]["lr"] == 1e-3
    assert sum(p.numel() for p in groups[0]["params"]) == sum(p.numel() for p in frozen.parameters())
    tuned = build_model("image_only", ModelConfig(dim=8, finetune_image=True), data.schema, (1, 1280), 8)
    rest, trunk = parameter_groups(tuned, config)
    assert rest["lr"] == 1e-3 and trunk["lr"] == pytest.approx(1e-4)
    trunk_ids = {id(p) for p in tuned.image_encoder.trunk.parameters()}
    assert {id(p) for p in trunk["params"]} == trunk_ids and not trunk_ids & {id(p) for p in rest["params"]}
