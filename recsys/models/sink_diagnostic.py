"""The state-sink diagnostic of the linear-attention sequence models (GDN, SinkRec): how much of the first
layer's delta-rule state a user's recurring patterns take, and a planted data set that has such patterns.

Analysis code, used by ``python benchmarks/sequential.py sink`` and by tests.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch


def planted_repetition_dataset(n_users: int, n_items: int, length: int, seed: int):
    """Sequences mixing planted repetition (a user's 3 favourite items recur in bursts) with planted
    transitions (i -> i + 1); the next item after a transition is predictable, the bursts are a sink."""
    from recsys.data import InteractionDataset

    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(n_users):
        favourites = rng.choice(n_items, size=3, replace=False)
        item = int(rng.integers(n_items))
        t = 0.0
        for _ in range(length):
            if rng.random() < 0.5:
                current = int(rng.choice(favourites))
                t += 60.0  # repeats come in quick bursts
            else:
                item = (item + 1) % n_items
                current = item
                t += 86400.0
            users.append(user)
            items.append(current)
            times.append(t)
    return InteractionDataset.from_raw("planted", users, items, timestamps=times)


def item_genres(dataset: Any) -> list[frozenset[str]] | None:
    """Each item's genres (space-separated tokens of the genre/class column, as MovieLens), or None."""
    from recsys.data.loaders import GENRE_COLUMNS

    features = getattr(dataset, "item_features", None)
    if features is None:
        return None
    column = next((c for c in GENRE_COLUMNS if c in features.columns), None)
    if column is None:
        return None
    values = features[column].fillna("").astype(str).tolist()
    return [frozenset(v.split()) for v in values]


def _own_keys(mixer: Any, model: Any, items: np.ndarray) -> torch.Tensor:
    """Each item's own key direction in the first mixer (its projection without the conv context): [n, H, K]."""
    emb = model.item_embedding.weight[torch.as_tensor(items) + 1]
    keys = mixer.qkv_proj(emb).view(len(items), 3, mixer.n_heads, mixer.head_dim)[:, 1]
    return torch.nn.functional.normalize(keys, dim=-1)


def _share(basis: torch.Tensor, state: torch.Tensor, energy: torch.Tensor) -> float:
    """Energy of ``state`` [H, K, V] inside the orthonormal ``basis`` [H, K, r], as a share of ``energy``."""
    return float(torch.einsum("hkr,hkv->hrv", basis, state).pow(2).sum() / energy)


def _percentile(scores: torch.Tensor, items: np.ndarray) -> float:
    """Mean score percentile of ``items`` among all items (1 = scored above every other item)."""
    above = (scores[None, :] > scores[torch.as_tensor(items)][:, None]).float().mean(1)
    return float(1 - above.mean())


@torch.no_grad()
def sink_share(
    model: Any,
    history: Any,
    top_k: int = 3,
    max_users: int = 200,
    genres: list[frozenset[str]] | None = None,
) -> dict[str, Any]:
    """How much of the first layer's delta-rule state the user's recurring patterns take, after streaming the
    user's history (users with >= 5 events, the first ``max_users``). The measures:

    * ``state_share_top_key_directions``: share of the state's energy (squared Frobenius norm, all heads) in
      the span of the top ``top_k`` right singular vectors of the keys written over the user's history, per
      head: the directions the history wrote most often. It needs no item repeats, so it applies to any
      data. ``random_subspace_share`` (= top_k / key dim) is what a state with no preference would give.
    * ``state_share_repeated``: the same share for the key directions of the user's ``top_k`` most frequent
      items, over users whose most frequent item occurs at least twice (``None`` if there are none: e.g.
      MovieLens, where an item is rated once).
    * ``repeated_score_percentile``: mean score percentile of those repeated items in the next prediction
      (readout bias toward them), over the same users.
    * With ``genres`` (one set per item; MovieLens has them), the semantic version for data where items do
      not repeat but kinds of items do: ``state_share_top_genre`` is the share in the span of the top
      ``top_k`` singular directions of the own keys of the user's history items of the user's most frequent
      genre; ``top_genre_score_percentile`` the mean score percentile of all catalogue items of that genre.
    """
    from recsys.models.sequential import build_user_sequences

    model.eval()
    mixer = model.mixers[0] if hasattr(model, "mixers") else model._block(0).mixer
    seq = build_user_sequences(history, model.config.time_unit)
    written: list[torch.Tensor] = []
    original = mixer.project

    def recording_project(x: torch.Tensor, conv_cache: torch.Tensor | None = None):
        q, k, v, cache = original(x, conv_cache)
        written.append(k[0, 0])  # [H, K]: this step's keys (after the conv, normalised)
        return q, k, v, cache

    top_shares, repeat_shares, ranks, genre_shares, genre_ranks = [], [], [], [], []
    members_of: dict[str, list[int]] = {}  # genre -> its catalogue items, built once
    for item, item_genre_set in enumerate(genres or []):
        for genre in item_genre_set:
            members_of.setdefault(genre, []).append(item)
    catalogue = {genre: np.asarray(items) for genre, items in members_of.items()}
    mixer.project = recording_project  # instance attribute: shadows the method for this diagnostic only
    try:
        for user in range(history.n_users):
            events = seq.of(user)
            if events.size < 5:
                continue
            if len(top_shares) >= max_users:  # one share per measured user
                break
            written.clear()
            state = model.stream_init(1)
            gaps = seq.gaps[seq.indptr[user] : seq.indptr[user + 1]]
            first_calls = []
            for item, gap in zip(events.tolist(), gaps.tolist(), strict=True):
                mark = len(written)
                hidden, state = model.stream_step(state, torch.tensor([item + 1]), torch.tensor([gap]))
                first_calls.append(written[mark])  # a shared-weight loop calls the mixer again: keep the first
            S = state[0]["state"][0]  # [H, K, V], first layer
            energy = S.pow(2).sum().clamp(min=1e-12)
            keys = torch.stack(first_calls)  # [T, H, K]
            basis = torch.linalg.svd(keys.permute(1, 0, 2), full_matrices=False).Vh[:, :top_k]  # [H, r, K]
            top_shares.append(_share(basis.transpose(1, 2), S, energy))
            scores = model.item_logits(hidden)[0]
            if genres is not None:
                tally = Counter(genre for item in events.tolist() for genre in genres[item])
                if tally:
                    top = tally.most_common(1)[0][0]
                    members = np.unique([item for item in events.tolist() if top in genres[item]])
                    own = _own_keys(mixer, model, members).permute(1, 0, 2)  # [H, n, K]
                    directions = torch.linalg.svd(own, full_matrices=False).Vh[:, :top_k]  # [H, r, K]
                    genre_shares.append(_share(directions.transpose(1, 2), S, energy))
                    genre_ranks.append(_percentile(scores, catalogue[top]))
            counts = np.bincount(events, minlength=model.n_items)
            repeated = np.argsort(-counts, kind="stable")[:top_k]
            if counts[repeated[0]] < 2:
                continue
            repeated = repeated[counts[repeated] >= 2]
            q_basis = torch.linalg.qr(_own_keys(mixer, model, repeated).permute(1, 2, 0)).Q  # [H, K, r]
            repeat_shares.append(_share(q_basis, S, energy))
            ranks.append(_percentile(scores, repeated))
    finally:
        del mixer.project
    return {
        "state_share_top_key_directions": float(np.mean(top_shares)) if top_shares else None,
        "random_subspace_share": top_k / mixer.head_dim,
        "state_share_repeated": float(np.mean(repeat_shares)) if repeat_shares else None,
        "repeated_score_percentile": float(np.mean(ranks)) if ranks else None,
        "state_share_top_genre": float(np.mean(genre_shares)) if genre_shares else None,
        "top_genre_score_percentile": float(np.mean(genre_ranks)) if genre_ranks else None,
        "users": len(top_shares),
        "users_with_repeats": len(repeat_shares),
    }
