"""RGCD-Rep two-domain data: the real ML-1M and Amazon files, the synthetic generator and the cold-start split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mllm.rgcd.data import amazon_beauty_sports, cold_start_task, movielens_genre_domains, synthetic_two_domain
from mllm.rgcd.errors import RGCDDataError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_movielens_genre_split_has_disjoint_domains_shared_users_and_comedy_targets() -> None:
    data = movielens_genre_domains(DATA / "movielens" / "ml-1m", max_users=60, seed=3, max_target_items=80)
    assert not set(data.source.item_ids) & set(data.target.item_ids)
    assert all("Comedy" in text for text in data.target.item_texts)
    assert not any("Comedy" in text for text in data.source.item_texts)
    assert len(data.target.item_ids) == 80 and data.n_users == 60
    assert data.info()["users_in_both"] > 50
    assert data.source.item_texts[0].endswith(".") and "Genres:" in data.source.item_texts[0]


@pytest.mark.slow
def test_amazon_beauty_sports_join_on_raw_reviewer_ids() -> None:
    data = amazon_beauty_sports(DATA / "amazon_s3rec")
    info = data.info()
    # the 1,625 shared reviewers and their 28,380 Beauty / 17,766 Sports interactions (../shared/notes/wave2.md)
    assert (info["n_users"], info["source_interactions"], info["target_interactions"]) == (1625, 28380, 17766)
    assert data.user_ids[0].startswith("A") and data.target.item_ids[0].startswith("Sports_and_Outdoors:")


def test_cold_start_split_thins_cold_users_and_keeps_test_out_of_train() -> None:
    data = synthetic_two_domain(n_users=120, n_items_per_domain=40, seed=2)
    task = cold_start_task(data, cold_share=0.5, max_cold_interactions=1, seed=0)
    train, test = task.split.train.to_csr(), task.split.test.to_csr()
    assert task.cold_users.size == 60
    assert np.asarray(train[task.cold_users].sum(1)).max() <= 1
    assert train.multiply(test).nnz == 0 and test.sum() == task.split.test.n_interactions
    warm = np.setdiff1d(np.arange(120), task.cold_users)
    assert np.asarray(train[warm].sum(1)).mean() > 5
    with pytest.raises(RGCDDataError, match="cold_share"):
        cold_start_task(data, cold_share=1.5)


def test_missing_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(RGCDDataError, match=r"ml-1m\.inter"):
        movielens_genre_domains(tmp_path)
