"""Small synthetic interaction data shared by the tests (a module, so test files can import it by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_clustered_interactions(
    n_users: int = 80, n_items: int = 60, n_groups: int = 4, per_user: int = 10, seed: int = 0
) -> list[tuple[str, str, float, int]]:
    """Rows (user, item, rating, timestamp) where users of a group interact with that group's items.

    A collaborative model can learn the groups; popularity alone cannot, which makes trainer tests able
    to tell a model that learned from one that did not.
    """
    rng = np.random.default_rng(seed)
    items_per_group = n_items // n_groups
    rows = []
    for user in range(n_users):
        group = user % n_groups
        own = np.arange(group * items_per_group, (group + 1) * items_per_group)
        chosen = rng.choice(own, size=per_user, replace=False)
        for t, item in enumerate(chosen):
            rows.append((f"u{user}", f"i{item}", float(rng.integers(1, 6)), 1_000_000 + 1000 * user + t))
    return rows


def write_atomic_inter(directory: Path, name: str, rows: list[tuple[str, str, float, int]]) -> Path:
    """Write rows as a RecBole atomic ``<directory>/<name>/<name>.inter`` file; returns the folder."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return folder


def fla_contract_stand_in(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """A stand-in for fla's ``chunk_gated_delta_rule`` with its documented contract ([B, T, H, *] inputs, g in
    log space, state [N, H, K, V], output in q's dtype), computed by our recurrence: any layout slip in the
    adapter changes the results."""
    import torch

    from recsys.models.delta_rule import recurrent_gated_delta_rule

    assert q.shape[:3] == k.shape[:3] == v.shape[:3] == g.shape == beta.shape  # time before heads
    assert g.dtype == torch.float32 and output_final_state
    o, state = recurrent_gated_delta_rule(
        *(t.transpose(1, 2) for t in (q, k, v, g, beta)), scale=scale, initial_state=initial_state
    )
    return o.transpose(1, 2).to(q.dtype), state
