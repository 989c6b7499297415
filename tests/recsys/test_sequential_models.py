"""Sequential models end to end: sequence data without leakage, learning a planted pattern, ablations,
save/load, the S3-Rec/SASRec loaders and the min_rating filter."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from recsys.data import InteractionDataset, load_dataset, make_split
from recsys.models import Recommender, build_model
from recsys.models.sequential import SequenceTrainDataset, build_user_sequences, pad_last
from recsys.train import DataConfig, TrainConfig, Trainer, prepare_split, train_from_args

SMALL = {
    "sasrec": {"hidden_dim": 32, "max_len": 20, "dropout": 0.1},
    "gru4rec": {"embedding_dim": 32, "hidden_dim": 32, "max_len": 20, "dropout": 0.1},
    "gdn": {"hidden_dim": 32, "max_len": 20, "dropout": 0.1, "n_layers": 1},
    "sinkrec": {"hidden_dim": 32, "max_len": 20, "dropout": 0.1, "codebook_size": 32, "memory_window": 4},
}
ABLATIONS = [
    {"use_memory": False},
    {"reinject": False},
    {"write_suppression": False},
    {"readout_purification": False},
    {"temporal_gates": False},
    {"shared_loop_weights": False},
    {"pattern_norm": True},  # not an ablation: an option
]


def markov_dataset(n_users: int = 120, n_items: int = 30, length: int = 12, seed: int = 0) -> InteractionDataset:
    """Each user walks i -> i + 1 (mod n_items) with probability 0.9, else jumps to a random item; the start
    is uniform, so popularity is flat and only the order of events predicts the next one."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(n_users):
        item = int(rng.integers(n_items))
        t = 1_000_000.0 + 1000 * user
        for _ in range(length):
            users.append(f"u{user}")
            items.append(f"i{item}")
            times.append(t)
            t += float(rng.integers(60, 86400))
            item = (item + 1) % n_items if rng.random() < 0.9 else int(rng.integers(n_items))
    order = rng.permutation(len(users))  # rows out of time order: the models must sort by timestamp
    return InteractionDataset.from_raw(
        "markov", np.array(users)[order], np.array(items)[order], timestamps=np.array(times)[order]
    )


@pytest.fixture(scope="module")
def markov_split():
    return make_split(markov_dataset(), "loo")


@pytest.fixture(scope="module")
def pop(markov_split):
    """ItemPop's metrics on the planted-pattern split: the bar every sequence model must clear."""
    model = build_model("pop", markov_split.train.n_users, markov_split.train.n_items)
    return Trainer(model, markov_split, TrainConfig(), progress=False).fit()


def _fit(name: str, split, overrides: dict | None = None, epochs: int = 25) -> dict:
    torch.manual_seed(0)
    model = build_model(name, split.train.n_users, split.train.n_items, {**SMALL.get(name, {}), **(overrides or {})})
    config = TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, patience=0, eval_every=epochs, seed=0)
    return Trainer(model, split, config, progress=False).fit()


# -- sequence data -------------------------------------------------------------------------------------
def test_user_sequences_are_time_ordered_with_gap_features():
    data = InteractionDataset.from_raw("d", ["a", "a", "b", "a"], ["x", "y", "z", "w"], timestamps=[30, 10, 5, 10])
    seq = build_user_sequences(data, time_unit=10.0)
    a = data.user_map.to_index("a")
    names = [data.item_map.to_raw(i) for i in seq.of(a)]
    assert names == ["y", "w", "x"]  # by time; the tie (10, 10) keeps row order
    start = seq.indptr[a]
    assert np.allclose(seq.gaps[start : start + 3], [0.0, 0.0, np.log1p(2.0)])
    no_time = dataclasses.replace(data, timestamps=None)
    seq = build_user_sequences(no_time)
    assert [no_time.item_map.to_raw(i) for i in seq.of(a)] == ["x", "y", "w"]  # row order


def test_pad_last_right_pads_and_truncates_to_the_most_recent():
    data = InteractionDataset.from_raw("d", ["a"] * 5 + ["b"], [*list("pqrst"), "p"], timestamps=[1, 2, 3, 4, 5, 1])
    seq = build_user_sequences(data)
    items, _, lengths = pad_last(seq, np.array([0, 1]), max_len=3)
    assert lengths.tolist() == [3, 1]
    assert items[0].tolist() == [3, 4, 5]  # items r, s, t (indices 2, 3, 4) shifted by one
    assert items[1].tolist() == [1, 0, 0]  # right padding with 0


def test_training_windows_cover_every_transition_once_and_negatives_avoid_targets():
    data = markov_dataset(n_users=5, length=23)
    seq = build_user_sequences(data)
    dataset = SequenceTrainDataset(seq, data.n_items, max_len=10, n_neg=3, seed=1)
    batch = dataset.__getitems__(list(range(len(dataset))))
    pairs = batch["targets"] != 0
    assert int(pairs.sum()) == 5 * 22  # every (input, next item) pair of every user, exactly once
    assert batch["items"].shape[1] == 10
    assert not (batch["neg_items"] == batch["targets"][..., None])[pairs].any()
    again = dataset.__getitems__(list(range(len(dataset))))
    assert torch.equal(again["neg_items"], batch["neg_items"])  # seeded
    last = SequenceTrainDataset(seq, data.n_items, max_len=10, windows="last")
    assert len(last) == 5


def test_no_leakage_scoring_sequences_end_before_the_target(markov_split):
    split = markov_split
    model = build_model("sasrec", split.train.n_users, split.train.n_items, SMALL["sasrec"])
    trainer = Trainer(model, split, TrainConfig(epochs=1), progress=False)
    train_targets = model.train_dataset(split.train)
    assert len(train_targets) > 0
    valid_item = {int(u): int(i) for u, i in zip(split.valid.users, split.valid.items, strict=True)}
    test_item = {int(u): int(i) for u, i in zip(split.test.users, split.test.items, strict=True)}
    model.set_eval_history(trainer.eval_history("valid"))
    items, _, lengths = model._eval
    for user in list(valid_item)[:40]:
        seq = items[user, : lengths[user]].tolist()
        expected = build_user_sequences(split.train).of(user)[-20:] + 1
        assert seq == expected.tolist()  # the train events only, in time order
    model.set_eval_history(trainer.eval_history("test"))
    items, _, lengths = model._eval
    for user in list(test_item)[:40]:
        seq = items[user, : lengths[user]].tolist()
        assert seq[-1] == valid_item[user] + 1  # before test, the valid event is the last one seen
    # training windows come only from the train part: no valid or test event is a training target
    train_batch = train_targets.__getitems__(list(range(len(train_targets))))
    assert int((train_batch["targets"] != 0).sum()) == split.train.n_interactions - np.count_nonzero(
        np.bincount(split.train.users, minlength=split.train.n_users)
    )


# -- learning ----------------------------------------------------------------------------------------------
def test_each_model_beats_popularity_on_a_planted_sequential_pattern(markov_split, pop):
    for name in ("sasrec", "gru4rec", "gdn", "sinkrec"):
        result = _fit(name, markov_split)
        assert result["n_users"] == pop["n_users"] == 120
        assert result["hr@10"] > pop["hr@10"] + 0.3, (name, result["hr@10"], pop["hr@10"])


@pytest.mark.parametrize("switch", ABLATIONS, ids=lambda d: next(iter(d)))
def test_sinkrec_ablations_build_and_train_a_step(markov_split, switch):
    split = markov_split
    torch.manual_seed(0)
    model = build_model("sinkrec", split.train.n_users, split.train.n_items, {**SMALL["sinkrec"], **switch})
    data = model.train_dataset(split.train)
    batch = data.__getitems__(list(range(16)))
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    model.set_eval_history(split.train)
    assert model.score(torch.arange(4)).shape == (4, split.train.n_items)
    if switch == {"pattern_norm": True}:  # the RVQ saw patterns at unit scale (layer norm: mean square ~ 1)
        assert model.code_usage()[0]["pattern_energy"] == pytest.approx(1.0, abs=1e-3)
    if switch == {"use_memory": False}:
        assert not any("memory" in name for name, _ in model.named_modules() if name.endswith("memory"))


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_sampled_losses_train(markov_split, loss):
    model = build_model("gdn", markov_split.train.n_users, markov_split.train.n_items, {**SMALL["gdn"], "loss": loss})
    batch = model.train_dataset(markov_split.train).__getitems__(list(range(8)))
    assert batch["neg_items"].shape[-1] == 1 and torch.isfinite(model.loss(batch))


def test_sampled_softmax_over_every_other_item_is_the_full_softmax(markov_split):
    """With the target's every non-target item as its negatives, the sampled softmax is the full one (``ce``),
    for dot products and for cosine with a temperature alike."""
    n_items = markov_split.train.n_items
    for similarity, temperature in (("dot", 1.0), ("cosine", 0.1)):
        options = {**SMALL["sasrec"], "similarity": similarity, "temperature": temperature}
        torch.manual_seed(0)
        full = build_model("sasrec", markov_split.train.n_users, n_items, {**options, "loss": "ce"}).eval()
        sampled = build_model("sasrec", markov_split.train.n_users, n_items, {**options, "loss": "sampled_softmax"})
        sampled.load_state_dict(full.state_dict())
        sampled.eval()
        batch = full.train_dataset(markov_split.train).__getitems__(list(range(6)))
        targets = batch["targets"]
        everyone = torch.arange(1, n_items + 1)
        others = torch.stack([everyone[everyone != t] if t > 0 else everyone[1:] for t in targets.flatten()])
        batch["neg_items"] = others.view(*targets.shape, n_items - 1)
        torch.testing.assert_close(sampled.loss(batch), full.loss(batch))
        # and with a few sampled negatives it is a different, larger-than-zero number that trains
        few = sampled.train_dataset(markov_split.train).__getitems__(list(range(6)))
        with torch.no_grad():
            assert few["neg_items"].shape[-1] == 1 and 0 < float(sampled.loss(few)) < float(full.loss(batch))


def test_cosine_similarity_scores_are_bounded_and_used_in_ranking(markov_split):
    split = markov_split
    options = {**SMALL["gdn"], "similarity": "cosine", "temperature": 0.05}
    model = build_model("gdn", split.train.n_users, split.train.n_items, options).eval()
    model.set_eval_history(split.train)
    scores = model.score(torch.arange(10))
    assert scores.abs().max() <= 1 / 0.05 + 1e-4
    items, gaps, lengths = (t[:10] for t in model._eval)
    hidden = model.last_hidden(items, gaps, lengths)
    manual = (
        torch.nn.functional.normalize(hidden, dim=-1)
        @ torch.nn.functional.normalize(model.item_embedding.weight[1:], dim=-1).T
        / 0.05
    )
    torch.testing.assert_close(scores, manual)
    dot = build_model("gdn", split.train.n_users, split.train.n_items, SMALL["gdn"]).eval()
    dot.load_state_dict(model.state_dict())
    dot.set_eval_history(split.train)
    assert not torch.allclose(dot.score(torch.arange(10)), scores)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("loss", "softmax", "loss must be one of"),
        ("similarity", "l2", "similarity must be one of"),
        ("temperature", 0.0, r"field .temperature. of SASRecConfig: must be > 0"),
    ],
)
def test_bad_loss_similarity_or_temperature_is_refused_by_name(markov_split, field, value, message):
    with pytest.raises(ValueError, match=message):
        build_model("sasrec", markov_split.train.n_users, markov_split.train.n_items, {field: value})


def test_sasrec_with_hstus_sampled_softmax_learns_the_planted_pattern(markov_split, pop):
    options = {"loss": "sampled_softmax", "n_neg": 8, "similarity": "cosine", "temperature": 0.05}
    result = _fit("sasrec", markov_split, options)
    assert result["hr@10"] > pop["hr@10"] + 0.3, (result["hr@10"], pop["hr@10"])


def _no_repeat_split(n_users: int = 40, n_items: int = 30, length: int = 22):
    """Each user sees ``length`` distinct items in time order: leave-one-out leaves 20 train events."""
    rng = np.random.default_rng(1)
    users, items, times = [], [], []
    for user in range(n_users):
        for t, item in enumerate(rng.permutation(n_items)[:length]):
            users.append(f"u{user}")
            items.append(f"i{item}")
            times.append(float(t))
    return make_split(InteractionDataset.from_raw("norep", users, items, timestamps=times), "loo")


def test_eval_mask_history_input_and_none():
    """``history`` masks all 21 earlier items (9 candidates left, so HR@10 is 1), ``input`` only the 3 of the
    model's window, ``none`` nothing; masking more non-targets can only raise each user's rank."""
    split = _no_repeat_split()
    torch.manual_seed(0)
    model = build_model("sasrec", split.train.n_users, split.train.n_items, {**SMALL["sasrec"], "max_len": 3})
    results = {}
    for mode in ("history", "input", "none"):
        trainer = Trainer(model, split, TrainConfig(eval_mask=mode), progress=False)
        results[mode] = trainer.evaluate("test")
    assert results["history"]["hr@10"] == 1.0
    assert results["input"]["hr@10"] < 1.0
    assert results["history"]["ndcg@10"] >= results["input"]["ndcg@10"] >= results["none"]["ndcg@10"]
    assert results["input"]["ndcg@20"] > results["none"]["ndcg@20"]
    # the input mask is exactly each user's last max_len events before the target
    model.set_eval_history(trainer.eval_history("test"))
    window = model.eval_input_csr()
    history = trainer.eval_history("test")
    sequences = build_user_sequences(history)
    for user in range(split.train.n_users):
        assert set(window[user].indices) == set(sequences.of(user)[-3:].tolist())


def test_eval_mask_is_checked_when_the_trainer_is_built(markov_split):
    itempop = build_model("pop", markov_split.train.n_users, markov_split.train.n_items)
    with pytest.raises(ValueError, match="eval_mask='input': model 'pop' has no input window"):
        Trainer(itempop, markov_split, TrainConfig(eval_mask="input"), progress=False)
    with pytest.raises(
        ValueError, match="field 'eval_mask' of TrainConfig: must be one of history, input, none; got 'window'"
    ):
        Trainer(itempop, markov_split, TrainConfig(eval_mask="window"), progress=False)


def test_length_buckets_train_a_sequence_model_and_are_refused_where_examples_have_no_length(
    markov_split, pop, monkeypatch
):
    import recsys.train as train_module
    from recsys.sampling import LengthBucketBatchSampler

    made = []

    class Spy(LengthBucketBatchSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(train_module, "LengthBucketBatchSampler", Spy)
    torch.manual_seed(0)
    model = build_model("gdn", markov_split.train.n_users, markov_split.train.n_items, SMALL["gdn"])
    config = TrainConfig(epochs=25, batch_size=32, lr=5e-3, patience=0, eval_every=25, seed=0, length_buckets=4)
    result = Trainer(model, markov_split, config, progress=False).fit()
    assert len(made) == 1 and made[0].bucket_batches == 4
    assert result["hr@10"] > pop["hr@10"] + 0.3
    mf = build_model("bpr", markov_split.train.n_users, markov_split.train.n_items)
    with pytest.raises(ValueError, match="length_buckets: PairwiseDataset \\(model 'bpr'\\) has no example lengths"):
        Trainer(mf, markov_split, TrainConfig(epochs=1, length_buckets=4), progress=False).fit()
    with pytest.raises(ValueError, match=r"field .length_buckets. of TrainConfig: must be >= 0"):
        Trainer(mf, markov_split, TrainConfig(epochs=1, length_buckets=-1), progress=False).fit()


def test_global_target_weighting_gives_every_target_the_same_weight_in_every_batch(markov_split):
    torch.manual_seed(0)
    config = {**SMALL["gdn"], "max_len": 6}  # 9 pairs per user: windows of 6 and of 3
    model = build_model("gdn", markov_split.train.n_users, markov_split.train.n_items, config).eval()
    data = model.train_dataset(markov_split.train)
    lengths = data.example_lengths()
    assert lengths.min() < lengths.max()  # windows cut at max_len: short and long ones
    short, long = np.argsort(lengths, kind="stable")[:8].tolist(), np.argsort(lengths)[-8:].tolist()
    assert "target_weight" not in data.__getitems__(short)  # the default: each batch its targets' mean
    with torch.no_grad():  # eval mode: no dropout, the same loss on every call
        per_batch = {name: float(model.loss(data.__getitems__(idx))) for name, idx in (("s", short), ("l", long))}
    data.set_target_weighting("global")
    for name, idx in (("s", short), ("l", long)):
        batch = data.__getitems__(idx)
        n_targets = int((batch["targets"] != 0).sum())
        assert float(batch["target_weight"]) == pytest.approx(n_targets / (len(idx) * lengths.mean()))
        # the sum of the targets' losses over a constant (batch size x mean targets per example)
        expected = per_batch[name] * n_targets / (len(idx) * lengths.mean())
        with torch.no_grad():
            assert float(model.loss(batch)) == pytest.approx(expected, rel=1e-5)
    everyone = data.__getitems__(list(range(len(data))))
    assert float(everyone["target_weight"]) == pytest.approx(1.0)  # over all examples: the plain mean
    with pytest.raises(ValueError, match="target_weighting must be"):
        data.set_target_weighting("per-user")


def test_the_trainer_sets_target_weighting_and_refuses_it_where_the_loss_has_no_targets(markov_split, monkeypatch):
    from recsys.models.sequential import SequenceTrainDataset

    seen = []
    original = SequenceTrainDataset.__getitems__

    def spy(self, indices):
        seen.append(original(self, indices))
        return seen[-1]

    monkeypatch.setattr(SequenceTrainDataset, "__getitems__", spy)
    model = build_model("gdn", markov_split.train.n_users, markov_split.train.n_items, SMALL["gdn"])
    config = TrainConfig(epochs=1, batch_size=32, patience=0, seed=0, length_buckets=2, target_weighting="global")
    Trainer(model, markov_split, config, progress=False).fit()
    assert seen and all("target_weight" in batch for batch in seen)
    mf = build_model("bpr", markov_split.train.n_users, markov_split.train.n_items)
    with pytest.raises(ValueError, match="target_weighting='global': PairwiseDataset \\(model 'bpr'\\) has no"):
        Trainer(mf, markov_split, TrainConfig(epochs=1, target_weighting="global"), progress=False).fit()
    with pytest.raises(ValueError, match="field 'target_weighting' of TrainConfig: must be one of batch, global"):
        Trainer(model, markov_split, TrainConfig(epochs=1, target_weighting="sum"), progress=False).fit()


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "gdn", "sinkrec"])
def test_save_load_round_trip(tmp_path, markov_split, name):
    split = markov_split
    model = build_model(name, split.train.n_users, split.train.n_items, SMALL[name]).eval()
    model.set_eval_history(split.train)
    scores = model.score(torch.arange(10))
    model.save_pretrained(tmp_path / name)
    again = Recommender.from_pretrained(tmp_path / name).eval()
    again.set_eval_history(split.train)
    assert type(again) is type(model) and again.config == model.config
    assert torch.allclose(again.score(torch.arange(10)), scores, atol=1e-6)


# -- data ----------------------------------------------------------------------------------------------------
def test_sequence_files_load_in_order_and_split_by_order(tmp_path):
    s3rec = tmp_path / "Tiny_Category.txt"
    s3rec.write_text("1 1 2 3 4\n2 5 1 6\n3 2 7 8 9 10\n")
    data = load_dataset(s3rec)
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 10, 12)
    assert data.timestamps is None
    split = make_split(data, "loo")
    assert split.protocol == "leave_one_out_by_order"
    last = {
        data.user_map.to_raw(u): data.item_map.to_raw(i)
        for u, i in zip(split.test.users, split.test.items, strict=False)
    }
    assert last == {"1": "4", "2": "6", "3": "10"}
    pairs = tmp_path / "Video.txt"
    pairs.write_text("1 5\n1 6\n2 5\n1 7\n2 8\n")
    data = load_dataset(pairs)
    split = make_split(data, "loo")
    last = {
        data.user_map.to_raw(u): data.item_map.to_raw(i)
        for u, i in zip(split.test.users, split.test.items, strict=False)
    }
    assert last == {"1": "7", "2": "8"}
    result = train_from_args(
        [
            "--model",
            "gru4rec",
            "--dataset",
            str(s3rec),
            "--epochs",
            "1",
            "--quiet",
            "--embedding_dim",
            "8",
            "--hidden_dim",
            "8",
        ]
    )
    assert result["n_users"] == 3 and result["protocol"] == "leave_one_out_by_order"


@pytest.mark.parametrize(
    "name,users,items,rows",
    [("beauty", 22363, 12101, 198502), ("sports", 35598, 18357, 296337), ("video-games", 31013, 23715, 287107)],
)
def test_real_sequence_files(shared_data, name, users, items, rows):
    folder = "sasrec_video_games" if name == "video-games" else "amazon_s3rec"
    if not (shared_data / folder).is_dir():
        pytest.skip(f"{shared_data / folder} is absent (the shared data folder is not mounted)")
    data = load_dataset(name)
    assert (data.n_users, data.n_items, data.n_interactions) == (users, items, rows)
    assert data.timestamps is None


def test_min_rating_filter(tmp_path):
    from synthetic import make_clustered_interactions, write_atomic_inter

    folder = write_atomic_inter(tmp_path, "toy", make_clustered_interactions())
    full = prepare_split(DataConfig(dataset=str(folder)))
    kept = prepare_split(DataConfig(dataset=str(folder), min_rating=3))
    n_full = full.train.n_interactions + full.valid.n_interactions + full.test.n_interactions
    n_kept = kept.train.n_interactions + kept.valid.n_interactions + kept.test.n_interactions
    assert 0 < n_kept < n_full
    assert (kept.train.ratings >= 3).all() and (kept.test.ratings >= 3).all()


def test_sinkrec_zero_initialised_reinjection_starts_as_none_and_learns(markov_split):
    split = markov_split
    torch.manual_seed(0)
    model = build_model(
        "sinkrec", split.train.n_users, split.train.n_items, {**SMALL["sinkrec"], "reinject_init": "zero"}
    )
    model.eval().set_eval_history(split.train)
    layers = [m for m in model.modules() if getattr(m, "reinject", None) is not None]
    assert layers and all(not m.reinject.weight.detach().any() for m in layers)
    with torch.no_grad():
        scores = model.score(torch.arange(6))
        for m in layers:
            m.reinject, m._kept = None, m.reinject
        without = model.score(torch.arange(6))
        for m in layers:
            m.reinject = m._kept
    torch.testing.assert_close(scores, without)  # the zero map adds exactly nothing at the start
    model.train()
    batch = model.train_dataset(split.train).__getitems__(list(range(16)))
    model.loss(batch).backward()
    assert all(float(m.reinject.weight.grad.abs().sum()) > 0 for m in layers)  # and it is trained from there
    with pytest.raises(ValueError, match="reinject_init"):
        build_model("sinkrec", 5, 7, {**SMALL["sinkrec"], "reinject_init": "small"})


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "gdn", "sinkrec"])
def test_scoring_in_length_groups_equals_one_padded_batch(name, monkeypatch):
    """On a CPU, ``score`` encodes users in groups of similar history length; the scores are those of one
    batch padded to the longest history (the sequences are causal and right-padded)."""
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for user in range(30):
        for t in range(int(rng.integers(1, 25))):  # lengths 1..24, max_len 20: some truncated
            users.append(f"u{user}")
            items.append(f"i{int(rng.integers(40))}")
            times.append(float(t))
    history = InteractionDataset.from_raw("lengths", users, items, timestamps=times)
    torch.manual_seed(0)
    model = build_model(name, history.n_users, history.n_items, SMALL[name]).eval()
    model.set_eval_history(history)
    everyone = torch.arange(history.n_users).flip(0)
    with torch.no_grad():
        grouped = model.score(everyone)  # groups of 256 > 30 users: one batch
        monkeypatch.setattr(model, "score_group_size", 4)
        assert model.score(everyone).shape == grouped.shape
        torch.testing.assert_close(model.score(everyone), grouped, atol=1e-5, rtol=1e-5)


def test_sinkrecs_rvq_loss_is_logged_apart_from_the_next_item_loss(markov_split):
    torch.manual_seed(0)
    config = TrainConfig(epochs=2, batch_size=32, lr=5e-3, patience=0, eval_every=2, seed=0)
    sinkrec = build_model("sinkrec", markov_split.train.n_users, markov_split.train.n_items, SMALL["sinkrec"])
    trainer = Trainer(sinkrec, markov_split, config, progress=False)
    trainer.fit()
    for record in trainer.history:
        parts = record["loss_parts"]
        assert set(parts) == {"main", "aux"} and parts["aux"] > 0
        assert parts["main"] + parts["aux"] == pytest.approx(record["loss"], rel=1e-5)
        # and the RVQ's state after each epoch: one block (shared loop weights), an error share per level
        (rvq,) = record["diagnostics"]["rvq"]
        assert len(rvq["relative_error"]) == sinkrec.config.n_codebooks
        assert all(0 < e < 1 for e in rvq["relative_error"]) and rvq["pattern_energy"] > 0
        json.dumps(record["diagnostics"])  # JSON-ready, as the history and the benchmark write it
    no_memory = build_model(
        "sinkrec", markov_split.train.n_users, markov_split.train.n_items, {**SMALL["sinkrec"], "use_memory": False}
    )
    trainer = Trainer(no_memory, markov_split, config, progress=False)
    trainer.fit()
    assert all("loss_parts" not in record for record in trainer.history)  # one part: nothing to split
    assert all("diagnostics" not in record for record in trainer.history)  # and no RVQ to report on
