"""RecBole / UniSRec sequential benchmark folders: every interaction is read (histories expanded, titles
attached), or the folder is refused with a message naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.data import DataError, load_dataset, make_split
from recsys.data.__main__ import dataset_info

# four users; "u1" has 5 items a b c d e: train rows for c and... (RecBole's augmentation: one row per prefix)
SEQUENCES = {"u1": "a b c d e", "u2": "b c f", "u3": "a f b d g h", "u4": "c a c e"}


def write_unisrec(folder: Path, sequences: dict[str, str] = SEQUENCES, text: bool = True) -> Path:
    """Write ``<name>.{train,valid,test}.inter`` and ``<name>.text`` as UniSRec's processed folders hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows = {"train": [], "valid": [], "test": []}
    for user, seq in sequences.items():
        items = seq.split()
        for target in range(1, len(items)):
            part = "test" if target == len(items) - 1 else "valid" if target == len(items) - 2 else "train"
            rows[part].append(f"{user}\t{' '.join(items[:target])}\t{items[target]}\n")
    for part, lines in rows.items():
        (folder / f"Sci.{part}.inter").write_text(header + "".join(lines), encoding="utf-8")
    if text:
        titles = "".join(f"{item}\tthe title of {item}\n" for item in "abcdefg")  # no title for h
        (folder / "Sci.text").write_text("item_id:token\ttext:token_seq\n" + titles, encoding="utf-8")
    return folder


def test_every_interaction_is_read_with_histories_expanded(tmp_path: Path) -> None:
    dataset = load_dataset(write_unisrec(tmp_path / "Sci"))
    assert dataset.n_interactions == sum(len(s.split()) for s in SEQUENCES.values()) == 18
    for user, seq in SEQUENCES.items():
        rows = np.flatnonzero(dataset.users == dataset.user_map.to_index(user))
        assert list(dataset.item_map.raw_array(dataset.items[rows])) == seq.split()  # order kept, repeats too
        assert list(dataset.fold[rows]) == [0] * (len(seq.split()) - 2) + [1, 2]  # first item -> train
    assert dataset.read_report["interactions_from_histories"] == 4  # each user's first item
    assert dataset.read_report["rows_read"] == 14


def test_titles_are_attached_from_the_typed_text_file(tmp_path: Path, caplog) -> None:
    dataset = load_dataset(write_unisrec(tmp_path / "Sci"))
    assert dataset.item_text[dataset.item_map.to_index("f")] == "the title of f"
    assert dataset.item_text[dataset.item_map.to_index("h")] == ""
    assert "1 of 8 items have no text" in caplog.text


def test_the_given_split_puts_the_last_two_items_in_valid_and_test(tmp_path: Path) -> None:
    split = make_split(load_dataset(write_unisrec(tmp_path / "Sci")), "given")
    assert (split.train.n_interactions, split.valid.n_interactions, split.test.n_interactions) == (10, 4, 4)


def test_info_reports_what_was_read(tmp_path: Path) -> None:
    info = dataset_info(str(write_unisrec(tmp_path / "Sci")))
    assert info["n_interactions"] == 18 and info["given_split"] == {"train": 10, "valid": 4, "test": 4}
    assert info["read"]["rows_read"] == 14 and info["read"]["interactions_from_histories"] == 4
    assert info["item_text"] == {"items": 8, "with_text": 7}


def test_a_history_that_does_not_continue_the_user_is_refused(tmp_path: Path) -> None:
    folder = write_unisrec(tmp_path / "Sci")
    test_file = folder / "Sci.test.inter"
    test_file.write_text(test_file.read_text().replace("u1\ta b c d\te", "u1\ta b x d\te"), encoding="utf-8")
    with pytest.raises(DataError, match=r"Sci\.test\.inter: line 2: user 'u1': field 'item_id_list' does not"):
        load_dataset(folder)


def test_a_text_file_without_a_text_column_is_refused(tmp_path: Path) -> None:
    folder = write_unisrec(tmp_path / "Sci", text=False)
    (folder / "Sci.text").write_text("item_id:token\ttitle:token_seq\na\tx\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Sci\.text: line 1: expected an id column .* and a text column"):
        load_dataset(folder)


def test_a_table_with_typed_headers_is_read_by_its_plain_names(tmp_path: Path) -> None:
    path = tmp_path / "typed.tsv"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ta\t1\nu1\tb\t2\nu2\ta\t3\n")
    dataset = load_dataset(path)
    assert dataset.n_interactions == 3 and list(dataset.timestamps) == [1.0, 2.0, 3.0]
