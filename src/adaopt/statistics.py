"""The statistics behind the comparison: intervals over seeds, paired tests, the bootstrap.

Three questions, three tools. How precisely do the seeds pin down an optimizer's mean? A
Student-t interval over seeds. How much would the number move on another dev set of the same
size? A bootstrap that resamples the seeds and the dev examples together, recomputing the
metric from the saved predictions. Is optimizer A better than B, worse, equivalent within a
declared margin, or can this budget not tell? :func:`paired_bootstrap`: the same bootstrap,
paired (both optimizers take the same seeds and the same dev examples in every draw, since the
same seed gives both the same initialization and data order), so that the dev set's noise is in
the interval and runs that differ by the same amount on every seed cannot look certain; then
:func:`decide` corrects each family of comparisons for its size (Holm).

Why by hand: the field's tools (``deepsig``: almost stochastic order, paired bootstrap and
permutation tests over one score per run, Bonferroni) take per-run or per-example scores of a
mean metric; Matthews and Pearson correlations are not means of per-example scores, and a
handful of seeds gives per-run tests nothing to resample. Holm's correction comes from
``statsmodels``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean; undefined (NaN) with fewer than two finite values.

    Identical values give exactly ``(value, value)``: their float mean and standard error
    would otherwise leave a spurious width of a few ulps (0.7 three times has sem 1e-16).
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    low, high = stats.t.interval(level, len(values) - 1, loc=values.mean(),
                                 scale=stats.sem(values))
    return float(low), float(high)


# ----------------------------------------------------------------------------- paired test


@dataclass(frozen=True)
class PairedDifference:
    """``values - reference`` over the seeds where both finished: mean, interval, p-value."""

    mean: float
    low: float
    high: float
    p_value: float
    pairs: int


def paired_difference(values: np.ndarray, reference: np.ndarray, level: float = 0.95
                      ) -> PairedDifference:
    """Paired t-test (``scipy.stats.ttest_rel``) of two optimizers' scores, aligned by seed.

    A NaN on either side (a diverged run) drops that seed's pair. With fewer than two pairs
    the interval and p-value are NaN (nothing to estimate the spread from). When every pair
    differs by the same amount the spread is zero and the t statistic is d/0: the interval is
    [d, d] and the p-value NaN, for d == 0 (t is 0/0: identical runs carry no evidence either
    way) and for d != 0 alike: an infinite t's p of 0 would make a difference of one dev example
    on every seed look certain, when another dev set could erase it (:func:`paired_bootstrap`
    tests that). Tables show that NaN as "—".
    """
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    both = np.isfinite(values) & np.isfinite(reference)
    values, reference = values[both], reference[both]
    pairs = len(values)
    differences = values - reference
    mean = float(differences.mean()) if pairs else math.nan
    if pairs < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, pairs)
    if np.ptp(differences) == 0:
        return PairedDifference(mean, mean, mean, math.nan, pairs)
    result = stats.ttest_rel(values, reference)
    interval = result.confidence_interval(level)
    return PairedDifference(mean, float(interval.low), float(interval.high),
                            float(result.pvalue), pairs)


# ----------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapDraws:
    """Which seeds and dev examples each bootstrap draw takes (rows are draws).

    ``examples`` holds one index vector per draw, shared by every seed: all seeds score the
    same dev set, so a draw is one alternative dev set that all of them are scored on.
    """

    seeds: np.ndarray  # (draws, n_seeds) indices into the finished seeds
    examples: np.ndarray  # (draws, n_examples) indices into the dev set

    def example_weights(self) -> np.ndarray:
        """How often each dev example occurs in each draw: (draws, n_examples) counts."""
        draws, n = self.examples.shape
        flat = (self.examples + n * np.arange(draws)[:, None]).ravel()
        return np.bincount(flat, minlength=draws * n).reshape(draws, n).astype(float)


def bootstrap_draws(n_seeds: int, n_examples: int, samples: int, seed: int = 0
                    ) -> BootstrapDraws:
    """``samples`` draws with replacement from a seeded generator: same inputs, same draws."""
    rng = np.random.default_rng(seed)
    examples = rng.integers(0, n_examples, size=(samples, n_examples))
    seeds = rng.integers(0, n_seeds, size=(samples, n_seeds))
    return BootstrapDraws(seeds=seeds, examples=examples)


# Each metric, recomputed on every draw at once from weighted sums: ``weights`` (draws, n) counts
# how often a draw takes each example, ``predictions`` (runs, n); results are (runs, draws).
# Same definitions as adaopt.metrics.glue (which the tests check them against).
Resampled = Callable[[np.ndarray, Any, np.ndarray], np.ndarray]


def _weighted(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per run and draw, the weighted sum of ``values`` (runs, n) or ``values`` (n,)."""
    return np.atleast_2d(values).astype(float) @ weights.T


def _accuracy(predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _weighted(weights, predictions == labels) / weights.sum(axis=1)


def _mean(scores: np.ndarray, _labels: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """Per-example scores averaged (SQuAD: per-question exact match or F1)."""
    return _weighted(weights, scores) / weights.sum(axis=1)


def _binary_f1(predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    true_positives = _weighted(weights, (predictions == 1) & (labels == 1))
    denominator = _weighted(weights, predictions == 1) + _weighted(weights, labels == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true_positives / denominator, 0.0)


def _matthews(predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Multiclass Matthews correlation from weighted class counts; 0 where undefined."""
    classes = np.union1d(labels, predictions)
    total = weights.sum(axis=1)
    correct = _weighted(weights, predictions == labels)
    true_sums = np.stack([_weighted(weights, labels == c)[0] for c in classes])  # (k, draws)
    predicted = np.stack([_weighted(weights, predictions == c) for c in classes])  # (k, runs, d)
    covariance = correct * total - np.einsum("kd,krd->rd", true_sums, predicted)
    predicted_variance = total**2 - (predicted**2).sum(axis=0)
    true_variance = total**2 - (true_sums**2).sum(axis=0)
    denominator = predicted_variance * true_variance
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, covariance / np.sqrt(denominator), 0.0)


def _pearson(predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation from weighted moments; NaN where either side is constant."""
    x = np.atleast_2d(predictions).astype(float)
    x = x - x.mean(axis=1, keepdims=True)  # centred first: the moments below lose no digits
    y = labels.astype(float) - labels.mean()
    total = weights.sum(axis=1)
    mean_x, mean_y = _weighted(weights, x) / total, _weighted(weights, y) / total
    covariance = _weighted(weights, x * y) / total - mean_x * mean_y
    variance_x = _weighted(weights, x**2) / total - mean_x**2
    variance_y = _weighted(weights, y**2) / total - mean_y**2
    with np.errstate(invalid="ignore", divide="ignore"):
        r = covariance / np.sqrt(variance_x * variance_y)
    return np.where((variance_x > 0) & (variance_y > 0), np.clip(r, -1, 1), math.nan)


RESAMPLED: dict[str, Resampled] = {
    "accuracy": _accuracy,
    "f1": _binary_f1,
    "matthews_correlation": _matthews,
    "pearson": _pearson,
    "mean": _mean,
}


def bootstrap_statistics(metric: str, predictions: np.ndarray, labels: np.ndarray | None,
                         draws: BootstrapDraws) -> np.ndarray:
    """Per draw, the metric on the draw's dev examples averaged over the draw's seeds.

    ``predictions`` holds one row per finished seed; ``metric`` names a GLUE metric or
    ``mean`` for per-example scores (SQuAD's per-question EM/F1, passed as ``predictions``,
    without ``labels``).
    """
    if metric not in RESAMPLED:
        raise ValueError(f"no bootstrap for metric {metric!r}; known: {', '.join(RESAMPLED)}")
    weights = draws.example_weights()
    scores = RESAMPLED[metric](np.atleast_2d(predictions), labels, weights)  # (seeds, draws)
    return np.take_along_axis(scores.T, draws.seeds, axis=1).mean(axis=1)


def bootstrap_interval(metric: str, predictions: np.ndarray, labels: np.ndarray | None,
                       level: float, samples: int, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the seed mean under resampled seeds and resampled dev examples.

    Unlike the t-interval, it also covers the dev set's own sampling noise: a dev set of a few
    hundred examples moves accuracy by whole points. NaN without any finished seed.
    """
    predictions = np.atleast_2d(predictions)
    if predictions.shape[0] == 0 or predictions.shape[1] == 0:
        return math.nan, math.nan
    draws = bootstrap_draws(predictions.shape[0], predictions.shape[1], samples, seed)
    values = bootstrap_statistics(metric, predictions, labels, draws)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------- paired bootstrap


#: Power at which :attr:`PairedComparison.detectable` is stated.
POWER = 0.8


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` on the dev set, paired by seed and by dev example.

    ``difference`` is the observed mean over the paired seeds; ``low``/``high`` the percentile
    interval of the paired draws; ``p_value`` the two-sided bootstrap p of no difference and
    ``p_equivalent`` the p of the two one-sided tests that the difference lies within
    ``±margin`` (NaN without a margin); neither is ever below ``1 / (samples + 1)``. ``se`` is
    the draws' standard deviation, from which :func:`decide` states the smallest difference
    the comparison could have detected.
    """

    difference: float
    low: float
    high: float
    p_value: float
    p_equivalent: float
    se: float
    pairs: int

    @classmethod
    def untested(cls, difference: float = math.nan, pairs: int = 0) -> PairedComparison:
        """A comparison with nothing to resample: every statistic NaN."""
        return cls(difference, math.nan, math.nan, math.nan, math.nan, math.nan, pairs)


def _tail(draws: np.ndarray, mask: np.ndarray) -> float:
    """A bootstrap tail probability, counted as (k + 1) / (B + 1): never 0 from B draws."""
    return (int(mask.sum()) + 1) / (len(draws) + 1)


@functools.lru_cache(maxsize=4)
def _draws_and_weights(n_seeds: int, n_examples: int, samples: int, seed: int
                       ) -> tuple[BootstrapDraws, np.ndarray]:
    """The draws and their example weights, shared by every comparison of one shape: each
    comparison of a task's cells resamples the same dev examples and seeds."""
    draws = bootstrap_draws(n_seeds, n_examples, samples, seed)
    return draws, draws.example_weights()


def paired_bootstrap(metric: str, a: np.ndarray, b: np.ndarray, labels: np.ndarray | None,
                     level: float, samples: int, margin: float | None = None, seed: int = 0
                     ) -> PairedComparison:
    """Paired bootstrap of ``metric(a) - metric(b)``, rows of ``a`` and ``b`` paired by seed.

    Every draw takes the same seeds and the same dev examples for both sides, recomputes the
    metric on each (:data:`RESAMPLED`), and averages the per-seed differences. ``a`` and ``b``
    hold predictions (or per-example scores for ``metric="mean"``), one row per seed where both
    finished. Draws where the metric is undefined (a constant predictor's Pearson) are dropped.
    """
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    pairs = a.shape[0] if a.size else 0
    if pairs == 0:
        return PairedComparison.untested()
    whole = np.ones((1, a.shape[1]))
    observed = (RESAMPLED[metric](a, labels, whole) - RESAMPLED[metric](b, labels, whole))
    difference = float(observed.mean())
    draws, weights = _draws_and_weights(pairs, a.shape[1], samples, seed)
    per_seed = RESAMPLED[metric](a, labels, weights) - RESAMPLED[metric](b, labels, weights)
    values = np.take_along_axis(per_seed.T, draws.seeds, axis=1).mean(axis=1)
    values = values[np.isfinite(values)]
    if math.isnan(difference) or len(values) == 0:
        return PairedComparison.untested(difference, pairs)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    p_value = min(1.0, 2 * min(_tail(values, values <= 0), _tail(values, values >= 0)))
    p_equivalent = (math.nan if margin is None else
                    max(_tail(values, values >= margin), _tail(values, values <= -margin)))
    return PairedComparison(difference, float(low), float(high), p_value, p_equivalent,
                            float(values.std(ddof=1)) if len(values) > 1 else math.nan, pairs)


# ----------------------------------------------------------------------------- verdicts


BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, IDENTICAL, UNTESTED = (
    "better", "worse", "equivalent", "inconclusive", "identical", "not testable")


def holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN: not tested, left out)."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p_values), math.nan)
    tested = np.isfinite(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], alpha=alpha, method="holm")[1]
    return adjusted


def detectable_difference(se: float, alpha: float) -> float:
    """The smallest true difference a two-sided test at ``alpha`` finds with :data:`POWER`,
    for a difference estimated with standard error ``se`` (normal approximation)."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER)) * se)


def decide(comparisons: list[PairedComparison], identical: list[bool],
           greater_is_better: list[bool], alpha: float) -> list[dict[str, Any]]:
    """The verdict of each comparison of one family (e.g. one method against one reference in
    one setting, over the tasks), Holm-corrected for the family's size.

    ``identical``: the two sides' dev predictions are bit-identical on every seed; nothing is
    tested. Otherwise better or worse where the corrected p of no difference is below
    ``alpha``, equivalent where the corrected equivalence p is, inconclusive else, with the
    smallest difference detectable at the family's strictest level (``alpha`` over its size).
    """
    tested = [c.pairs >= 2 and not same for c, same in zip(comparisons, identical, strict=True)]
    size = max(1, sum(tested))
    p = holm(np.array([c.p_value if t else math.nan for c, t in zip(comparisons, tested,
                                                                      strict=True)]), alpha)
    p_eq = holm(np.array([c.p_equivalent if t else math.nan
                          for c, t in zip(comparisons, tested, strict=True)]), alpha)
    rows = []
    for i, comparison in enumerate(comparisons):
        detectable = detectable_difference(comparison.se, alpha / size) if tested[i] else math.nan
        if identical[i]:
            verdict = IDENTICAL
        elif not tested[i] or math.isnan(p[i]):
            verdict = UNTESTED
        elif p[i] < alpha:
            verdict = BETTER if (comparison.difference > 0) == greater_is_better[i] else WORSE
        elif p_eq[i] < alpha:
            verdict = EQUIVALENT
        else:
            verdict = INCONCLUSIVE
        rows.append({"p_adjusted": p[i], "p_equivalent_adjusted": p_eq[i],
                     "detectable": detectable, "verdict": verdict})
    return rows
