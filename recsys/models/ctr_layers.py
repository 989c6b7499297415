"""Building blocks shared by the CTR models: the base class, field embeddings and an MLP block.

A CTR model is a :class:`CTRModel` (a ``Recommender`` with ``task = "ctr"``): ``logits(batch)`` is its maths,
``predict(batch)`` the click probabilities, ``loss(batch)`` binary cross-entropy plus the embedding
regularisation. The batch is the dict of ``EncodedCTR.batch``: ``categorical`` [B, C] int64, ``numeric``
[B, M] float32, ``sequence:<name>`` [B, L] int64 and ``labels`` [B]. Its ``layout`` (from the fitted
``FeaturePipeline``) fixes the embedding tables and is saved in ``config.json``; the pipeline itself is
saved next to it as ``features.json`` so that ``predict_frame`` encodes raw rows as at training time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from recsys.ctr.features import FEATURES_NAME, CTRBatchDataset, EncodedCTR, FeaturePipeline
from recsys.models.base import CheckpointError, Recommender

# FuxiCTR initialises embedding tables with N(0, 1e-4) (fuxictr/pytorch/layers/embeddings); we follow it.
EMBEDDING_INIT_STD = 1e-4


class FeatureEmbedding(nn.Module):
    """One ``dim``-vector per field: a lookup for categorical fields (one table with per-field offsets),
    ``value * vector`` for numeric fields, and the mean of the non-padding token vectors for sequences.

    Output ``[B, n_fields, dim]`` in the order categorical, numeric, sequence fields.
    """

    def __init__(self, layout: list[dict[str, Any]], dim: int) -> None:
        super().__init__()
        self.dim = dim
        categorical = [f for f in layout if f["kind"] == "categorical"]
        self.n_numeric = sum(f["kind"] == "numeric" for f in layout)
        self.sequence_names = [f["name"] for f in layout if f["kind"] == "sequence"]
        sizes = [int(f["vocab_size"]) for f in categorical]
        self.n_categorical = len(sizes)
        self.register_buffer(
            "offsets", torch.tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes else []).long()
        )
        self.categorical = nn.Embedding(max(sum(sizes), 1), dim)
        self.numeric = nn.Parameter(torch.empty(self.n_numeric, dim))
        self.sequences = nn.ModuleDict(
            {
                _key(f["name"]): nn.Embedding(int(f["vocab_size"]), dim, padding_idx=0)
                for f in layout
                if f["kind"] == "sequence"
            }
        )
        self.n_fields = self.n_categorical + self.n_numeric + len(self.sequence_names)
        for table in [self.categorical, *self.sequences.values()]:
            nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
            if table.padding_idx is not None:
                with torch.no_grad():
                    table.weight[table.padding_idx].zero_()
        nn.init.normal_(self.numeric, std=EMBEDDING_INIT_STD)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.n_categorical:
            parts.append(self.categorical(batch["categorical"] + self.offsets))
        if self.n_numeric:
            parts.append(batch["numeric"].unsqueeze(-1) * self.numeric)
        for name in self.sequence_names:
            tokens = batch[f"sequence:{name}"]
            mask = (tokens > 0).unsqueeze(-1).to(self.numeric.dtype)
            summed = (self.sequences[_key(name)](tokens) * mask).sum(dim=1)
            parts.append((summed / mask.sum(dim=1).clamp(min=1.0)).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def squared_norm(self) -> torch.Tensor:
        """Sum of squares of every embedding table (for FuxiCTR-style embedding regularisation)."""
        total = self.categorical.weight.pow(2).sum() + self.numeric.pow(2).sum()
        for table in self.sequences.values():
            total = total + table.weight.pow(2).sum()
        return total


def _key(name: str) -> str:
    """ModuleDict keys cannot contain dots."""
    return name.replace(".", "_")


class MLPBlock(nn.Sequential):
    """Linear -> [BatchNorm] -> ReLU -> Dropout per hidden layer (FuxiCTR's MLP_Block order); no output layer."""

    def __init__(self, input_dim: int, hidden_units: tuple[int, ...], dropout: float = 0.0, batch_norm: bool = False):
        layers: list[nn.Module] = []
        for units in hidden_units:
            layers.append(nn.Linear(input_dim, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            input_dim = units
        super().__init__(*layers)
        self.output_dim = input_dim


class CTRModel(Recommender):
    """Base of the click-through-rate models: ``logits(batch)``, ``predict(batch)``, BCE ``loss(batch)``."""

    task: ClassVar[str] = "ctr"
    # FuxiCTR/BARS: Adam 1e-3, batch 4096, early stopping on valid AUC with patience 2.
    train_defaults: ClassVar[dict[str, Any]] = {
        "valid_metric": "auc",
        "batch_size": 4096,
        "lr": 1e-3,
        "patience": 2,
        "eval_batch_size": 8192,
    }

    def __init__(self, config: Any, n_users: int = 1, n_items: int = 1, layout: list[dict[str, Any]] | None = None):
        super().__init__(config, 1, 1)
        if not layout:
            raise ValueError(
                f"{type(self).__name__}: a CTR model needs the field layout of a fitted FeaturePipeline "
                "(build_ctr_model(name, pipeline) or from_pretrained)"
            )
        self.layout = [dict(item) for item in layout]
        self.pipeline: FeaturePipeline | None = None

    # -- the maths ----------------------------------------------------------------------------------
    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Click logits ``[B]``."""
        raise NotImplementedError

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Click probabilities ``[B]``."""
        return torch.sigmoid(self.logits(batch))

    def regularization(self) -> torch.Tensor:
        """``embedding_regularizer / 2 * ||E||^2`` over every embedding table, each step (as FuxiCTR does)."""
        weight = float(getattr(self.config, "embedding_regularizer", 0.0) or 0.0)
        tables = [m for m in self.modules() if isinstance(m, FeatureEmbedding)]
        if weight <= 0 or not tables:
            return torch.zeros((), device=self.device_of())
        return 0.5 * weight * sum(t.squared_norm() for t in tables)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(batch), batch["labels"]) + self.regularization()

    def device_of(self) -> torch.device:
        return next(self.parameters()).device

    # -- data ---------------------------------------------------------------------------------------
    def train_dataset(self, train: EncodedCTR) -> CTRBatchDataset:
        return CTRBatchDataset(train)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} is a CTR model: use predict(batch), not full-ranking score()")

    @torch.no_grad()
    def predict_encoded(self, data: EncodedCTR, batch_size: int = 8192) -> np.ndarray:
        """Probabilities for every row of an encoded table (eval mode, batched)."""
        was_training = self.training
        self.eval()
        device = self.device_of()
        out = []
        try:
            for start in range(0, len(data), batch_size):
                batch = data.batch(slice(start, start + batch_size))
                out.append(self.predict({k: v.to(device) for k, v in batch.items()}).float().cpu().numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict_frame(self, frame: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
        """Probabilities for raw rows (a DataFrame with the schema's columns), encoded by the saved pipeline."""
        if self.pipeline is None:
            raise CheckpointError(f"{self.name}: no feature pipeline attached (load it with from_pretrained)")
        return self.predict_encoded(self.pipeline.transform(frame, labels=False), batch_size)

    # -- persistence --------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {"model": self.name, "task": "ctr", "layout": self.layout, "config": dataclasses.asdict(self.config)}

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = super().save_pretrained(directory)
        if self.pipeline is not None:
            self.pipeline.save(directory / FEATURES_NAME)
        return directory

    @classmethod
    def from_checkpoint(cls, config: Any, meta: dict[str, Any], directory: Path) -> CTRModel:
        if "layout" not in meta:
            raise CheckpointError(f"{directory}/config.json: a CTR checkpoint needs 'layout'")
        model = cls(config, layout=meta["layout"])
        if (directory / FEATURES_NAME).is_file():
            model.pipeline = FeaturePipeline.load(directory / FEATURES_NAME)
        return model


def build_ctr_model(name: str, pipeline: FeaturePipeline, overrides: dict[str, Any] | None = None) -> CTRModel:
    """Instantiate the registered CTR model ``name`` for the fields of a fitted pipeline (attached to it)."""
    from recsys.config import build_config
    from recsys.models import get_model_class

    cls = get_model_class(name)
    if getattr(cls, "task", "ranking") != "ctr":
        raise ValueError(f"model {name!r} is not a CTR model")
    model = cls(build_config(cls.Config, overrides), layout=pipeline.layout())
    model.pipeline = pipeline
    return model
