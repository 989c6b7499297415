"""SailRec readers: CoLLM ML-1M TSV (fixture and the real files), CoLLM Amazon-Book, Amazon Office yes/no."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mllm.sailrec.data import (
    SailRecDataError,
    load_amazon_office,
    load_collm_book,
    load_collm_ml1m,
    profile_text,
    read_collm_tsv,
    user_profiles,
)

FIXTURE = Path(__file__).parent / "fixtures" / "collm_tiny"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_collm_fixture_rows_titles_and_profiles() -> None:
    data = load_collm_ml1m(FIXTURE, FIXTURE / "ml-1m.item")
    assert (len(data.train), len(data.valid), len(data.test)) == (16, 8, 8)
    assert data.titles[2] == "Heat (1995)" and data.item_facets[2] == ["Action", "Crime", "Thriller"]
    first = data.train
    assert (first.users[0], first.items[0], first.labels[0]) == (2, 5, 1.0)
    np.testing.assert_array_equal(first.histories[0], [8, 1, 2])
    assert len(first.histories[1]) == 0  # "0 0 0" is padding only
    assert data.test.warm.sum() < len(data.test)
    profiles = user_profiles(data, top_k=2)
    assert all(1 <= len(p) <= 2 for p in profiles.values())
    assert profile_text(["Drama", "War"]) == "Likes: Drama, War"


def test_profile_votes_are_weighted_and_split_across_facets() -> None:
    data = load_collm_ml1m(FIXTURE, FIXTURE / "ml-1m.item")
    rows = data.train
    rows.users[:] = 1
    rows.items[:] = 7  # "Nixon": Drama only
    rows.labels[:] = 1
    rows.items[0], rows.items[1] = 1, 1  # Toy Story: three genres, each gets 1/3 per like
    profiles = user_profiles(data, top_k=2)
    assert profiles[1][0] == "Drama"
    rows.labels[2:] = 0  # Nixon disliked: its votes go negative, Toy Story's genres win
    assert "Drama" not in user_profiles(data, top_k=3)[1]


def test_collm_reader_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "train.tsv"
    bad.write_text("uid\tiid\tlabel\ttimestamp\thistory\tflag\tnot_cold\n1\t2\t3\t10\t0\t-1\t1\n")
    with pytest.raises(SailRecDataError, match=r"train.tsv:2: field 'label'"):
        read_collm_tsv(bad)
    bad.write_text("uid\tiid\tlabel\n1\t2\t1\n")
    with pytest.raises(SailRecDataError, match=r"train.tsv:1: missing column"):
        read_collm_tsv(bad)
    bad.write_text("uid\tiid\tlabel\ttimestamp\thistory\tflag\tnot_cold\n1\t2\t1\t10\t0 x\t-1\t1\n")
    with pytest.raises(SailRecDataError, match=r"train.tsv:2: field 'history'"):
        read_collm_tsv(bad)


def _book_frame(n: int, offset: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": np.arange(n) % 3,
            "iid": offset + np.arange(n) % 4 + 1,
            "title": [f"Book {offset + i % 4 + 1}" for i in range(n)],
            "his": [[1, 2], [], [3], [2, 4]][:n],
            "his_title": [["Book 1", "Book 2"], [], ["Book 3"], ["Book 2", "Book 4"]][:n],
            "label": [1, 0, 1, 0][:n],
            "timestamp": np.arange(n) * 10.0,
            "not_cold": [1, 1, 0, 1][:n],
        }
    )


def test_collm_book_reader_pickles_need_opt_in(tmp_path: Path) -> None:
    for name, offset in (("train", 0), ("valid", 1), ("test", 2)):
        _book_frame(4, offset).to_pickle(tmp_path / f"{name}_ood2.pkl")
    with pytest.raises(SailRecDataError, match="allow_pickle"):
        load_collm_book(tmp_path)
    data = load_collm_book(tmp_path, allow_pickle=True)
    assert len(data.test) == 4 and data.titles[6] == "Book 6" and data.titles[1] == "Book 1"
    np.testing.assert_array_equal(data.train.histories[3], [2, 4])
    assert data.test.warm.tolist() == [True, True, False, True]


def test_collm_book_reader_tsv(tmp_path: Path) -> None:
    for name in ("train", "valid", "test"):
        frame = _book_frame(4, 0)
        frame["his"] = ["1 2", "", "3", "2 4"]
        frame.drop(columns=["his_title"]).to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    data = load_collm_book(tmp_path)
    np.testing.assert_array_equal(data.valid.histories[0], [1, 2])
    (tmp_path / "test.tsv").write_text("uid\tiid\n1\t2\n")
    with pytest.raises(SailRecDataError, match=r"test.tsv: missing column"):
        load_collm_book(tmp_path)


def test_real_collm_ml1m_files() -> None:
    folder = SHARED / "collm_ml1m"
    titles_rows = read_collm_tsv(folder / "test.tsv", 3256)
    assert len(titles_rows) == 7331
    assert int((~titles_rows.warm).sum()) == 3178  # SOURCE.md: 3,178 cold test rows
    assert 0.53 < titles_rows.labels.mean() < 0.56
    data = load_collm_ml1m(folder, SHARED / "movielens" / "ml-1m" / "ml-1m.item")
    assert data.titles[1] == "Shawshank Redemption, The (1994)" and data.item_facets[1] == ["Drama"]
    # histories hold only earlier interactions: every train row's history precedes it in the user's train rows
    assert all(len(h) == 0 or h.max() < data.n_items for h in data.train.histories[:1000])


def test_real_amazon_office_yes_no() -> None:
    data = load_amazon_office(SHARED / "amazon_office_rechorus", seed=0)
    assert len(data.train) == 2 * 43448 and len(data.test) == 2 * 4905
    assert data.train.labels.mean() == 0.5 and data.test.labels.mean() == 0.5
    # a sampled train negative is never an item the user interacted with
    train = data.train
    liked, disliked = train.labels == 1, train.labels == 0
    positives = set(zip(train.users[liked].tolist(), train.items[liked].tolist(), strict=True))
    negatives = zip(train.users[disliked].tolist(), train.items[disliked].tolist(), strict=True)
    assert not any(pair in positives for pair in negatives)
    # the negative shares its positive's history; the history is strictly earlier train items
    assert np.array_equal(data.train.histories[2], data.train.histories[3])
    assert data.titles[1] and data.item_facets[1][0].startswith("category ")


def test_item_like_rate_baseline_is_smoothed_towards_the_global_rate() -> None:
    from mllm.sailrec.mf import like_rate_scores

    data = load_collm_ml1m(FIXTURE)
    rows = data.train
    prior = float(rows.labels.mean())
    scores = like_rate_scores(data, data.test, prior_weight=2.0)
    for item, value in zip(data.test.items, scores, strict=True):
        shown = rows.items == item
        expected = (rows.labels[shown].sum() + 2.0 * prior) / (shown.sum() + 2.0)
        assert value == pytest.approx(expected)
