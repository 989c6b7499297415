"""CTR readers on tiny generated files of each format; bad rows reported with their line numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.ctr import CTRDataError, load_ctr_table, prepare_ctr_split, read_ctr_file
from recsys.ctr.readers import detect_format


def _criteo_line(label: str, i: int) -> str:
    numeric = [str(i % 7), "", *[str(j * i) for j in range(11)]]
    categorical = [f"{(i + j) % 5:08x}" for j in range(25)] + [""]
    return "\t".join([label, *numeric, *categorical])


def test_criteo_reader(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(_criteo_line(str(i % 2), i) for i in range(30)) + "\n")
    assert detect_format(path) == "criteo"
    table = read_ctr_file(path)
    assert len(table) == 30 and len(table.schema.fields) == 39
    assert table.frame["label"].tolist()[:3] == [0, 1, 0]
    assert np.isnan(table.frame["I2"]).all()  # empty numeric = missing, not zero
    assert table.schema.fields[0].transform == "log_bin"


def test_criteo_bad_rows_are_reported_with_line_numbers(tmp_path):
    lines = [_criteo_line("1", i) for i in range(6)]
    lines[1] = lines[1].rsplit("\t", 3)[0]  # line 2: too few fields
    lines[3] = _criteo_line("1", 3).replace("1\t3\t", "1\tabc\t", 1)  # line 4: I1 not a number
    lines[4] = _criteo_line("2", 4)  # line 5: label 2
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CTRDataError) as err:
        read_ctr_file(path, fmt="criteo")
    message = str(err.value)
    assert "3 of 6 rows rejected" in message
    for expected in ("line 2: wrong number of fields", "line 4: non-numeric value", "line 5: label not 0/1"):
        assert expected in message
    table = read_ctr_file(path, fmt="criteo", bad_rows="skip")
    assert len(table) == 3
    report = table.rejects[0]
    assert report.lines == [2, 4, 5] and dict(report.reasons) == {
        "wrong number of fields": 1,
        "non-numeric value": 1,
        "label not 0/1": 1,
    }


def test_avazu_reader(tmp_path):
    header = "id,click,hour,C1,banner_pos,site_id"
    rows = [f"{i},{i % 2},141021{i % 24:02d},1005,{i % 2},site{i % 3}" for i in range(20)]
    rows.append("99,1,notahour,1005,0,site1")  # line 22
    rows.append("100,0,14102100,1005,0")  # line 23: a field short
    path = tmp_path / "avazu.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    assert detect_format(path) == "avazu"
    with pytest.raises(CTRDataError, match=r"line 22: bad hour.*line 23: wrong number|line 23.*line 22"):
        read_ctr_file(path)
    table = read_ctr_file(path, bad_rows="skip")
    names = [f.name for f in table.schema.fields]
    assert names == ["C1", "banner_pos", "site_id", "hour_of_day", "weekday"]
    assert len(table) == 20 and table.frame["weekday"].iloc[0] == "1"  # 2014-10-21 was a Tuesday


def test_libfm_reader(tmp_path):
    path = tmp_path / "frappe.train.libfm"
    lines = [f"{1 if i % 2 else -1} {i % 4}:1 {10 + i % 3}:1 {20 + i % 5}:1" for i in range(12)]
    lines.append("1 3:1 11:1")  # line 13: a field short
    lines.append("0 3:1 11:0.5 21:1")  # line 14: not one-hot
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CTRDataError, match="line 13: wrong number of fields"):
        read_ctr_file(path)
    table = read_ctr_file(path, bad_rows="skip")
    assert [f.name for f in table.schema.fields] == ["f0", "f1", "f2"]
    assert table.frame["label"].tolist()[:2] == [0, 1]  # -1 is the format's negative label
    assert table.rejects[0].lines == [13, 14]


def test_bars_csv_and_a_split_folder(tmp_path):
    folder = tmp_path / "MovielensLatest_x1"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 40), ("valid", 10), ("test", 10)):
        frame = pd.DataFrame(
            {
                "label": rng.integers(0, 2, n),
                "user_id": rng.integers(0, 5, n),
                "item_id": rng.integers(0, 7, n),
                "tag_id": rng.integers(0, 3, n),
            }
        )
        frame.to_csv(folder / f"{name}.csv", index=False)
    assert detect_format(folder / "train.csv") == "bars"
    table = load_ctr_table(folder)
    assert np.bincount(table.fold).tolist() == [40, 10, 10]
    split = prepare_ctr_split(folder)  # the folder's own split is used
    assert split.protocol == "given" and (len(split.train), len(split.valid), len(split.test)) == (40, 10, 10)


def test_table_with_schema_file_csv_and_parquet(tmp_path):
    frame = pd.DataFrame(
        {
            "clicked": [0, 1, 1, 0],
            "age": [20.5, 31.0, None, 44.0],
            "country": ["fr", "de", "fr", None],
            "genres": ["a|b", "b", "", "c|a"],
            "ignored": ["x", "y", "z", "w"],
        }
    )
    schema = {
        "label": "clicked",
        "fields": {"age": "numeric", "country": "categorical", "genres": {"kind": "sequence"}},
    }
    csv_path = tmp_path / "events.csv"
    frame.to_csv(csv_path, index=False)
    (tmp_path / "events.schema.yaml").write_text(json.dumps(schema))  # JSON is valid YAML
    table = read_ctr_file(csv_path)
    assert [f.name for f in table.schema.fields] == ["age", "country", "genres"]
    assert table.frame["clicked"].tolist() == [0, 1, 1, 0] and np.isnan(table.frame["age"].iloc[2])
    parquet = tmp_path / "events.parquet"
    frame.to_parquet(parquet)
    (tmp_path / "events.schema.yaml").rename(tmp_path / "schema.json")
    from_parquet = read_ctr_file(parquet)
    from recsys.ctr import FeaturePipeline

    pipeline = FeaturePipeline(table.schema).fit(table.frame)
    a, b = pipeline.transform(table.frame), pipeline.transform(from_parquet.frame)
    np.testing.assert_array_equal(a.categorical, b.categorical)
    np.testing.assert_array_equal(a.numeric, b.numeric)
    np.testing.assert_array_equal(a.sequences["genres"], b.sequences["genres"])
    bad = frame.astype(object)
    bad.loc[2, "age"] = "old"
    bad.loc[3, "clicked"] = 5
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CTRDataError, match=r"line 4: non-numeric value: field age = 'old'.*line 5: label not 0/1"):
        read_ctr_file(tmp_path / "bad.csv", schema=tmp_path / "schema.json")


def test_unknown_format_and_missing_schema_columns_are_clear(tmp_path):
    path = tmp_path / "mystery.txt"
    path.write_text("a b c\n")
    with pytest.raises(CTRDataError, match="cannot tell the CTR format"):
        read_ctr_file(path)
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("label,a\n1,2\n")
    (tmp_path / "x.schema.yaml").write_text("label: label\nfields:\n  b: categorical\n")
    with pytest.raises(CTRDataError, match=r"columns \['b'\]"):
        read_ctr_file(csv_path)
