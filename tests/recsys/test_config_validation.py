"""Config fields are validated when parsed (type, finiteness, range: one line naming the field); data info
reports rows that do not fit their format's types."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from recsys.config import ConfigError, build_config, validate_fields
from recsys.data.__main__ import dataset_info
from recsys.models import available_models, get_model_class
from recsys.train import DataConfig, TrainConfig
from recsys.train import main as train_main


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--lr", "-1"], "field 'lr' of TrainConfig: must be > 0, got -1.0"),
        (["--lr", "nan"], "field 'lr' of TrainConfig: must be a finite number, got nan"),
        (["--lr", "inf"], "field 'lr' of TrainConfig: must be a finite number"),
        (["--batch_size", "0"], "field 'batch_size' of TrainConfig: must be >= 1, got 0"),
        (["--epochs", "0"], "field 'epochs' of TrainConfig: must be >= 1, got 0"),
        (["--epochs", "-1"], "field 'epochs' of TrainConfig: must be >= 1, got -1"),
        (["--epochs", "1.5"], "field 'epochs': cannot read '1.5'"),
        (["--optimizer", "rmsprop"], "field 'optimizer' of TrainConfig: must be one of adam, adamw, sgd, adagrad"),
        (["--ks", "10,0"], "field 'ks' of TrainConfig: must be >= 1"),
        (["--user_core", "-2"], "field 'user_core' of DataConfig: must be >= 0"),
        (["--embedding_dim", "0"], "field 'embedding_dim' of BPRConfig: must be >= 1, got 0"),
        (["--reg_weight", "-0.1"], "field 'reg_weight' of BPRConfig: must be >= 0"),
    ],
)
def test_bad_values_are_refused_before_any_data_is_read(
    args: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    # The dataset does not exist: an error about the field proves the check ran first, at parse time.
    code = train_main(["--model", "bpr", "--dataset", str(tmp_path / "missing"), "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()  # no run folder, no metrics of an untrained model


def test_sequence_model_fields_by_name() -> None:
    sasrec = get_model_class("sasrec").Config
    with pytest.raises(ConfigError, match=r"field 'dropout' of SASRecConfig: must be in \[0, 1\), got 1.0"):
        build_config(sasrec, {"dropout": "1.0"})
    with pytest.raises(ConfigError, match="field 'n_heads' of SASRecConfig: must be >= 1"):
        sasrec(n_heads=0)
    with pytest.raises(ConfigError, match="field 'temperature' of SASRecConfig: must be > 0"):
        sasrec(temperature=0.0)
    with pytest.raises(ConfigError, match="field 'hidden_dim' of SASRecConfig: must be int, got True"):
        sasrec(hidden_dim=True)


def test_every_default_config_is_valid_and_direct_construction_is_checked() -> None:
    for name in available_models():
        model_cls = get_model_class(name)
        validate_fields(model_cls.Config())
        build_config(TrainConfig, model_cls.train_defaults)
    DataConfig()
    with pytest.raises(ConfigError, match="field 'lr'"):
        TrainConfig(lr=math.nan)  # also when built in Python, not only from the command line
    with pytest.raises(ConfigError, match="field 'grad_clip'"):
        dataclasses.replace(TrainConfig(), grad_clip=-1.0)


def test_data_info_reports_rows_that_do_not_fit_the_grouplens_types(tmp_path: Path) -> None:
    ratings = tmp_path / "u.data"
    ratings.write_text("1\t10\t5\t881250949\nabc\t11\t3\t881250950\n2\t10\t4\t-100\n3\t12\t9\t881250951\n")
    problems = dataset_info(str(ratings))["format_problems"]
    assert problems["rows"] == 3 and problems["by_field"] == {"user_id": 1, "rating": 1, "timestamp": 1}
    found = {(e["line"], e["field"], e["value"]) for e in problems["examples"]}
    assert found == {(2, "user_id", "abc"), (3, "timestamp", "-100"), (4, "rating", "9")}


def test_data_info_cli_exits_1_on_format_problems_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsys.data.__main__ import main

    ratings = tmp_path / "u.data"
    ratings.write_text("1\t10\t5\t881250949\n2\t11\t9\t881250950\n")
    assert main(["info", str(ratings)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["format_problems"]["rows"] == 1  # the JSON is still printed
    assert "u.data: 1 rows do not fit" in captured.err and "line 2, field 'rating' = '9'" in captured.err
    assert main(["info", str(ratings), "--allow-format-problems"]) == 0


def test_data_info_on_a_real_file_reports_nothing(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "movielens" / "ml-100k" / "ml-100k.inter"
    lines = source.read_text().splitlines()[1:2001]  # GroupLens layout: user item rating timestamp
    (tmp_path / "u.data").write_text("".join(line + "\n" for line in lines))
    info = dataset_info(str(tmp_path / "u.data"))
    assert info["n_interactions"] == 2000 and info["format_problems"] == {"rows": 0, "by_field": {}, "examples": []}


def test_a_config_declares_its_own_ranges_over_the_by_name_defaults() -> None:
    from recsys.models.ials import IALSConfig

    assert IALSConfig(alpha=40.0).alpha == 40.0  # a confidence scale, not a fraction
    with pytest.raises(ConfigError, match="field 'alpha' of IALSConfig: must be >= 0"):
        IALSConfig(alpha=-1.0)
    with pytest.raises(ConfigError, match="field 'solver' of IALSConfig"):
        IALSConfig(solver="qr")
