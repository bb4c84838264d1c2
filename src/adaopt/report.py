"""``REPORT.md``: the answer to the paper's question, written from the pipeline's outputs.

Every number in the report is read from the tables the evaluate stage wrote (the summary, the
paired differences, the runs, the tuning choices) or from the ablation's table; the sentences
around them are chosen by rules stated here (what counts as "better", when a task beats its
trivial baseline), so that a re-run rewrites the report and a test can check that the
committed report is the one its outputs give.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from adaopt.hparams import OPTIMIZERS
from adaopt.statistics import paired_difference
from adaopt.summary import REFERENCES, headline_markdown
from adaopt.tasks import get_task

#: The paper's method, and what it is held against.
METHOD = "adaptive_adam"
#: Performance-profile factors: within tau x the fastest optimizer's time to target.
TAUS = (1.0, 1.5, 2.0, 3.0, 4.0)

BETTER, WORSE, UNCLEAR, UNTESTED = ("better", "worse", "no detectable difference at this budget",
                                    "not testable (fewer than two finished pairs)")


def verdict(low: float, high: float, greater_is_better: bool) -> str:
    """Better or worse when the interval of the paired difference excludes zero on that side;
    otherwise no detectable difference (an interval that holds zero cannot rank the two)."""
    if math.isnan(low) or math.isnan(high):
        return UNTESTED
    if low > 0 or high < 0:
        improved = (low > 0) == greater_is_better
        return BETTER if improved else WORSE
    return UNCLEAR


def method_against_references(paired: pd.DataFrame, method: str = METHOD) -> pd.DataFrame:
    """The paired difference ``method - reference`` per setting, reference and task, with its
    verdict."""
    rows = paired[(paired.optimizer == method) & paired.reference.isin(REFERENCES)].copy()
    rows["verdict"] = [verdict(row.low, row.high, get_task(row.task).greater_is_better)
                       for row in rows.itertuples(index=False)]
    return rows.reset_index(drop=True)


def overall_verdict(verdicts: pd.DataFrame, setting: str, reference: str) -> str:
    """One sentence: on how many tasks the method is better, worse or not distinguishable."""
    rows = verdicts[(verdicts.setting == setting) & (verdicts.reference == reference)]
    counts = rows.verdict.value_counts()
    better, worse = int(counts.get(BETTER, 0)), int(counts.get(WORSE, 0))
    total = len(rows)
    if total == 0:
        return f"No paired comparison with {reference} in the {setting} setting."
    if better == total:
        claim = "supported on every task"
    elif better == 0 and worse == 0:
        claim = "neither supported nor refuted: no task separates them at this budget"
    elif better == 0:
        claim = "not supported: it is never better, and worse on some tasks"
    else:
        claim = "supported on some tasks only"
    return (f"{setting} setting, against {reference}: better on {better} of {total} tasks, worse "
            f"on {worse}, no detectable difference on {total - better - worse}; the claim is "
            f"{claim}.")


def schedule_effect(runs: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per task and optimizer: fair minus traditional, paired by seed (same initialization and
    data order), so the part of the result that the shared schedule and clipping make."""
    scores = runs.assign(score=runs.score.where(runs.status != "diverged"))
    table = scores.pivot(index=["task", "optimizer", "seed"], columns="setting", values="score")
    rows = []
    for (task, optimizer), group in table.groupby(level=["task", "optimizer"], sort=False):
        result = paired_difference(group["fair"].to_numpy(), group["traditional"].to_numpy(),
                                   level)
        rows.append({"task": task, "optimizer": optimizer, "difference": result.mean,
                     "low": result.low, "high": result.high, "p_value": result.p_value,
                     "pairs": result.pairs})
    return pd.DataFrame(rows)


def performance_profile(summary: pd.DataFrame, setting: str,
                        taus: Iterable[float] = TAUS) -> pd.DataFrame:
    """Per optimizer, the fraction of tasks on which its median time to target is within
    ``tau`` times the fastest optimizer's (Dolan and Moré's performance profile).

    A cell that never reached its target (median +inf) counts as never within any tau; a task
    that no optimizer reached counts for nobody.
    """
    cells = summary[summary.setting == setting]
    times = cells.pivot(index="optimizer", columns="task", values="time_to_target_median_s")
    times = times.astype(float).replace(np.nan, np.inf)
    fastest = times.min(axis=0)
    ratio = times / fastest.where(np.isfinite(fastest), np.nan)
    order = [name for name in OPTIMIZERS if name in times.index]
    return pd.DataFrame({f"tau {tau:g}": (ratio <= tau).sum(axis=1) / times.shape[1]
                         for tau in taus}).loc[order]


def beats_baseline(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task, the best cell by its mean and whether its t-interval excludes the task's
    trivial baseline on the better side."""
    rows = []
    for task, cells in summary.groupby("task", sort=False):
        greater = get_task(task).greater_is_better
        finished = cells[cells.finished > 0]
        best = finished.loc[finished["mean"].idxmax() if greater else finished["mean"].idxmin()]
        baseline = best.get("baseline", math.nan)
        beats = bool(best.ci_low > baseline) if greater else bool(best.ci_high < baseline)
        rows.append({"task": task, "optimizer": best.optimizer, "setting": best.setting,
                     "metric": best.metric, "mean": best["mean"], "ci_low": best.ci_low,
                     "ci_high": best.ci_high, "baseline": baseline,
                     "baseline_rule": best.get("baseline_rule", ""),
                     "beats_baseline": beats and not math.isnan(baseline)})
    return pd.DataFrame(rows)


#: Published dev-set numbers for context (percent), with where they come from. all-MiniLM-L6-v2
#: is MiniLM-L6-H384 further trained as a sentence encoder, so its fine-tuning need not match.
MINILM_README = "https://github.com/microsoft/unilm/blob/master/minilm/README.md"
BERT_PAPER = "https://arxiv.org/abs/1810.04805"
REFERENCE_RESULTS = pd.DataFrame([
    ("BERT-base", "sst2", "accuracy", 93.2, MINILM_README),
    ("BERT-base", "mrpc", "as reported", 87.3, MINILM_README),
    ("BERT-base", "rte", "accuracy", 68.6, MINILM_README),
    ("BERT-base", "cola", "matthews_correlation", 58.9, MINILM_README),
    ("MiniLM-L6-H384", "sst2", "accuracy", 91.5, MINILM_README),
    ("MiniLM-L6-H384", "mrpc", "as reported", 88.9, MINILM_README),
    ("MiniLM-L6-H384", "rte", "accuracy", 68.8, MINILM_README),
    ("MiniLM-L6-H384", "cola", "matthews_correlation", 47.5, MINILM_README),
    ("BERT-base", "squad", "exact_match", 80.8, BERT_PAPER + " (Table 2)"),
    ("BERT-base", "squad", "f1", 88.5, BERT_PAPER + " (Table 2)"),
], columns=["model", "task", "metric", "value", "source"])


# ----------------------------------------------------------------------------- Markdown


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 3) -> str:
    if math.isnan(low):
        return "n/a"
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "setting": verdicts.setting, "reference": verdicts.reference, "task": verdicts.task,
        "difference": verdicts.difference.map(lambda v: f"{v:+.4f}"),
        "interval": [_interval(r.low, r.high, 4) for r in verdicts.itertuples(index=False)],
        "p": verdicts.p_value.map(lambda v: "—" if math.isnan(v) else f"{v:.2g}"),
        "pairs": verdicts.pairs, "verdict": verdicts.verdict})
    return shown.to_markdown(index=False) + "\n"


def schedule_markdown(effect: pd.DataFrame) -> str:
    """Optimizer x task: fair minus traditional, ``+d [low, high]``."""
    cells = [f"{r.difference:+.3f} {_interval(r.low, r.high)}" if r.pairs else "n/a"
             for r in effect.itertuples(index=False)]
    table = effect.assign(cell=cells).pivot(index="optimizer", columns="task", values="cell")
    order = [name for name in OPTIMIZERS if name in table.index]
    return table.loc[order, list(dict.fromkeys(effect.task))].to_markdown() + "\n"


def baseline_markdown(check: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "task": check.task, "best cell": check.optimizer + " · " + check.setting,
        "metric": check.metric, "mean": check["mean"].map(_number),
        "t-interval": [f"[{_number(r.ci_low)}, {_number(r.ci_high)}]"
                       for r in check.itertuples(index=False)],
        "baseline": [f"{_number(r.baseline)} ({r.baseline_rule})"
                     for r in check.itertuples(index=False)],
        "beats it": check.beats_baseline.map({True: "yes", False: "**no**"})})
    return shown.to_markdown(index=False) + "\n"


def efficiency_markdown(summary: pd.DataFrame, setting: str) -> str:
    """Per optimizer, over the tasks: median time to target, samples/s and peak memory."""
    cells = summary[summary.setting == setting]
    table = cells.groupby("optimizer", sort=False).agg(
        tasks_reached=("reached_target", lambda k: int((k > 0).sum())),
        samples_per_s=("train_samples_per_s", "mean"),
        peak_memory_mb=("peak_memory_mb", "max"))
    order = [name for name in OPTIMIZERS if name in table.index]
    return table.loc[order].to_markdown(floatfmt=".1f") + "\n"


def render(summary: pd.DataFrame, paired: pd.DataFrame, runs: pd.DataFrame,
           level: float) -> str:
    """``REPORT.md`` from the evaluate stage's tables."""
    verdicts = method_against_references(paired)
    sentences = [overall_verdict(verdicts, setting, reference)
                 for setting in ("fair", "traditional") for reference in REFERENCES
                 if reference in set(verdicts.reference)]
    check = beats_baseline(summary)
    missing = check[~check.beats_baseline].task.tolist()
    signal = ("every task's best cell beats its trivial baseline"
              if not missing else f"no signal above the trivial baseline on {', '.join(missing)}")
    profile = {setting: performance_profile(summary, setting) for setting in ("fair",)}
    return (
        "# Report: does the adaptive optimizer beat Adam?\n\n"
        "Generated by the pipeline's `report` stage from `results/`; do not edit by hand.\n\n"
        "## Verdict\n\n" + "".join(f"* {sentence}\n" for sentence in sentences) +
        f"* Signal: {signal}.\n\n"
        "## The paper's table\n\n"
        f"Dev set, mean over finished seeds ± half-width of the {level:.0%} t-interval "
        "(finished/run seeds).\n\n"
        f"{headline_markdown(summary)}\n"
        f"## AdaptiveAdam against Adam and AdamW\n\n{verdict_markdown(verdicts)}\n"
        "## Does each task beat its trivial baseline?\n\n"
        f"{baseline_markdown(check)}\n"
        "## Traditional against fair: how much is the schedule\n\n"
        "Fair minus traditional, paired by seed.\n\n"
        f"{schedule_markdown(schedule_effect(runs, level))}\n"
        "## Efficiency\n\n"
        f"{efficiency_markdown(summary, 'fair')}\n"
        "Performance profile (fair setting): the fraction of tasks on which an optimizer "
        "reaches the target within tau times the fastest optimizer's time; never reaching it "
        "counts as never.\n\n"
        f"{profile['fair'].to_markdown(floatfmt='.2f')}\n"
    )
