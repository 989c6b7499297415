"""CTR datasets by name or path, the seeded 8:1:1 random split, and the encoded split the Trainer uses.

Names:

- ``ml-1m-ctr``: MovieLens-1M as a CTR task (the AutoInt protocol): ratings above 3 are clicks, below 3
  non-clicks, ratings of 3 dropped; fields user_id, item_id, gender, age, occupation, zip_code and the movie's
  genres (multi-valued). Read from the ``ml-1m`` folder that ``recsys.data.resolve_dataset`` finds
  (RecBole atomic ``ml-1m.inter/.user/.item``, or GroupLens ``ratings.dat/users.dat/movies.dat``).
- ``synthetic-ctr`` (50,000 rows, 20 values per field), ``synthetic-ctr-small`` (20,000 rows, 10 values) and
  ``synthetic-ctr-large`` (500,000 rows, 20 values: enough rows per planted value combination for the
  third-order terms to be learnable): planted interactions, see ``recsys.ctr.synthetic``.
- a path: one CTR file (format detected, see ``recsys.ctr.readers``), or a folder holding ``train``,
  ``valid`` and ``test`` files (e.g. a BARS dataset folder), whose own split is then used.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.ctr.features import CTRDataError, EncodedCTR, FeaturePipeline, FieldSpec, Schema
from recsys.ctr.readers import CTRTable, read_ctr_file
from recsys.ctr.synthetic import SyntheticCTRConfig, make_synthetic_ctr

logger = logging.getLogger(__name__)

SYNTHETIC = {
    "synthetic-ctr": SyntheticCTRConfig(),
    "synthetic-ctr-small": SyntheticCTRConfig(n_samples=20_000, cardinality=10),
    "synthetic-ctr-large": SyntheticCTRConfig(n_samples=500_000),
}
CTR_DATASETS = ("ml-1m-ctr", *SYNTHETIC)
SPLIT_RATIOS = (0.8, 0.1, 0.1)
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".libfm", ".libsvm", ".parquet")


@dataclasses.dataclass
class CTRSplit:
    """Encoded train/valid/test parts, the pipeline fitted on train, and how the split was made."""

    train: EncodedCTR
    valid: EncodedCTR
    test: EncodedCTR
    pipeline: FeaturePipeline
    protocol: str
    seed: int | None
    source: str = ""
    rejects: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "source": self.source,
            **{
                f"{name}_rows": len(part)
                for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test))
            },
            "train_positive_rate": float(self.train.labels.mean()) if len(self.train) else None,
            "fields": self.pipeline.describe(),
            "rejected_rows": sum(r["rejected"] for r in self.rejects),
        }


# -- MovieLens-1M as CTR ----------------------------------------------------------------------------
def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file (tab-separated, ``name:type`` header) with every column as a string."""
    frame = pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _read_grouplens(path: Path, names: list[str]) -> pd.DataFrame:
    return pd.read_csv(
        path, sep="::", engine="python", names=names, dtype=str, encoding="latin-1", keep_default_na=False
    )


def ml1m_ctr_schema() -> Schema:
    fields = [FieldSpec(n) for n in ("user_id", "item_id", "gender", "age", "occupation", "zip_code")]
    fields.append(FieldSpec("genres", "sequence", sep="|"))
    return Schema(fields, label="label")


def load_ml1m_ctr(data_dir: str | Path | None = None) -> CTRTable:
    """MovieLens-1M under the AutoInt protocol (ratings > 3 positive, < 3 negative, == 3 dropped)."""
    from recsys.data import resolve_dataset

    folder = resolve_dataset("ml-1m", data_dir)
    if (folder / "ml-1m.inter").is_file():
        inter = _read_atomic(folder / "ml-1m.inter")
        users = _read_atomic(folder / "ml-1m.user")
        items = _read_atomic(folder / "ml-1m.item")
        items["genres"] = items["genre"].str.split().str.join("|")
    elif (folder / "ratings.dat").is_file():
        inter = _read_grouplens(folder / "ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
        users = _read_grouplens(folder / "users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
        items = _read_grouplens(folder / "movies.dat", ["item_id", "title", "genres"])
    else:
        raise CTRDataError(f"{folder}: neither ml-1m.inter (RecBole) nor ratings.dat (GroupLens) found")
    rating = pd.to_numeric(inter["rating"], errors="coerce")
    if rating.isna().any():
        raise CTRDataError(f"{folder}: {int(rating.isna().sum())} ratings are not numbers")
    inter = inter.loc[rating != 3].copy()
    inter["label"] = (rating[rating != 3] > 3).astype(np.int8).to_numpy()
    for frame in (users,):  # ages/occupations are codes: "1.0" and "1" are the same token
        for column in ("age", "occupation"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64").astype(str)
    frame = inter[["user_id", "item_id", "label"]].merge(
        users[["user_id", "gender", "age", "occupation", "zip_code"]], on="user_id", how="left"
    )
    frame = frame.merge(items[["item_id", "genres"]], on="item_id", how="left")
    schema = ml1m_ctr_schema()
    frame = frame[[f.name for f in schema.fields] + ["label"]].reset_index(drop=True)
    return CTRTable(frame=frame, schema=schema, source=str(folder))


# -- names and paths --------------------------------------------------------------------------------
def load_ctr_table(name_or_path: str | Path, data_dir: str | Path | None = None, bad_rows: str = "error") -> CTRTable:
    """A CTR table by name (``CTR_DATASETS``) or path (a file, or a folder with train/valid/test files)."""
    text = str(name_or_path)
    if text == "ml-1m-ctr":
        return load_ml1m_ctr(data_dir)
    if text in SYNTHETIC:
        return make_synthetic_ctr(SYNTHETIC[text])[0]
    path = Path(text).expanduser()
    if not path.exists() and data_dir is not None and (Path(data_dir) / text).exists():
        path = Path(data_dir) / text
    if path.is_file():
        return read_ctr_file(path, bad_rows=bad_rows)
    if path.is_dir():
        return _read_split_folder(path, bad_rows)
    raise CTRDataError(
        f"CTR dataset {text!r} not found: not a known name ({', '.join(CTR_DATASETS)}) nor an existing path"
    )


def _read_split_folder(folder: Path, bad_rows: str) -> CTRTable:
    """A folder that ships its own split: train.*, valid.* (or dev.*/val.*) and test.* files."""
    parts: list[CTRTable] = []
    for stems in (("train",), ("valid", "val", "dev", "validation"), ("test",)):
        found = [p for p in sorted(folder.iterdir()) if p.is_file() and p.stem in stems and p.suffix in DATA_SUFFIXES]
        if not found:
            raise CTRDataError(f"{folder}: no {stems[0]} file ({'/'.join(stems)} with {'/'.join(DATA_SUFFIXES)})")
        parts.append(read_ctr_file(found[0], bad_rows=bad_rows))
    schemas = [p.schema.to_dict() for p in parts]
    if any(s != schemas[0] for s in schemas[1:]):
        raise CTRDataError(f"{folder}: train, valid and test files have different columns")
    fold = np.concatenate([np.full(len(p), i, dtype=np.int8) for i, p in enumerate(parts)])
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    return CTRTable(frame, parts[0].schema, str(folder), [r for p in parts for r in p.rejects], fold)


def random_split_folds(n: int, seed: int, ratios: tuple[float, ...] = SPLIT_RATIOS) -> np.ndarray:
    """A fold id per row (0 train, 1 valid, 2 test) from a seeded permutation in the given ratios."""
    if abs(sum(ratios) - 1.0) > 1e-9 or len(ratios) != 3:
        raise CTRDataError(f"split ratios must be three numbers summing to 1, got {ratios}")
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = round(ratios[0] * n), round(ratios[1] * n)
    fold = np.empty(n, dtype=np.int8)
    fold[order[:n_train]] = 0
    fold[order[n_train : n_train + n_valid]] = 1
    fold[order[n_train + n_valid :]] = 2
    return fold


def split_and_encode(
    table: CTRTable, split: str = "auto", seed: int = 2024, pipeline: FeaturePipeline | None = None
) -> CTRSplit:
    """Split ``table`` (``random`` 8:1:1 seeded, ``given`` folds, ``auto``: given when the data has folds),
    fit the pipeline on the train part only (or use a fitted ``pipeline``, e.g. a checkpoint's), encode all three."""
    if split in ("auto", "loo"):  # the ranking default: use the data's own split when it ships one
        split = "given" if table.fold is not None else "random"
    if split == "given":
        if table.fold is None:
            raise CTRDataError(f"{table.source}: split 'given' needs a folder with train/valid/test files")
        fold, protocol, used_seed = table.fold, "given", None
    elif split == "random":
        fold, protocol, used_seed = random_split_folds(len(table), seed), "random_8_1_1", seed
    else:
        raise CTRDataError(f"CTR split must be 'random' (8:1:1, seeded) or 'given', got {split!r}")
    parts = [table.frame.loc[fold == i].reset_index(drop=True) for i in range(3)]
    if len(parts[0]) == 0:
        raise CTRDataError(f"{table.source}: the training part is empty")
    if pipeline is None:
        pipeline = FeaturePipeline(table.schema).fit(parts[0])
    encoded = [pipeline.transform(p) for p in parts]
    return CTRSplit(
        *encoded,
        pipeline=pipeline,
        protocol=protocol,
        seed=used_seed,
        source=table.source,
        rejects=[r.to_dict() for r in table.rejects],
    )


def prepare_ctr_split(
    dataset: str | Path,
    data_dir: str | Path | None = None,
    split: str = "auto",
    seed: int = 2024,
    bad_rows: str = "error",
) -> CTRSplit:
    """Load ``dataset`` by name or path, split it and encode it (the pipeline sees the train part only)."""
    table = load_ctr_table(dataset, data_dir, bad_rows)
    result = split_and_encode(table, split, seed)
    logger.info("CTR data %s: %s", dataset, result.info())
    return result
