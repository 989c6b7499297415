"""The Trainer, the model registry, checkpoints, resume and the train/evaluate CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recsys.evaluate import evaluate_checkpoint
from recsys.evaluate import main as evaluate_main
from recsys.models import Recommender, available_models, build_model
from recsys.train import main as train_main
from recsys.train import train_from_args

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--batch_size", "128", "--lr", "0.01", "--quiet", "--split", "loo"]


def _train(dataset_dir: Path, out: Path, model: str = "bpr", *extra: str) -> dict:
    return train_from_args(["--model", model, "--dataset", str(dataset_dir), "--out", str(out), *FAST, *extra])


def test_registry_lists_builtin_models():
    assert {"pop", "bpr"} <= set(available_models())
    model = build_model("bpr", 5, 7, {"embedding_dim": "8"})
    assert model.config.embedding_dim == 8
    assert model.score(torch.tensor([0, 4])).shape == (2, 7)


@pytest.mark.parametrize("sampling", ["loader", "device"])
def test_bpr_learns_what_popularity_cannot(clustered_dataset_dir, tmp_path, sampling):
    pop = _train(clustered_dataset_dir, tmp_path / "pop", "pop")
    bpr = _train(
        clustered_dataset_dir, tmp_path / "bpr", "bpr", "--epochs", "40", "--patience", "5", "--sampling", sampling
    )
    assert bpr["n_users"] == pop["n_users"] == 80  # every test user counts
    assert bpr["ndcg@10"] > pop["ndcg@10"] + 0.3
    assert bpr["hr@10"] > 0.8
    history = json.loads((tmp_path / "bpr" / "run.json").read_text())["history"]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    # test is reported once, at the best validation epoch
    best = max(history, key=lambda r: r["valid"]["ndcg@10"])
    assert bpr["best_epoch"] == best["epoch"]


def test_checkpoint_reload_reproduces_metrics(clustered_dataset_dir, tmp_path):
    result = _train(clustered_dataset_dir, tmp_path / "run", "bpr", "--epochs", "5")
    again = evaluate_checkpoint(tmp_path / "run")
    for key in ("ndcg@10", "recall@20", "hr@10", "mrr@10"):
        assert again[key] == pytest.approx(result[key], abs=1e-9)
    model = Recommender.from_pretrained(tmp_path / "run")
    assert model.name == "bpr" and model.n_users == 80
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["protocol"] and run["seed"] == 2024
    assert run["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]


def test_same_seed_same_weights_other_seed_other_weights(clustered_dataset_dir, tmp_path):
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        _train(clustered_dataset_dir, tmp_path / name, "bpr", "--epochs", "1", "--seed", seed)
    a, b, c = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["user_embedding.weight"], c["user_embedding.weight"])


@pytest.mark.parametrize("sample_by", ["interaction", "user"])
def test_dataloader_workers_do_not_change_the_result(clustered_dataset_dir, tmp_path, sample_by):
    """Each batch's negatives are seeded by (seed, epoch, batch), so two workers train the same weights."""
    for workers in ("0", "2"):
        _train(
            clustered_dataset_dir,
            tmp_path / workers,
            "bpr",
            "--epochs",
            "2",
            "--num_workers",
            workers,
            "--sample_by",
            sample_by,
        )
    a, b = (load_file(str(tmp_path / w / "model.safetensors")) for w in ("0", "2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sampling", ["loader", "device"])
def test_resume_continues_exactly_where_it_stopped(clustered_dataset_dir, tmp_path, sampling):
    common = ["--patience", "0", "--eval_every", "1", "--sampling", sampling]
    _train(clustered_dataset_dir, tmp_path / "straight", "bpr", "--epochs", "4", *common)
    _train(clustered_dataset_dir, tmp_path / "resumed", "bpr", "--epochs", "2", *common)
    first_half = load_file(str(tmp_path / "resumed" / "last" / "model.safetensors"))
    train_from_args(
        [
            "--model",
            "bpr",
            "--dataset",
            str(clustered_dataset_dir),
            "--out",
            str(tmp_path / "resumed"),
            *FAST,
            "--epochs",
            "4",
            *common,
            "--resume",
        ]
    )
    straight = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "last" / "model.safetensors"))
    assert not torch.equal(first_half["user_embedding.weight"], resumed["user_embedding.weight"])
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)
    state = json.loads((tmp_path / "resumed" / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 4 and len(state["history"]) == 4


def test_resume_without_validation_ends_with_the_last_epoch(clustered_dataset_dir, tmp_path):
    """A split with no valid part reports the last epoch; a resumed run must not fall back to the final model
    of the run it continues (the folder's model.safetensors)."""
    from recsys.data import load_dataset, make_split
    from recsys.train import TrainConfig, Trainer

    split = make_split(load_dataset(str(clustered_dataset_dir)), "loo", valid=False)

    def run(out: Path, epochs: int, resume: bool = False) -> dict:
        torch.manual_seed(0)
        model = build_model("bpr", split.train.n_users, split.train.n_items, {})
        config = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, seed=0)
        return Trainer(model, split, config, out_dir=out, progress=False).fit(resume_from=out if resume else None)

    straight = run(tmp_path / "straight", 4)
    half = run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 4, resume=True)
    assert resumed["best_epoch"] == resumed["epochs_run"] == 4
    assert half["ndcg@20"] != pytest.approx(straight["ndcg@20"], abs=1e-6)
    for key in ("ndcg@20", "recall@20", "hr@10"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-9)


def test_yaml_config_and_overrides(clustered_dataset_dir, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("model: bpr\nepochs: 1\nembedding_dim: 16\nreg_weight: 0.001\n")
    train_from_args(
        [
            "--config",
            str(config),
            "--dataset",
            str(clustered_dataset_dir),
            "--out",
            str(tmp_path / "run"),
            "--embedding_dim",
            "8",
            "--quiet",
        ]
    )
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["embedding_dim"] == 8  # the command line wins over the YAML file
    assert saved["config"]["reg_weight"] == pytest.approx(0.001)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--model", "bpr", "--bogus_option", "1"], "bogus_option"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--model", "bpr", "--epochs", "many"], "epochs"),
        (["--model", "bpr", "--sampling", "gpu"], "sampling"),
        (["--model", "sasrec", "--sampling", "device"], "sampling='device'"),
    ],
)
def test_bad_training_options_give_one_clear_line(clustered_dataset_dir, capsys, argv, expected):
    code = train_main([*argv, "--dataset", str(clustered_dataset_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err


def test_evaluate_cli_on_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    assert evaluate_main(["--checkpoint", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize("model", ["neumf", "lightgcn"])
def test_device_sampling_trains_the_other_sampled_models(clustered_dataset_dir, tmp_path, model):
    result = _train(clustered_dataset_dir, tmp_path / model, model, "--epochs", "6", "--sampling", "device")
    history = json.loads((tmp_path / model / "run.json").read_text())["history"]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert result["n_users"] == 80


@pytest.mark.slow
def test_two_processes_under_a_distributed_launcher(clustered_dataset_dir, tmp_path):
    """The same command with two CPU processes (``torch.distributed.run``, which ``accelerate launch`` wraps;
    accelerate 1.15 starts a single process for ``--cpu --num_processes 2`` without MPI). The gathered
    evaluation equals a single-process evaluation of the saved checkpoint."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "recsys.train",
            "--model",
            "bpr",
            "--dataset",
            str(clustered_dataset_dir),
            "--out",
            str(out),
            *FAST,
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["num_processes"] == 2
    single = evaluate_checkpoint(out)
    for key in ("ndcg@10", "recall@20", "n_users"):
        assert single[key] == pytest.approx(run["result"][key], abs=1e-9)


def test_models_see_train_history_before_valid_and_train_plus_valid_before_test():
    from recsys.data import InteractionDataset, make_split
    from recsys.models.pop import ItemPop
    from recsys.train import TrainConfig, Trainer

    users = [u for u in range(4) for _ in range(5)]
    items = [(u + j) % 7 for u in range(4) for j in range(5)]
    data = InteractionDataset.from_raw("toy", users, items, timestamps=list(range(len(users))))
    split = make_split(data, "loo")
    seen = []

    class Recorder(ItemPop):
        def set_eval_history(self, history):
            seen.append(history)

    model = Recorder(ItemPop.Config(), data.n_users, data.n_items)
    model.fit_closed_form(split.train)
    trainer = Trainer(model, split, TrainConfig(), progress=False)
    trainer.evaluate("valid")
    trainer.evaluate("test")
    assert seen[0] is split.train
    assert seen[1].n_interactions == split.train.n_interactions + split.valid.n_interactions
    pairs = set(zip(seen[1].users.tolist(), seen[1].items.tolist(), strict=True))
    assert set(zip(split.valid.users.tolist(), split.valid.items.tolist(), strict=True)) <= pairs
    assert not set(zip(split.test.users.tolist(), split.test.items.tolist(), strict=True)) & pairs  # no test leak
    assert (seen[1].timestamps[: split.train.n_interactions] == split.train.timestamps).all()
