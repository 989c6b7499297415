"""The state-sink diagnostic (recsys.models.sink_diagnostic, behind `benchmarks/sequential.py sink`) on tiny
models (untrained: it measures, it does not need a good model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data import InteractionDataset
from recsys.models import build_model
from recsys.models.sink_diagnostic import item_genres, planted_repetition_dataset, sink_share


@pytest.mark.parametrize("name", ["gdn", "sinkrec"])
def test_sink_share_on_planted_repetition(name):
    data = planted_repetition_dataset(n_users=6, n_items=20, length=12, seed=0)
    torch.manual_seed(0)
    options = {"hidden_dim": 16, "max_len": 12, **({"codebook_size": 8} if name == "sinkrec" else {})}
    model = build_model(name, data.n_users, data.n_items, options)
    out = sink_share(model, data)
    assert out["users"] == 6 and out["users_with_repeats"] == 6  # every planted user repeats favourites
    assert out["random_subspace_share"] == pytest.approx(3 / 8)  # top 3 of a head dimension of 8
    for key in ("state_share_top_key_directions", "state_share_repeated", "repeated_score_percentile"):
        assert 0.0 <= out[key] <= 1.0 + 1e-6
    # the state is a sum of written keys times values, so the top written directions hold more than chance
    assert out["state_share_top_key_directions"] > out["random_subspace_share"]
    mixer = model._block(0).mixer if name == "sinkrec" else model.mixers[0]
    assert "project" not in vars(mixer)  # the recording hook is removed afterwards


def test_sink_share_without_repeated_items_reports_none():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(4), 8)
    items = np.concatenate([rng.permutation(30)[:8] for _ in range(4)])  # no user repeats an item
    data = InteractionDataset.from_raw("no-repeats", users, items, timestamps=np.arange(users.size, dtype=float))
    torch.manual_seed(0)
    model = build_model("gdn", data.n_users, data.n_items, {"hidden_dim": 16, "max_len": 8})
    out = sink_share(model, data)
    assert out["users"] == 4 and out["users_with_repeats"] == 0
    assert out["state_share_repeated"] is None and out["repeated_score_percentile"] is None
    assert out["state_share_top_key_directions"] is not None


def test_sink_share_by_genre_when_items_do_not_repeat():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(5), 10)
    items = np.concatenate([rng.permutation(40)[:10] for _ in range(5)])
    data = InteractionDataset.from_raw("genres", users, items, timestamps=np.arange(users.size, dtype=float))
    genres = [frozenset({"drama"} if i % 4 else {"comedy", "drama"}) for i in range(data.n_items)]
    torch.manual_seed(0)
    model = build_model("gdn", data.n_users, data.n_items, {"hidden_dim": 16, "max_len": 10})
    out = sink_share(model, data, genres=genres)
    assert 0.0 <= out["state_share_top_genre"] <= 1.0 + 1e-6
    assert 0.0 <= out["top_genre_score_percentile"] <= 1.0
    assert sink_share(model, data)["state_share_top_genre"] is None  # no genres, no genre measure


def test_item_genres_reads_the_genre_column():
    import pandas as pd

    data = InteractionDataset.from_raw("g", [0, 0], [0, 1])
    assert item_genres(data) is None
    data.item_features = pd.DataFrame({"item_id": ["a", "b"], "genre": ["Comedy Drama", None]})
    assert item_genres(data) == [frozenset({"Comedy", "Drama"}), frozenset()]
