"""The CTR feature pipeline: a schema of typed fields, fitted on train only, saved beside the model.

Field kinds (``FieldSpec.kind``):

- ``categorical``: one token per row. A vocabulary of the train tokens seen at least ``min_count`` times;
  index 0 is the out-of-vocabulary (OOV) bucket that rare and unseen tokens share. With ``hash_buckets > 0``
  tokens are hashed (CRC32) into ``1..hash_buckets`` instead, and no vocabulary is kept.
- ``numeric``: one number per row. ``transform="standard"`` (z-score with the train mean and std; a missing
  value becomes the train mean, i.e. 0), ``"minmax"`` (train min/max to [0, 1]), ``"none"``, or
  ``"log_bin"``: the Criteo recipe of the Kaggle winners and FuxiCTR (``floor(ln(v)^2)`` for v > 2, else
  ``int(v)``), after which the field is treated as categorical (missing values get their own token).
- ``sequence``: several tokens per row joined by ``sep`` (genres, tags). Vocabulary as for categorical, but
  index 0 is padding and 1 is OOV; rows are cut/padded to ``max_len`` (0: the longest train row, at most
  ``MAX_SEQUENCE_LEN``). Models mean-pool the embeddings of the non-padding tokens.

``FeaturePipeline.fit(frame)`` learns vocabularies and statistics from the training frame only;
``transform(frame)`` turns any frame into an :class:`EncodedCTR` of arrays; ``save(path)`` / ``load(path)``
write and read one JSON file (``features.json`` next to a checkpoint), so a loaded model encodes new rows
exactly as at training time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys.data.dataset import DataError
from recsys.sampling import TrainingData

logger = logging.getLogger(__name__)

FEATURES_NAME = "features.json"
KINDS = ("categorical", "numeric", "sequence")
NUMERIC_TRANSFORMS = ("standard", "minmax", "none", "log_bin")
MISSING_TOKEN = "<missing>"
MAX_SEQUENCE_LEN = 50


class CTRDataError(DataError):
    """CTR input that cannot be used as it is (bad rows, unknown fields, a malformed schema)."""


@dataclasses.dataclass
class FieldSpec:
    """One input field and how to encode it (see the module docstring)."""

    name: str
    kind: str = "categorical"
    min_count: int = 1
    hash_buckets: int = 0
    transform: str = "standard"  # numeric fields only
    sep: str = "|"  # sequence fields only
    max_len: int = 0  # sequence fields only; 0: longest train row (capped at MAX_SEQUENCE_LEN)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CTRDataError(f"field {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "numeric" and self.transform not in NUMERIC_TRANSFORMS:
            raise CTRDataError(
                f"field {self.name!r}: transform must be one of {NUMERIC_TRANSFORMS}, got {self.transform!r}"
            )
        if self.min_count < 1 or self.hash_buckets < 0 or self.max_len < 0:
            raise CTRDataError(f"field {self.name!r}: min_count >= 1, hash_buckets >= 0 and max_len >= 0 required")

    @property
    def encoded_kind(self) -> str:
        """How the model sees the field: log-binned numbers are categorical."""
        if self.kind == "numeric" and self.transform == "log_bin":
            return "categorical"
        return self.kind


@dataclasses.dataclass
class Schema:
    """The label column and the ordered input fields of a CTR table."""

    fields: list[FieldSpec]
    label: str = "label"

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise CTRDataError(f"schema: duplicate field names {sorted({n for n in names if names.count(n) > 1})}")
        if self.label in names:
            raise CTRDataError(f"schema: the label {self.label!r} is also listed as a field")
        if not self.fields:
            raise CTRDataError("schema: no input fields")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "fields": [dataclasses.asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "schema") -> Schema:
        """Accept ``{"label": ..., "fields": [{"name", "kind"/"type", ...}]}`` or ``"fields": {name: type}``."""
        if not isinstance(data, dict) or "fields" not in data:
            raise CTRDataError(f"{source}: expected a mapping with 'fields' (and optionally 'label')")
        raw = data["fields"]
        if isinstance(raw, dict):
            raw = [{"name": k, **(v if isinstance(v, dict) else {"kind": v})} for k, v in raw.items()]
        fields = []
        known = {f.name for f in dataclasses.fields(FieldSpec)}
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or "name" not in item:
                raise CTRDataError(f"{source}: fields[{i}] needs a 'name'")
            item = dict(item)
            if "type" in item:
                item["kind"] = item.pop("type")
            unknown = set(item) - known
            if unknown:
                raise CTRDataError(f"{source}: fields[{i}] ({item['name']}): unknown keys {sorted(unknown)}")
            fields.append(FieldSpec(**item))
        return cls(fields=fields, label=str(data.get("label", "label")))


@dataclasses.dataclass
class EncodedCTR:
    """A CTR table after the pipeline: int64 ``categorical`` [N, C], float32 ``numeric`` [N, M], one int64
    ``sequences[name]`` [N, L] per sequence field, float32 ``labels`` [N]."""

    categorical: np.ndarray
    numeric: np.ndarray
    sequences: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> EncodedCTR:
        return EncodedCTR(
            self.categorical[index],
            self.numeric[index],
            {k: v[index] for k, v in self.sequences.items()},
            self.labels[index],
        )

    def batch(self, index: np.ndarray | slice) -> dict[str, torch.Tensor]:
        """The rows ``index`` as the batch dict every CTR model's ``loss``/``predict`` reads."""
        out = {
            "categorical": torch.from_numpy(np.ascontiguousarray(self.categorical[index])),
            "numeric": torch.from_numpy(np.ascontiguousarray(self.numeric[index])),
            "labels": torch.from_numpy(np.ascontiguousarray(self.labels[index])),
        }
        for name, values in self.sequences.items():
            out[f"sequence:{name}"] = torch.from_numpy(np.ascontiguousarray(values[index]))
        return out


class CTRBatchDataset(TrainingData):
    """Map-style dataset whose ``__getitems__`` returns one whole batch dict (see recsys.sampling)."""

    def __init__(self, data: EncodedCTR) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.data.batch(np.asarray([index]))

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.data.batch(np.asarray(indices, dtype=np.int64))


def log_bin(values: np.ndarray) -> np.ndarray:
    """Criteo log-binning as tokens: ``floor(ln(v)^2)`` for v > 2, ``int(v)`` otherwise, missing kept apart."""
    out = np.full(values.shape, MISSING_TOKEN, dtype=object)
    ok = ~np.isnan(values)
    v = values[ok]
    big = v > 2
    binned = np.where(big, np.floor(np.log(np.where(big, v, 3.0)) ** 2), np.trunc(v)).astype(np.int64)
    out[ok] = binned.astype(str)
    return out


def _tokens(series: pd.Series) -> np.ndarray:
    """A column as string tokens; missing values (NaN, empty) become MISSING_TOKEN."""
    values = series.astype(object).to_numpy(dtype=object).copy()
    values[pd.isna(values) | (values == "")] = MISSING_TOKEN  # before astype(str): fixed-width strings truncate
    return values.astype(str)


def _hash(tokens: np.ndarray, buckets: int) -> np.ndarray:
    """Stable (process-independent) hashing of tokens into 1..buckets."""
    return np.fromiter((zlib.crc32(t.encode()) % buckets + 1 for t in tokens), dtype=np.int64, count=len(tokens))


def _numbers(series: pd.Series, field: str) -> np.ndarray:
    """A numeric column as float64; a value that is not a number is an error (readers report them first)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & series.notna().to_numpy() & (series.astype(str).str.strip() != "").to_numpy()
    if bad.any():
        first = series[bad].iloc[0]
        raise CTRDataError(f"field {field!r}: {int(bad.sum())} non-numeric values (first: {first!r})")
    return values


def _split_sequences(series: pd.Series, sep: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat tokens, row lengths) of a multi-valued column; empty/missing rows have length 0."""
    text = series.astype(object).where(series.notna(), "").astype(str)
    lists = [[t for t in row.split(sep) if t] if row else [] for row in text]
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    flat = np.asarray([t for row in lists for t in row], dtype=object).astype(str)
    return flat, lengths


def _vocabulary(tokens: np.ndarray, min_count: int) -> list[str]:
    """Tokens seen at least ``min_count`` times, most frequent first (ties by token, so it is deterministic)."""
    values, counts = np.unique(tokens, return_counts=True)
    keep = counts >= min_count
    order = np.lexsort((values[keep], -counts[keep]))
    return [str(v) for v in values[keep][order]]


def _lookup(tokens: np.ndarray, vocabulary: list[str], offset: int) -> np.ndarray:
    """Index of each token in ``vocabulary`` plus ``offset``; unknown tokens get ``offset - 1`` (the OOV slot)."""
    codes = pd.Index(vocabulary, dtype=object).get_indexer(tokens).astype(np.int64)
    return codes + offset


class FeaturePipeline:
    """Encode a CTR frame by a :class:`Schema`; fitted on training rows only (see the module docstring)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.state: dict[str, dict[str, Any]] = {}
        self.fitted = False

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> FeaturePipeline:
        """Learn vocabularies, statistics and sequence lengths from ``frame`` (the training part)."""
        self._check_columns(frame)
        for spec in self.schema.fields:
            column = frame[spec.name]
            if spec.kind == "numeric" and spec.transform != "log_bin":
                values = _numbers(column, spec.name)
                finite = values[~np.isnan(values)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                low = float(finite.min()) if finite.size else 0.0
                high = float(finite.max()) if finite.size else 1.0
                self.state[spec.name] = {"mean": mean, "std": std if std > 0 else 1.0, "min": low, "max": high}
            elif spec.kind == "sequence":
                flat, lengths = _split_sequences(column, spec.sep)
                max_len = spec.max_len or int(min(max(lengths.max(initial=1), 1), MAX_SEQUENCE_LEN))
                state = {"max_len": max_len}
                if not spec.hash_buckets:
                    state["vocabulary"] = _vocabulary(flat, spec.min_count)
                self.state[spec.name] = state
            else:
                tokens = self._categorical_tokens(column, spec)
                self.state[spec.name] = {} if spec.hash_buckets else {"vocabulary": _vocabulary(tokens, spec.min_count)}
        self.fitted = True
        logger.info("feature pipeline fitted on %d rows: %s", len(frame), self.describe())
        return self

    def _categorical_tokens(self, column: pd.Series, spec: FieldSpec) -> np.ndarray:
        if spec.kind == "numeric":  # log_bin
            return log_bin(_numbers(column, spec.name))
        return _tokens(column)

    def _check_columns(self, frame: pd.DataFrame) -> None:
        missing = [f.name for f in self.schema.fields if f.name not in frame.columns]
        if missing:
            raise CTRDataError(f"columns {missing} of the schema are missing; the table has {list(frame.columns)}")

    # -- encoding ---------------------------------------------------------------------------------
    def vocab_size(self, spec: FieldSpec) -> int:
        """Rows of the field's embedding table (OOV and, for sequences, padding included)."""
        reserved = 2 if spec.kind == "sequence" else 1
        if spec.hash_buckets:
            return spec.hash_buckets + reserved
        return len(self.state[spec.name]["vocabulary"]) + reserved

    def layout(self) -> list[dict[str, Any]]:
        """What a model needs to build its embeddings: per field its name, encoded kind and table size."""
        self._require_fit()
        out = []
        for spec in self.schema.fields:
            kind = spec.encoded_kind
            item: dict[str, Any] = {"name": spec.name, "kind": kind}
            if kind != "numeric":
                item["vocab_size"] = self.vocab_size(spec)
            if kind == "sequence":
                item["max_len"] = self.state[spec.name]["max_len"]
            out.append(item)
        return out

    def transform(self, frame: pd.DataFrame, labels: bool = True) -> EncodedCTR:
        """Encode ``frame``; unseen or rare tokens go to the OOV slot. ``labels=False`` for unlabelled rows."""
        self._require_fit()
        self._check_columns(frame)
        n = len(frame)
        categorical, numeric, sequences = [], [], {}
        for spec in self.schema.fields:
            column = frame[spec.name]
            state = self.state[spec.name]
            kind = spec.encoded_kind
            if kind == "numeric":
                values = _numbers(column, spec.name)
                if spec.transform == "standard":
                    values = (values - state["mean"]) / state["std"]
                    values = np.where(np.isnan(values), 0.0, values)
                elif spec.transform == "minmax":
                    span = (state["max"] - state["min"]) or 1.0
                    values = np.where(np.isnan(values), state["mean"], values)
                    values = (values - state["min"]) / span
                else:
                    values = np.where(np.isnan(values), state["mean"], values)
                numeric.append(values.astype(np.float32))
            elif kind == "sequence":
                flat, lengths = _split_sequences(column, spec.sep)
                codes = (
                    _hash(flat, spec.hash_buckets) + 1 if spec.hash_buckets else _lookup(flat, state["vocabulary"], 2)
                )
                sequences[spec.name] = _pad(codes, lengths, state["max_len"])
            else:
                tokens = self._categorical_tokens(column, spec)
                codes = (
                    _hash(tokens, spec.hash_buckets) if spec.hash_buckets else _lookup(tokens, state["vocabulary"], 1)
                )
                categorical.append(codes)
        if labels:
            if self.schema.label not in frame.columns:
                raise CTRDataError(f"label column {self.schema.label!r} missing; the table has {list(frame.columns)}")
            y = frame[self.schema.label].to_numpy()
            if not np.isin(y, (0, 1)).all():
                raise CTRDataError(f"label column {self.schema.label!r}: values other than 0/1")
            y = y.astype(np.float32)
        else:
            y = np.full(n, np.nan, dtype=np.float32)
        return EncodedCTR(
            categorical=np.stack(categorical, axis=1) if categorical else np.zeros((n, 0), dtype=np.int64),
            numeric=np.stack(numeric, axis=1) if numeric else np.zeros((n, 0), dtype=np.float32),
            sequences=sequences,
            labels=y,
        )

    def fit_transform(self, frame: pd.DataFrame) -> EncodedCTR:
        return self.fit(frame).transform(frame)

    def describe(self) -> str:
        parts = []
        for item in self.layout():
            size = f"[{item['vocab_size']}]" if "vocab_size" in item else ""
            parts.append(f"{item['name']}:{item['kind']}{size}")
        return ", ".join(parts)

    def _require_fit(self) -> None:
        if not self.fitted:
            raise CTRDataError("the feature pipeline is not fitted; call fit(train_frame) first")

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._require_fit()
        return {"format": "recagents-ctr-features/1", "schema": self.schema.to_dict(), "state": self.state}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = FEATURES_NAME) -> FeaturePipeline:
        if not isinstance(data, dict) or "schema" not in data or "state" not in data:
            raise CTRDataError(f"{source}: not a feature pipeline file (needs 'schema' and 'state')")
        pipeline = cls(Schema.from_dict(data["schema"], source))
        missing = [f.name for f in pipeline.schema.fields if f.name not in data["state"]]
        if missing:
            raise CTRDataError(f"{source}: no fitted state for fields {missing}")
        pipeline.state = data["state"]
        pipeline.fitted = True
        return pipeline

    def save(self, path: str | Path) -> Path:
        from core.io import atomic_write_text

        path = Path(path)
        if path.is_dir():
            path = path / FEATURES_NAME
        atomic_write_text(path, json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        path = Path(path)
        if path.is_dir():
            path = path / FEATURES_NAME
        if not path.is_file():
            raise CTRDataError(f"{path}: feature pipeline file not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CTRDataError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def _pad(codes: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Rows of variable length (``codes`` flat, ``lengths`` per row) as a [N, max_len] array padded with 0."""
    n = lengths.size
    out = np.zeros((n, max_len), dtype=np.int64)
    if codes.size == 0:
        return out
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(codes.size) - np.repeat(starts, lengths)
    row = np.repeat(np.arange(n), lengths)
    keep = position < max_len
    out[row[keep], position[keep]] = codes[keep]
    return out


def stratified_counts(labels: np.ndarray) -> dict[str, float]:
    """Rows and positive rate of a label array (for logs and result files)."""
    n = int(labels.size)
    return {"rows": n, "positive_rate": float(labels.mean()) if n else math.nan}
