"""CTR models learn planted interactions above LR; DS-MLP phases and distillation; the train CLI; ML-1M-CTR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.ctr import SyntheticCTRConfig, make_synthetic_ctr, split_and_encode
from recsys.models import available_models
from recsys.models.base import Recommender
from recsys.models.ctr_layers import build_ctr_model
from recsys.train import TrainConfig, Trainer, main, train_from_args

SMALL = {
    "lr": {},
    "fm": {"embedding_dim": 8},
    "deepfm": {"hidden_units": (64, 64)},
    "dcnv2": {"hidden_units": (64, 64)},
    "mlp": {"hidden_units": (128, 128)},
    "dsmlp": {
        "teacher_hidden": (64, 64),
        "student_hidden": (128, 128),
        "parallel_hidden": (64, 64),
        "teacher_epochs": 2,
        "distill_epochs": 2,
    },
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_split():
    table, _ = make_synthetic_ctr(SyntheticCTRConfig(n_samples=12_000, cardinality=8, seed=0))
    return split_and_encode(table, "random", seed=0)


def _train(name: str, split, epochs: int, **overrides):
    torch.manual_seed(0)
    model = build_ctr_model(name, split.pipeline, {**SMALL[name], "embedding_regularizer": 0.0, **overrides})
    config = TrainConfig(epochs=epochs, batch_size=256, lr=3e-3, valid_metric="auc", patience=3, seed=0)
    config.save_every_epoch = False
    trainer = Trainer(model, split, config, progress=False)
    return model, trainer, trainer.fit()


@pytest.fixture(scope="module")
def lr_result(synthetic_split):
    return _train("lr", synthetic_split, epochs=5)[2]


def test_ctr_models_are_registered():
    assert {"lr", "fm", "deepfm", "dcnv2", "mlp", "dsmlp"} <= set(available_models())


@pytest.mark.parametrize("name", ["fm", "deepfm", "dcnv2", "mlp", "dsmlp"])
def test_models_learn_planted_interactions_above_logistic_regression(synthetic_split, lr_result, name):
    epochs = 5 + (4 if name == "dsmlp" else 0)
    _, _, result = _train(name, synthetic_split, epochs=epochs)
    assert set(result) >= {"auc", "logloss", "valid", "best_epoch"}
    assert result["auc"] > lr_result["auc"] + 0.02, (name, result["auc"], lr_result["auc"])


def test_dcnv2_stacked_structure_trains(synthetic_split):
    model, _, result = _train("dcnv2", synthetic_split, epochs=2, structure="stacked")
    assert model.head.in_features == 64 and result["auc"] > 0.6


def test_dsmlp_phases_and_selection(synthetic_split):
    model, trainer, result = _train("dsmlp", synthetic_split, epochs=8, teacher_epochs=2, distill_epochs=2)
    assert [model.phase_of_epoch(e) for e in range(5)] == ["teacher"] * 2 + ["distillation"] * 2 + ["finetuning"]
    selectable = [r.get("selectable", True) for r in trainer.history]
    assert selectable[:4] == [False] * 4 and all(selectable[4:])
    assert result["best_epoch"] > 4  # only finetuning epochs may be chosen
    assert model.phase == "finetuning"
    assert model.n_serving_parameters() < sum(p.numel() for p in model.parameters())


def _student_teacher_gap(model, data) -> float:
    model.eval()
    with torch.no_grad():
        batch = data.batch(slice(0, len(data)))
        teacher = torch.sigmoid(model.teacher_logits(batch))
        student = torch.sigmoid(model.stream_logits(batch)[0])
    return float((teacher - student).abs().mean())


def test_distillation_reduces_the_student_teacher_gap(synthetic_split):
    gaps = {}
    for kd_weight, kd_loss in ((0.0, "per_sample"), (1.0, "per_sample"), (1.0, "batch_mean_sq")):
        model, _, _ = _train("dsmlp", synthetic_split, epochs=4, kd_weight=kd_weight, kd_loss=kd_loss)
        assert model.phase == "distillation"  # 2 teacher + 2 distillation epochs, no finetuning yet
        gaps[(kd_weight, kd_loss)] = _student_teacher_gap(model, synthetic_split.test)
    assert gaps[(1.0, "per_sample")] < 0.9 * gaps[(0.0, "per_sample")], gaps
    assert gaps[(1.0, "per_sample")] < gaps[(1.0, "batch_mean_sq")], gaps


def test_kd_loss_variants():
    model = build_ctr_model("dsmlp", _tiny_pipeline(), {"kd_loss": "batch_mean_sq"})
    teacher, student = torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])
    assert model.kd_term(teacher, student).item() == pytest.approx(0.0)  # per-sample errors cancel in the mean
    model.config.kd_loss = "per_sample"
    assert model.kd_term(teacher, student).item() == pytest.approx(0.64)
    with pytest.raises(ValueError, match="kd_loss"):
        build_ctr_model("dsmlp", _tiny_pipeline(), {"kd_loss": "kl"})


def _tiny_pipeline():
    table, _ = make_synthetic_ctr(SyntheticCTRConfig(n_samples=200, n_fields=3, cardinality=4))
    return split_and_encode(table, "random", seed=0).pipeline


def test_train_cli_on_a_small_synthetic_set(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--model", "dsmlp", "--dataset", "synthetic-ctr-small", "--epochs", "3", "--teacher_epochs", "1",
        "--distill_epochs", "1", "--teacher_hidden", "16", "--student_hidden", "32,32", "--parallel_hidden", "16",
        "--batch_size", "1024", "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.5 < result["auc"] <= 1 and result["logloss"] > 0 and result["protocol"] == "random_8_1_1"
    assert {"config.json", "model.safetensors", "features.json", "run.json"} <= {p.name for p in out.iterdir()}
    run = json.loads((out / "run.json").read_text())
    assert run["ctr_data"]["train_rows"] == 16_000 and run["train_config"]["valid_metric"] == "auc"
    loaded = Recommender.from_pretrained(out)
    assert loaded.phase == "finetuning"
    from recsys.evaluate import evaluate_checkpoint

    again = evaluate_checkpoint(out)
    assert again["auc"] == pytest.approx(result["auc"]) and again["logloss"] == pytest.approx(result["logloss"])
    from recsys.ctr import load_ctr_table

    frame = load_ctr_table("synthetic-ctr-small").frame.drop(columns=["label"]).iloc[:100]
    probabilities = loaded.predict_frame(frame)
    assert probabilities.shape == (100,) and np.all((probabilities > 0) & (probabilities < 1))


def test_train_cli_rejects_ranking_options_for_ctr(capsys):
    assert main(["--model", "lr", "--dataset", "synthetic-ctr-small", "--user_core", "5", "--quiet"]) == 2
    assert "user_core" in capsys.readouterr().err


def test_lr_through_train_from_args_logloss_selection():
    result = train_from_args(
        ["--model", "lr", "--dataset", "synthetic-ctr-small", "--epochs", "2", "--valid_metric", "logloss", "--quiet"]
    )
    assert result["model"] == "lr" and result["valid"]["logloss"] < 0.69


def test_ml1m_ctr_follows_the_autoint_protocol(shared_data):
    from recsys.ctr import load_ml1m_ctr

    table = load_ml1m_ctr(shared_data)
    assert len(table) == 739_012  # 1,000,209 ratings minus the 261,197 threes (AutoInt reports 739,012)
    assert table.frame["label"].mean() == pytest.approx(575_281 / 739_012)
    assert [f.name for f in table.schema.fields] == [
        "user_id", "item_id", "gender", "age", "occupation", "zip_code", "genres",
    ]  # fmt: skip
    assert table.frame["genres"].str.contains("|", regex=False).any()
    assert table.frame["age"].isin(["1", "18", "25", "35", "45", "50", "56"]).all()
