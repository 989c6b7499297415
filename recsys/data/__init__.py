"""Interaction datasets: loaders for common formats, the name -> path registry, splits and k-core filtering.

``python -m recsys.data info NAME_OR_PATH`` prints a dataset's statistics as JSON.
"""

from recsys.data.dataset import DataError, IdMap, InteractionDataset, Split, UnknownIdError
from recsys.data.loaders import (
    build_dataset,
    load_atomic,
    load_atomic_benchmark,
    load_lightgcn,
    load_lightgcn_lastfm,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_csv,
    load_rechorus,
    load_sequence_lines,
    load_table,
)
from recsys.data.registry import DATASETS, data_roots, detect_format, load_dataset, load_path, resolve_dataset
from recsys.data.splits import (
    PROTOCOLS,
    given_split,
    kcore_filter,
    leave_one_out_split,
    make_split,
    random_split,
    temporal_split,
)

__all__ = [
    "DATASETS",
    "PROTOCOLS",
    "DataError",
    "IdMap",
    "InteractionDataset",
    "Split",
    "UnknownIdError",
    "build_dataset",
    "data_roots",
    "detect_format",
    "given_split",
    "kcore_filter",
    "leave_one_out_split",
    "load_atomic",
    "load_atomic_benchmark",
    "load_dataset",
    "load_lightgcn",
    "load_lightgcn_lastfm",
    "load_movielens_1m",
    "load_movielens_100k",
    "load_movielens_csv",
    "load_path",
    "load_rechorus",
    "load_sequence_lines",
    "load_table",
    "make_split",
    "random_split",
    "resolve_dataset",
    "temporal_split",
]
