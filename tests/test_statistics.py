"""Tests of adaopt.statistics: the t-interval, the bootstrap, the paired test and the verdicts
with Holm's correction over a declared family."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from adaopt.metrics import f1_score, glue_metrics, metric_max_over_ground_truths, squad_metrics
from adaopt.statistics import (
    BETTER,
    EQUIVALENT,
    IDENTICAL,
    INCONCLUSIVE,
    NO_SIGNAL,
    RESAMPLED,
    UNTESTED,
    WORSE,
    Member,
    PairedComparison,
    bootstrap_draws,
    bootstrap_interval,
    bootstrap_statistics,
    confidence_interval,
    decide,
    detectable_difference,
    holm,
    paired_difference,
    paired_test,
)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

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


# ----------------------------------------------------------------------------- the paired test

N = 200
LABELS = np.random.default_rng(0).integers(0, 2, N)
SAMPLES = 1000
ALPHA = 0.05
POWER = 0.8


def runs(accuracy: float, seed: int, seeds: int = 3) -> np.ndarray:
    """``seeds`` runs' predictions on :data:`LABELS`, each right with probability ``accuracy``."""
    right = np.random.default_rng(seed).random((seeds, N)) < accuracy
    return np.where(right, LABELS, 1 - LABELS)


def compare(a: np.ndarray, b: np.ndarray, margin: float | None = None,
            metric: str = "accuracy") -> PairedComparison:
    labels = None if metric == "mean" else LABELS
    return paired_test(metric, a, b, labels, 1 - ALPHA, SAMPLES, margin)


def decide_one(comparison: PairedComparison, greater: bool = True, **member: object
               ) -> dict[str, object]:
    [row] = decide([Member(comparison, greater, **member)], ALPHA, POWER)  # type: ignore[arg-type]
    return row


def test_the_pilots_five_differences_give_the_paired_t_tests_p() -> None:
    """The pilot's SST-2 finding (bootstrap Holm p 0.046) from per-seed differences of -0.0035,
    -0.031, -0.053, -0.007 and 0: a difference the same on every dev example has no dev-set
    term, so the test is the paired t-test over the five seeds, p of about 0.13."""
    per_seed = np.array([-0.0035, -0.031, -0.053, -0.007, 0.0])
    base = np.random.default_rng(1).uniform(0.5, 0.9, (5, 50))
    result = compare(base + per_seed[:, None], base, metric="mean")
    expected = stats.ttest_1samp(per_seed, 0.0)
    assert result.difference == pytest.approx(per_seed.mean())
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    assert 0.1 < result.p_value < 0.15 and result.df == 4
    assert decide_one(result)["verdict"] == INCONCLUSIVE


def test_the_dev_sets_noise_widens_the_interval_beyond_the_seeds() -> None:
    """The method is right on the examples every reference seed gets wrong, the same ones on
    every seed: the seeds agree exactly (a t-test over seeds alone would be certain), but
    another dev set would hold a different number of those examples."""
    reference = runs(0.7, seed=1)
    wrong = np.flatnonzero((reference != LABELS).all(axis=0))
    method = reference.copy()
    method[:, wrong] = LABELS[wrong]
    result = compare(method, reference)
    share = len(wrong) / N
    assert share > 0 and result.difference == pytest.approx(share)
    assert result.se == pytest.approx(math.sqrt(share * (1 - share) / N), rel=0.15)
    assert result.low < share < result.high


def test_a_constant_difference_on_two_examples_is_not_better() -> None:
    """Every seed right on the same 2 of 200 examples where the reference is wrong: another dev
    set of 200 examples misses both of them often, so nothing is shown."""
    reference = runs(0.75, seed=1)
    both_wrong = np.flatnonzero((reference != LABELS).all(axis=0))[:2]
    method = reference.copy()
    method[:, both_wrong] = LABELS[both_wrong]
    result = compare(method, reference)
    assert result.difference == pytest.approx(0.01) and result.pairs == 3
    assert result.p_value > ALPHA
    decided = decide_one(result)
    assert decided["verdict"] == INCONCLUSIVE
    assert decided["detectable"] > result.difference  # this budget could not have seen it


def test_a_constant_predictors_pearson_is_zero() -> None:
    """A collapsed regressor scores 0, as its Matthews correlation would, instead of NaN: the
    seed stays in the comparison."""
    rng = np.random.default_rng(4)
    labels = rng.uniform(0, 5, 60)
    constant = np.full((1, 60), 2.5)
    weights = np.ones((1, 60))
    assert RESAMPLED["pearson"](constant, labels, weights)[0, 0] == 0.0
    learned = labels + rng.normal(0, 1, (3, 60))
    collapsed = np.vstack([learned[:2], constant])
    result = paired_test("pearson", learned, collapsed, labels, 0.95, 200)
    assert result.pairs == 3 and math.isfinite(result.p_value)


# ----------------------------------------------------------------------------- verdicts


def test_identical_predictions_never_vote_unless_the_controller_cut() -> None:
    reference = runs(0.75, seed=2)
    result = compare(reference.copy(), reference)
    assert (result.difference, result.pairs) == (0.0, 3)
    uncut = decide_one(result, identical=True, cuts=0.0)
    assert uncut["verdict"] == IDENTICAL and not uncut["votes"]
    assert math.isnan(uncut["p_adjusted"]) and math.isnan(uncut["detectable"])
    assert not decide_one(result, identical=True)["votes"]  # cuts not recorded
    cut = decide_one(result, identical=True, cuts=4.0)  # it acted, and changed nothing
    assert cut["verdict"] == IDENTICAL and cut["votes"]


def test_a_task_without_signal_has_its_verdict_and_does_not_vote() -> None:
    result = compare(runs(0.9, seed=3), runs(0.5, seed=4))
    decided = decide_one(result, signal=False)
    assert decided["verdict"] == NO_SIGNAL and not decided["votes"]
    assert decide_one(result)["verdict"] == BETTER


def test_a_significant_difference_inside_the_margin_reads_equivalent() -> None:
    """+0.3 points with its whole interval inside a margin of one point: the p of no
    difference is tiny, but the margin is the smallest difference that matters."""
    tiny = PairedComparison(0.003, 0.001, 0.005, 1e-4, 1e-4, 0.001, 9.0, 10)
    assert tiny.p_value < ALPHA
    decided = decide_one(tiny)
    assert decided["verdict"] == EQUIVALENT and decided["votes"]


def test_near_identical_sides_are_equivalent_within_a_generous_margin() -> None:
    """Three examples flipped per seed (either way): within ±0.05, not within ±0.005."""
    reference = runs(0.75, seed=5)
    method = reference.copy()
    rng = np.random.default_rng(5)
    for seed in range(3):
        flipped = rng.choice(N, 3, replace=False)
        method[seed, flipped] = 1 - method[seed, flipped]
    generous, strict = compare(method, reference, 0.05), compare(method, reference, 0.005)
    assert decide_one(generous)["verdict"] == EQUIVALENT
    assert decide_one(strict)["verdict"] == INCONCLUSIVE
    assert decide_one(strict)["equivalence_bound"] > 0.005
    assert math.isnan(compare(method, reference).p_equivalent)  # no margin: no test


def test_a_planted_difference_survives_holm_and_a_null_task_does_not() -> None:
    """A family of four tasks: on three the method gets each example the reference seed got
    wrong right with probability 0.4 (about 12 points); on the fourth both sides are
    independent runs of the same accuracy."""
    members = []
    for task in range(4):
        reference = runs(0.7, seed=10 + task, seeds=5)
        method = runs(0.7, seed=20 + task, seeds=5) if task == 3 else reference.copy()
        rng = np.random.default_rng(30 + task)
        for seed in range(5 if task < 3 else 0):
            wrong = (reference[seed] != LABELS) & (rng.random(N) < 0.4)
            method[seed, wrong] = LABELS[wrong]
        members.append(Member(compare(method, reference), True))
    decided = decide(members, ALPHA, POWER)
    assert [row["verdict"] for row in decided] == [BETTER] * 3 + [INCONCLUSIVE]
    assert all(row["p_adjusted"] >= m.comparison.p_value for row, m in zip(decided, members,
                                                                           strict=True))


def test_holm_turns_a_significant_p_alone_into_inconclusive_in_a_family() -> None:
    """p = 0.02 is below 0.05 alone, but third of four in Holm's order it is tested at 0.05/3."""
    members = [Member(PairedComparison(0.1, 0.05, 0.15, p, math.nan, 0.02, 2.0, 3), True)
               for p in (0.001, 0.02, 0.04, 0.5)]
    decided = decide(members, ALPHA, POWER)
    assert [row["p_adjusted"] for row in decided] == pytest.approx([0.004, 0.06, 0.08, 0.5])
    assert [row["verdict"] for row in decided] == [BETTER] + [INCONCLUSIVE] * 3
    assert decide(members[1:2], ALPHA, POWER)[0]["verdict"] == BETTER


def test_a_familys_size_counts_its_identical_and_undeclared_members() -> None:
    """Holm over the declared family: an identical member keeps its place (p = 1), so the
    family does not shrink when a member cannot be tested."""
    significant = PairedComparison(0.1, 0.05, 0.15, 0.02, math.nan, 0.02, 2.0, 3)
    same = PairedComparison(0.0, 0.0, 0.0, math.nan, math.nan, math.nan, math.nan, 3)
    pair = decide([Member(significant, True), Member(same, True, identical=True)], ALPHA, POWER)
    assert pair[0]["p_adjusted"] == pytest.approx(0.04) and pair[0]["family_size"] == 2
    assert decide([Member(significant, True)], ALPHA, POWER)[0]["p_adjusted"] == 0.02
    declared = decide([Member(significant, True)], ALPHA, POWER, size=3)
    assert declared[0]["p_adjusted"] == pytest.approx(0.06)
    assert declared[0]["verdict"] == INCONCLUSIVE


@pytest.mark.parametrize("seeds", [0, 1])
def test_fewer_than_two_pairs_are_not_testable(seeds: int) -> None:
    """No seed, or one, where both finished: nothing to estimate the seeds' spread from."""
    result = compare(runs(0.95, seed=6)[:seeds], runs(0.5, seed=7)[:seeds])
    assert result.pairs == seeds
    decided = decide_one(result)
    assert decided["verdict"] == UNTESTED and not decided["votes"]
    assert math.isnan(decided["p_adjusted"]) and math.isnan(decided["detectable"])


def test_a_higher_loss_is_worse_and_a_lower_one_better() -> None:
    """Per-example losses (``mean``), lower is better: the sign of the difference is read with
    the task's direction."""
    rng = np.random.default_rng(6)
    base = rng.gamma(2.0, 1.0, (3, 50))
    higher = base + 0.3 + rng.normal(0, 0.05, (3, 50))
    up, down = compare(higher, base, metric="mean"), compare(base, higher, metric="mean")
    assert up.difference > 0 > down.difference
    decided = decide([Member(up, False), Member(down, False)], ALPHA, POWER)
    assert [row["verdict"] for row in decided] == [WORSE, BETTER]
    assert decide_one(up, greater=True)["verdict"] == BETTER  # were it a score


def test_the_paired_difference_is_the_metric_difference_seed_by_seed() -> None:
    a, b = runs(0.8, seed=8), runs(0.7, seed=9)
    for task, metric in (("mrpc", "f1"), ("cola", "matthews_correlation")):
        per_seed = [glue_metrics(task, x, LABELS)[metric] - glue_metrics(task, y, LABELS)[metric]
                    for x, y in zip(a, b, strict=True)]
        result = compare(a, b, metric=metric)
        assert result.difference == pytest.approx(np.mean(per_seed), rel=1e-12)
        assert result.per_seed == pytest.approx(per_seed, rel=1e-12)


def test_holm_counts_untested_comparisons_as_p_one() -> None:
    """By hand: 0.01, 0.03, 0.04 and the NaN (p = 1) are multiplied by 4, 3, 2 in increasing
    order and kept monotone; the NaN stays NaN."""
    adjusted = holm(np.array([0.01, 0.04, math.nan, 0.03]), ALPHA)
    assert adjusted[[0, 1, 3]] == pytest.approx([0.04, 0.09, 0.09])
    assert math.isnan(adjusted[2])
    assert np.isnan(holm(np.array([math.nan, math.nan]), ALPHA)).all()
    with pytest.raises(ValueError, match="declared members"):
        holm(np.array([0.01, 0.02]), ALPHA, size=1)


def test_the_detectable_difference_is_at_the_familys_strictest_level() -> None:
    """(t(1 - alpha/2) + t(power)) standard errors on the test's degrees of freedom, alpha
    divided by the family's declared size."""
    assert detectable_difference(1.0, 1e6, 0.05, 0.8) == pytest.approx(1.959964 + 0.841621,
                                                                        rel=1e-5)
    tested = PairedComparison(0.1, 0.0, 0.2, 0.3, math.nan, 0.01, 4.0, 5)
    rows = decide([Member(tested, True)] * 2, ALPHA, POWER, size=3)
    assert rows[0]["detectable"] == pytest.approx(detectable_difference(0.01, 4.0, ALPHA / 3,
                                                                        POWER))


def test_the_size_benchmarks_small_version_keeps_the_nominal_level() -> None:
    """``benchmarks/verdict_size.py`` at a tenth of its replications: under both nulls the
    test rejects at most about its 5% (a binomial allowance for 200 replications), and at ten
    seeds it finds the planted gain more often than at three."""
    spec = importlib.util.spec_from_file_location("verdict_size", BENCHMARKS / "verdict_size.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    for scenario in ("seeds", "dev"):
        for seeds in (3, 10):
            assert module.rejection_rate(scenario, seeds, 200, seed=1)["rejected"] <= 0.09
    power = {n: module.rejection_rate("gain", n, 200, seed=1)["rejected"] for n in (3, 10)}
    assert power[10] > max(power[3], 0.3)
