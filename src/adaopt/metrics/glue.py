"""GLUE metrics, implemented here so that evaluation works offline.

``evaluate.load("glue", ...)`` needs the network, so we reimplement the metrics it uses
(scikit-learn's ``accuracy_score``, ``f1_score``, ``matthews_corrcoef`` and scipy's
``pearsonr``, ``spearmanr``) with numpy/scipy only. The test suite checks them against
those reference implementations.

Scale: every value is a fraction in [0, 1] (correlations in [-1, 1]), exactly as HF
``evaluate``'s GLUE metric reports them. Multiply by 100 yourself for paper-style tables.

Inputs: ``predictions`` are class ids (already arg-maxed) for classification tasks and
real-valued scores for STS-B; ``labels`` are the gold labels. Both must be 1-D
array-likes of equal, non-zero length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from adaopt.tasks import normalize_task_name

__all__ = [
    "GLUE_TASKS",
    "accuracy",
    "canonical_glue_task",
    "f1",
    "glue_metrics",
    "matthews_corrcoef",
    "pearson",
    "spearman",
]

MetricFn = Callable[[ArrayLike, ArrayLike], float]


def _check_pair(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Turn both inputs into 1-D arrays, failing loudly on shape mistakes.

    A silent broadcast (e.g. (n, 1) against (n,)) or a truncated batch would produce a
    plausible but wrong score, so we refuse anything but two equal-length vectors.
    """
    preds = np.asarray(predictions)
    labs = np.asarray(labels)
    for name, arr in (("predictions", preds), ("labels", labs)):
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D, got shape {arr.shape} (arg-max or squeeze logits first)"
            )
    if preds.shape[0] != labs.shape[0]:
        raise ValueError(
            f"predictions and labels must have the same length, "
            f"got {preds.shape[0]} and {labs.shape[0]}"
        )
    if preds.shape[0] == 0:
        raise ValueError("predictions and labels are empty; a metric needs at least one example")
    return preds, labs


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of examples whose prediction equals the label (sklearn ``accuracy_score``)."""
    preds, labs = _check_pair(predictions, labels)
    return float(np.mean(preds == labs))


def f1(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Binary F1 of the positive class 1 (sklearn ``f1_score`` defaults, as GLUE uses).

    Values must be 0/1 (bools allowed): MRPC and QQP are binary, and anything else means
    the caller forgot to arg-max. With no positive prediction and no positive label the
    score is undefined; like sklearn (``zero_division`` default) we return 0.0.
    """
    preds, labs = _check_pair(predictions, labels)
    for name, arr in (("predictions", preds), ("labels", labs)):
        bad = np.setdiff1d(np.unique(arr), [0, 1])
        if bad.size:
            raise ValueError(
                f"f1 is binary (positive class 1): {name} must contain only 0/1, "
                f"found {bad[:5].tolist()}"
            )
    pred_pos = preds == 1
    true_pos = labs == 1
    tp = int(np.sum(pred_pos & true_pos))
    fp = int(np.sum(pred_pos & ~true_pos))
    fn = int(np.sum(~pred_pos & true_pos))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else float(2 * tp / denom)


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multiclass R_K form, as sklearn) used for CoLA.

    Returns 0.0 when undefined (all labels or all predictions in one class), which is
    what sklearn and therefore HF ``evaluate`` report.
    """
    preds, labs = _check_pair(predictions, labels)
    _, codes = np.unique(np.concatenate([labs, preds]), return_inverse=True)
    codes = codes.reshape(-1)
    n = labs.shape[0]
    k = int(codes.max()) + 1
    confusion = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k)
    t_sum = confusion.sum(axis=1, dtype=np.float64)  # true-class counts
    p_sum = confusion.sum(axis=0, dtype=np.float64)  # predicted-class counts
    n_correct = np.trace(confusion, dtype=np.float64)
    n_samples = p_sum.sum()
    cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
    cov_ypyp = n_samples**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n_samples**2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def pearson(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Pearson correlation coefficient (scipy ``pearsonr`` statistic), used for STS-B.

    Needs at least two examples. If either input is constant the correlation is
    undefined and we return NaN, as scipy (and therefore HF ``evaluate``) does, so a
    collapsed regressor shows up as NaN rather than as a fake number.
    """
    preds, labs = _check_pair(predictions, labels)
    if preds.shape[0] < 2:
        raise ValueError("pearson/spearman need at least 2 examples")
    x = preds.astype(np.float64)
    y = labs.astype(np.float64)
    xm = x - x.mean()
    ym = y - y.mean()
    x_norm = np.linalg.norm(xm)
    y_norm = np.linalg.norm(ym)
    if x_norm == 0 or y_norm == 0:
        return float("nan")
    r = np.dot(xm / x_norm, ym / y_norm)
    return float(np.clip(r, -1.0, 1.0))


def spearman(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Spearman rank correlation: Pearson of the ranks, ties given their average rank.

    Same statistic as scipy ``spearmanr``; NaN when either input is constant.
    """
    preds, labs = _check_pair(predictions, labels)
    return pearson(rankdata(preds, method="average"), rankdata(labs, method="average"))


# The single table of official GLUE metrics: canonical task -> (HF key, function) pairs.
# Keys match HF ``evaluate.load("glue", task)`` output so results are interchangeable.
_ACC: tuple[tuple[str, MetricFn], ...] = (("accuracy", accuracy),)
_ACC_F1: tuple[tuple[str, MetricFn], ...] = (("accuracy", accuracy), ("f1", f1))
_GLUE_TABLE: Mapping[str, tuple[tuple[str, MetricFn], ...]] = MappingProxyType(
    {
        "cola": (("matthews_correlation", matthews_corrcoef),),
        "sst2": _ACC,
        "mrpc": _ACC_F1,
        "qqp": _ACC_F1,
        "stsb": (("pearson", pearson), ("spearmanr", spearman)),
        "mnli": _ACC,
        "mnli_matched": _ACC,
        "mnli_mismatched": _ACC,
        "qnli": _ACC,
        "rte": _ACC,
        "wnli": _ACC,
    }
)

#: Canonical task names accepted by :func:`glue_metrics` (HF ``glue`` config names).
GLUE_TASKS: tuple[str, ...] = tuple(_GLUE_TABLE)

# Spelling variants beyond case/separator differences ("SST-2", "STS_B" need no entry).
_EXTRA_ALIASES: Mapping[str, str] = {"mnlim": "mnli_matched", "mnlimm": "mnli_mismatched"}


_ALIASES: Mapping[str, str] = {normalize_task_name(t): t for t in GLUE_TASKS} | dict(_EXTRA_ALIASES)


def canonical_glue_task(task: str) -> str:
    """Map a user-facing task name ("SST-2", "STS-B", "CoLA", "mnli-mm") to its HF name."""
    canonical = _ALIASES.get(normalize_task_name(str(task)))
    if canonical is None:
        raise ValueError(f"unknown GLUE task {task!r}; known tasks: {', '.join(GLUE_TASKS)}")
    return canonical


def glue_metrics(task: str, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Official metric set for one GLUE task, keyed as HF ``evaluate`` keys it, in [0, 1]."""
    metrics = _GLUE_TABLE[canonical_glue_task(task)]
    return {key: fn(predictions, labels) for key, fn in metrics}
