"""iALS: implicit-feedback matrix factorisation by alternating least squares (Hu, Koren and Volinsky, ICDM 2008).

Preference p_ui = 1 for observed (u, i), else 0; confidence c_ui = 1 + alpha * r_ui (r_ui = 1 for a binary
interaction, or the rating / count when ``use_values``). The loss (eq. 3)

    sum_{u,i} c_ui (p_ui - x_u^T y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)

is minimised in closed form, one side at a time (eq. 4):

    x_u = (Y^T Y + Y^T (C^u - I) Y + lambda I)^-1 Y^T C^u p(u),

where Y^T Y is shared by every user and the correction only touches the user's observed items, so one sweep
costs O(nnz d^2 + (n_users + n_items) d^3). ``solver = "cg"`` replaces the exact solve by a few conjugate-
gradient steps warm-started at the previous factors (Takacs, Pilaszy and Tikk, RecSys 2011).

The matrix A_i = X^T C^i X + lambda I of each item's last solve is the precision of the item factor's
Gaussian posterior (noise variance 1); ``item_variance`` keeps the diagonal of A_i^-1 for DINOSAUR.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recsys.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, validate_fields
from recsys.models import register
from recsys.models.base import Recommender

logger = logging.getLogger(__name__)

SOLVERS = ("cholesky", "cg")


@dataclasses.dataclass
class IALSConfig:
    """iALS hyper-parameters: d = 128 as DINOSAUR's MovieLens-32M model; alpha = 40 as Hu et al."""

    embedding_dim: int = 128
    alpha: float = 40.0  # confidence c_ui = 1 + alpha * r_ui
    reg: float = 0.1  # lambda on both factor matrices
    iterations: int = 15  # alternating sweeps (users then items)
    init_std: float = 0.01
    use_values: bool = False  # r_ui = the stored rating / count instead of 1
    solver: str = "cholesky"  # or "cg"
    cg_steps: int = 3
    seed: int | None = None  # initial factors' seed; None: the Trainer's --seed (through torch's global RNG)

    # alpha is a confidence scale (Hu et al. use 40), not a fraction as the by-name default assumes
    field_ranges: ClassVar[dict[str, Any]] = {
        "alpha": NON_NEGATIVE,
        "reg": POSITIVE,
        "iterations": AT_LEAST_ONE,
        "cg_steps": AT_LEAST_ONE,
        "solver": ("cholesky", "cg"),
    }

    def __post_init__(self) -> None:
        validate_fields(self)


def _confidence_csr(train: Any, n_users: int, n_items: int, use_values: bool) -> sp.csr_matrix:
    """The user x item matrix of r_ui (1 per interaction, or its rating when ``use_values``)."""
    if use_values and getattr(train, "ratings", None) is not None:
        values = np.asarray(train.ratings, dtype=np.float64)
    else:
        values = np.ones(len(train.users), dtype=np.float64)
    matrix = sp.csr_matrix((values, (train.users, train.items)), shape=(n_users, n_items))
    if not use_values:
        matrix.data[:] = 1.0  # duplicates summed by scipy count once
    return matrix


def als_half_step(
    r: sp.csr_matrix,
    fixed: np.ndarray,
    alpha: float,
    reg: float,
    current: np.ndarray | None = None,
    solver: str = "cholesky",
    cg_steps: int = 3,
    keep_variance: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Solve every row's factor given the ``fixed`` other side (eq. 4); optionally the diagonal of A^-1."""
    n_rows, dim = r.shape[0], fixed.shape[1]
    gram = fixed.T @ fixed
    eye = reg * np.eye(dim)
    out = np.zeros((n_rows, dim)) if current is None else current.astype(np.float64, copy=True)
    variance = np.zeros((n_rows, dim)) if keep_variance else None
    indptr, indices, data = r.indptr, r.indices, r.data
    for row in tqdm(range(n_rows), desc="als rows", disable=not progress, leave=False, mininterval=2):
        start, stop = indptr[row], indptr[row + 1]
        cols = indices[start:stop]
        conf = 1.0 + alpha * data[start:stop]
        factors = fixed[cols]
        b = factors.T @ conf  # Y^T C^u p(u): p = 1 exactly on the observed items
        if solver == "cg" and not keep_variance:
            x = out[row]
            residual = b - (gram @ x + reg * x + factors.T @ ((conf - 1.0) * (factors @ x)))
            direction = residual.copy()
            rs_old = residual @ residual
            for _ in range(cg_steps):
                if rs_old < 1e-20:
                    break
                ad = gram @ direction + reg * direction + factors.T @ ((conf - 1.0) * (factors @ direction))
                step = rs_old / (direction @ ad)
                x = x + step * direction
                residual = residual - step * ad
                rs_new = residual @ residual
                direction = residual + (rs_new / rs_old) * direction
                rs_old = rs_new
            out[row] = x
            continue
        a = gram + eye + (factors.T * (conf - 1.0)) @ factors
        if keep_variance:
            inverse = np.linalg.inv(a)
            out[row] = inverse @ b
            variance[row] = np.diag(inverse)
        else:
            out[row] = np.linalg.solve(a, b)
    return out, variance


@register("ials")
class IALS(Recommender):
    """score(u, i) = <x_u, y_i>, fitted by alternating closed-form weighted least squares (no gradient steps)."""

    Config = IALSConfig
    trainable = False
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: IALSConfig, n_users: int, n_items: int) -> None:
        super().__init__(config, n_users, n_items)
        if config.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {config.solver!r}")
        if config.embedding_dim < 1 or config.iterations < 1 or config.reg < 0 or config.alpha < 0:
            raise ValueError("need embedding_dim >= 1, iterations >= 1, reg >= 0 and alpha >= 0")
        self.register_buffer("user_factors", torch.zeros(n_users, config.embedding_dim))
        self.register_buffer("item_factors", torch.zeros(n_items, config.embedding_dim))
        self.register_buffer("item_variance", torch.zeros(n_items, config.embedding_dim))
        self.losses: list[float] = []

    def fit_closed_form(self, train: Any) -> None:
        """Alternate user and item solves for ``iterations`` sweeps, keeping the items' posterior variance."""
        cfg = self.config
        r_user = _confidence_csr(train, self.n_users, self.n_items, cfg.use_values)
        r_item = r_user.T.tocsr()
        # without its own seed, the init follows torch's global RNG, which the Trainer seeds with --seed
        seed = cfg.seed if cfg.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
        rng = np.random.default_rng(seed)
        users = rng.normal(0.0, cfg.init_std, (self.n_users, cfg.embedding_dim))
        items = rng.normal(0.0, cfg.init_std, (self.n_items, cfg.embedding_dim))
        variance = None
        for sweep in tqdm(range(cfg.iterations), desc="ials sweeps", leave=False):
            last = sweep == cfg.iterations - 1
            users, _ = als_half_step(r_user, items, cfg.alpha, cfg.reg, users, cfg.solver, cfg.cg_steps)
            items, variance = als_half_step(
                r_item, users, cfg.alpha, cfg.reg, items, cfg.solver, cfg.cg_steps, keep_variance=last
            )
            self.losses.append(ials_loss(r_user, users, items, cfg.alpha, cfg.reg))
            logger.info("ials sweep %d loss %.4f", sweep + 1, self.losses[-1])
        self.user_factors.copy_(torch.from_numpy(users.astype(np.float32)))
        self.item_factors.copy_(torch.from_numpy(items.astype(np.float32)))
        self.item_variance.copy_(torch.from_numpy(variance.astype(np.float32)))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user factors, item factors): score = users @ items.T."""
        return self.user_factors, self.item_factors

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors[users.to(self.user_factors.device)] @ self.item_factors.T


def ials_loss(r: sp.csr_matrix, users: np.ndarray, items: np.ndarray, alpha: float, reg: float) -> float:
    """The weighted loss of eq. 3, without forming the dense matrix (the all-zero part through the Grams)."""
    # sum over all (u, i) of (x_u^T y_i)^2 = trace((X^T X)(Y^T Y)); observed cells are corrected below
    total = float(np.sum((users.T @ users) * (items.T @ items)))
    rows = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
    predictions = np.einsum("nd,nd->n", users[rows], items[r.indices])
    conf = 1.0 + alpha * r.data
    total += float(np.sum(conf * (1.0 - predictions) ** 2 - predictions**2))
    return total + reg * float(np.sum(users**2) + np.sum(items**2))
