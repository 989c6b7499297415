"""A synthetic CTR generator with planted 2nd- and 3rd-order feature interactions of known strength.

The true logit of a row is a sum of standardised terms, so each ``*_strength`` is the standard deviation that
term contributes::

    logit = bias + s1 * z(sum_f w_f[x_f] + v * x_num)
                 + s2 * z(sum_{(a,b) in pairs} <U_a[x_a], U_b[x_b]>)                 # 2nd order
                 + s3 * z(sum_{(a,b,c) in triples} sum_k A[x_a,k] B[x_b,k] C[x_c,k])   # 3rd order

``z`` standardises a term over the generated rows. A model with only first-order terms (LR) cannot see the
interaction terms; explicit-interaction models (FM for pairs, cross networks for higher orders) should win,
and the generator returns the true logits, so the oracle AUC is the ceiling any model can reach.
"""

from __future__ import annotations

import dataclasses
from itertools import combinations

import numpy as np
import pandas as pd

from recsys.ctr.features import FieldSpec, Schema
from recsys.ctr.readers import CTRTable


@dataclasses.dataclass
class SyntheticCTRConfig:
    """Size and planted effects of the synthetic set (defaults: a benchmark-sized set)."""

    n_samples: int = 50_000
    n_fields: int = 8
    cardinality: int = 20
    first_order_strength: float = 0.5
    second_order_strength: float = 1.5
    third_order_strength: float = 1.5
    n_pairs: int = 4
    n_triples: int = 2
    factor_dim: int = 4
    positive_rate: float = 0.35
    seed: int = 0


def make_synthetic_ctr(config: SyntheticCTRConfig | None = None) -> tuple[CTRTable, np.ndarray]:
    """(table, true logits): categorical fields ``c0..`` , one numeric field ``x_num``, label ``label``."""
    cfg = config or SyntheticCTRConfig()
    rng = np.random.default_rng(cfg.seed)
    n, f, m = cfg.n_samples, cfg.n_fields, cfg.cardinality
    x = rng.integers(0, m, size=(n, f))
    x_num = rng.normal(size=n)

    def standardise(term: np.ndarray) -> np.ndarray:
        std = term.std()
        return (term - term.mean()) / std if std > 0 else term * 0.0

    first = sum(rng.normal(size=m)[x[:, j]] for j in range(f)) + 0.5 * x_num
    all_pairs = list(combinations(range(f), 2))
    pairs = [all_pairs[i] for i in rng.choice(len(all_pairs), size=min(cfg.n_pairs, len(all_pairs)), replace=False)]
    second = np.zeros(n)
    for a, b in pairs:
        u_a, u_b = rng.normal(size=(m, cfg.factor_dim)), rng.normal(size=(m, cfg.factor_dim))
        second += (u_a[x[:, a]] * u_b[x[:, b]]).sum(axis=1)
    all_triples = list(combinations(range(f), 3))
    picks = rng.choice(len(all_triples), size=min(cfg.n_triples, len(all_triples)), replace=False)
    third = np.zeros(n)
    for a, b, c in (all_triples[i] for i in picks):
        t_a, t_b, t_c = (rng.normal(size=(m, cfg.factor_dim)) for _ in range(3))
        third += (t_a[x[:, a]] * t_b[x[:, b]] * t_c[x[:, c]]).sum(axis=1)
    logits = (
        cfg.first_order_strength * standardise(first)
        + cfg.second_order_strength * standardise(second)
        + cfg.third_order_strength * standardise(third)
    )
    logits = logits + _bias_for_rate(logits, cfg.positive_rate)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int8)
    frame = pd.DataFrame({f"c{j}": x[:, j].astype(str) for j in range(f)})
    frame["x_num"] = x_num
    frame["label"] = labels
    schema = Schema([FieldSpec(f"c{j}") for j in range(f)] + [FieldSpec("x_num", "numeric")], label="label")
    source = f"synthetic-ctr({', '.join(f'{k}={v}' for k, v in dataclasses.asdict(cfg).items())})"
    return CTRTable(frame=frame, schema=schema, source=source), logits


def _bias_for_rate(logits: np.ndarray, rate: float) -> float:
    """The bias that makes the mean predicted probability equal ``rate`` (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if (1.0 / (1.0 + np.exp(-(logits + mid)))).mean() < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2
