"""Tests of adaopt.statistics: the t-interval, the paired test, the bootstrap, and the verdicts
of the paired bootstrap with Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from adaopt.metrics import f1_score, glue_metrics, metric_max_over_ground_truths, squad_metrics
from adaopt.statistics import (
    BETTER,
    EQUIVALENT,
    IDENTICAL,
    INCONCLUSIVE,
    UNTESTED,
    WORSE,
    PairedComparison,
    bootstrap_draws,
    bootstrap_interval,
    bootstrap_statistics,
    confidence_interval,
    decide,
    detectable_difference,
    holm,
    paired_bootstrap,
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


def test_a_constant_nonzero_difference_has_no_t_test_p_value() -> None:
    """Every seed 0.01 ahead: the spread is zero and t is d/0. An infinite t's p of 0 would make
    the smallest constant difference look certain, so the p-value is NaN (no test)."""
    reference = np.array([0.80, 0.78, 0.83])
    result = paired_difference(reference + 0.01, reference)
    assert math.isnan(result.p_value) and result.pairs == 3
    assert result.mean == result.low == result.high == pytest.approx(0.01)


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


# ----------------------------------------------------------------------------- verdicts

N = 200
LABELS = np.random.default_rng(0).integers(0, 2, N)
SAMPLES = 1000
ALPHA = 0.05


def runs(accuracy: float, seed: int, seeds: int = 3) -> np.ndarray:
    """``seeds`` runs' predictions on :data:`LABELS`, each right with probability ``accuracy``."""
    right = np.random.default_rng(seed).random((seeds, N)) < accuracy
    return np.where(right, LABELS, 1 - LABELS)


def compare(a: np.ndarray, b: np.ndarray, margin: float | None = None,
            metric: str = "accuracy") -> PairedComparison:
    labels = None if metric == "mean" else LABELS
    return paired_bootstrap(metric, a, b, labels, 1 - ALPHA, SAMPLES, margin)


def test_a_constant_difference_on_two_examples_is_not_better() -> None:
    """Every seed right on the same 2 of 200 examples where the reference is wrong: the runs
    differ by exactly 0.01 on every seed (a t-test has zero spread), but another dev set of 200
    examples misses both of them about one time in seven, so nothing is shown."""
    reference = runs(0.75, seed=1)
    both_wrong = np.flatnonzero((reference != LABELS).all(axis=0))[:2]
    method = reference.copy()
    method[:, both_wrong] = LABELS[both_wrong]
    result = compare(method, reference)
    assert result.difference == pytest.approx(0.01) and result.pairs == 3
    scores = [(run == LABELS).mean(axis=1) for run in (method, reference)]
    assert math.isnan(paired_difference(*scores).p_value)  # the t-test has nothing to say
    assert result.low == 0.0  # paired: a draw can lose the two examples, never reverse them
    assert 0.1 < result.p_value < 1
    [decided] = decide([result], [False], [True], ALPHA)
    assert decided["verdict"] == INCONCLUSIVE
    assert decided["detectable"] > result.difference  # this budget could not have seen it


def test_identical_predictions_are_identical_and_untested() -> None:
    reference = runs(0.75, seed=2)
    result = compare(reference.copy(), reference)
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    [decided] = decide([result], [True], [True], ALPHA)
    assert decided["verdict"] == IDENTICAL
    assert math.isnan(decided["p_adjusted"]) and math.isnan(decided["detectable"])


def test_a_planted_difference_survives_holm_and_a_null_task_does_not() -> None:
    """A family of four tasks: on three the method is right on 25 more examples per seed (a
    true difference of 0.125); on the fourth both sides are independent runs of the same
    accuracy."""
    comparisons = []
    for task in range(4):
        reference = runs(0.7, seed=10 + task)
        method = runs(0.7, seed=20 + task) if task == 3 else reference.copy()
        rng = np.random.default_rng(30 + task)
        for seed in range(3 if task < 3 else 0):
            wrong = rng.choice(np.flatnonzero(reference[seed] != LABELS), 25, replace=False)
            method[seed, wrong] = LABELS[wrong]
        comparisons.append(compare(method, reference))
    decided = decide(comparisons, [False] * 4, [True] * 4, ALPHA)
    assert [row["verdict"] for row in decided] == [BETTER] * 3 + [INCONCLUSIVE]
    assert all(row["p_adjusted"] >= c.p_value for row, c in zip(decided, comparisons,
                                                                strict=True))
    assert decided[3]["p_adjusted"] > 0.5


def test_holm_turns_a_significant_p_alone_into_inconclusive_in_a_family() -> None:
    """p = 0.02 is below 0.05 alone, but third of four in Holm's order it is tested at 0.05/3."""
    comparisons = [PairedComparison(0.1, 0.05, 0.15, p, math.nan, 0.02, 3)
                   for p in (0.001, 0.02, 0.04, 0.5)]
    decided = decide(comparisons, [False] * 4, [True] * 4, ALPHA)
    assert [row["p_adjusted"] for row in decided] == pytest.approx([0.004, 0.06, 0.08, 0.5])
    assert [row["verdict"] for row in decided] == [BETTER] + [INCONCLUSIVE] * 3
    alone = decide(comparisons[1:2], [False], [True], ALPHA)
    assert alone[0]["verdict"] == BETTER


def test_near_identical_sides_are_equivalent_within_a_generous_margin() -> None:
    """Three examples flipped per seed (either way): within ±0.05, not within ±0.005."""
    reference = runs(0.75, seed=5)
    method = reference.copy()
    rng = np.random.default_rng(5)
    for seed in range(3):
        flipped = rng.choice(N, 3, replace=False)
        method[seed, flipped] = 1 - method[seed, flipped]
    generous, strict = compare(method, reference, 0.05), compare(method, reference, 0.005)
    assert generous.p_equivalent == 1 / (SAMPLES + 1)  # no draw reaches the margin
    assert decide([generous], [False], [True], ALPHA)[0]["verdict"] == EQUIVALENT
    assert decide([strict], [False], [True], ALPHA)[0]["verdict"] == INCONCLUSIVE
    assert math.isnan(compare(method, reference).p_equivalent)  # no margin: no test


@pytest.mark.parametrize("seeds", [0, 1])
def test_fewer_than_two_pairs_are_not_testable(seeds: int) -> None:
    """No seed, or one, where both finished: nothing to resample the seeds from."""
    result = compare(runs(0.95, seed=6)[:seeds], runs(0.5, seed=7)[:seeds])
    assert result.pairs == seeds
    [decided] = decide([result], [False], [True], ALPHA)
    assert decided["verdict"] == UNTESTED
    assert math.isnan(decided["p_adjusted"]) and math.isnan(decided["detectable"])


def test_a_higher_loss_is_worse_and_a_lower_one_better() -> None:
    """Per-example losses (``mean``), lower is better: the sign of the difference is read with
    the task's direction."""
    rng = np.random.default_rng(6)
    base = rng.gamma(2.0, 1.0, (3, 50))
    higher = base + 0.3 + rng.normal(0, 0.05, (3, 50))
    up, down = compare(higher, base, metric="mean"), compare(base, higher, metric="mean")
    assert up.difference > 0 > down.difference
    decided = decide([up, down], [False, False], [False, False], ALPHA)
    assert [row["verdict"] for row in decided] == [WORSE, BETTER]
    assert decide([up], [False], [True], ALPHA)[0]["verdict"] == BETTER  # were it a score


def test_the_bootstrap_p_value_is_never_below_one_over_the_draws() -> None:
    """Every draw favours the method: the p is 2 / (samples + 1), not 0."""
    reference = runs(0.5, seed=7)
    result = compare(np.tile(LABELS, (3, 1)), reference)
    assert result.p_value == 2 / (SAMPLES + 1)
    assert result.low > 0.4


def test_the_paired_difference_is_the_metric_difference_seed_by_seed() -> None:
    a, b = runs(0.8, seed=8), runs(0.7, seed=9)
    for task, metric in (("mrpc", "f1"), ("cola", "matthews_correlation")):
        expected = np.mean([glue_metrics(task, x, LABELS)[metric]
                            - glue_metrics(task, y, LABELS)[metric]
                            for x, y in zip(a, b, strict=True)])
        assert compare(a, b, metric=metric).difference == pytest.approx(expected, rel=1e-12)


def test_holm_leaves_untested_comparisons_out() -> None:
    """By hand: 0.01, 0.03, 0.04 are multiplied by 3, 2, 1 in increasing order and kept
    monotone (0.04 becomes 0.06); the NaN is neither counted nor adjusted."""
    adjusted = holm(np.array([0.01, 0.04, math.nan, 0.03]), ALPHA)
    assert adjusted[[0, 1, 3]] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[2])
    assert np.isnan(holm(np.array([math.nan, math.nan]), ALPHA)).all()


def test_the_detectable_difference_is_at_the_familys_strictest_level() -> None:
    """(z(1 - alpha/2) + z(0.8)) standard errors, alpha divided by the tested comparisons."""
    assert detectable_difference(1.0, 0.05) == pytest.approx(1.959964 + 0.841621, rel=1e-6)
    tested = PairedComparison(0.1, 0.0, 0.2, 0.3, math.nan, 0.01, 3)
    untested = PairedComparison(0.0, 0.0, 0.0, 1.0, math.nan, 0.0, 3)
    rows = decide([tested, tested, untested], [False, False, True], [True] * 3, ALPHA)
    assert rows[0]["detectable"] == pytest.approx(detectable_difference(0.01, ALPHA / 2))
