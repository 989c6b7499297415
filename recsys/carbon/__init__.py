"""Carbon-aware re-ranking and Pareto frontiers over a recommender's scores and a PCF labels file.

``python -m recsys.carbon sweep --checkpoint DIR [--checkpoint DIR2 ...] --labels LABELS.jsonl --out DIR``.
Meets ``agents.pcf`` only through the labels file (JSONL: ``item_id``, ``pcf_kg``); see ``labels.py``.
"""

from recsys.carbon.labels import (
    MISSING_POLICIES,
    UNCERTAINTY_VARIANTS,
    CarbonError,
    ItemPCF,
    LabelsError,
    align_pcf,
    labels_for_variant,
    read_id_map,
    read_pcf_labels,
    read_pcf_records,
)
from recsys.carbon.rerank import (
    PCF_SCALES,
    carbon_reduction_at_loss,
    lambda_grid,
    minmax_per_user,
    normalise_pcf,
    pareto_frontier,
    rerank,
    top_candidates,
)
from recsys.carbon.sweep import load_checkpoint, markdown_table, sweep_checkpoint, sweep_lambdas, write_reports

__all__ = [
    "MISSING_POLICIES",
    "PCF_SCALES",
    "UNCERTAINTY_VARIANTS",
    "CarbonError",
    "ItemPCF",
    "LabelsError",
    "align_pcf",
    "carbon_reduction_at_loss",
    "labels_for_variant",
    "lambda_grid",
    "load_checkpoint",
    "markdown_table",
    "minmax_per_user",
    "normalise_pcf",
    "pareto_frontier",
    "read_id_map",
    "read_pcf_labels",
    "read_pcf_records",
    "rerank",
    "sweep_checkpoint",
    "sweep_lambdas",
    "top_candidates",
    "write_reports",
]
