"""Shared pieces of the sequential benchmark verbs: data presets, published anchors, model variants."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("benchmarks.sequential")

# Data presets: the data and preprocessing each anchor used, and the model's maximum sequence length.
PRESETS: dict[str, dict[str, Any]] = {
    "ml-100k": {"data": {"dataset": "ml-100k"}, "max_len": 50},
    # RecBole's sequential benchmark on ML-1M: ratings >= 3, 10-core users and items, history 50
    "ml-1m-recbole": {"data": {"dataset": "ml-1m", "min_rating": 3, "user_core": 10, "item_core": 10}, "max_len": 50},
    # HSTU's ML-1M table: every rating kept (ML-1M users already have >= 20), history 200
    "ml-1m-hstu": {"data": {"dataset": "ml-1m"}, "max_len": 200},
    "beauty": {"data": {"dataset": "beauty"}, "max_len": 50},
    "sports": {"data": {"dataset": "sports"}, "max_len": 50},
    "video-games": {"data": {"dataset": "video-games"}, "max_len": 50},
}

# Published full-ranking numbers (leave-one-out), with the ranking mask of their protocol (our eval_mask):
# RecBole masks the user's whole history, HSTU only the items of the model's input window. Sampled-metric
# tables (e.g. the SASRec paper's) are not comparable and are not listed.
_RECBOLE = {"source": "RecBole ML-1M benchmark", "eval_mask": "history"}

_HSTU = {"source": "HSTU repository ML-1M table", "eval_mask": "input"}

ANCHORS: dict[tuple[str, str], dict[str, Any]] = {
    ("ml-1m-recbole", "sasrec"): {"hr@10": 0.2468, "ndcg@10": 0.1286, **_RECBOLE},
    ("ml-1m-recbole", "gru4rec"): {"hr@10": 0.2776, "ndcg@10": 0.1545, **_RECBOLE},
    ("ml-1m-hstu", "sasrec"): {"hr@10": 0.2853, "ndcg@10": 0.1603, **_HSTU},
    # the same published row: their SASRec is trained with this loss
    ("ml-1m-hstu", "sasrec-sampled-softmax"): {"hr@10": 0.2853, "ndcg@10": 0.1603, **_HSTU},
    ("ml-1m-hstu", "hstu (theirs)"): {"hr@10": 0.3097, "ndcg@10": 0.1720, **_HSTU},
}

# Model variants: registered name and config overrides (SinkRec's ablations are config switches).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sasrec": ("sasrec", {}),
    "gru4rec": ("gru4rec", {}),
    # SASRec trained as the HSTU repository's baseline: sampled softmax over 128 uniform negatives on
    # L2-normalised embeddings, temperature 0.05 (configs/ml-1m/sasrec-sampled-softmax-n128-final.gin)
    "sasrec-sampled-softmax": (
        "sasrec",
        {"loss": "sampled_softmax", "n_neg": 128, "similarity": "cosine", "temperature": 0.05},
    ),
    "gdn": ("gdn", {}),
    "sinkrec": ("sinkrec", {}),
    "sinkrec-no-memory": ("sinkrec", {"use_memory": False}),
    "sinkrec-no-reinject": ("sinkrec", {"reinject": False}),
    "sinkrec-no-suppression": ("sinkrec", {"write_suppression": False}),
    "sinkrec-no-purification": ("sinkrec", {"readout_purification": False}),
    "sinkrec-no-temporal": ("sinkrec", {"temporal_gates": False}),
    # not an ablation: per-loop weights, the other loop form the paper allows (two distinct layers, as GDN)
    "sinkrec-per-loop": ("sinkrec", {"shared_loop_weights": False}),
    "sinkrec-data-init": ("sinkrec", {"codebook_init": "data"}),  # codebooks from the first batch
    "sinkrec-reinject-zero": ("sinkrec", {"reinject_init": "zero"}),  # re-injection starts switched off
    "sinkrec-pattern-norm": ("sinkrec", {"pattern_norm": True}),  # the RVQ quantises at a fixed scale
    # re-injection as a lookup: the main loss trains the chosen codes, not the local pattern
    "sinkrec-reinject-codebook": ("sinkrec", {"reinject_grad": "codebook"}),
}

METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")

QUALITY_COLUMNS = [
    "preset",
    "model",
    "seeds",
    *METRICS,
    "anchor_hr@10",
    "anchor_ndcg@10",
    "anchor_eval_mask",
    "epochs_run",
    "budget_stop",
]

ANCHORS_PAYLOAD = {f"{preset}/{model}": anchor for (preset, model), anchor in ANCHORS.items()}


def _result_name(kind: str, tag: str | None) -> str:
    return f"sequential_{kind}" + (f"_{tag}" if tag else "")
