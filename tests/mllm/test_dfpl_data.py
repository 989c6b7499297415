"""DFPL data: Houses and Fashion-MNIST readers on the real files, DVM-Car and PetFinder on tiny fixtures, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm.dfpl.__main__ import main
from mllm.dfpl.data import fashion_table, missing_masks, price_terciles, read_houses, read_idx
from mllm.dfpl.datasets import DataSpec, houses_split, load_split
from mllm.dfpl.errors import DfplError
from mllm.dfpl.readers import dvm_advert_id, read_dvm_car, read_petfinder, to_multimodal

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
HOUSES = SHARED / "houses_ahmed2016"
FASHION = SHARED / "fashion_mnist"


def test_houses_reader_on_the_real_file() -> None:
    raw = read_houses(HOUSES)
    assert len(raw.price) == 535 and raw.numeric.shape == (535, 3)
    assert len(set(raw.zipcode)) == 49
    assert all(len(photos) == 4 and photos[0].is_file() for photos in raw.photos)


def test_houses_tercile_edges_come_from_the_training_fold_only() -> None:
    raw = read_houses(HOUSES)
    train, test = houses_split(raw, fold=0, folds=5, repeat=0)
    assert not set(train) & set(test) and len(train) + len(test) == 535
    labels, edges = price_terciles(raw.price[train], raw.price)
    changed = raw.price.copy()
    changed[test] *= 100.0  # test prices must not move the edges
    _, edges_after = price_terciles(changed[train], changed)
    assert np.array_equal(edges, edges_after)
    assert np.bincount(labels[train]).min() >= len(train) // 3 - 2


def test_fashion_idx_reader_and_table_rule() -> None:
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10
    numeric, categorical = fashion_table(labels, seed=0)
    department = categorical[:, 0].astype(int)
    # the rule: department is the class's coarse group except for a 15% uniform redraw
    from mllm.dfpl.data import FASHION_DEPARTMENT

    agree = (department == np.array(FASHION_DEPARTMENT)[labels]).mean()
    assert 0.85 < agree < 0.93
    assert numeric[labels == 4].mean() > numeric[labels == 0].mean() + 40  # coats cost more than T-shirts


def test_read_idx_rejects_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x00\x00\x00\x07" + b"\x00" * 12)
    with pytest.raises(DfplError, match="magic"):
        read_idx(path)


def _jpg(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_petfinder_reader_on_a_fixture(tmp_path: Path) -> None:
    rows = []
    for i in range(6):
        rows.append(
            {
                "Type": str(1 + i % 2), "Name": f"pet{i}", "Age": str(i + 1), "Breed1": "307", "Breed2": "0",
                "Gender": "1", "Color1": "1", "Color2": "0", "Color3": "0", "MaturitySize": "2", "FurLength": "1",
                "Vaccinated": "2", "Dewormed": "2", "Sterilized": "2", "Health": "1", "Quantity": "1",
                "Fee": "" if i == 2 else "100", "State": "41326", "RescuerID": "r", "VideoAmt": "0",
                "Description": "a, \"quoted\" text", "PetID": f"p{i}", "PhotoAmt": "1", "AdoptionSpeed": str(i % 3),
            }
        )  # fmt: skip
    _write_csv(tmp_path / "train.csv", rows)
    for i in (0, 1, 3, 4, 5):  # pet p2 has no photo
        _jpg(tmp_path / "train_images" / f"p{i}-1.jpg", (40 * i, 0, 0))
    raw = read_petfinder(tmp_path / "train.csv", tmp_path / "train_images")
    assert raw.labels.tolist() == [0, 1, 2, 0, 1, 2] and raw.classes == ["0", "1", "2"]
    assert raw.image_paths[2] is None and raw.image_paths[0].name == "p0-1.jpg"
    assert np.isnan(raw.numeric[2, raw.numeric_columns.index("Fee")])
    data = to_multimodal(raw, np.arange(4), np.zeros((6, 1, 4), dtype=np.float32))
    assert np.isfinite(data.numeric).all() and data.image_present.tolist() == [1, 1, 0, 1, 1, 1]
    # the photo-less pet keeps its table even when the table was to be dropped: never both missing
    batch = data.batch(np.arange(6), np.ones(6, dtype=bool), np.array([1, 1, 0, 1, 1, 1], dtype=bool))
    assert bool(batch["table_mask"][2]) and not bool(batch["image_mask"][2])


def test_petfinder_reader_names_a_missing_column(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    _write_csv(tmp_path / "train.csv", [{"PetID": "a", "AdoptionSpeed": "1"}])
    with pytest.raises(DfplError, match=r"train.csv:1: missing column\(s\) Age"):
        read_petfinder(tmp_path / "train.csv", tmp_path / "imgs")


def test_dvm_car_reader_on_a_fixture(tmp_path: Path) -> None:
    rows = [
        {
            "Maker": "Abarth", "Genmodel": "124 Spider", "Genmodel_ID": gid, "Adv_ID": adv, "Adv_year": "2018",
            "Adv_month": "4", "Color": colour, "Reg_year": "2017", "Bodytype": "Convertible",
            "Runned_Miles": "7,800", "Engin_size": "1.4L", "Gearbox": "Manual", "Fuel_type": "Petrol",
            "Price": "21000", "Seat_num": "2", "Door_num": "2",
        }
        for gid, adv, colour in (("2_1", "2_1$$1", "Blue"), ("2_1", "2_1$$2", "Red"), ("3_4", "3_4$$1", "Grey"))
    ]  # fmt: skip
    _write_csv(tmp_path / "Ad_table.csv", rows)
    root = tmp_path / "resized_DVM"
    _jpg(root / "Abarth" / "2017" / "Blue" / "Abarth$$124 Spider$$2017$$Blue$$2_1$$1$$image_1.jpg", (0, 0, 200))
    _jpg(root / "Abarth" / "2017" / "Blue" / "Abarth$$124 Spider$$2017$$Blue$$2_1$$1$$image_0.jpg", (0, 0, 100))
    _jpg(root / "Abarth" / "2017" / "Grey" / "Abarth$$124 Spider$$2017$$Grey$$3_4$$1$$image_0.jpg", (9, 9, 9))
    assert dvm_advert_id("Abarth$$124 Spider$$2017$$Blue$$2_1$$1$$image_0.jpg") == "2_1"
    rows[0]["Adv_ID"], rows[1]["Adv_ID"], rows[2]["Adv_ID"] = "2_1", "2_2", "3_4"
    _write_csv(tmp_path / "Ad_table.csv", rows)
    raw = read_dvm_car(tmp_path / "Ad_table.csv", root)
    assert raw.classes == ["2_1", "3_4"] and raw.labels.tolist() == [0, 0, 1]
    assert raw.image_paths[0].name.endswith("image_0.jpg") and raw.image_paths[1] is None
    column = raw.numeric_columns.index
    assert raw.numeric[0, column("Engin_size")] == pytest.approx(1.4)
    assert raw.numeric[0, column("Runned_Miles")] == 7800
    bad = [dict(rows[0], Engin_size="large")]
    _write_csv(tmp_path / "bad.csv", bad)
    with pytest.raises(DfplError, match=r"bad.csv:2 column Engin_size"):
        read_dvm_car(tmp_path / "bad.csv", root)


def test_synthetic_split_and_masks_through_the_spec() -> None:
    train, test = load_split(DataSpec(name="synthetic", synthetic_n=100, split_seed=1))
    assert len(train) == 60 and len(test) == 40
    image, table = missing_masks(len(test), 0.5, "image", 3)
    assert (~image).sum() == 20 and table.all()


@pytest.mark.slow
def test_cli_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", "synthetic", "--synthetic-n", "300", "--model", "dfpl_no_cma", "--epochs", "2"]
    assert main([*argv, "--dim", "16", "--out", str(out), "--train-missing-rate", "0.3"]) == 0
    trained = json.loads(capsys.readouterr().out)
    record = json.loads((out / "config.json").read_text())
    assert record["model"] == "dfpl_no_cma" and record["model_config"]["cma"] is False
    assert (out / "model.safetensors").is_file()
    assert main(["eval", "--run", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(trained["complete"]["accuracy"])
    assert main(["eval", "--run", str(tmp_path / "nothing")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_cli_refuses_fine_tuning_on_cached_features(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["train", "--data", "synthetic", "--synthetic-n", "60", "--finetune-image", "true", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "fine-tuning needs pixel inputs" in capsys.readouterr().err


def test_fashion_pixels_are_the_same_items_as_the_features_would_be() -> None:
    spec = DataSpec(name="fashion", path=str(FASHION), train_per_class=2, test_per_class=1, pixels=True)
    train, test = load_split(spec)
    assert train.image.shape == (20, 1, 3, 64, 64) and test.image.shape == (10, 1, 3, 64, 64)
    assert np.bincount(train.labels).tolist() == [2] * 10 and np.bincount(test.labels).tolist() == [1] * 10
    # lite scaling: (x - 127) / 128, so the black background sits at -127/128 and nothing leaves [-1, 1]
    assert np.isfinite(train.image).all() and train.image.min() >= -1.0 and train.image.max() <= 1.0
    assert train.image.min() == pytest.approx(-127 / 128, abs=1e-6)
    # the table rule does not depend on the image form: same labels and prices as a second pixel load
    again, _ = load_split(spec)
    assert np.array_equal(again.numeric, train.numeric) and np.array_equal(again.labels, train.labels)


@pytest.mark.slow
def test_cli_fine_tunes_efficientnet_on_fashion_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--data", "fashion", "--path", str(FASHION), "--pixels", "true", "--finetune-image", "true"]
    argv += ["--image-grid", "2", "--train-per-class", "2", "--test-per-class", "1", "--epochs", "1"]
    assert main([*argv, "--model", "image_only", "--dim", "8", "--out", str(tmp_path / "run")]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert 0.0 <= trained["complete"]["accuracy"] <= 1.0
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["data"]["pixels"] is True and record["model_config"]["finetune_image"] is True
    assert main(["eval", "--run", str(tmp_path / "run")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(trained["complete"]["accuracy"])
