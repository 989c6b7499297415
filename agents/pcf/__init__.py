"""Product-carbon-footprint (PCF) estimation and the labelling batch job.

Reference products (the Carbon Catalogue) are indexed into the shared store; a target product gets its k
most similar references, a few-shot LLM estimate that is parsed and validated, and a fallback: the
hierarchical estimator (category prior + neighbour shrinkage, with a calibrated interval and plausibility
flags; ``hierarchy.py``) or plain kNN. See
``python -m agents.pcf --help`` and docs/CONTRACTS.md (section agents.pcf) for the labels-file format.
"""

from __future__ import annotations

from agents.pcf.attributes import ATTRIBUTE_COLUMNS, attributes_from_record, parse_quantities
from agents.pcf.errors import LLMAnswerError, PCFDataError, PCFError
from agents.pcf.estimate import (
    MatrixNeighbours,
    Neighbour,
    PCFEstimator,
    PCFLabel,
    StoreNeighbours,
    TargetItem,
    build_messages,
    knn_confidence,
    knn_estimate,
    parse_llm_answer,
    validate_estimate,
)
from agents.pcf.hierarchy import HierarchicalEstimate, HierarchicalPCF
from agents.pcf.reference import (
    REFERENCE_COLLECTION,
    ReferenceProduct,
    SectorStats,
    assign_groups,
    index_references,
    load_carbon_catalogue,
)

__all__ = [
    "ATTRIBUTE_COLUMNS",
    "REFERENCE_COLLECTION",
    "HierarchicalEstimate",
    "HierarchicalPCF",
    "LLMAnswerError",
    "MatrixNeighbours",
    "Neighbour",
    "PCFDataError",
    "PCFError",
    "PCFEstimator",
    "PCFLabel",
    "ReferenceProduct",
    "SectorStats",
    "StoreNeighbours",
    "TargetItem",
    "assign_groups",
    "attributes_from_record",
    "build_messages",
    "index_references",
    "knn_confidence",
    "knn_estimate",
    "load_carbon_catalogue",
    "parse_llm_answer",
    "parse_quantities",
    "validate_estimate",
]
