"""GLUE metrics checked against scikit-learn and scipy (test-only oracles)."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

import adaopt.tasks
from adaopt.metrics import (
    GLUE_TASKS,
    accuracy,
    canonical_glue_task,
    f1,
    glue_metrics,
    matthews_corrcoef,
    pearson,
    spearman,
)
from adaopt.tasks import TASKS, TaskSpec, normalize_task_name

SEEDS = range(8)
TOL = 1e-12


def _classes(seed: int, n_classes: int = 2, n: int = 257) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_classes, n), rng.integers(0, n_classes, n)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_accuracy_matches_sklearn(seed: int, n_classes: int) -> None:
    preds, labels = _classes(seed, n_classes)
    expected = sklearn.metrics.accuracy_score(labels, preds)
    assert accuracy(preds, labels) == pytest.approx(expected, abs=TOL)
    assert accuracy(preds.tolist(), labels.tolist()) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_matches_sklearn(seed: int) -> None:
    preds, labels = _classes(seed)
    expected = sklearn.metrics.f1_score(labels, preds)
    assert f1(preds, labels) == pytest.approx(expected, abs=TOL)


def test_f1_degenerate_cases_match_sklearn() -> None:
    cases = [([0, 0, 0], [0, 0, 0]), ([1, 1, 1], [0, 0, 0]), ([0, 0], [1, 1]), ([1], [1])]
    for preds, labels in cases:
        expected = sklearn.metrics.f1_score(labels, preds, zero_division=0.0)
        assert f1(preds, labels) == pytest.approx(expected, abs=TOL)
    assert f1(np.array([True, False]), np.array([1, 0])) == 1.0


def test_f1_rejects_non_binary() -> None:
    with pytest.raises(ValueError, match="binary"):
        f1([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="labels"):
        f1([0, 1, 1], [0, 1, 2])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_mcc_matches_sklearn(seed: int, n_classes: int) -> None:
    preds, labels = _classes(seed, n_classes)
    expected = sklearn.metrics.matthews_corrcoef(labels, preds)
    assert matthews_corrcoef(preds, labels) == pytest.approx(expected, abs=TOL)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@pytest.mark.parametrize(
    ("preds", "labels"),
    [
        ([1, 1, 1, 1], [0, 1, 0, 1]),  # all predictions one class
        ([0, 1, 0, 1], [1, 1, 1, 1]),  # all labels one class
        ([0, 0, 0], [0, 0, 0]),  # everything one class
        ([1], [0]),
    ],
)
def test_mcc_undefined_is_zero_like_sklearn(preds: list[int], labels: list[int]) -> None:
    assert sklearn.metrics.matthews_corrcoef(labels, preds) == 0.0
    assert matthews_corrcoef(preds, labels) == 0.0


def test_mcc_perfect_and_inverse() -> None:
    assert matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0, abs=TOL)
    assert matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_pearson_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 5, 300)
    preds = labels + rng.normal(0, 1.5, 300)
    expected = scipy.stats.pearsonr(preds, labels).statistic
    assert pearson(preds, labels) == pytest.approx(expected, abs=TOL)
    assert pearson(preds.tolist(), labels.tolist()) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_spearman_with_ties_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, 300).astype(float)  # STS-B-like scores: many ties
    preds = np.round(labels + rng.normal(0, 1.5, 300))  # ties on this side too
    assert len(np.unique(labels)) < labels.size and len(np.unique(preds)) < preds.size
    expected = scipy.stats.spearmanr(preds, labels).statistic
    assert spearman(preds, labels) == pytest.approx(expected, abs=TOL)


def test_correlation_of_constant_input_is_nan() -> None:
    assert math.isnan(pearson([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]))
    assert math.isnan(spearman([0.0, 1.0, 2.0], [3.0, 3.0, 3.0]))
    with pytest.raises(ValueError, match="at least 2"):
        pearson([1.0], [2.0])


ALL_METRICS = [accuracy, f1, matthews_corrcoef, pearson, spearman]


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_validation(metric: Callable[..., float]) -> None:
    with pytest.raises(ValueError, match="same length"):
        metric([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match="1-D"):
        metric(np.zeros((3, 2)), np.zeros(3))


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_returns_python_float(metric: Callable[..., float]) -> None:
    value = metric(np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 1]))
    assert type(value) is float


EXPECTED_KEYS = {
    "cola": {"matthews_correlation"},
    "sst2": {"accuracy"},
    "mrpc": {"accuracy", "f1"},
    "qqp": {"accuracy", "f1"},
    "stsb": {"pearson", "spearmanr"},
    "mnli": {"accuracy"},
    "mnli_matched": {"accuracy"},
    "mnli_mismatched": {"accuracy"},
    "qnli": {"accuracy"},
    "rte": {"accuracy"},
    "wnli": {"accuracy"},
}


def test_task_table_covers_all_glue_tasks() -> None:
    assert set(GLUE_TASKS) == set(EXPECTED_KEYS)


@pytest.mark.parametrize(("task", "keys"), sorted(EXPECTED_KEYS.items()))
def test_glue_metrics_keys_and_values(task: str, keys: set[str]) -> None:
    preds, labels = _classes(3)
    result = glue_metrics(task, preds, labels)
    assert set(result) == keys
    assert all(type(v) is float for v in result.values())
    oracle = {
        "accuracy": sklearn.metrics.accuracy_score(labels, preds),
        "f1": sklearn.metrics.f1_score(labels, preds),
        "matthews_correlation": sklearn.metrics.matthews_corrcoef(labels, preds),
        "pearson": scipy.stats.pearsonr(preds, labels).statistic,
        "spearmanr": scipy.stats.spearmanr(preds, labels).statistic,
    }
    for key, value in result.items():
        assert value == pytest.approx(oracle[key], abs=TOL)
        assert -1.0 <= value <= 1.0  # fractions, not percentages


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("CoLA", "cola"),
        ("COLA", "cola"),
        ("SST-2", "sst2"),
        ("sst_2", "sst2"),
        ("STS-B", "stsb"),
        ("stsb", "stsb"),
        ("MRPC", "mrpc"),
        ("QQP", "qqp"),
        ("MNLI", "mnli"),
        ("MNLI-m", "mnli_matched"),
        ("mnli-mm", "mnli_mismatched"),
        ("mnli_mismatched", "mnli_mismatched"),
        ("QNLI", "qnli"),
        ("RTE", "rte"),
        ("WNLI", "wnli"),
    ],
)
def test_aliases(alias: str, canonical: str) -> None:
    assert canonical_glue_task(alias) == canonical
    preds, labels = _classes(0)
    assert glue_metrics(alias, preds, labels) == glue_metrics(canonical, preds, labels)


@pytest.mark.parametrize("task", ["squad", "sst", "mnli-x", ""])
def test_unknown_task_lists_known_tasks(task: str) -> None:
    with pytest.raises(ValueError, match="unknown GLUE task") as info:
        glue_metrics(task, [0, 1], [0, 1])
    for known in GLUE_TASKS:
        assert known in str(info.value)


@pytest.mark.parametrize("spec", [s for s in TASKS.values()
                                  if s.kind in ("classification", "regression")])
def test_glue_metrics_know_every_glue_task_of_the_task_table(spec: TaskSpec) -> None:
    """Both tables share one spelling rule, so each task's names resolve to the same task."""
    assert normalize_task_name(spec.release_dir) == spec.name
    assert canonical_glue_task(spec.release_dir) == spec.name
    assert canonical_glue_task(spec.name) == spec.name


def _imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, anywhere in it; relative ones keep their leading dots."""
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.append("." * node.level + (node.module or ""))
    return modules


def test_task_table_imports_nothing_from_adaopt() -> None:
    """adaopt.metrics imports adaopt.tasks; tasks being a leaf rules out an import cycle."""
    imported = _imported_modules(Path(adaopt.tasks.__file__))
    assert [m for m in imported if m.startswith((".", "adaopt"))] == []
