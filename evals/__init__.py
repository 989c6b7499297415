"""Evaluation: pure metric functions (`evals.metrics`) and the full-ranking evaluator (`evals.ranking`)."""

from evals.metrics import MetricError
from evals.ranking import evaluate_full_ranking, evaluate_sampled_ranking

__all__ = ["MetricError", "evaluate_full_ranking", "evaluate_sampled_ranking"]
