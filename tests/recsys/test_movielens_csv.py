"""The MovieLens-20M/25M/32M reader (``ratings.csv``), on a tiny fixture in that format."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data import DataError, detect_format, load_dataset, load_movielens_csv

RATINGS = """userId,movieId,rating,timestamp
1,17,4.0,944249077
1,25,1.0,944250228
2,17,5.0,943230976
2,29,2.5,943231122
3,25,3.5,1111111111
3,25,3.5,1111111111
"""
MOVIES = """movieId,title,genres
17,Sense and Sensibility (1995),Drama|Romance
25,Leaving Las Vegas (1995),Drama|Romance
29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy
"""


@pytest.fixture
def ml32m_dir(tmp_path):
    folder = tmp_path / "ml-32m"
    folder.mkdir()
    (folder / "ratings.csv").write_text(RATINGS)
    (folder / "movies.csv").write_text(MOVIES)
    return folder


def test_reads_ratings_csv_with_titles(ml32m_dir):
    assert detect_format(ml32m_dir) == "grouplens_csv"
    dataset = load_dataset(ml32m_dir)
    assert dataset.name == "ml-32m"
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (3, 3, 5)  # one duplicate dropped
    assert dataset.user_map.raw_array(dataset.users).tolist() == ["1", "1", "2", "2", "3"]
    np.testing.assert_allclose(dataset.ratings, [4.0, 1.0, 5.0, 2.5, 3.5])
    assert dataset.timestamps[0] == 944249077
    titles = dataset.item_features["movie_title"].tolist()
    assert titles[dataset.item_map.to_index("29")].startswith("City of Lost Children, The")


def test_malformed_row_names_the_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,17,4.0,944249077\n2,18,great,943230976\n")
    with pytest.raises(DataError, match="line 3"):
        load_movielens_csv(path)
