"""recsys.train's command line: override keys in --help, --threads, and a shipped split used as given."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from recsys.train import DataConfig, build_parser, prepare_split, train_from_args


def write_benchmark_folder(folder: Path) -> Path:
    """RecBole benchmark files: train / test parts given by the data (user u1 repeats item a in test)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    train = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "c", 2), ("u3", "b", 1), ("u3", "c", 2)]
    test = [("u1", "a", 9), ("u2", "b", 9), ("u3", "a", 9)]
    for part, rows in (("train", train), ("test", test)):
        lines = "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows)
        (folder / f"given.{part}.inter").write_text(header + lines, encoding="utf-8")
    return folder


def test_help_lists_the_override_keys_with_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser(["--model", "bpr"]).parse_args(["--help"])
    text = capsys.readouterr().out
    for key in ("--epochs", "--max_minutes", "--split ", "--split_seed", "--embedding_dim", "--threads", "--quiet"):
        assert key in text, key
    assert "default 'auto'" in text


def test_help_names_the_training_defaults_a_model_replaces(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser(["--model", "sasrec"]).parse_args(["--help"])
    assert "sasrec replaces these TrainConfig defaults: " in capsys.readouterr().out


def test_a_shipped_split_is_used_as_given_by_default_and_logged(tmp_path: Path, caplog) -> None:
    folder = write_benchmark_folder(tmp_path / "given")
    with caplog.at_level(logging.INFO):
        split = prepare_split(DataConfig(dataset=str(folder)))
    assert split.protocol == "given_train_test"
    assert split.test.n_interactions == 3 and split.train.n_interactions == 6
    assert "ships its own train/valid/test split: using it as given" in caplog.text
    assert "1 test interactions repeat a (user, item) pair seen in train" in caplog.text  # warned on given too


def test_split_loo_re_splits_a_shipped_split_and_says_so(tmp_path: Path, caplog) -> None:
    folder = write_benchmark_folder(tmp_path / "given")
    with caplog.at_level(logging.INFO):
        split = prepare_split(DataConfig(dataset=str(folder), split="loo"))
    assert split.protocol.startswith("leave_one_out")
    assert "re-splitting it with 'loo'" in caplog.text


def test_threads_sets_torch_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = train_from_args(
            ["--model", "pop", "--dataset", str(write_benchmark_folder(tmp_path / "g")), "--threads", "1", "--quiet"]
        )
        assert torch.get_num_threads() == 1 and result["protocol"] == "given_train_test"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):
        train_from_args(["--model", "pop", "--threads", "0"])
