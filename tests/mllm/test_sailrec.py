"""SailRec: placeholder substitution, attention steering, alignment losses, P(yes) scoring, stages and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mllm.sailrec.__main__ import main
from mllm.sailrec.data import YesNoData, YesNoRows
from mllm.sailrec.model import ITEM_SLOT, TEXT, USER_SLOT, SailRecConfig, SailRecModel, grouped_info_nce, info_nce
from mllm.sailrec.steering import SteeringState, depth_schedule, steering
from mllm.sailrec.train import DataSpec, MFSpec, build_model, diagnose, load_run, score, train_run

GENRES = ["Drama", "Comedy", "Action", "Horror"]


def synthetic_rows(rng: np.random.Generator, n: int, n_users: int, n_items: int) -> YesNoRows:
    users = rng.integers(1, n_users, n)
    items = rng.integers(1, n_items, n)
    labels = ((users + items) % 2).astype(np.float32)  # a pattern MF can learn
    histories = [rng.integers(1, n_items, rng.integers(0, 5)) for _ in range(n)]
    return YesNoRows(users, items, labels, histories, rng.random(n) < 0.7)


@pytest.fixture
def tiny_data() -> YesNoData:
    rng = np.random.default_rng(0)
    n_users, n_items = 12, 20
    titles = [""] + [f"Movie {i} (19{60 + i})" for i in range(1, n_items)]
    facets = [[]] + [[GENRES[i % 4], GENRES[(i // 4) % 4]] for i in range(1, n_items)]
    parts = {name: synthetic_rows(rng, n, n_users, n_items) for name, n in (("train", 64), ("valid", 16), ("test", 24))}
    return YesNoData("tiny", titles=titles, item_facets=facets, **parts)


@pytest.fixture
def tiny_model(tiny_llama_dir: Path, tiny_data: YesNoData) -> SailRecModel:
    from mllm.sailrec.mf import train_mf

    mf, _ = train_mf(tiny_data, seed=0, embedding_dim=8, epochs=2)
    config = SailRecConfig(variant="sailrec", max_history=3, title_tokens=4, mapper_hidden=16, warmup_steps=3)
    return build_model(tiny_data, mf, config, str(tiny_llama_dir), seed=0, device="cpu")


def test_placeholders_carry_the_projected_embeddings(tiny_model: SailRecModel, tiny_data: YesNoData) -> None:
    batch = tiny_model.prompts.batch(tiny_data.test, [0, 1, 2])
    embeddings = tiny_model.embed(batch)
    table = tiny_model.input_embeddings().weight
    kinds, entities = batch["kinds"], batch["entities"]
    for row in range(3):
        for pos in range(int(batch["lengths"][row])):
            kind, entity = int(kinds[row, pos]), int(entities[row, pos])
            if kind == USER_SLOT:
                want = tiny_model.user_mapper(tiny_model.user_table[entity])
            elif kind == ITEM_SLOT:
                want = tiny_model.item_projector(tiny_model.item_table[entity])
            else:
                want = table[batch["input_ids"][row, pos]]
            torch.testing.assert_close(embeddings[row, pos], want)
    # one user slot, one slot per shown history item, one for the candidate
    for row in range(3):
        n_history = min(len(tiny_data.test.histories[row]), 3)
        assert int((kinds[row] == USER_SLOT).sum()) == 1
        assert int((kinds[row] == ITEM_SLOT).sum()) == n_history + 1
        assert int(entities[row][kinds[row] == ITEM_SLOT][-1]) == int(tiny_data.test.items[row])
    zeros = tiny_model.embed(batch, source="zeros")
    assert float(zeros[kinds != TEXT].abs().sum()) == 0.0


def slow_p_yes(model: SailRecModel, rows: YesNoRows, row: int) -> float:
    """Reference: one row alone, embeddings assembled token by token, full-vocabulary LM forward."""
    ids, kinds, entities = model.prompts.build(int(rows.users[row]), rows.histories[row], int(rows.items[row]))
    vectors = []
    for token, kind, entity in zip(ids, kinds, entities, strict=True):
        if kind == USER_SLOT:
            vectors.append(model.user_mapper(model.user_table[entity]))
        elif kind == ITEM_SLOT:
            vectors.append(model.item_projector(model.item_table[entity]))
        else:
            vectors.append(model.input_embeddings().weight[token])
    inputs = torch.stack(vectors)[None]
    key_mask = torch.tensor([[k != TEXT for k in kinds]])
    state = SteeringState(layer_bias=model.layer_bias, key_mask=key_mask)
    with steering(state):
        logits = model.causal_lm()(inputs_embeds=inputs).logits[0, -1]
    yes, no = model.yes_no_ids
    return float(torch.softmax(torch.stack([logits[yes], logits[no]]), 0)[0])


def test_p_yes_matches_a_slow_reference(tiny_model: SailRecModel, tiny_data: YesNoData) -> None:
    rows = tiny_data.test.subset(np.arange(6))
    lengths = [
        len(tiny_model.prompts.build(int(u), h, int(i))[0])
        for u, h, i in zip(rows.users, rows.histories, rows.items, strict=True)
    ]
    assert len(set(lengths)) > 1  # the batch really is padded
    fast = tiny_model.score_rows(rows, batch_size=6)
    with torch.no_grad():
        slow = [slow_p_yes(tiny_model, rows, r) for r in range(len(rows))]
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)
    assert np.ptp(fast) > 0  # not a constant scorer


def attention_probabilities(model: SailRecModel, batch: dict, bias: list[float]) -> dict[int, torch.Tensor]:
    state = SteeringState(layer_bias=bias, key_mask=batch["kinds"] != TEXT, keep_probabilities=True)
    with torch.no_grad():
        model(batch, state=state)
    return state.probabilities


def test_steering_changes_attention_only_where_configured(tiny_model: SailRecModel, tiny_data: YesNoData) -> None:
    batch = tiny_model.prompts.batch(tiny_data.test, [0, 1])
    collaborative = batch["kinds"] != TEXT
    plain = attention_probabilities(tiny_model, batch, [0.0, 0.0])
    steered = attention_probabilities(tiny_model, batch, [0.0, 3.0])  # layer 1 only
    torch.testing.assert_close(steered[0], plain[0])  # layer 0 untouched
    assert not torch.allclose(steered[1], plain[1])
    # in layer 1 the mass on collaborative keys rises for every query that can see one
    mass = lambda p: (p * collaborative[:, None, None, :]).sum(-1)  # noqa: E731
    first = collaborative.float().argmax(1)
    for row in range(2):
        after = slice(int(first[row]) + 1, int(batch["lengths"][row]))
        assert bool((mass(steered[1])[row, :, after] > mass(plain[1])[row, :, after]).all())
    # a prompt with no collaborative tokens is unaffected by any bias
    text_only = {**batch, "kinds": torch.zeros_like(batch["kinds"])}
    base = tiny_model(text_only, state=SteeringState(layer_bias=[0.0, 0.0], key_mask=text_only["kinds"] != TEXT))
    biased = tiny_model(text_only, state=SteeringState(layer_bias=[-4.0, 4.0], key_mask=text_only["kinds"] != TEXT))
    torch.testing.assert_close(base, biased)
    # with zero bias the steered function is exactly the model's own (sdpa) attention
    lm = tiny_model.causal_lm()
    inputs = tiny_model.embed(batch)
    with torch.no_grad(), steering(SteeringState(layer_bias=[0.0, 0.0], key_mask=collaborative)):
        ours = lm(inputs_embeds=inputs, attention_mask=batch["attention_mask"]).logits
    lm.set_attn_implementation("sdpa")
    try:
        with torch.no_grad():
            reference = lm(inputs_embeds=inputs, attention_mask=batch["attention_mask"]).logits
    finally:
        lm.set_attn_implementation("sailrec_steered")
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], reference[real], rtol=1e-4, atol=1e-4)


def test_depth_schedule() -> None:
    assert depth_schedule(5, -1.0, 2.0) == pytest.approx([-1.0, -0.25, 0.5, 1.25, 2.0])
    assert depth_schedule(4, -1.0, 2.0, "step") == [-1.0, -1.0, 2.0, 2.0]
    assert depth_schedule(3, -1.0, 2.0, "none") == [0.0, 0.0, 0.0]


def test_info_nce_value_and_gradient() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    keys = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = info_nce(queries, keys, torch.tensor([0, 1]), temperature=0.5)
    q = F.normalize(queries.detach(), dim=-1)
    k = F.normalize(keys, dim=-1)
    sims = (q @ k.T / 0.5).numpy()
    expected = np.mean([np.log(np.exp(sims[i]).sum()) - sims[i, t] for i, t in enumerate([0, 1])])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert queries.grad is not None and float(queries.grad.abs().sum()) > 0
    double = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    keys_double = torch.randn(5, 4, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda x: info_nce(x, keys_double, torch.tensor([0, 2, 4]), 0.3), (double,))
    # rows sharing a group are not each other's negatives: two copies of one query give the 2-key loss
    grouped = grouped_info_nce(queries.detach()[[0, 0]], torch.tensor([1, 1]), keys, 0.5)
    assert float(grouped) == pytest.approx(0.0, abs=1e-6)  # one group in the batch: a single positive


def test_alignment_losses_train_the_mappers(tiny_model: SailRecModel, tiny_data: YesNoData) -> None:
    from mllm.sailrec.train import prepare_alignment

    prepare_alignment(tiny_model, tiny_data, tiny_data.train)
    assert bool(tiny_model.item_text_known[1:].any()) and tiny_model.profile_rep.shape[0] >= 2
    items = torch.nonzero(tiny_model.item_text_known).flatten()
    users = torch.nonzero(tiny_model.user_profile_index >= 0).flatten()
    item_loss = tiny_model.item_alignment_loss(items)
    user_loss = tiny_model.user_alignment_loss(users)
    assert float(item_loss) > 0 and float(user_loss) > 0
    (item_loss + user_loss).backward()
    assert float(tiny_model.item_projector.net[0].weight.grad.abs().sum()) > 0
    assert float(tiny_model.user_mapper.net[0].weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in tiny_model.llm.parameters())  # the text side is frozen
    # the value is InfoNCE against the cached title representations
    reference = info_nce(
        tiny_model.item_projector(tiny_model.item_table[items]),
        tiny_model.item_text_rep[items],
        torch.arange(len(items)),
        tiny_model.config.temperature,
    )
    assert float(item_loss) == pytest.approx(float(reference), rel=1e-5)


def test_stages_save_load_and_score(tiny_llama_dir: Path, tiny_data: YesNoData, tmp_path: Path) -> None:
    spec = DataSpec("tiny", "", train_rows=16)
    config = SailRecConfig(
        variant="sailrec", max_history=3, title_tokens=4, mapper_hidden=16, warmup_steps=5, batch_size=8
    )
    model, _mf, summary = train_run(
        tiny_data, spec, config, 0, None, str(tiny_llama_dir), MFSpec(embedding_dim=8, epochs=2)
    )
    assert summary["warmup"]["steps"] == 5 and summary["warmup"]["last"] < summary["warmup"]["first"]
    assert summary["fine_tune"]["rows"] == 16 and summary["fine_tune"]["steps"] == 2
    lora = [n for n, p in model.llm.named_parameters() if "lora_B" in n]
    assert lora and any(float(p.abs().sum()) > 0 for n, p in model.llm.named_parameters() if "lora_B" in n)
    result = diagnose(model, tiny_data.test.subset(np.arange(8)))
    assert len(result["attention_mass_steered"]) == 2
    # steering (negative in layer 0, positive in layer 1) moves attention mass the configured way
    assert result["attention_mass_steered"][0] < result["attention_mass_unsteered"][0]
    assert result["attention_mass_steered"][1] > result["attention_mass_unsteered"][1]
    assert result["masking"]["zeros"]["mean_abs_change"] > 0
    assert result["masking"]["other_user"]["mean_abs_change"] > 0


def test_cli_train_eval_diagnose(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data_dir = Path(__file__).parent / "fixtures" / "collm_tiny"
    run = tmp_path / "run"
    overrides = ["--max_history", "2", "--title_tokens", "4", "--mapper_hidden", "8", "--warmup_steps", "2"]
    args = [
        "train",
        "--data-dir",
        str(data_dir),
        "--genres",
        str(data_dir / "ml-1m.item"),
        "--model",
        str(tiny_llama_dir),
    ]
    assert (
        main(
            [
                *args,
                "--variant",
                "sailrec",
                "--train-rows",
                "6",
                "--mf-epochs",
                "1",
                "--out",
                str(run),
                "-q",
                *overrides,
            ]
        )
        == 0
    )
    assert (run / "adapter").is_dir() and (run / "mappers.safetensors").is_file()
    out = tmp_path / "eval.json"
    assert main(["eval", "--run", str(run), "--out", str(out), "-q"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_rows"] == 8 and metrics["n"] == metrics["warm_n"] + metrics["cold_n"]
    model, mf, data, _ = load_run(run)
    np.testing.assert_allclose(score(model, mf, data.test), score(model, mf, data.test), rtol=0, atol=0)
    plot = tmp_path / "attention.png"
    assert main(["diagnose", "--run", str(run), "--rows", "4", "--plot", str(plot), "-q"]) == 0
    assert plot.stat().st_size > 1000
    assert main(["eval", "--run", str(tmp_path / "missing")]) == 2
