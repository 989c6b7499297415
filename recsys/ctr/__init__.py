"""Click-through-rate prediction: the feature pipeline, file readers, datasets and shared model layers.

See docs/ctr.md. Models live in ``recsys.models`` (``lr``, ``fm``, ``deepfm``, ``dcnv2``, ``mlp``, ``dsmlp``)
and train through the one Trainer (``python -m recsys.train --model dsmlp --dataset ml-1m-ctr``).
"""

from recsys.ctr.datasets import (
    CTR_DATASETS,
    CTRSplit,
    load_ctr_table,
    load_ml1m_ctr,
    prepare_ctr_split,
    random_split_folds,
    split_and_encode,
)
from recsys.ctr.features import (
    FEATURES_NAME,
    CTRBatchDataset,
    CTRDataError,
    EncodedCTR,
    FeaturePipeline,
    FieldSpec,
    Schema,
)
from recsys.ctr.readers import (
    CTRTable,
    RejectReport,
    read_avazu,
    read_criteo,
    read_ctr_file,
    read_libfm,
    read_schema,
    read_table,
)
from recsys.ctr.synthetic import SyntheticCTRConfig, make_synthetic_ctr

__all__ = [
    "CTR_DATASETS",
    "FEATURES_NAME",
    "CTRBatchDataset",
    "CTRDataError",
    "CTRSplit",
    "CTRTable",
    "EncodedCTR",
    "FeaturePipeline",
    "FieldSpec",
    "RejectReport",
    "Schema",
    "SyntheticCTRConfig",
    "load_ctr_table",
    "load_ml1m_ctr",
    "make_synthetic_ctr",
    "prepare_ctr_split",
    "random_split_folds",
    "read_avazu",
    "read_criteo",
    "read_ctr_file",
    "read_libfm",
    "read_schema",
    "read_table",
    "split_and_encode",
]
