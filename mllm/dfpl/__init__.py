"""DFPL: image-tabular classification robust to missing modalities (shared/specific prototypes, PFA, CMA).

from mllm.dfpl import DataSpec, ModelConfig, TrainConfig, load_split, train_model, evaluate
train, test = load_split(DataSpec(name="synthetic"))
model = train_model("dfpl", train, ModelConfig(), TrainConfig(train_missing_rate=0.5, train_missing_pattern="mixed"))
evaluate(model, test, rate=0.5, pattern="image", seed=0)  # {"accuracy": ..., "macro_f1": ...}
"""

from mllm.dfpl.data import MultimodalData, TableSchema, missing_masks
from mllm.dfpl.datasets import DataSpec, load_split
from mllm.dfpl.errors import DfplError
from mllm.dfpl.models import MODELS, ModelConfig, build_model
from mllm.dfpl.train import TrainConfig, evaluate, fit, train_model

__all__ = [
    "MODELS",
    "DataSpec",
    "DfplError",
    "ModelConfig",
    "MultimodalData",
    "TableSchema",
    "TrainConfig",
    "build_model",
    "evaluate",
    "fit",
    "load_split",
    "missing_masks",
    "train_model",
]
