"""The PCF CLIs on small real files: label writes intervals and flags, eval runs both transfer protocols,
transfer estimates one food catalogue from another; old label files still read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agents.pcf.__main__ import main as pcf_main
from agents.pcf.label import read_labels
from recsys.carbon.labels import labels_for_variant, read_pcf_labels, read_pcf_records

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def small_catalogue(path: Path, per_sector: int = 14) -> Path:
    """The first ``per_sector`` rows of each sector of the real Carbon Catalogue, as a CSV of the same format."""
    with (SHARED / "carbon_catalogue" / "product_level.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows, counts = [], {}
        for row in reader:
            sector = row["*Company's sector"]
            if counts.get(sector, 0) < per_sector:
                counts[sector] = counts.get(sector, 0) + 1
                rows.append(row)
        fields = reader.fieldnames
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_label_writes_intervals_flags_and_attributes(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,title,screen_size,weight\n"
        'A1,"Laptop 15.6-inch notebook computer",,2 kg\n'
        'A2,"Office chair, black mesh",,\n'
        'A3,"LCD monitor",24 in,\n'
        'A4,"Chocolate bar 100 g, 2-pack",,\n'
        "A5,Printer,huge,\n"
    )
    out = tmp_path / "labels.jsonl"
    args = ["label", "--catalog", str(items), "--out", str(out), "--store", str(tmp_path / "store")]
    assert pcf_main([*args, "--embedder", "hashing", "--no-progress", "--quiet"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["item_id"] for r in records] == ["A1", "A2", "A3", "A4"]  # A5's screen size is not a quantity
    rejects = [json.loads(line) for line in (tmp_path / "labels.jsonl.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["field"] == "screen_size" and rejects[0]["line"] == 6
    by_id = {r["item_id"]: r for r in records}
    assert by_id["A1"]["attributes"] == {"screen_in": 15.6, "weight_kg": 2.0}
    assert by_id["A3"]["attributes"] == {"screen_in": 24.0}
    assert by_id["A4"]["attributes"] == pytest.approx({"weight_kg": 0.1, "pack_count": 2.0})
    for record in records:
        assert record["method"] == "hierarchical" and record["interval_coverage"] == 0.8
        assert record["pcf_low_kg"] < record["pcf_kg"] < record["pcf_high_kg"]
        assert isinstance(record["plausible"], bool) and isinstance(record["flags"], list)
        assert record["category"] and 0 < record["category_probability"] <= 1
    # the re-ranker reads the interval and the flag
    assert read_pcf_records(out)["A1"]["pcf_high_kg"] == by_id["A1"]["pcf_high_kg"]
    # a rerun labels nothing again
    assert pcf_main([*args, "--embedder", "hashing", "--no-progress", "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == 4


def test_label_files_without_interval_fields_still_read(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(
        '{"item_id": "x", "pcf_kg": 2.0, "method": "knn", "confidence": 0.5, "neighbours": [], "similarities": []}\n'
        '{"item_id": "y", "pcf_kg": 8.0, "method": "knn", "confidence": 0.5, "neighbours": [], "similarities": []}\n'
    )
    assert set(read_labels(old)) == {"x", "y"} and read_pcf_labels(old) == {"x": 2.0, "y": 8.0}
    records = read_pcf_records(old)
    assert records["x"] == {"pcf_kg": 2.0, "pcf_high_kg": 2.0, "plausible": True}
    assert labels_for_variant(records, "upper") == ({"x": 2.0, "y": 8.0}, {"x": 2.0, "y": 8.0})


def test_label_help_lists_every_attribute_column(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        pcf_main(["label", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    for column in ("weight_kg", "screen_size", "wattage", "capacity", "storage_gb", "battery_mah", "pack_size"):
        assert column in text


@pytest.mark.slow
def test_eval_prints_both_transfer_protocols_on_a_small_real_catalogue(tmp_path, capsys) -> None:
    reference = small_catalogue(tmp_path / "product_level.csv")
    out = tmp_path / "eval.json"
    args = ["eval", "--reference", str(reference), "--embedder", "hashing", "--folds", "3", "--out", str(out)]
    assert pcf_main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "grouped_3_fold" in printed and "leave_one_sector_out" in printed and "hierarchical" in printed
    result = json.loads(out.read_text())
    for protocol in ("grouped_kfold", "leave_one_sector_out"):
        overall = result["transfer"][protocol]["overall"]
        assert {"knn", "sector_median", "category_median", "hierarchical"} <= set(overall)
        assert 0.0 <= overall["hierarchical"]["interval_coverage"] <= 1.0
        assert "spearman_within_category" in overall["hierarchical"]
        assert set(result["transfer"][protocol]["per_category"]["category_median"]) == set(
            result["transfer"][protocol]["per_category"]["hierarchical"]
        )
    assert result["transfer"]["leave_one_sector_out"]["n_folds"] == 8
    assert pcf_main([*args, "--protocols", "nope", "--quiet"]) == 2
    assert "--protocols" in capsys.readouterr().err


def test_transfer_between_food_catalogues(tmp_path: Path) -> None:
    source = SHARED / "agribalyse_food_lca" / "agribalyse_synthese.csv"
    lines = source.read_text(encoding="utf-8").splitlines()
    small = tmp_path / "agribalyse_synthese.csv"
    small.write_text("\n".join(lines[:1] + lines[1::6]) + "\n", encoding="utf-8")  # every 6th food
    out = tmp_path / "food.json"
    args = ["transfer", "--reference", str(small), "--embedder", "hashing", "--out", str(out), "--quiet"]
    assert pcf_main(args) == 0
    result = json.loads(out.read_text())
    assert result["n_targets"] == 43 and len(result["targets"]) == 43
    assert set(result["overall"]) == {"global_median", "category_median", "knn", "hierarchical"}
    assert all(t["low_kg"] < t["hierarchical_kg"] < t["high_kg"] for t in result["targets"])
    bad = tmp_path / "bad.csv"
    bad.write_text("Food product,Total_emissions\nRice,-1\n")
    assert pcf_main([*args[:-1], "--targets", str(bad), "--quiet"]) == 2
