"""Readers for image-tabular data a user brings: DVM-Car (CSV + image folders) and PetFinder (CSV + images).

Both return a :class:`RawImageTable` (typed raw columns, one image path or None per row, labels);
:func:`to_multimodal` turns it into :class:`~mllm.dfpl.data.MultimodalData` with statistics fitted on the
training rows only. Errors name the file, line and column.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mllm.dfpl.data import MultimodalData, TableSchema, encode_categorical, fit_standardiser, fit_vocabularies
from mllm.dfpl.errors import DfplError

logger = logging.getLogger(__name__)

# DVM-Car (Huang et al. 2021) Ad_table.csv: the advert columns TIP-style work feeds as the table. Maker and
# Genmodel are left out: they name the label (Genmodel_ID).
DVM_NUMERIC = ("Adv_year", "Adv_month", "Reg_year", "Runned_Miles", "Engin_size", "Price", "Seat_num", "Door_num")
DVM_CATEGORICAL = ("Color", "Bodytype", "Gearbox", "Fuel_type")
# PetFinder (Kaggle adoption prediction) train.csv.
PET_NUMERIC = ("Age", "Quantity", "Fee", "VideoAmt", "PhotoAmt")
PET_CATEGORICAL = (
    "Type",
    "Breed1",
    "Breed2",
    "Gender",
    "Color1",
    "Color2",
    "Color3",
    "MaturitySize",
    "FurLength",
    "Vaccinated",
    "Dewormed",
    "Sterilized",
    "Health",
    "State",
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class RawImageTable:
    """Raw typed columns (numeric may hold NaN), an image path or None per row, integer labels, class names."""

    numeric: np.ndarray
    categorical: np.ndarray
    numeric_columns: list[str]
    categorical_columns: list[str]
    image_paths: list[Path | None]
    labels: np.ndarray
    classes: list[str]


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DfplError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise DfplError(f"{path}:1: missing column(s) {', '.join(missing)}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _number(text: str, where: str) -> float:
    """A number from a cell like ``1.4L`` or ``"12,000"``; empty -> NaN; no digits at all -> error."""
    if not text:
        return float("nan")
    match = _NUMBER.search(text.replace(",", ""))
    if match is None:
        raise DfplError(f"{where}: {text!r} is not a number")
    return float(match.group())


def _table(rows, path, numeric, categorical, label, first_line=2):
    values = np.array(
        [[_number(row[c], f"{path}:{i} column {c}") for c in numeric] for i, row in enumerate(rows, first_line)]
    ).reshape(len(rows), len(numeric))
    cats = np.array([[row[c] for c in categorical] for row in rows], dtype=object).reshape(len(rows), len(categorical))
    names = sorted({row[label] for row in rows})
    for i, row in enumerate(rows, first_line):
        if not row[label]:
            raise DfplError(f"{path}:{i}: column {label} (the label) is empty")
    lookup = {name: k for k, name in enumerate(names)}
    labels = np.array([lookup[row[label]] for row in rows], dtype=np.int64)
    return values.astype(np.float32), cats.astype(str), labels, names


def read_petfinder(csv_path: str | Path, image_dir: str | Path, label: str = "AdoptionSpeed") -> RawImageTable:
    """PetFinder ``train.csv`` + ``train_images/{PetID}-1.jpg``; a pet without that photo has no image."""
    csv_path, image_dir = Path(csv_path), Path(image_dir)
    if not image_dir.is_dir():
        raise DfplError(f"{image_dir}: image folder not found")
    rows = _read_csv(csv_path, ("PetID", label, *PET_NUMERIC, *PET_CATEGORICAL))
    numeric, categorical, labels, classes = _table(rows, csv_path, PET_NUMERIC, PET_CATEGORICAL, label)
    paths: list[Path | None] = []
    for row in rows:
        path = image_dir / f"{row['PetID']}-1.jpg"
        paths.append(path if path.is_file() else None)
    logger.info("%s: %d pets, %d with a photo", csv_path, len(rows), sum(p is not None for p in paths))
    return RawImageTable(numeric, categorical, list(PET_NUMERIC), list(PET_CATEGORICAL), paths, labels, classes)


def dvm_advert_id(image_name: str) -> str:
    """The advert id inside a DVM-Car image name ``Maker$$Model$$Year$$Colour$$AdvID$$k$$image_j.jpg``."""
    parts = image_name.split("$$")
    if len(parts) < 6:
        raise DfplError(f"DVM-Car image name {image_name!r}: expected 'Maker$$Model$$Year$$Colour$$AdvID$$...'")
    return parts[4]


def read_dvm_car(ad_csv: str | Path, image_root: str | Path, label: str = "Genmodel_ID") -> RawImageTable:
    """DVM-Car ``Ad_table.csv`` + the image folders (searched recursively); the first image of an advert (by
    name) is its photo, an advert with none has no image."""
    ad_csv, image_root = Path(ad_csv), Path(image_root)
    if not image_root.is_dir():
        raise DfplError(f"{image_root}: image folder not found")
    rows = _read_csv(ad_csv, ("Adv_ID", label, *DVM_NUMERIC, *DVM_CATEGORICAL))
    numeric, categorical, labels, classes = _table(rows, ad_csv, DVM_NUMERIC, DVM_CATEGORICAL, label)
    images: dict[str, Path] = {}
    for path in sorted(image_root.rglob("*$$*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            images.setdefault(dvm_advert_id(path.name), path)
    paths = [images.get(row["Adv_ID"]) for row in rows]
    logger.info("%s: %d adverts, %d with an image", ad_csv, len(rows), sum(p is not None for p in paths))
    return RawImageTable(numeric, categorical, list(DVM_NUMERIC), list(DVM_CATEGORICAL), paths, labels, classes)


def to_multimodal(raw: RawImageTable, train_index: np.ndarray, image_tokens: np.ndarray) -> MultimodalData:
    """All rows as MultimodalData: NaN numeric cells get the training median, then training-fitted scaling;
    categorical codes from the training vocabulary; rows without a photo are marked image-absent."""
    numeric = raw.numeric.astype(np.float64).copy()
    medians = np.nanmedian(numeric[train_index], axis=0) if len(train_index) else np.zeros(numeric.shape[1])
    medians = np.where(np.isnan(medians), 0.0, medians)
    numeric = np.where(np.isnan(numeric), medians, numeric)
    mean, std = fit_standardiser(numeric[train_index])
    vocabularies = fit_vocabularies(raw.categorical[train_index])
    categorical = encode_categorical(raw.categorical, vocabularies)
    schema = TableSchema(raw.numeric_columns, raw.categorical_columns, [len(v) + 1 for v in vocabularies])
    present = np.array([p is not None for p in raw.image_paths])
    return MultimodalData(
        image_tokens.astype(np.float32),
        ((numeric - mean) / std).astype(np.float32),
        categorical,
        raw.labels,
        schema,
        len(raw.classes),
        present,
    )
