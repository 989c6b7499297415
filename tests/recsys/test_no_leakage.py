"""No test interaction ever reaches training, whatever the split: not the rows, not the sampled training
batches, not LightGCN's graph, and the evaluator never scores a masked item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_clustered_interactions, write_atomic_inter

from recsys.data import load_dataset, make_split
from recsys.models import build_model
from recsys.train import TrainConfig, Trainer


def _pairs(part) -> set[tuple[int, int]]:
    if part is None or part.n_interactions == 0:
        return set()
    return set(zip(part.users.tolist(), part.items.tolist(), strict=True))


@pytest.fixture(scope="module")
def lightgcn_folder(tmp_path_factory) -> Path:
    """A LightGCN train.txt/test.txt folder (the "given" split) from the clustered rows."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("lg")
    train_lines, test_lines = [], []
    for user in range(40):
        items = rng.choice(30, size=8, replace=False) + (user % 3) * 30
        train_lines.append(" ".join(map(str, [user, *items[:6]])))
        test_lines.append(" ".join(map(str, [user, *items[6:]])))
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "test.txt").write_text("\n".join(test_lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def atomic_folder(tmp_path_factory) -> Path:
    return write_atomic_inter(tmp_path_factory.mktemp("d"), "leak", make_clustered_interactions(n_users=40))


@pytest.mark.parametrize("protocol", ["loo", "temporal", "random", "given"])
@pytest.mark.parametrize("model_name", ["bpr", "lightgcn", "neumf"])
def test_no_test_pair_reaches_training(protocol, model_name, atomic_folder, lightgcn_folder):
    dataset = load_dataset(lightgcn_folder if protocol == "given" else atomic_folder)
    split = make_split(dataset, protocol, seed=3)
    train, held_out = _pairs(split.train), _pairs(split.valid) | _pairs(split.test)
    assert _pairs(split.test), "the split must hold test pairs for this check to mean anything"
    assert not train & _pairs(split.test) and not _pairs(split.valid) & _pairs(split.test)

    model = build_model(model_name, split.train.n_users, split.train.n_items)
    model.prepare(split.train)
    data = model.train_dataset(split.train)
    for epoch in range(3):  # every example of three epochs' sampled batches
        data.set_epoch(epoch)
        batch = data.__getitems__(list(range(len(data))))
        items = batch["pos_items"] if "pos_items" in batch else batch["items"]
        positives = batch["labels"] > 0 if "labels" in batch else torch.ones_like(items, dtype=torch.bool)
        seen = set(zip(batch["users"][positives].tolist(), items[positives].tolist(), strict=True))
        assert seen <= train, f"{len(seen - train)} non-train pairs used as training positives"
        assert not seen & held_out
    if model_name == "lightgcn":
        graph = set(zip(model.graph_users.tolist(), model.graph_items.tolist(), strict=True))
        assert graph == train


@pytest.mark.parametrize("protocol", ["loo", "temporal"])
def test_evaluation_masks_train_and_valid_items(protocol, atomic_folder, tmp_path):
    """A model that scores exactly its training (and valid) items highest gets nothing from them."""
    split = make_split(load_dataset(atomic_folder), protocol, seed=3)
    known = split.train.to_csr() + (split.valid.to_csr() if split.valid.n_interactions else 0)
    test = split.test.to_csr()
    cheat = build_model("pop", split.train.n_users, split.train.n_items)
    trainer = Trainer(cheat, split, TrainConfig(), progress=False)
    noise = torch.rand(known.shape, generator=torch.Generator().manual_seed(0))
    memorising = torch.as_tensor(known.toarray(), dtype=torch.float32) * 100 + noise  # ranks seen items first
    assert known.multiply(test).nnz == 0
    results = []
    for scores in (memorising, noise):
        cheat.score = lambda users, s=scores: s[users.cpu()]  # type: ignore[method-assign]
        results.append(trainer.evaluate("test", cheat))
    # masked items are out of the ranking, so remembering them changes nothing
    assert results[0] == results[1]
    assert results[0]["n_users"] == len(set(split.test.users.tolist()))
