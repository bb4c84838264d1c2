"""Offline GLUE and SQuAD v1.1 metrics (``evaluate.load`` needs the network).

GLUE values are fractions in [0, 1] like HF ``evaluate``; SQuAD values are on the
official 0-100 scale. See :mod:`adaopt.metrics.glue` and :mod:`adaopt.metrics.squad`.
"""

from adaopt.metrics.glue import (
    GLUE_TASKS,
    accuracy,
    canonical_glue_task,
    f1,
    glue_metrics,
    matthews_corrcoef,
    pearson,
    spearman,
)
from adaopt.metrics.squad import (
    exact_match_score,
    f1_score,
    metric_max_over_ground_truths,
    normalize_answer,
    squad_metrics,
)

__all__ = [
    "GLUE_TASKS",
    "accuracy",
    "canonical_glue_task",
    "exact_match_score",
    "f1",
    "f1_score",
    "glue_metrics",
    "matthews_corrcoef",
    "metric_max_over_ground_truths",
    "normalize_answer",
    "pearson",
    "spearman",
    "squad_metrics",
]
