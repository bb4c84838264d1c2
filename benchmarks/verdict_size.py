"""Does the verdict's test have the size it claims? False positives under two nulls, and power.

Usage::

    python benchmarks/verdict_size.py [--replications 1000] [--seeds 3 5 10]

Simulates paired comparisons of two optimizers scored by accuracy on a dev set of SST-2's size,
and runs :func:`adaopt.statistics.paired_test` (the registered test, with the registered
resamples) on each, at the nominal 5% level:

* ``seeds`` null: both optimizers have the same accuracy on every example; each run's quality
  moves by its own amount (a seed-level shift on the logit scale), so the seeds' spread
  dominates the noise of the difference, as in the pilot.
* ``dev`` null: on every example the two optimizers' chances of being right are drawn from the
  same distribution and assigned to the two at random, so the population difference is exactly
  zero but any one dev set favours one of them; the runs barely move with the seed, so the dev
  examples' spread dominates. A test over seeds alone would find a "difference" here almost
  every time.
* ``gain``: the seeds null with a planted gain of about two accuracy points for the first
  optimizer (each example's chance of being wrong falls by a tenth); the table shows the gain
  realized in the population and how often the test finds it.

Writes ``benchmarks/results/verdict_size.md`` and ``.json``. ``tests/test_statistics.py`` runs a
small version of the same simulation.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from adaopt.statistics import TEST_NAME, TEST_VERSION, paired_test

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "verdict_size"
EXAMPLES = 872  # SST-2's dev set
ALPHA = 0.05
SAMPLES = 1000  # the registered dev-set resamples (preregistration.yaml, bootstrap.samples)
#: Each example's chance of being right: mostly near 0 or 1, about 0.8 on average, as a
#: fine-tuned classifier's are.
EASE = (0.8, 0.2)
#: The seed-level shift of a run's logits, per scenario (standard deviation).
SEED_SPREAD = {"seeds": 0.2, "dev": 0.02, "gain": 0.2}
GAIN = 0.1  # of each example's chance of being wrong, removed: about two accuracy points


def chances(scenario: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per example, the two optimizers' chances of being right (one dev set's draw)."""
    ease = np.clip(rng.beta(*EASE, EXAMPLES), 1e-4, 1 - 1e-4)
    if scenario == "dev":
        other = np.clip(rng.beta(*EASE, EXAMPLES), 1e-4, 1 - 1e-4)
        swap = rng.random(EXAMPLES) < 0.5
        return np.where(swap, other, ease), np.where(swap, ease, other)
    if scenario == "gain":
        return ease + GAIN * (1 - ease), ease
    return ease, ease


def outcomes(p: np.ndarray, seeds: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Right (1) or wrong (0) per seed and example: each run shifts the logits by its own
    amount, then every example is a coin with the run's chance."""
    shift = rng.normal(0.0, spread, (seeds, 1))
    return (rng.random((seeds, EXAMPLES)) < expit(logit(p) + shift)).astype(int)


def replicate(scenario: str, seeds: int, rng: np.random.Generator) -> tuple[float, float]:
    """One simulated comparison: its p of no difference, and its observed difference."""
    a, b = chances(scenario, rng)
    spread = SEED_SPREAD[scenario]
    labels = np.ones(EXAMPLES, dtype=int)  # predictions are right (1) or wrong (0)
    result = paired_test("accuracy", outcomes(a, seeds, spread, rng),
                         outcomes(b, seeds, spread, rng), labels, 1 - ALPHA, SAMPLES)
    return result.p_value, result.difference


def realized_gain(rng: np.random.Generator, draws: int = 200) -> float:
    """The planted gain in the population: the two optimizers' mean chance over many dev
    sets and run shifts."""
    gains = []
    for _ in range(draws):
        a, b = chances("gain", rng)
        shift = rng.normal(0.0, SEED_SPREAD["gain"], 2)
        gains.append(expit(logit(a) + shift[0]).mean() - expit(logit(b) + shift[1]).mean())
    return float(np.mean(gains))


def rejection_rate(scenario: str, seeds: int, replications: int, seed: int = 0
                   ) -> dict[str, float]:
    """How often the test rejects at ``ALPHA`` over ``replications`` simulated comparisons,
    with the spread of the observed differences."""
    rng = np.random.default_rng([seed, seeds, list(SEED_SPREAD).index(scenario)])
    results = np.array([replicate(scenario, seeds, rng) for _ in range(replications)])
    rate = float((results[:, 0] < ALPHA).mean())
    return {"scenario": scenario, "seeds": seeds, "replications": replications,
            "rejected": rate,
            "standard_error": float(np.sqrt(max(rate * (1 - rate), 1e-12) / replications)),
            "difference_sd": float(results[:, 1].std(ddof=1))}


def markdown(rows: list[dict[str, float]], gain: float, seconds: float) -> str:
    lines = ["| scenario | seeds | replications | rejected at 5% | ± (binomial s.e.) | "
             "sd of the observed difference |", "|:--|--:|--:|--:|--:|--:|"]
    lines += [f"| {r['scenario']} | {r['seeds']} | {r['replications']} | {r['rejected']:.3f} | "
              f"{r['standard_error']:.3f} | {r['difference_sd']:.4f} |" for r in rows]
    return (
        "# The verdict's test: size and power\n\n"
        f"Generated by `python benchmarks/verdict_size.py`: {TEST_NAME}, version "
        f"{TEST_VERSION} (`adaopt.statistics.paired_test`), {SAMPLES} dev-set resamples, on "
        f"simulated accuracy over {EXAMPLES} dev examples; nominal level {ALPHA:g}. Under "
        "`seeds` and `dev` every rejection is a false positive; under `gain` the first "
        f"optimizer is better by {gain:.4f} in the population (realized), and the rate is the "
        "power. The scenarios are described in the script's docstring.\n\n"
        + "\n".join(lines) + "\n\n"
        f"Machine: {platform.processor() or platform.machine()}; {seconds / 60:.1f} minutes.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [rejection_rate(scenario, seeds, args.replications)
            for scenario in ("seeds", "dev", "gain") for seeds in args.seeds]
    gain = realized_gain(np.random.default_rng(99))
    seconds = time.perf_counter() - started
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(
        {"test": TEST_NAME, "version": TEST_VERSION, "alpha": ALPHA, "samples": SAMPLES,
         "examples": EXAMPLES, "realized_gain": gain, "seconds": round(seconds, 1),
         "rows": rows}, indent=2) + "\n")
    OUT.with_suffix(".md").write_text(markdown(rows, gain, seconds))
    print(markdown(rows, gain, seconds))


if __name__ == "__main__":
    main()
