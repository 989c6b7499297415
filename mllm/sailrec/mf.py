"""Stage 1: the frozen MF whose embeddings the LLM reads, trained with the toolkit's Trainer.

CoLLM's MF is trained on the labelled (user, item, yes/no) rows with a pointwise loss, not on implicit positives
with BPR: a "No" row (rating <= 3) is a watched film the user did not like, exactly what the yes/no task asks
about. So this is the registry's BPR-MF model (``recsys.models`` "bpr": ``<p_u, q_i>``, same tables and
initialisation) with its loss swapped for binary cross-entropy on the labels; the recsys Trainer (accelerate,
seeded epochs, checkpoints) runs it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mllm.sailrec.data import YesNoData, YesNoRows
from recsys.data.dataset import IdMap, InteractionDataset, Split
from recsys.models import build_model
from recsys.models.base import Recommender, sum_of_squares
from recsys.models.mf import BPRMF
from recsys.sampling import TrainingData
from recsys.train import TrainConfig, Trainer

logger = logging.getLogger(__name__)


class LabelledRows(TrainingData):
    """(user, item, label) rows of the training split, batched by index lists."""

    def __init__(self, users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> None:
        self.users = torch.as_tensor(users, dtype=torch.long)
        self.items = torch.as_tensor(items, dtype=torch.long)
        self.labels = torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"users": self.users[index], "items": self.items[index], "labels": self.labels[index]}


def labelled_mf(model: BPRMF) -> BPRMF:
    """Turn a registry BPR-MF into CoLLM's pointwise MF: BCE on ``<p_u, q_i>`` against the yes/no labels."""

    def train_dataset(train: InteractionDataset) -> LabelledRows:
        if train.ratings is None:
            raise ValueError("labelled MF needs the train split's labels in its ratings field")
        return LabelledRows(train.users, train.items, train.ratings)

    def loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users = model.user_embedding.weight.index_select(0, batch["users"])
        items = model.item_embedding.weight.index_select(0, batch["items"])
        logits = (users * items).sum(-1)
        reg = sum_of_squares(users, items) / (2 * len(users))
        return F.binary_cross_entropy_with_logits(logits, batch["labels"]) + model.config.reg_weight * reg

    model.train_dataset = train_dataset  # type: ignore[method-assign]
    model.loss = loss  # type: ignore[method-assign]
    return model


def _positives(rows: YesNoRows, user_map: IdMap, item_map: IdMap, name: str) -> InteractionDataset:
    keep = rows.labels > 0
    pairs = np.unique(np.stack([rows.users[keep], rows.items[keep]], axis=1), axis=0)  # a pair counts once
    ones = np.ones(len(pairs), dtype=np.float32)  # the train part carries labels as ratings; parts must match
    return InteractionDataset(name, pairs[:, 0], pairs[:, 1], ones, None, user_map, item_map)


def mf_split(data: YesNoData) -> Split:
    """A recsys Split over the yes/no data: train = every labelled row (label in ``ratings``), valid/test = the
    positive rows (used only for the Trainer's ranking report). User and item indices are the data's own ids."""
    user_map = IdMap([str(u) for u in range(data.n_users)], kind="user")
    item_map = IdMap([str(i) for i in range(data.n_items)], kind="item")
    train = InteractionDataset(
        data.name, data.train.users, data.train.items, data.train.labels, None, user_map, item_map
    )
    return Split(
        train,
        _positives(data.valid, user_map, item_map, data.name),
        _positives(data.test, user_map, item_map, data.name),
        protocol="given (CoLLM time split)",
    )


def train_mf(
    data: YesNoData,
    seed: int,
    embedding_dim: int = 64,
    epochs: int = 20,
    lr: float = 1e-2,
    reg_weight: float = 0.1,
    batch_size: int = 1024,
    out_dir: str | Path | None = None,
) -> tuple[Recommender, dict[str, Any]]:
    """Train the labelled MF with the recsys Trainer for a fixed number of epochs; return (model, summary).

    Defaults (20 epochs, lr 1e-2, L2 0.1) were picked on valid AUC of CoLLM's ML-1M among 4 settings.
    """
    split = mf_split(data)
    torch.manual_seed(seed)
    model = labelled_mf(
        build_model("bpr", data.n_users, data.n_items, {"embedding_dim": embedding_dim, "reg_weight": reg_weight})
    )
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        valid_metric="",  # fixed epochs: ranking NDCG is not the yes/no task, so no early stopping on it
        patience=0,
        save_every_epoch=False,
        eval_batch_size=4096,
        # the Trainer's ranking report; K kept below the catalogue so tiny test catalogues stay valid
        ks=(max(1, min(10, data.n_items // 4)),),
    )
    summary = Trainer(model, split, config, out_dir=out_dir, progress=False).fit()
    model.eval()
    return model, summary


def mf_tables(model: Recommender) -> tuple[torch.Tensor, torch.Tensor]:
    """(user table, item table) of a trained MF, detached on the CPU."""
    return model.user_embedding.weight.detach().cpu(), model.item_embedding.weight.detach().cpu()


def mf_scores(model: Recommender, rows: YesNoRows) -> np.ndarray:
    """sigmoid(<p_u, q_i>) for every row: the MF baseline's P(yes)."""
    users, items = mf_tables(model)
    logits = (users[torch.as_tensor(rows.users)] * items[torch.as_tensor(rows.items)]).sum(-1)
    return torch.sigmoid(logits).numpy()


def like_rate_scores(data: YesNoData, rows: YesNoRows, prior_weight: float = 10.0) -> np.ndarray:
    """A sceptic's baseline: the candidate item's smoothed train like-rate (cold items get the global rate)."""
    likes = np.bincount(data.train.items, weights=data.train.labels, minlength=data.n_items)
    shows = np.bincount(data.train.items, minlength=data.n_items)
    prior = float(data.train.labels.mean())
    rate = (likes + prior_weight * prior) / (shows + prior_weight)
    return rate[rows.items]
