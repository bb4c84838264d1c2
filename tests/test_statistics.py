"""Tests of adaopt.statistics: the t-interval, the paired test and the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from adaopt.metrics import f1_score, glue_metrics, metric_max_over_ground_truths, squad_metrics
from adaopt.statistics import (
    bootstrap_draws,
    bootstrap_interval,
    bootstrap_statistics,
    confidence_interval,
    paired_difference,
)

# ----------------------------------------------------------------------------- the t-interval


def hand_interval(values: list[float], level: float) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
@pytest.mark.parametrize("values", [[0.8, 0.9], [0.81, 0.85, 0.79, 0.9, 0.88], [-1.0, 2.0, 0.5]])
def test_confidence_interval_matches_a_hand_t_interval(values: list[float], level: float) -> None:
    assert confidence_interval(np.array(values), level) == pytest.approx(
        hand_interval(values, level), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("values", [[], [0.7], [0.7, math.nan], [math.inf, math.nan]])
def test_confidence_interval_is_nan_with_fewer_than_two_finite_values(values) -> None:
    low, high = confidence_interval(np.array(values, dtype=float))
    assert math.isnan(low) and math.isnan(high)


def test_confidence_interval_of_identical_values_is_the_value() -> None:
    assert confidence_interval(np.array([0.75, 0.75, 0.75])) == (0.75, 0.75)


# ----------------------------------------------------------------------------- paired test


def test_identical_runs_differ_by_exactly_zero_with_a_zero_width_interval() -> None:
    scores = np.array([0.812, 0.797, 0.833])
    result = paired_difference(scores, scores.copy())
    assert (result.mean, result.low, result.high, result.pairs) == (0.0, 0.0, 0.0, 3)
    assert math.isnan(result.p_value)


def test_a_planted_difference_is_detected_with_its_sign() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0.80, 0.02, size=5)
    better = reference + 0.03 + rng.normal(0, 0.002, size=5)
    up, down = paired_difference(better, reference), paired_difference(reference, better)
    assert up.p_value < 0.001 and up.low > 0 and up.mean == pytest.approx(0.03, abs=0.003)
    assert down.high < 0 and down.mean == pytest.approx(-up.mean)
    assert down.p_value == pytest.approx(up.p_value)


def test_paired_difference_is_scipys_paired_t_test() -> None:
    a, b = np.array([0.71, 0.75, 0.70, 0.78]), np.array([0.70, 0.72, 0.71, 0.74])
    expected = stats.ttest_rel(a, b)
    result = paired_difference(a, b, 0.9)
    assert result.p_value == pytest.approx(expected.pvalue)
    interval = expected.confidence_interval(0.9)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))
    assert result.mean == pytest.approx(np.mean(a - b))


def test_pairs_need_both_runs_finished() -> None:
    """Seed 1 of one side and seed 2 of the other diverged (NaN): one pair is left."""
    result = paired_difference(np.array([0.8, math.nan, 0.7]), np.array([0.7, 0.7, math.nan]))
    assert result.pairs == 1 and result.mean == pytest.approx(0.1)
    assert math.isnan(result.low) and math.isnan(result.high) and math.isnan(result.p_value)
    none = paired_difference(np.array([math.nan]), np.array([0.5]))
    assert none.pairs == 0 and math.isnan(none.mean)


# ----------------------------------------------------------------------------- bootstrap


def slow_statistics(task: str, metric: str, predictions: np.ndarray, labels: np.ndarray,
                    seeds: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """The definition, one draw at a time: resample, score with glue_metrics, average seeds."""
    return np.array([
        np.mean([glue_metrics(task, predictions[seed][rows], labels[rows])[metric]
                  for seed in draw_seeds])
        for draw_seeds, rows in zip(seeds, examples, strict=True)
    ])


def classification_case(n: int = 30, seeds: int = 3, classes: int = 2, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    right = rng.random((seeds, n)) < 0.75
    return np.where(right, labels, rng.integers(0, classes, (seeds, n))), labels


@pytest.mark.parametrize(("task", "metric", "classes"), [
    ("sst2", "accuracy", 2), ("mrpc", "f1", 2), ("cola", "matthews_correlation", 2),
    ("mnli", "accuracy", 3),
])
def test_bootstrap_matches_a_slow_reference(task: str, metric: str, classes: int) -> None:
    predictions, labels = classification_case(classes=classes)
    draws = bootstrap_draws(3, 30, 50, seed=4)
    fast = bootstrap_statistics(metric, predictions, labels, draws)
    slow = slow_statistics(task, metric, predictions, labels, draws.seeds, draws.examples)
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-12)


def test_multiclass_matthews_matches_the_reference() -> None:
    predictions, labels = classification_case(classes=3, seed=2)
    draws = bootstrap_draws(3, 30, 40, seed=1)
    fast = bootstrap_statistics("matthews_correlation", predictions, labels, draws)
    slow = slow_statistics("cola", "matthews_correlation", predictions, labels, draws.seeds,
                           draws.examples)
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-12)


def test_pearson_bootstrap_matches_the_reference() -> None:
    rng = np.random.default_rng(3)
    labels = rng.uniform(0, 5, 25)
    predictions = labels + rng.normal(0, 1, (2, 25))
    draws = bootstrap_draws(2, 25, 40, seed=5)
    fast = bootstrap_statistics("pearson", predictions, labels, draws)
    slow = slow_statistics("stsb", "pearson", predictions, labels, draws.seeds, draws.examples)
    assert fast == pytest.approx(slow, rel=1e-9)


def test_squad_bootstrap_is_the_metric_on_resampled_questions() -> None:
    gold = {f"q{i}": [f"answer {i} here", f"answer {i}"] for i in range(12)}
    runs = [{qid: answers[0] if i % (seed + 2) else "answer" for i, (qid, answers)
             in enumerate(gold.items())} for seed in range(2)]
    scores = np.array([[100 * metric_max_over_ground_truths(f1_score, run[qid], answers)
                        for qid, answers in gold.items()] for run in runs])
    draws = bootstrap_draws(2, 12, 30, seed=6)
    fast = bootstrap_statistics("mean", scores, None, draws)
    ids = list(gold)
    slow = [np.mean([squad_metrics({f"{k}": runs[seed][ids[i]] for k, i in enumerate(rows)},
                                   {f"{k}": gold[ids[i]] for k, i in enumerate(rows)})["f1"]
                     for seed in draw_seeds])
            for draw_seeds, rows in zip(draws.seeds, draws.examples, strict=True)]
    assert fast == pytest.approx(slow, rel=1e-9)


def test_bootstrap_interval_contains_the_mean_and_is_deterministic() -> None:
    predictions, labels = classification_case(n=200)
    mean = np.mean([glue_metrics("sst2", run, labels)["accuracy"] for run in predictions])
    low, high = bootstrap_interval("accuracy", predictions, labels, 0.95, 500)
    assert low < mean < high
    assert bootstrap_interval("accuracy", predictions, labels, 0.95, 500) == (low, high)
    assert bootstrap_interval("accuracy", predictions, labels, 0.95, 500, seed=1) != (low, high)


def test_bootstrap_interval_widens_when_the_dev_set_shrinks() -> None:
    predictions, labels = classification_case(n=800)
    low, high = bootstrap_interval("accuracy", predictions, labels, 0.95, 500)
    small_low, small_high = bootstrap_interval("accuracy", predictions[:, :100], labels[:100],
                                               0.95, 500)
    assert small_high - small_low > 1.5 * (high - low)


def test_bootstrap_interval_covers_more_than_the_seeds() -> None:
    """Seeds that agree exactly have a zero t-interval; the dev set still has its noise."""
    predictions, labels = classification_case(n=200, seeds=1)
    same = np.repeat(predictions, 3, axis=0)
    assert confidence_interval(np.full(3, 0.7)) == (0.7, 0.7)
    low, high = bootstrap_interval("accuracy", same, labels, 0.95, 300)
    assert high - low > 0.05


def test_bootstrap_without_a_finished_seed_is_nan() -> None:
    low, high = bootstrap_interval("accuracy", np.empty((0, 10)), np.zeros(10), 0.95, 100)
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_of_an_unknown_metric_says_which_it_knows() -> None:
    with pytest.raises(ValueError, match=r"spearmanr.*accuracy"):
        bootstrap_interval("spearmanr", np.zeros((1, 3)), np.zeros(3), 0.95, 100)
