"""iALS: the alternating solves equal a dense reference of Hu et al.'s eq. 4, the loss falls, and it beats ItemPop."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.models import Recommender, build_model
from recsys.models.ials import als_half_step, ials_loss
from recsys.train import train_from_args

FAST = ["--quiet", "--split", "loo"]


def _dense_reference_step(r: np.ndarray, fixed: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """x_u = (Y^T C^u Y + lambda I)^-1 Y^T C^u p(u), with the full dense C^u (eq. 4 as written)."""
    out = np.zeros((r.shape[0], fixed.shape[1]))
    for u in range(r.shape[0]):
        c = np.diag(1.0 + alpha * r[u])
        p = (r[u] > 0).astype(float)
        a = fixed.T @ c @ fixed + reg * np.eye(fixed.shape[1])
        out[u] = np.linalg.solve(a, fixed.T @ c @ p)
    return out


@pytest.fixture
def tiny() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    r = (rng.random((12, 9)) < 0.3).astype(float)
    return r, rng.normal(size=(9, 4))


def test_half_step_matches_dense_reference(tiny):
    r, items = tiny
    got, variance = als_half_step(sp.csr_matrix(r), items, alpha=5.0, reg=0.3, keep_variance=True)
    np.testing.assert_allclose(got, _dense_reference_step(r, items, 5.0, 0.3), rtol=1e-8, atol=1e-10)
    # the posterior variance is the diagonal of A^-1 of each row's solve
    a0 = items.T @ np.diag(1.0 + 5.0 * r[0]) @ items + 0.3 * np.eye(4)
    np.testing.assert_allclose(variance[0], np.diag(np.linalg.inv(a0)), rtol=1e-8)


def test_conjugate_gradient_converges_to_the_exact_solve(tiny):
    r, items = tiny
    exact, _ = als_half_step(sp.csr_matrix(r), items, 5.0, 0.3)
    cg, _ = als_half_step(sp.csr_matrix(r), items, 5.0, 0.3, current=np.zeros_like(exact), solver="cg", cg_steps=4)
    np.testing.assert_allclose(cg, exact, rtol=1e-5, atol=1e-7)  # CG is exact after d = 4 steps


class _Interactions:
    def __init__(self, r: np.ndarray) -> None:
        self.users, self.items = np.nonzero(r)
        self.ratings = None


def test_fit_equals_reference_alternation_and_loss_falls(tiny):
    r, _ = tiny
    model = build_model("ials", 12, 9, {"embedding_dim": 4, "alpha": 5.0, "reg": 0.3, "iterations": 3, "seed": 1})
    model.fit_closed_form(_Interactions(r))
    rng = np.random.default_rng(1)
    users = rng.normal(0.0, 0.01, (12, 4))
    items = rng.normal(0.0, 0.01, (9, 4))
    for _ in range(3):
        users = _dense_reference_step(r, items, 5.0, 0.3)
        items = _dense_reference_step(r.T, users, 5.0, 0.3)
    np.testing.assert_allclose(model.item_factors.numpy(), items, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.score(torch.arange(12)).numpy(), users @ items.T, rtol=1e-4, atol=1e-5)
    assert all(later <= earlier + 1e-9 for earlier, later in zip(model.losses, model.losses[1:], strict=False))
    assert model.losses[-1] == pytest.approx(ials_loss(sp.csr_matrix(r), users, items, 5.0, 0.3), rel=1e-4)


def test_ials_beats_itempop_and_reloads(clustered_dataset_dir, tmp_path):
    args = ["--dataset", str(clustered_dataset_dir), *FAST]
    pop = train_from_args(["--model", "pop", *args])
    ials = train_from_args(
        ["--model", "ials", "--out", str(tmp_path / "ials"), "--embedding_dim", "8", "--iterations", "5", *args]
    )
    assert ials["ndcg@10"] > pop["ndcg@10"] + 0.1
    reloaded = Recommender.from_pretrained(tmp_path / "ials")
    assert reloaded.name == "ials" and bool((reloaded.item_variance > 0).all())


def test_ials_beats_itempop_on_movielens_100k(shared_data):
    args = ["--dataset", "ml-100k", "--data-dir", str(shared_data), *FAST]
    pop = train_from_args(["--model", "pop", *args])
    ials = train_from_args(
        ["--model", "ials", "--embedding_dim", "16", "--iterations", "4", "--alpha", "4", "--reg", "4", *args]
    )
    assert ials["ndcg@10"] > 1.5 * pop["ndcg@10"]


def test_bad_config_is_rejected():
    from recsys.config import ConfigError

    with pytest.raises(ConfigError, match="solver"):
        build_model("ials", 3, 3, {"solver": "lu"})
