"""Multi-channel series for the channel-encoder audit: the synthetic benchmark, ETTh1, and train-only bins/scalers.

Bins and scalers are fitted on training rows only (``fit`` sees nothing else); the public code's leaks are kept
as explicit, labelled options: ``bins_fit="pooled"`` (quantile edges from train + validation series) and the
70/15/15 ETTh1 split (``split="public"``) beside the standard 12/4/4-month one (``split="standard"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys.data.dataset import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "ETTH1_COLUMNS",
    "ETTH1_SPLITS",
    "ChannelSplit",
    "QuantileBinner",
    "StandardScaler",
    "etth1_benchmark",
    "etth1_borders",
    "load_ett_csv",
    "synthetic_benchmark",
    "synthetic_outcome",
    "synthetic_series",
]

ETTH1_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETTH1_SPLITS = ("standard", "public")
LAG_SHORT, LAG_LONG = 3, 7


class QuantileBinner:
    """K equal-mass bins from quantiles of the values given to ``fit``; values outside clip to the end bins."""

    def __init__(self, n_bins: int = 32) -> None:
        if n_bins < 2:
            raise DataError(f"n_bins: need at least 2 bins, got {n_bins}")
        self.n_bins = n_bins
        self.edges: np.ndarray | None = None
        self.n_fitted = 0

    def fit(self, values: np.ndarray) -> QuantileBinner:
        """Edges at the 0, 1/K, ..., 1 quantiles of ``values`` (flattened)."""
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        if flat.size == 0 or not np.isfinite(flat).all():
            raise DataError("values: empty or non-finite values given to QuantileBinner.fit")
        self.edges = np.quantile(flat, np.linspace(0.0, 1.0, self.n_bins + 1))
        self.n_fitted = flat.size
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Bin index in [0, K) of every value (int64, same shape)."""
        if self.edges is None:
            raise DataError("QuantileBinner: call fit before transform")
        # inner edges only: a value equal to an edge goes to the upper bin, as np.digitize does
        return np.searchsorted(self.edges[1:-1], np.asarray(values), side="right").astype(np.int64)


class StandardScaler:
    """Per-column mean and standard deviation of the rows given to ``fit``."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.n_fitted = 0

    def fit(self, rows: np.ndarray) -> StandardScaler:
        """Column statistics of ``rows`` (n, C)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] < 2:
            raise DataError(f"rows: StandardScaler.fit needs an (n >= 2, C) array, got shape {rows.shape}")
        self.mean = rows.mean(axis=0)
        self.std = rows.std(axis=0)
        self.std[self.std == 0] = 1.0
        self.n_fitted = rows.shape[0]
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """(rows - mean) / std as float32."""
        if self.mean is None or self.std is None:
            raise DataError("StandardScaler: call fit before transform")
        return ((np.asarray(rows, dtype=np.float64) - self.mean) / self.std).astype(np.float32)


@dataclass
class ChannelSplit:
    """Inputs (n, T, C) float32 and target bins (n, T) int64 per part, with how they were made."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    binner: QuantileBinner | None = None
    params: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        """C."""
        return int(self.train_x.shape[-1])


# ----------------------------------------------------------------------------------------------- synthetic


def synthetic_series(steps: int, rng: np.random.Generator, n_modes: int = 3) -> np.ndarray:
    """One channel: 3 sinusoids (frequency U[0.005, 0.08], amplitude U[0.5, 1.5], random phase) + AR(1), z-scored."""
    t = np.arange(steps)
    signal = np.zeros(steps)
    for _ in range(n_modes):
        frequency, phase, amplitude = rng.uniform(0.005, 0.08), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
        signal += amplitude * np.sin(2 * np.pi * frequency * t + phase)
    shocks = rng.normal(0.0, 0.3, size=steps)
    noise = np.zeros(steps)
    for i in range(1, steps):
        noise[i] = 0.85 * noise[i - 1] + shocks[i]
    signal += noise
    return ((signal - signal.mean()) / (signal.std() + 1e-6)).astype(np.float32)


def synthetic_outcome(signals: np.ndarray) -> np.ndarray:
    """y_t = tanh(s0(t-3) s1(t)) + 0.6 sin(1.3 s2(t-7)) + 0.4 1[s3(t) > 0] s0(t), y_t = 0 for t < 7; (C, T) -> (T,)."""
    if signals.shape[0] < 4:
        raise DataError(f"signals: the outcome needs >= 4 channels, got {signals.shape[0]}")
    s = signals
    steps = s.shape[1]
    y = np.zeros(steps, dtype=np.float32)
    y[LAG_LONG:] = (
        np.tanh(s[0, LAG_LONG - LAG_SHORT : steps - LAG_SHORT] * s[1, LAG_LONG:])
        + 0.6 * np.sin(1.3 * s[2, : steps - LAG_LONG])
        + 0.4 * (s[3, LAG_LONG:] > 0.0) * s[0, LAG_LONG:]
    )
    return y


def synthetic_benchmark(
    n_channels: int = 4,
    n_series: int = 512,
    steps: int = 160,
    n_bins: int = 32,
    valid_fraction: float = 0.1,
    seed: int = 0,
    bins_fit: str = "train",
) -> ChannelSplit:
    """The synthetic benchmark: channels >= 4 are distractors; 90/10 series split; bins on train (or pooled)."""
    if bins_fit not in ("train", "pooled"):
        raise DataError(f"bins_fit: expected 'train' or 'pooled', got {bins_fit!r}")
    rng = np.random.default_rng(seed)
    signals = np.stack([np.stack([synthetic_series(steps, rng) for _ in range(n_channels)]) for _ in range(n_series)])
    outcomes = np.stack([synthetic_outcome(s) for s in signals])
    n_valid = round(n_series * valid_fraction)
    order = rng.permutation(n_series)
    train_idx, valid_idx = np.sort(order[n_valid:]), np.sort(order[:n_valid])
    fit_values = outcomes[train_idx] if bins_fit == "train" else outcomes[np.concatenate([train_idx, valid_idx])]
    binner = QuantileBinner(n_bins).fit(fit_values)
    x = signals.transpose(0, 2, 1).copy()
    bins = binner.transform(outcomes)
    return ChannelSplit(
        name="synthetic",
        train_x=x[train_idx],
        train_y=bins[train_idx],
        valid_x=x[valid_idx],
        valid_y=bins[valid_idx],
        binner=binner,
        params={
            "n_channels": n_channels,
            "n_series": n_series,
            "steps": steps,
            "n_bins": n_bins,
            "n_train": len(train_idx),
            "n_valid": len(valid_idx),
            "data_seed": seed,
            "bins_fit": bins_fit,
        },
    )


# ------------------------------------------------------------------------------------------------- ETTh1


def load_ett_csv(path: str | Path, columns: tuple[str, ...] = ETTH1_COLUMNS) -> np.ndarray:
    """The chosen columns of an ETT csv as (rows, C) float64, checking the header and every value."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such ETT file")
    with path.open() as handle:
        header = handle.readline().strip().split(",")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: line 1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    index = [header.index(c) for c in columns]
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=index, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: unreadable value ({exc})") from exc
    bad = np.argwhere(~np.isfinite(table))
    if bad.size:
        row, col = bad[0]
        raise DataError(f"{path}: line {row + 2}: field {columns[col]} is not finite")
    return table


def etth1_borders(n_rows: int, split: str = "standard") -> tuple[int, int, int]:
    """End rows of train / valid / test: 12/4/4 months (8640, 11520, 14400) or the public code's 70/15/15."""
    if split == "standard":
        borders = (12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24)
    elif split == "public":
        borders = (int(0.7 * n_rows), int(0.85 * n_rows), n_rows)
    else:
        raise DataError(f"split: expected one of {', '.join(ETTH1_SPLITS)}, got {split!r}")
    if borders[-1] > n_rows:
        raise DataError(f"split: {split} needs {borders[-1]} rows, the file has {n_rows}")
    return borders


def _windows(rows: np.ndarray, steps: int, stride: int) -> np.ndarray:
    starts = range(0, rows.shape[0] - steps + 1, stride)
    return np.stack([rows[s : s + steps] for s in starts])


def etth1_benchmark(
    path: str | Path,
    split: str = "standard",
    steps: int = 160,
    stride: int = 8,
    n_bins: int = 32,
    target: str = "OT",
) -> ChannelSplit:
    """ETTh1: 7 standardised variates in, the next step's ``target`` bin out; scaler and bins on train rows only."""
    table = load_ett_csv(path)
    train_end, valid_end, test_end = etth1_borders(table.shape[0], split)
    scaler = StandardScaler().fit(table[:train_end])
    scaled = scaler.transform(table[:test_end])
    target_col = ETTH1_COLUMNS.index(target)
    binner = QuantileBinner(n_bins).fit(scaled[:train_end, target_col])
    bins = binner.transform(scaled[:, target_col])
    parts = {}
    for part, (lo, hi) in {
        "train": (0, train_end),
        "valid": (train_end, valid_end),
        "test": (valid_end, test_end),
    }.items():
        parts[f"{part}_x"] = _windows(scaled[lo:hi], steps, stride)
        parts[f"{part}_y"] = _windows(bins[lo:hi], steps, stride)
    logger.info("ETTh1 %s split: %s", split, {k: v.shape for k, v in parts.items()})
    return ChannelSplit(
        name="etth1",
        binner=binner,
        params={
            "path": str(path),
            "split": split,
            "borders": [train_end, valid_end, test_end],
            "steps": steps,
            "stride": stride,
            "n_bins": n_bins,
            "target": target,
            "scaler_rows": scaler.n_fitted,
            "bin_rows": binner.n_fitted,
        },
        **parts,
    )
