"""recsys.data: the dataset type, its id maps, and every loader on small files written to tmp_path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import (
    DataError,
    IdMap,
    InteractionDataset,
    UnknownIdError,
    detect_format,
    load_atomic,
    load_dataset,
    load_lightgcn,
    load_movielens_1m,
    load_movielens_100k,
    load_table,
    make_split,
)

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.fixture
def atomic_dir(tmp_path: Path) -> Path:
    """A tiny RecBole dataset: 3 users, 3 interacted items, a 4th item only in .item."""
    folder = tmp_path / "tiny"
    write_lines(
        folder / "tiny.inter",
        [INTER_HEADER, "u1\ti10\t4\t100", "u2\ti20\t3\t50", "u1\ti20\t5\t200", "u3\ti30\t1\t300"],
    )
    write_lines(
        folder / "tiny.item",
        [
            "item_id:token\tmovie_title:token_seq\trelease_year:float\tclass:token_seq",
            "i30\tThird Film\t1999\tDrama",
            "i10\tFirst Film\t1995\tAnimation Comedy",
            "i99\tNever Watched\t2001\tHorror",
            "i20\tSecond Film\t\tAction",
        ],
    )
    write_lines(
        folder / "tiny.user",
        ["user_id:token\tage:float\tgender:token", "u2\t30\tF", "u1\t20\tM", "u3\t40\tM"],
    )
    return folder


# -- IdMap and the dataset type --------------------------------------------------------------------
def test_idmap_two_way_and_vectorised():
    ids = IdMap.from_raw(["b", "a", "b", "c"])
    assert ids.raw == ["b", "a", "c"] and len(ids) == 3
    assert IdMap.from_raw(["b", "a", "c"], sort=True).raw == ["a", "b", "c"]
    assert ids.to_index("c") == 2 and ids.to_raw(1) == "a"
    np.testing.assert_array_equal(ids.index_array(["c", "b", "b"]), [2, 0, 0])
    assert ids.index_array(["c"]).dtype == np.int64
    with pytest.raises(UnknownIdError, match="'zzz'"):
        ids.to_index("zzz")
    with pytest.raises(UnknownIdError, match="'q'"):
        ids.index_array(["a", "q"])
    with pytest.raises(UnknownIdError):
        ids.to_raw(3)
    with pytest.raises(DataError, match="unique"):
        IdMap(["a", "a"])
    assert isinstance(UnknownIdError("x"), KeyError) and isinstance(UnknownIdError("x"), ValueError)


def test_dataset_csr_subset_info():
    ds = InteractionDataset.from_raw("t", ["a", "a", "b", "a"], ["x", "y", "x", "x"], [1, 2, 3, 5], [10, 20, 5, 30])
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 4)
    binary = ds.to_csr()
    assert binary.shape == (2, 2) and binary.toarray().tolist() == [[1, 1], [1, 0]]
    weighted = ds.to_csr(binary=False).toarray()
    assert weighted[0, 0] == 6 and weighted[1, 0] == 3  # repeated (a, x) ratings add up
    part = ds.subset(ds.users == 1)
    assert part.n_interactions == 1 and part.user_map is ds.user_map and part.n_users == 2
    assert part.to_csr().shape == (2, 2)
    info = ds.info()
    assert info["first_timestamp"] == 5 and info["last_timestamp"] == 30 and info["density"] == 1.0
    with pytest.raises(DataError, match="item indices"):
        InteractionDataset("bad", np.array([0]), np.array([5]), None, None, IdMap(["u"]), IdMap(["i"]))
    with pytest.raises(DataError, match="rating"):
        InteractionDataset("bad", np.array([0]), np.array([0]), np.array([1.0, 2.0]), None, IdMap(["u"]), IdMap(["i"]))


# -- RecBole atomic files ---------------------------------------------------------------------------
def test_atomic_loads_interactions_and_aligned_side_information(atomic_dir, caplog):
    with caplog.at_level(logging.INFO):
        ds = load_atomic(atomic_dir)
    assert ds.name == "tiny" and ds.source.endswith("tiny.inter")
    assert ds.user_map.raw == ["u1", "u2", "u3"] and ds.item_map.raw == ["i10", "i20", "i30"]
    np.testing.assert_array_equal(ds.users, [0, 1, 0, 2])
    np.testing.assert_array_equal(ds.items, [0, 1, 1, 2])
    np.testing.assert_array_equal(ds.ratings, [4, 3, 5, 1])
    np.testing.assert_array_equal(ds.timestamps, [100, 50, 200, 300])
    assert ds.ratings.dtype == np.float32 and ds.timestamps.dtype == np.float64
    # features: row i describes item i, whatever the order in the .item file; i99 (never interacted) dropped
    assert ds.item_features["item_id"].tolist() == ds.item_map.raw
    assert ds.item_features["movie_title"].tolist() == ["First Film", "Second Film", "Third Film"]
    assert ds.item_features["release_year"].iloc[0] == 1995 and np.isnan(ds.item_features["release_year"].iloc[1])
    assert "1 of 4 rows describe items with no interaction" in caplog.text
    assert ds.item_text == [
        "First Film (1995); genres: Animation Comedy",
        "Second Film; genres: Action",
        "Third Film (1999); genres: Drama",
    ]
    assert ds.user_features["gender"].tolist() == ["M", "F", "M"]
    assert ds.user_features["age"].tolist() == [20.0, 30.0, 40.0]
    assert detect_format(atomic_dir) == "recbole_atomic"
    assert load_dataset(atomic_dir).n_interactions == 4


def test_atomic_wrong_column_count_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "d" / "d.inter", [INTER_HEADER, "u1\ti1\t4\t1", "", "u2\ti2\t3", "u3\ti3\t1\t2"])
    with pytest.raises(DataError) as err:
        load_atomic(path)
    message = str(err.value)
    assert str(path) in message and "line 4" in message and "expected 4 fields" in message
    write_lines(path, [INTER_HEADER, "u1\ti1\t4\t1", "u2\ti2\t3\t1\textra"])
    with pytest.raises(DataError, match=r"line 3: expected 4 fields"):
        load_atomic(path)


def test_atomic_non_numeric_values_name_line_and_field(tmp_path):
    path = write_lines(tmp_path / "d" / "d.inter", [INTER_HEADER, "u1\ti1\t4\t1", "u2\ti2\tfive\t2"])
    with pytest.raises(DataError, match=r"d\.inter: line 3: field 'rating': 'five' is not a number"):
        load_atomic(path)
    write_lines(path, [INTER_HEADER, "u1\ti1\t4\t1", "u2\ti2\t3\t2", "u3\ti3\t3\t"])
    with pytest.raises(DataError, match=r"line 4: field 'timestamp'"):
        load_atomic(path)


def test_atomic_bad_header_missing_columns_and_empty_file(tmp_path):
    path = write_lines(tmp_path / "d" / "d.inter", ["user_id:token\titem_id\trating:float", "u\ti\t1"])
    with pytest.raises(DataError, match=r"line 1: field 'item_id'"):
        load_atomic(path)
    write_lines(path, ["user:token\titem_id:token", "u\ti"])
    with pytest.raises(DataError, match=r"field 'user_id' missing; the header has user, item_id"):
        load_atomic(path)
    write_lines(path, [INTER_HEADER])
    with pytest.raises(DataError, match=r"d\.inter: no data rows \(empty dataset\)"):
        load_atomic(path)
    path.write_text("")
    with pytest.raises(DataError, match=r"d\.inter: file is empty"):
        load_atomic(path)


def test_duplicate_rows_dropped_with_count_or_kept(tmp_path, caplog):
    rows = [INTER_HEADER, "u1\ti1\t4\t1", "u1\ti1\t4\t1", "u1\ti1\t4\t1", "u1\ti1\t5\t9", "u2\ti1\t3\t1"]
    path = write_lines(tmp_path / "d" / "d.inter", rows)
    with caplog.at_level(logging.WARNING):
        ds = load_atomic(path)
    assert ds.n_interactions == 3  # the re-rating at another time is a distinct interaction
    assert "dropped 2 duplicate (user, item, timestamp) rows" in caplog.text
    assert load_atomic(path, keep_duplicates=True).n_interactions == 5


# -- MovieLens in the GroupLens layouts ---------------------------------------------------------------
def _genre_flags(*on: int) -> str:
    flags = ["0"] * 19
    for i in on:
        flags[i] = "1"
    return "|".join(flags)


def test_grouplens_100k_layout(tmp_path):
    folder = tmp_path / "ml-100k"
    write_lines(folder / "u.data", ["1\t10\t4\t881250949", "2\t10\t3\t881250950", "1\t20\t5\t881250951"])
    write_lines(
        folder / "u.item",
        [
            f"10|Café Society (1995)|01-Jan-1995||http://x|{_genre_flags(3, 5)}",
            f"20|Heat (1995)|01-Jan-1995||http://y|{_genre_flags(1)}",
            f"30|Unrated (1996)|01-Jan-1996||http://z|{_genre_flags(8)}",
        ],
        encoding="latin-1",
    )
    write_lines(folder / "u.user", ["1|24|M|technician|85711", "2|53|F|other|94043"])
    ds = load_dataset(tmp_path / "ml-100k")
    assert detect_format(folder) == "grouplens_ml100k"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    assert ds.item_map.raw == ["10", "20"]
    assert ds.item_text[0] == "Café Society (1995); genres: Animation Comedy"
    assert ds.item_text[1] == "Heat (1995); genres: Action"
    assert ds.item_features["release_year"].tolist() == [1995, 1995]
    assert ds.user_features["occupation"].tolist() == ["technician", "other"]
    # a folder that only contains the unpacked archive folder is found too
    assert load_dataset(tmp_path).n_interactions == 3


def test_grouplens_1m_layout_and_malformed_line(tmp_path):
    folder = tmp_path / "ml-1m"
    write_lines(folder / "ratings.dat", ["1::1193::5::978300760", "1::661::3::978302109", "2::1193::4::978298413"])
    write_lines(
        folder / "movies.dat",
        ["1193::One Flew Over the Cuckoo's Nest (1975)::Drama", "661::Star Wars: Episode I (1999)::Action|Sci-Fi"],
        encoding="latin-1",
    )
    write_lines(folder / "users.dat", ["1::F::1::10::48067", "2::M::56::16::70072"])
    ds = load_movielens_1m(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    assert ds.item_text == [
        "One Flew Over the Cuckoo's Nest (1975); genres: Drama",
        "Star Wars: Episode I (1999); genres: Action Sci-Fi",
    ]
    assert ds.user_features["age"].tolist() == [1.0, 56.0]
    assert detect_format(folder) == "grouplens_ml1m"
    write_lines(folder / "ratings.dat", ["1::1193::5::978300760", "1::661::3", "2::1193::4::978298413"])
    with pytest.raises(DataError, match=r"ratings\.dat: line 2: expected 4 fields"):
        load_movielens_1m(folder)
    write_lines(folder / "ratings.dat", ["1::1193::5::978300760", "1::661::x::978302109"])
    with pytest.raises(DataError, match=r"line 2: field 'rating'"):
        load_movielens_1m(folder)
    write_lines(folder / "u.data", ["1\t10\t4"])
    with pytest.raises(DataError, match=r"u\.data: line 1: expected 4 fields"):
        load_movielens_100k(folder)


# -- LightGCN train.txt / test.txt -----------------------------------------------------------------
@pytest.fixture
def lightgcn_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "lg"
    write_lines(folder / "train.txt", ["0 0 1 2 3", "1 2 4", "2", "3 1 5 0 2 4"])
    write_lines(folder / "test.txt", ["0 4", "1 0 1", "2 3", "3 3"])
    return folder


def test_lightgcn_lists_give_dataset_and_given_split(lightgcn_dir):
    ds, split = load_lightgcn(lightgcn_dir)
    assert (ds.n_users, ds.n_items) == (4, 6)
    assert ds.user_map.raw == ["0", "1", "2", "3"]  # ids are the indices
    assert split.protocol == "given_train_test" and split.valid.n_interactions == 0
    assert split.train.n_interactions == 11 and split.test.n_interactions == 5
    assert sorted(zip(split.test.users.tolist(), split.test.items.tolist(), strict=True)) == [
        (0, 4),
        (1, 0),
        (1, 1),
        (2, 3),
        (3, 3),
    ]
    assert split.train.to_csr()[2].nnz == 0  # user 2 has an empty train list
    assert detect_format(lightgcn_dir) == "lightgcn"
    again = make_split(load_dataset(lightgcn_dir), "given")
    np.testing.assert_array_equal(again.test.items, split.test.items)


def test_lightgcn_validation_carved_from_train_is_seeded(lightgcn_dir):
    _, first = load_lightgcn(lightgcn_dir, valid_ratio=0.5, seed=7)
    _, second = load_lightgcn(lightgcn_dir, valid_ratio=0.5, seed=7)
    assert first.valid.n_interactions > 0
    assert first.train.n_interactions + first.valid.n_interactions == 11 and first.test.n_interactions == 5
    np.testing.assert_array_equal(first.valid.items, second.valid.items)
    train_users = set(first.train.users.tolist())
    assert set(first.valid.users.tolist()) <= train_users  # every user keeps at least one train item


def test_lightgcn_bad_ids_and_empty_files(tmp_path):
    folder = tmp_path / "lg"
    write_lines(folder / "train.txt", ["0 1 2", "1 3 -4 5"])
    write_lines(folder / "test.txt", ["0 3"])
    with pytest.raises(DataError, match=r"train\.txt: line 2: field item \(position 2\): negative id -4"):
        load_lightgcn(folder)
    write_lines(folder / "train.txt", ["0 1 2", "1 3 x"])
    with pytest.raises(DataError, match=r"train\.txt: line 2: field item \(position 2\): 'x' is not an integer"):
        load_lightgcn(folder)
    (folder / "train.txt").write_text("\n")
    with pytest.raises(DataError, match=r"train\.txt: file is empty"):
        load_lightgcn(folder)


# -- plain tables ----------------------------------------------------------------------------------
def test_table_csv_tsv_parquet(tmp_path):
    frame = pd.DataFrame(
        {"who": ["a", "b", "a"], "what": [7, 8, 9], "stars": [1.5, 2.0, 3.0], "when": [3, 1, 2], "extra": "z"}
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.tsv", "t.parquet"):
        ds = load_table(tmp_path / name, user_col="who", item_col="what", rating_col="stars", time_col="when")
        assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 3), name
        assert ds.item_map.raw == ["7", "8", "9"]
        np.testing.assert_array_equal(ds.ratings, [1.5, 2.0, 3.0])
        np.testing.assert_array_equal(ds.timestamps, [3, 1, 2])
    no_extras = load_table(tmp_path / "t.csv", user_col="who", item_col="what")
    assert no_extras.ratings is None and no_extras.timestamps is None


def test_table_guesses_common_columns_and_parses_dates(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,5,4,2020-01-01T00:00:00Z\n2,5,3,2020-01-02 00:00:00\n")
    ds = load_dataset(path)
    assert detect_format(path) == "table"
    assert (ds.n_users, ds.n_items) == (2, 1)
    np.testing.assert_array_equal(ds.timestamps, [1577836800.0, 1577923200.0])


def test_table_errors_name_columns_and_lines(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("u,i,score\n1,5,4\n2,6,bad\n")
    with pytest.raises(DataError, match=r"field 'user' \(user_col\) not found; the file's columns are u, i, score"):
        load_table(path, user_col="user", item_col="i")
    with pytest.raises(DataError, match=r"r\.csv: line 3: field 'score': 'bad' is not a number"):
        load_table(path, user_col="u", item_col="i", rating_col="score")
    with pytest.raises(DataError, match="no user column recognised"):
        load_dataset(path)
    path.write_text("u,i\n")
    with pytest.raises(DataError, match="empty dataset"):
        load_table(path, user_col="u", item_col="i")
