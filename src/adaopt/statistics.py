"""The statistics behind the comparison: intervals over seeds, the paired test, the verdicts.

Three questions, three tools. How precisely do the seeds pin down an optimizer's mean? A
Student-t interval over seeds. How much would the number move on another dev set of the same
size? A bootstrap that resamples the seeds and the dev examples together, recomputing the
metric from the saved predictions. Is optimizer A better than B, worse, equivalent within a
declared margin, or can this budget not tell? :func:`paired_test`: a paired t-test over seeds
(the training run is the unit of replication) whose variance also carries the dev set's
sampling noise, estimated from resampled dev sets; its size holds at three, five and ten
seeds (``benchmarks/test_size.py``, ``benchmarks/results/test_size.md``). Then
:func:`decide` turns a family of comparisons into verdicts, Holm-corrected over the family's
declared size.

Why partly by hand: ``scipy.stats.ttest_rel`` is the seed-level test, and ``deepsig``'s tools
(almost stochastic order, paired bootstrap and permutation tests over one score per run) take
per-run scores: neither carries the dev set's noise, and Matthews and Pearson correlations are
not means of per-example scores. The t distribution comes from ``scipy``, Holm's correction
from ``statsmodels``; only the two variance terms are computed here.
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
    """Pearson correlation from weighted moments; 0 where either side is constant (as
    Matthews' correlation is, and as :func:`adaopt.metrics.glue_metrics` scores it)."""
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
    return np.where((variance_x > 0) & (variance_y > 0), np.clip(r, -1, 1), 0.0)


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


# ----------------------------------------------------------------------------- the paired test


#: The test that decides every comparison, named and versioned for the pre-registration
#: (``preregistration.yaml``): a change of the rule is a new version.
TEST_NAME = "paired two-level t-test (seeds and dev examples)"
TEST_VERSION = 1


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` on the dev set, paired by seed and by dev example (:func:`paired_test`).

    ``difference`` is the mean over the paired seeds of the per-seed differences
    (``per_seed``); ``se`` its standard error with the seeds' spread and the dev set's
    together, ``df`` the degrees of freedom of its t distribution; ``low``/``high`` the
    ``level`` interval; ``p_value`` the two-sided p of no difference and ``p_equivalent`` the
    p of the two one-sided tests that the difference lies within ``±margin`` (NaN without a
    margin).
    """

    difference: float
    low: float
    high: float
    p_value: float
    p_equivalent: float
    se: float
    df: float
    pairs: int
    per_seed: tuple[float, ...] = ()

    @classmethod
    def untested(cls, difference: float = math.nan, pairs: int = 0,
                 per_seed: tuple[float, ...] = ()) -> PairedComparison:
        """A comparison with nothing to estimate the spread from: every statistic NaN."""
        return cls(difference, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                   pairs, per_seed)


@functools.lru_cache(maxsize=4)
def _example_weights(n_examples: int, samples: int, seed: int) -> np.ndarray:
    """Resampled dev sets (draws, n_examples counts), shared by every comparison of one size."""
    return bootstrap_draws(1, n_examples, samples, seed).example_weights()


def paired_test(metric: str, a: np.ndarray, b: np.ndarray, labels: np.ndarray | None,
                level: float, samples: int, margin: float | None = None, seed: int = 0
                ) -> PairedComparison:
    """A paired t-test over seeds whose variance also carries the dev set's sampling noise.

    Rows of ``a`` and ``b`` are paired by seed (the same seed gives both optimizers the same
    initialization and data order), columns by dev example. The unit of replication is the
    training run, so the seeds' spread enters as in a paired t-test (``s^2 / n``, ``n - 1``
    degrees of freedom: no bootstrap of a handful of seeds, which shrinks their variance and
    reads normal quantiles where a t-quantile is due). The dev set is one sample of the task:
    ``samples`` resampled dev sets give the variance of the seed-mean difference across dev
    sets, from which the part the seed term already holds (each run's own per-example noise,
    estimated from the per-seed draws) is taken out, as in a two-way crossed random-effects
    design (Searle, Casella and McCulloch, *Variance Components*, ch. 4). The two are added
    and the t distribution keeps the seeds' ``n - 1`` degrees of freedom: the dev set's term,
    a difference of two noisy estimates, earns none. Welch and Satterthwaite's rule, which
    would credit it with the dev set's size, over-rejects at three seeds when the seeds'
    spread dominates (``benchmarks/verdict_size.py`` measured it); without the credit the test
    is conservative where the dev set's spread dominates. Works for any metric in
    :data:`RESAMPLED`, including the correlations, which are not means over examples.
    """
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    pairs = a.shape[0] if a.size else 0
    if pairs == 0:
        return PairedComparison.untested()
    whole = np.ones((1, a.shape[1]))
    per_seed = (RESAMPLED[metric](a, labels, whole) - RESAMPLED[metric](b, labels, whole))[:, 0]
    difference = float(per_seed.mean())
    seeds = tuple(float(d) for d in per_seed)
    if pairs < 2 or math.isnan(difference):
        return PairedComparison.untested(difference, pairs, seeds)
    weights = _example_weights(a.shape[1], samples, seed)
    drawn = RESAMPLED[metric](a, labels, weights) - RESAMPLED[metric](b, labels, weights)
    drawn = drawn[:, np.isfinite(drawn).all(axis=0)]  # (seeds, draws)
    seed_term = float(per_seed.var(ddof=1)) / pairs
    example_term = float(drawn.mean(axis=0).var(ddof=1)) if drawn.shape[1] > 1 else 0.0
    own_noise = float(drawn.var(axis=1, ddof=1).mean()) - example_term if drawn.shape[1] > 1 \
        else 0.0
    run_noise = max(own_noise, 0.0) / (pairs - 1)  # each run's own per-example noise, / n
    dev_term = max(example_term - run_noise, 0.0)  # the dev set's own
    # The seeds' term holds each run's per-example noise in expectation: seeds that agree more
    # closely than that (one different example on every seed) are luck, not certainty.
    variance = max(seed_term, run_noise) + dev_term
    if variance <= 0:
        return PairedComparison.untested(difference, pairs, seeds)
    se = math.sqrt(variance)
    df = float(pairs - 1)
    t = stats.t(df)
    half = float(t.ppf(0.5 + level / 2)) * se
    p_value = float(2 * t.sf(abs(difference) / se))
    p_equivalent = (math.nan if margin is None else
                    float(max(t.sf((difference + margin) / se), t.cdf((difference - margin) / se))))
    return PairedComparison(difference, difference - half, difference + half, p_value,
                            p_equivalent, se, float(df), pairs, seeds)


# ----------------------------------------------------------------------------- verdicts


BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, IDENTICAL, NO_SIGNAL, UNTESTED = (
    "better", "worse", "equivalent", "inconclusive", "identical", "no signal", "not testable")
#: Verdicts that count as evidence about the claim (an identical pair counts, as equivalent,
#: only where the controller cut in its runs: :func:`votes`).
EVIDENCE = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)


@dataclass(frozen=True)
class Member:
    """One comparison of a declared family, with what decides whether it can vote.

    ``identical``: bit-identical dev predictions on every paired seed; ``cuts``: the method's
    controller cuts over those runs (NaN: not recorded); ``signal``: the task's best cell beats
    its trivial baseline (a task where nothing learned is no evidence about any optimizer).
    """

    comparison: PairedComparison
    greater_is_better: bool
    identical: bool = False
    cuts: float = math.nan
    signal: bool = True


def votes(verdict: str, cuts: float) -> bool:
    """Whether a verdict counts as evidence: every tested one, and an identical one where the
    controller cut (it acted, and changed nothing: the method equals its base here)."""
    return verdict in EVIDENCE or (verdict == IDENTICAL and cuts > 0)


def holm(p_values: np.ndarray, alpha: float, size: int | None = None) -> np.ndarray:
    """Holm's step-down adjustment over a family of ``size`` declared members (default: the
    values given). A NaN (a member that was not tested) counts as p = 1: it keeps its place in
    the family, so a family does not shrink when a member comes out identical or untested."""
    p_values = np.asarray(p_values, dtype=float)
    size = len(p_values) if size is None else size
    if size < len(p_values):
        raise ValueError(f"a family of {size} declared members cannot hold {len(p_values)}")
    filled = np.concatenate([np.where(np.isfinite(p_values), p_values, 1.0),
                             np.ones(size - len(p_values))])
    if not len(filled):
        return p_values
    adjusted = multipletests(filled, alpha=alpha, method="holm")[1][:len(p_values)]
    return np.where(np.isfinite(p_values), adjusted, math.nan)


def detectable_difference(se: float, df: float, alpha: float, power: float) -> float:
    """The smallest true difference a two-sided t-test at ``alpha`` finds with ``power``, for a
    difference estimated with standard error ``se`` on ``df`` degrees of freedom."""
    t = stats.t(df)
    return float((t.ppf(1 - alpha / 2) + t.ppf(power)) * se)


def equivalence_bound(comparison: PairedComparison, alpha: float) -> float:
    """The smallest margin within which the two one-sided tests at ``alpha`` would call this
    difference equivalent: whether a declared margin was reachable at this budget."""
    return float(abs(comparison.difference)
                 + stats.t(comparison.df).ppf(1 - alpha) * comparison.se)


def decide(members: list[Member], alpha: float, power: float, size: int | None = None
           ) -> list[dict[str, Any]]:
    """The verdict of each member of one family, Holm-corrected over the family's declared
    ``size`` (default: its members), untested and non-voting members included.

    In order: identical (bit-identical dev predictions); no signal (the task's best cell is not
    above its trivial baseline); not testable (fewer than two pairs, or no spread); equivalent
    where the corrected two one-sided tests put the difference within the margin, whether or
    not it excludes zero (the margin is the smallest difference that matters); better or worse
    where the corrected p of no difference is below ``alpha``; inconclusive otherwise, with the
    smallest difference detectable at the family's strictest level (``alpha`` over its size).
    A member that was not tested counts as p = 1 in the correction.
    """
    size = len(members) if size is None else size
    tested = [not m.identical and m.signal and m.comparison.pairs >= 2
              and math.isfinite(m.comparison.p_value) for m in members]
    p = holm(np.array([m.comparison.p_value if t else math.nan
                       for m, t in zip(members, tested, strict=True)]), alpha, size)
    p_eq = holm(np.array([m.comparison.p_equivalent if t else math.nan
                          for m, t in zip(members, tested, strict=True)]), alpha, size)
    strictest = alpha / max(size, 1)
    rows = []
    for i, member in enumerate(members):
        c = member.comparison
        spread = math.isfinite(c.se) and c.se > 0
        detectable = detectable_difference(c.se, c.df, strictest, power) if spread else math.nan
        bound = equivalence_bound(c, strictest) if spread else math.nan
        if member.identical:
            verdict = IDENTICAL
        elif not member.signal:
            verdict = NO_SIGNAL
        elif not tested[i]:
            verdict = UNTESTED
        elif p_eq[i] < alpha:
            verdict = EQUIVALENT
        elif p[i] < alpha:
            verdict = BETTER if (c.difference > 0) == member.greater_is_better else WORSE
        else:
            verdict = INCONCLUSIVE
        rows.append({"p_adjusted": p[i], "p_equivalent_adjusted": p_eq[i],
                     "detectable": detectable, "equivalence_bound": bound, "verdict": verdict,
                     "votes": votes(verdict, member.cuts), "family_size": size})
    return rows
