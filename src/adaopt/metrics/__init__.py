"""Offline GLUE and SQuAD v1.1 metrics (the hub's ``evaluate`` metrics need the network).

GLUE values are fractions in [0, 1] like HF ``evaluate``; SQuAD values are on the
official 0-100 scale. See :mod:`adaopt.metrics.glue` and :mod:`adaopt.metrics.squad`.
The same metrics ship as local ``evaluate`` modules: ``evaluate.load(GLUE_METRIC_PATH, task)``
and ``evaluate.load(SQUAD_METRIC_PATH)`` (see :mod:`adaopt.metrics.modules`).
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
from adaopt.metrics.modules import GLUE_METRIC_PATH, SQUAD_METRIC_PATH, load_metric
from adaopt.metrics.squad import (
    exact_match_score,
    f1_score,
    metric_max_over_ground_truths,
    normalize_answer,
    squad_metrics,
)

__all__ = [
    "GLUE_METRIC_PATH",
    "GLUE_TASKS",
    "SQUAD_METRIC_PATH",
    "accuracy",
    "canonical_glue_task",
    "exact_match_score",
    "f1",
    "f1_score",
    "glue_metrics",
    "load_metric",
    "matthews_corrcoef",
    "metric_max_over_ground_truths",
    "normalize_answer",
    "pearson",
    "spearman",
    "squad_metrics",
]
