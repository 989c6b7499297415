"""Every registered model, saved with save_pretrained and read back with from_pretrained, scores exactly as the
model did before it was saved (weights moved away from their initial values first, so a save that wrote
fresh weights, dropped a tensor or lost a data buffer would fail)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from synthetic import make_clustered_interactions

import mllm.rgcd.two_tower  # noqa: F401  (registers rgcd_two_tower, a recsys model that lives in mllm)
from recsys.ctr import SyntheticCTRConfig, make_synthetic_ctr, split_and_encode
from recsys.data import InteractionDataset, make_split
from recsys.models import Recommender, available_models, build_model, get_model_class
from recsys.models.ctr_layers import build_ctr_model

RANKING = [n for n in available_models() if getattr(get_model_class(n), "task", "ranking") != "ctr"]
CTR = [n for n in available_models() if getattr(get_model_class(n), "task", "ranking") == "ctr"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ranking_split():
    rows = make_clustered_interactions(n_users=40)
    dataset = InteractionDataset.from_raw("clustered", [r[0] for r in rows], [r[1] for r in rows],
                                          timestamps=[r[3] for r in rows])  # fmt: skip
    return make_split(dataset, "loo")


@pytest.fixture(scope="module")
def ctr_split():
    table, _ = make_synthetic_ctr(SyntheticCTRConfig(n_samples=600, cardinality=6, seed=0))
    return split_and_encode(table, "random", seed=0)


def move_weights(model: torch.nn.Module) -> None:
    """Shift every floating parameter by seeded noise, so the saved weights differ from any fresh init."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator).to(parameter.dtype))


def test_every_registered_model_is_covered() -> None:
    assert set(RANKING) | set(CTR) == set(available_models())
    assert {"bpr", "lightgcn", "sasrec", "sinkrec", "ease", "pop"} <= set(RANKING) and "dsmlp" in CTR


@pytest.mark.parametrize("name", RANKING)
def test_ranking_model_round_trip_matches_the_model_before_saving(name: str, ranking_split, tmp_path: Path) -> None:
    train = ranking_split.train
    model = build_model(name, train.n_users, train.n_items)
    model.prepare(train)
    with contextlib.suppress(NotImplementedError):
        model.fit_closed_form(train)
    move_weights(model)
    model.eval().set_eval_history(train)
    users = torch.arange(train.n_users)
    with torch.no_grad():
        before = model.score(users)
    model.save_pretrained(tmp_path / name)
    loaded = Recommender.from_pretrained(tmp_path / name).eval()
    loaded.set_eval_history(train)
    with torch.no_grad():
        after = loaded.score(users)
    assert type(loaded) is type(model) and before.shape == (train.n_users, train.n_items)
    assert torch.isfinite(before).all()
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("name", CTR)
def test_ctr_model_round_trip_matches_the_model_before_saving(name: str, ctr_split, tmp_path: Path) -> None:
    model = build_ctr_model(name, ctr_split.pipeline)
    move_weights(model)
    batch = ctr_split.test.batch(slice(0, 50))
    model.eval()
    with torch.no_grad():
        before = model.predict(batch)
    model.save_pretrained(tmp_path / name)
    loaded = Recommender.from_pretrained(tmp_path / name).eval()
    with torch.no_grad():
        after = loaded.predict(batch)
    assert type(loaded) is type(model) and before.shape == (50,)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
