"""The gated delta rule (naive == recurrent == chunked == step), causality, streaming == batch, and RVQ."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys.data import InteractionDataset
from recsys.models import build_model
from recsys.models.delta_rule import chunk_gated_delta_rule, gated_delta_rule_step, recurrent_gated_delta_rule
from recsys.models.sequential import StreamingScorer
from recsys.models.sinkrec import ResidualVQ

SMALL = {
    "sasrec": {"hidden_dim": 16, "max_len": 80},
    "gru4rec": {"embedding_dim": 16, "hidden_dim": 24, "max_len": 80},
    "gdn": {"hidden_dim": 16, "max_len": 80, "chunk_size": 16},
    "sinkrec": {"hidden_dim": 16, "max_len": 80, "chunk_size": 16, "codebook_size": 16, "memory_window": 4},
}


def _inputs(batch=2, heads=3, length=45, key_dim=8, value_dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, heads, length, key_dim, generator=gen), dim=-1)
    k = F.normalize(torch.randn(batch, heads, length, key_dim, generator=gen), dim=-1)
    v = torch.randn(batch, heads, length, value_dim, generator=gen)
    g = -torch.rand(batch, heads, length, generator=gen)
    beta = torch.rand(batch, heads, length, generator=gen)
    return q, k, v, g, beta


def _hand_written(q, k, v, g, beta):
    """The gated delta rule written out per batch, head and step with plain matrices (fla's naive form)."""
    batch, heads, length, key_dim = q.shape
    out = torch.zeros(batch, heads, length, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            state = torch.zeros(key_dim, v.shape[-1], dtype=torch.float64)
            for t in range(length):
                kt, vt, qt = k[b, h, t].double(), v[b, h, t].double(), q[b, h, t].double() / key_dim**0.5
                state = state * np.exp(float(g[b, h, t]))
                new_value = float(beta[b, h, t]) * (vt - state.T @ kt)
                state = state + torch.outer(kt, new_value)
                out[b, h, t] = state.T @ qt
    return out


def test_recurrence_matches_hand_written_rule():
    q, k, v, g, beta = _inputs(length=12)
    ours, _ = recurrent_gated_delta_rule(q, k, v, g, beta)
    assert torch.allclose(ours.double(), _hand_written(q, k, v, g, beta), atol=1e-5)


@pytest.mark.parametrize("length,chunk", [(45, 16), (64, 64), (7, 16), (130, 32)])
def test_chunked_equals_recurrent(length, chunk):
    q, k, v, g, beta = _inputs(length=length)
    start = torch.randn(2, 3, 8, 5, generator=torch.Generator().manual_seed(1))
    rec, rec_state = recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=start)
    chu, chu_state = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=start, chunk_size=chunk)
    assert torch.allclose(rec, chu, atol=1e-5)
    assert torch.allclose(rec_state, chu_state, atol=1e-5)


def test_streaming_step_continues_a_chunked_prefix():
    q, k, v, g, beta = _inputs(length=40)
    full, _ = recurrent_gated_delta_rule(q, k, v, g, beta)
    _, state = chunk_gated_delta_rule(
        q[:, :, :39], k[:, :, :39], v[:, :, :39], g[:, :, :39], beta[:, :, :39], chunk_size=8
    )
    last, _ = gated_delta_rule_step(q[:, :, 39], k[:, :, 39], v[:, :, 39], g[:, :, 39], beta[:, :, 39], state)
    assert torch.allclose(last, full[:, :, 39], atol=1e-5)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_causal_a_later_event_never_changes_an_earlier_prediction(name):
    torch.manual_seed(0)
    model = build_model(name, 3, 30, SMALL[name]).eval()
    items = torch.randint(1, 31, (2, 40))
    gaps = torch.rand(2, 40)
    hidden, _ = model.encode(items, gaps)
    changed_items, changed_gaps = items.clone(), gaps.clone()
    changed_items[:, 25:] = torch.randint(1, 31, (2, 15))
    changed_gaps[:, 25:] = torch.rand(2, 15) * 5
    again, _ = model.encode(changed_items, changed_gaps)
    assert hidden.shape == (2, 40, model.item_embedding.weight.shape[1])
    assert torch.allclose(hidden[:, :25], again[:, :25], atol=1e-5)
    assert not torch.allclose(hidden[:, 25:], again[:, 25:], atol=1e-3)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("name", ["gdn", "sinkrec", "sinkrec+pattern_norm", "gru4rec"])
def test_streaming_scores_equal_batch_scores(name, similarity):
    torch.manual_seed(0)
    temperature = 0.05 if similarity == "cosine" else 1.0  # cosine scores are in [-20, 20]
    name, _, switch = name.partition("+")
    overrides = {**SMALL[name], "similarity": similarity, "temperature": temperature}
    model = build_model(name, 2, 30, {**overrides, **({switch: True} if switch else {})}).eval()
    rng = np.random.default_rng(0)
    length = 70  # crosses chunk boundaries and the memory window
    items = rng.integers(0, 30, size=length)
    times = np.cumsum(rng.integers(1, 10 * 86400, size=length)).astype(float)
    history = InteractionDataset.from_raw(
        "h", ["a"] * length + ["b"], [str(i) for i in items] + ["0"], timestamps=[*times, 0]
    )
    # from_raw maps raw ids by first appearance: translate our items to its indices
    item_index = np.array([history.item_map.to_index(str(i)) for i in items])
    model.set_eval_history(history)
    batch_scores = model.score(torch.tensor([0]))[0]
    stream = StreamingScorer(model)
    for item, t in zip(item_index, times, strict=True):
        scores = stream.update("a", int(item), float(t))
    assert torch.allclose(scores, batch_scores, atol=1e-4 / temperature)
    # constant state: the same number of numbers after 70 events as after 1
    fresh = StreamingScorer(model)
    fresh.update("a", 0, 0.0)
    assert _numel(fresh.states["a"]) == _numel(stream.states["a"])


def _numel(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, dict):
        return sum(_numel(v) for v in state.values())
    return sum(_numel(v) for v in state)


def test_sasrec_cannot_stream():
    model = build_model("sasrec", 2, 10, SMALL["sasrec"])
    with pytest.raises(NotImplementedError):
        model.stream_init()


def test_rvq_error_falls_with_more_codebooks():
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(1000, 8, generator=gen) * torch.linspace(0.2, 2.0, 8)
    rvq = ResidualVQ(8, n_codebooks=4, codebook_size=16)
    rvq.init_from(data, generator=gen)
    optimizer = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    for _ in range(15):
        _, loss = rvq(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    errors = [float((rvq.quantize(data, n)[0] - data).pow(2).mean().detach()) for n in range(1, 5)]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.5 * errors[0]
    # the tracked diagnostics agree: the energy left falls level by level, at the data's scale
    usage = rvq.code_usage()
    assert all(a > b for a, b in itertools.pairwise(usage["relative_error"])) and 0 < usage["relative_error"][-1] < 1
    assert usage["pattern_energy"] == pytest.approx(float(data.pow(2).mean()), rel=1e-4)  # same rows every step
    share_left = errors[-1] / float(data.pow(2).mean())  # after the last step; the EMA lags a few steps behind
    assert share_left <= usage["relative_error"][-1] < 2 * share_left


def test_rvq_error_diagnostics_start_empty_scale_with_the_input_and_are_not_saved():
    rvq = ResidualVQ(4, n_codebooks=2, codebook_size=8)
    assert all(math.isnan(v) for v in rvq.code_usage()["relative_error"])
    assert math.isnan(rvq.code_usage()["pattern_energy"])
    z = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    rvq.eval()(z)
    assert math.isnan(rvq.code_usage()["pattern_energy"])  # evaluation leaves the training statistics alone
    rvq.train()(z)
    small = rvq.code_usage()
    rvq.train()(z * 10)
    large = rvq.code_usage()
    # ten times the scale: a hundred times the energy (the decay 0.99 EMA moves 1% of the way), worse fit
    assert large["pattern_energy"] == pytest.approx(1.99 * small["pattern_energy"])
    assert large["relative_error"][-1] > small["relative_error"][-1]
    assert "relative_error" not in rvq.state_dict() and "pattern_energy" not in rvq.state_dict()
    ResidualVQ(4, n_codebooks=2, codebook_size=8).load_state_dict(rvq.state_dict())  # strict load still works


def test_rvq_straight_through_and_dead_code_revival():
    rvq = ResidualVQ(4, n_codebooks=1, codebook_size=8, dead_code_threshold=0.6, usage_decay=0.5).train()
    with torch.no_grad():
        rvq.codebooks[0, 1:] = 100.0  # seven codes far from every input: never chosen
    z = torch.randn(64, 4, requires_grad=True)
    quantized, loss = rvq(z)
    quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # straight-through
    assert rvq.revived == 7 and float(rvq.codebooks[0, 1:].detach().abs().max()) < 100.0
    assert torch.isfinite(loss)


def test_rvq_data_init_takes_codes_from_the_first_training_batch_once():
    torch.manual_seed(0)
    z = torch.randn(200, 4) * 10 + 50  # far from the N(0, 1/dim) random codes
    rvq = ResidualVQ(4, n_codebooks=2, codebook_size=8, init="data")
    assert not bool(rvq.initialized)
    rvq.eval()(z)
    assert not bool(rvq.initialized)  # evaluation never initialises
    rvq.train()(z)
    assert bool(rvq.initialized)
    first = rvq.codebooks.detach().clone()
    assert float((first[0] - 50).abs().mean()) < 15  # level 0 codes are rows of z, at its scale
    assert rvq.code_usage()["perplexity"][0] > 2  # rows spread over several codes, not one
    rvq(z + 1)
    assert torch.equal(rvq.codebooks.detach(), first)  # once only
    fresh = ResidualVQ(4, n_codebooks=2, codebook_size=8, init="data")
    fresh.load_state_dict(rvq.state_dict())
    assert bool(fresh.initialized) and torch.equal(fresh.codebooks, rvq.codebooks)
    old = {k: v for k, v in rvq.state_dict().items() if k != "initialized"}  # a checkpoint from before the flag
    older = ResidualVQ(4, n_codebooks=2, codebook_size=8, init="data")
    older.load_state_dict(old)
    assert bool(older.initialized)  # trained codes are never overwritten by a later first batch
    with pytest.raises(ValueError, match="codebook_init"):
        ResidualVQ(4, 1, 8, init="kmeans")


def test_rvq_code_usage_reports_perplexity_and_busiest_share():
    rvq = ResidualVQ(4, n_codebooks=2, codebook_size=8)
    usage = rvq.code_usage()
    assert usage["perplexity"] == pytest.approx([8.0, 8.0]) and usage["max_share"] == pytest.approx([1 / 8] * 2)
    rvq.usage[1] = torch.tensor([93.0] + [1.0] * 7)
    usage = rvq.code_usage()
    assert usage["max_share"][1] == pytest.approx(0.93) and 1.0 < usage["perplexity"][1] < 2.0


@pytest.mark.parametrize(
    ("route", "pattern_grad", "codebook_grad"),
    [("straight_through", True, False), ("codebook", False, True), ("none", False, False)],
)
def test_reinjection_gradient_reaches_what_reinject_grad_names(route, pattern_grad, codebook_grad):
    """Through the re-injected stream alone (memory keys and values unused): straight-through trains the local
    pattern, "codebook" the chosen codes, "none" neither; W_r learns in every case."""
    from recsys.models.sinkrec import ConditionalMemory, SinkRecConfig

    torch.manual_seed(0)
    memory = ConditionalMemory(SinkRecConfig(hidden_dim=16, n_heads=2, reinject_grad=route), head_dim=8)
    x = torch.randn(3, 10, 16)
    out, _, _, _, _ = memory(x, torch.rand(3, 10), torch.ones(3, 10, dtype=torch.bool))
    (out - x).pow(2).sum().backward()  # the re-injected part only; the RVQ loss is left out

    def touched(p):
        return p.grad is not None and bool(p.grad.abs().sum() > 0)

    assert touched(memory.reinject.weight)
    assert touched(memory.to_pattern.weight) is pattern_grad
    assert touched(memory.rvq.codebooks) is codebook_grad
    with pytest.raises(ValueError, match="reinject_grad"):
        ConditionalMemory(SinkRecConfig(hidden_dim=16, n_heads=2, reinject_grad="pattern"), head_dim=8)
