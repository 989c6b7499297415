"""`benchmarks/dfpl.py` helpers: the validation split of the DFPL check and a model's auxiliary heads."""

from __future__ import annotations

import numpy as np

from benchmarks import dfpl
from mllm.dfpl.data import synthetic_data
from mllm.dfpl.models import ModelConfig
from mllm.dfpl.train import TrainConfig, predict, train_model


def test_validation_split_is_disjoint_balanced_and_seeded() -> None:
    data = synthetic_data(400, seed=0)
    fit, val = dfpl.validation_split(data, (10, 5), seed=0)
    assert np.bincount(fit.labels).tolist() == [10] * 8 and np.bincount(val.labels).tolist() == [5] * 8
    rows = {tuple(r) for r in data.numeric}
    fit_rows, val_rows = {tuple(r) for r in fit.numeric}, {tuple(r) for r in val.numeric}
    assert fit_rows <= rows and val_rows <= rows and not fit_rows & val_rows
    again, _ = dfpl.validation_split(data, (10, 5), seed=0)
    other, _ = dfpl.validation_split(data, (10, 5), seed=1)
    assert np.array_equal(again.numeric, fit.numeric) and not np.array_equal(other.numeric, fit.numeric)


def test_predict_reads_dfpl_heads_and_the_full_head_differs() -> None:
    data = synthetic_data(120, seed=0)
    model = train_model("dfpl", data, ModelConfig(dim=16), TrainConfig(epochs=1, batch_size=32, seed=0))
    present = np.ones(len(data), dtype=bool)
    heads = {key: predict(model, data, present, present, output=key) for key in ("logits", "global_logits")}
    assert heads["logits"].shape == heads["global_logits"].shape == (120, 8)
    assert not np.allclose(heads["logits"], heads["global_logits"])
    assert np.allclose(heads["logits"], predict(model, data, present, present, batch_size=7), atol=1e-5)
