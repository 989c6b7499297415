"""The CTR feature pipeline: fitted on train only, OOV for unseen tokens, identical after save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.ctr import (
    CTRDataError,
    FeaturePipeline,
    FieldSpec,
    Schema,
    SyntheticCTRConfig,
    make_synthetic_ctr,
    random_split_folds,
    split_and_encode,
)
from recsys.ctr.features import log_bin
from recsys.models.base import Recommender
from recsys.models.ctr_layers import build_ctr_model


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models: one thread is faster than several fighting over a shared CPU (and deterministic)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _schema() -> Schema:
    return Schema(
        [
            FieldSpec("city"),
            FieldSpec("rare", min_count=2),
            FieldSpec("hashed", hash_buckets=7),
            FieldSpec("price", "numeric"),
            FieldSpec("count", "numeric", transform="log_bin"),
            FieldSpec("tags", "sequence", sep="|"),
        ],
        label="clicked",
    )


TRAIN = pd.DataFrame(
    {
        "city": ["a", "b", "a", "c"],
        "rare": ["x", "x", "y", None],
        "hashed": ["h1", "h2", "h3", "h1"],
        "price": [1.0, 3.0, 5.0, np.nan],
        "count": [0.0, 1.0, 10.0, 100.0],
        "tags": ["t1|t2", "t2", "", "t1|t2|t3"],
        "clicked": [1, 0, 1, 0],
    }
)
VALID = pd.DataFrame(
    {
        "city": ["a", "zzz"],
        "rare": ["y", "x"],
        "hashed": ["h1", "new"],
        "price": [100.0, 3.0],
        "count": [10.0, 1000.0],
        "tags": ["t9|t1", "t3"],
        "clicked": [0, 1],
    }
)


def test_pipeline_is_fitted_on_train_only_and_sends_unseen_tokens_to_oov():
    pipeline = FeaturePipeline(_schema()).fit(TRAIN)
    assert pipeline.state["city"]["vocabulary"] == ["a", "b", "c"]  # most frequent first, valid's "zzz" absent
    assert pipeline.state["rare"]["vocabulary"] == ["x"]  # "y" and missing are seen once: below min_count 2
    assert pipeline.state["price"]["mean"] == pytest.approx(3.0)  # nan ignored; valid's 100 never seen
    encoded = pipeline.transform(VALID)
    city = encoded.categorical[:, 0]
    assert city.tolist() == [1, 0]  # "a" -> 1, unseen "zzz" -> the OOV slot 0
    assert encoded.categorical[:, 1].tolist() == [0, 1]  # rare "y" -> OOV
    hashed = encoded.categorical[:, 2]
    assert ((hashed >= 1) & (hashed <= 7)).all()
    assert hashed[0] == pipeline.transform(TRAIN).categorical[0, 2]  # stable hashing
    assert encoded.numeric[:, 0] == pytest.approx([(100 - 3) / np.std([1, 3, 5]), 0.0])
    # tags: 0 padding, 1 OOV, 2.. vocabulary; max_len from train (3)
    assert encoded.sequences["tags"].shape == (2, 3)
    assert encoded.sequences["tags"][0, 0] == 1 and encoded.sequences["tags"][0, 1] >= 2
    assert encoded.sequences["tags"][1, 1:].tolist() == [0, 0]
    assert encoded.labels.tolist() == [0.0, 1.0]
    layout = {f["name"]: f for f in pipeline.layout()}
    assert layout["count"]["kind"] == "categorical"  # log-binned numbers are tokens
    assert layout["city"]["vocab_size"] == 4 and layout["tags"]["vocab_size"] == 3 + 2


def test_log_bin_follows_the_criteo_recipe():
    tokens = log_bin(np.array([0.0, 2.0, 3.0, 100.0, np.nan, -1.0]))
    assert tokens.tolist() == [
        "0",
        "2",
        str(int(np.floor(np.log(3) ** 2))),
        str(int(np.floor(np.log(100) ** 2))),
        "<missing>",
        "-1",
    ]


def test_pipeline_refuses_unfitted_use_and_missing_columns():
    with pytest.raises(CTRDataError, match="not fitted"):
        FeaturePipeline(_schema()).transform(TRAIN)
    pipeline = FeaturePipeline(_schema()).fit(TRAIN)
    with pytest.raises(CTRDataError, match="city"):
        pipeline.transform(TRAIN.drop(columns=["city"]))
    with pytest.raises(CTRDataError, match="kind"):
        FieldSpec("x", "image")


def test_pipeline_save_load_round_trip(tmp_path):
    pipeline = FeaturePipeline(_schema()).fit(TRAIN)
    loaded = FeaturePipeline.load(pipeline.save(tmp_path / "features.json"))
    a, b = pipeline.transform(VALID), loaded.transform(VALID)
    np.testing.assert_array_equal(a.categorical, b.categorical)
    np.testing.assert_array_equal(a.numeric, b.numeric)
    np.testing.assert_array_equal(a.sequences["tags"], b.sequences["tags"])


def test_random_split_is_seeded_8_1_1_and_disjoint():
    fold = random_split_folds(1000, seed=3)
    assert np.bincount(fold).tolist() == [800, 100, 100]
    np.testing.assert_array_equal(fold, random_split_folds(1000, seed=3))
    assert not np.array_equal(fold, random_split_folds(1000, seed=4))


@pytest.mark.parametrize("name", ["dsmlp", "deepfm"])
def test_model_save_load_gives_identical_predictions_on_raw_rows(tmp_path, name):
    table, _ = make_synthetic_ctr(SyntheticCTRConfig(n_samples=600, cardinality=5, seed=1))
    split = split_and_encode(table, "random", seed=0)
    small = (
        {"hidden_units": (8,)}
        if name == "deepfm"
        else {"teacher_hidden": (8,), "student_hidden": (8,), "parallel_hidden": (8,)}
    )
    torch.manual_seed(0)
    model = build_ctr_model(name, split.pipeline, small)
    model.train()
    model.loss(split.train.batch(slice(0, 64))).backward()  # move batch-norm statistics away from their init
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "features.json").is_file()
    loaded = Recommender.from_pretrained(tmp_path / "ckpt")
    rows = table.frame.drop(columns=["label"]).iloc[:50]
    np.testing.assert_array_equal(model.predict_frame(rows), loaded.predict_frame(rows))
