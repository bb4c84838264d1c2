"""``REPORT.md``: the answer to the paper's question, written from the pipeline's outputs.

Every number in the report is read from the tables the evaluate stage wrote (the summary, the
paired differences, the runs, the tuning choices) or from the ablation's table; the sentences
around them are chosen by rules stated here (what counts as "better", when a task beats its
trivial baseline), so that a re-run rewrites the report and a test can check that the
committed report is the one its outputs give.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaopt.config import SETTINGS, Params, grid_values
from adaopt.hparams import in_table_order
from adaopt.preregistration import (
    PATH as PREREGISTRATION,
)
from adaopt.preregistration import (
    Preregistration,
    Record,
    check_design,
    load_preregistration,
    registration_record,
)
from adaopt.statistics import (
    BETTER,
    EQUIVALENT,
    IDENTICAL,
    INCONCLUSIVE,
    NO_SIGNAL,
    UNTESTED,
    WORSE,
    paired_difference,
)
from adaopt.summary import (
    PRIMARY,
    beats_baseline,
    best_constant,
    cut_steps,
    format_interval,
    headline_markdown,
    read_choices,
    tuning_markdown,
)
from adaopt.tasks import get_task

#: Performance-profile factors: within tau x the fastest optimizer's time to target.
TAUS = (1.0, 1.5, 2.0, 3.0, 4.0)


def method_against_references(paired: pd.DataFrame, registration: Preregistration
                              ) -> pd.DataFrame:
    """The method's rows of the evaluate stage's paired comparisons against the registered
    references (verdicts included), the primary family first."""
    rows = paired[(paired.optimizer == registration.method)
                  & paired.reference.isin(registration.references)]
    primary = rows.family == PRIMARY
    return pd.concat([rows[primary], rows[~primary]]).reset_index(drop=True)


def _claim(voting: pd.DataFrame) -> str:
    """What the voting members say of the claim that the method is better."""
    verdicts = voting.verdict.replace({IDENTICAL: EQUIVALENT})  # it cut and changed nothing
    better, worse = int((verdicts == BETTER).sum()), int((verdicts == WORSE).sum())
    if voting.empty:
        return ("not tested here: no task can vote (identical runs without a cut, no signal "
                "above the trivial baseline, or nothing to test)")
    if better == len(voting):
        return "supported on every task that votes"
    if better and not worse:
        return "supported on some tasks only, and worse on none"
    if worse and not better:
        return "not supported: it is worse on some tasks and better on none"
    if better:
        return "mixed: better on some tasks, worse on others"
    if (verdicts == EQUIVALENT).all():
        return ("not supported: equivalent within the declared margins on every task that "
                "votes")
    return "undecided at this budget: no task that votes separates them"


def overall_verdict(rows: pd.DataFrame, label: str) -> str:
    """One sentence over ``rows`` (one comparison over tasks): the verdicts, which tasks vote,
    and what that says of the claim; identical and no-signal tasks never decide it."""
    if rows.empty:
        return f"{label}: no paired comparison in this sweep."
    counts = {name: int((rows.verdict == name).sum()) for name in
              (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, IDENTICAL, NO_SIGNAL, UNTESTED)}
    parts = ", ".join(f"{name} on {count}" for name, count in counts.items() if count)
    voting = rows[rows.votes.astype(bool)]
    notes = []
    if counts[IDENTICAL]:
        identical = rows[rows.verdict == IDENTICAL]
        cut = identical[identical.cuts.fillna(0) > 0].task.tolist()
        if cut:
            why = f"the controller cut on {', '.join(cut)}, which vote as equivalent"
        elif identical.cuts.isna().all():
            why = "cuts not recorded: these runs predate the controller's record; no evidence"
        else:
            why = "no cut: no evidence about the controller"
        notes.append(f"identical dev predictions on every seed on "
                     f"{', '.join(identical.task)} ({why})")
    if counts[NO_SIGNAL]:
        notes.append("no signal above the trivial baseline on "
                     + ", ".join(rows[rows.verdict == NO_SIGNAL].task) + " (they do not vote)")
    note = f" {'; '.join(notes).capitalize()}." if notes else ""
    return (f"{label}, over {len(rows)} tasks ({len(voting)} vote): {parts}; the claim is "
            f"{_claim(voting)}.{note}")


def verdict_sentences(verdicts: pd.DataFrame, registration: Preregistration) -> list[str]:
    """The primary family's comparisons first (in the registered order), then the method
    against each reference in each setting over every task, exploratory."""
    primary = verdicts[verdicts.family == PRIMARY]
    sentences = []
    for comparison in registration.primary.comparisons:
        rows = primary[(primary.setting == comparison.setting)
                       & (primary.reference == comparison.reference)]
        if len(rows):
            sentences.append(overall_verdict(
                rows, f"**Primary**, {comparison.setting} setting, against "
                      f"{comparison.reference}"))
    for setting in ("fair", "traditional"):
        for reference in registration.references:
            rows = verdicts[(verdicts.family != PRIMARY) & (verdicts.setting == setting)
                            & (verdicts.reference == reference)]
            if len(rows):
                sentences.append(overall_verdict(
                    rows, f"Exploratory, {setting} setting, against {reference}"))
    return sentences


def registration_markdown(registration: Preregistration, record: Record, params: Params
                          ) -> str:
    """Which rule judged these runs, where it was set, and whether it came before them."""
    commit = (f"set at commit `{record.commit[:12]}` ({record.date})" if record.commit else
              "not committed")
    lines = [
        f"* Pre-registration: `{PREREGISTRATION}` (sha256 `{record.sha256[:16]}`), {commit}"
        + ("; **the file differs from that commit: this verdict is not pre-registered**"
           if record.uncommitted and record.commit else "") + ".",
        f"* The test: {registration.test.name}, version {registration.test.version}; alpha "
        f"{registration.alpha:g}, power {registration.power:g}; the dev set resampled "
        f"{registration.bootstrap.samples} times (seed {registration.bootstrap.seed}); a "
        f"diverged seed counts as the {registration.diverged}.",
        f"* Primary family ({registration.primary.size} members, Holm-corrected over all of "
        f"them): {registration.method} against "
        + "; ".join(f"{c.reference} ({c.setting})" for c in registration.primary.comparisons)
        + f", on {', '.join(registration.primary.tasks)}.",
    ]
    if record.runs_before:
        lines.append(f"* **The pre-registration was set after {record.runs_before} of the "
                     f"{record.runs} runs reported here were made** (their records were last "
                     "committed before it): for those runs it is a rule applied afterwards, not "
                     "one fixed in advance.")
    if problem := check_design(registration, params):
        lines.append(f"* These runs are not the registered design: {problem}.")
    return "\n".join(lines) + "\n"


def schedule_effect(runs: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per task and optimizer: fair minus traditional, paired by seed (same initialization and
    data order), so the part of the result that the shared schedule and clipping make. A cell
    the design runs in one setting only has no pairs (a design may have no traditional cell)."""
    scores = runs.assign(score=runs.score.where(runs.status != "diverged"))
    table = scores.pivot(index=["task", "optimizer", "seed"], columns="setting",
                         values="score").reindex(columns=list(SETTINGS))
    rows = []
    for task, optimizer in runs[["task", "optimizer"]].drop_duplicates().itertuples(index=False):
        group = table.loc[(task, optimizer)]  # in the runs' order: the sweep's, not pivot's
        result = paired_difference(group["fair"].to_numpy(), group["traditional"].to_numpy(),
                                   level)
        rows.append({"task": task, "optimizer": optimizer, "difference": result.mean,
                     "low": result.low, "high": result.high, "p_value": result.p_value,
                     "pairs": result.pairs})
    return pd.DataFrame(rows)


def performance_profile(summary: pd.DataFrame, setting: str,
                        taus: Iterable[float] = TAUS) -> pd.DataFrame:
    """Per optimizer, the fraction of tasks on which its median optimizer steps to target are
    within ``tau`` times the fastest optimizer's (Dolan and Moré's performance profile).

    Steps, not seconds: they are the same for a seed on any machine, and the fair AdamW and
    AdaptiveAdam runs, the same computation, differ by seconds of machine noise. A cell that
    never reached its target (median +inf) counts as never within any tau; a task that no
    optimizer reached counts for nobody; a task without a target is left out, and so is a task
    an optimizer did not run (the design may leave cells out): the fraction is of its tasks.
    """
    cells = summary[(summary.setting == setting)
                    & summary.time_to_target_median_steps.notna()]
    if cells.empty:
        return pd.DataFrame(columns=[f"tau {tau:g}" for tau in taus])
    times = cells.pivot(index="optimizer", columns="task", values="time_to_target_median_steps")
    times = times.astype(float)  # NaN: a cell the design leaves out of that task
    fastest = times.min(axis=0)
    ratio = times / fastest.where(np.isfinite(fastest), np.nan)
    order = in_table_order(times.index)
    return pd.DataFrame({f"tau {tau:g}": (ratio <= tau).sum(axis=1) / times.notna().sum(axis=1)
                         for tau in taus}).loc[order]


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


def _p(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2g}"


def _verdict_cell(row: Any) -> str:
    """The verdict, with an equivalent difference's sign and size (inside the margin, but not
    nothing)."""
    if row.verdict == EQUIVALENT:
        return f"equivalent ({row.difference:+.4f})"
    return row.verdict


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    """One row per comparison: its family, the paired difference and its interval, the
    Holm-corrected p-values, the margin and the smallest margin this budget could reach, the
    smallest detectable difference, pairs and diverged seeds, cuts, the verdict."""
    shown = pd.DataFrame({
        "family": verdicts.family.map(lambda f: f if f == PRIMARY else "exploratory"),
        "setting": verdicts.setting, "reference": verdicts.reference, "task": verdicts.task,
        "difference": verdicts.difference.map(lambda v: f"{v:+.4f}"),
        "interval": [format_interval(r.low, r.high, 4, signed=True, missing="n/a")
                     for r in verdicts.itertuples(index=False)],
        "p (Holm)": verdicts.p_adjusted.map(_p),
        "margin": verdicts.margin.map(lambda v: "—" if math.isnan(v) else f"±{v:g}"),
        "p equivalent (Holm)": verdicts.p_equivalent_adjusted.map(_p),
        "equivalence reachable within": verdicts.equivalence_bound.map(
            lambda v: "—" if math.isnan(v) else f"±{v:.4f}"),
        "detectable": verdicts.detectable.map(lambda v: "—" if math.isnan(v) else f"{v:.4f}"),
        "pairs": verdicts.pairs,
        "diverged": [f"{r.diverged}/{r.reference_diverged}"
                     for r in verdicts.itertuples(index=False)],
        "cuts": verdicts.cuts.map(lambda v: "not recorded" if pd.isna(v) else f"{int(v)}"),
        "verdict": [_verdict_cell(r) for r in verdicts.itertuples(index=False)]})
    return shown.to_markdown(index=False) + "\n"


def schedule_markdown(effect: pd.DataFrame) -> str:
    """Optimizer x task: fair minus traditional, ``+d [low, high]``."""
    if not (effect.pairs > 0).any():
        return "No optimizer ran a task in both settings: there is nothing to pair.\n"
    cells = [f"{r.difference:+.3f} "
             f"{format_interval(r.low, r.high, 3, signed=True, missing='n/a')}"
             if r.pairs else "n/a"
             for r in effect.itertuples(index=False)]
    table = effect.assign(cell=cells).pivot(index="optimizer", columns="task", values="cell")
    order = in_table_order(table.index)
    return table.loc[order, list(dict.fromkeys(effect.task))].to_markdown() + "\n"


def baseline_markdown(check: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "task": check.task, "best cell (selection)": check.optimizer + " · " + check.setting,
        "metric": check.metric, "dev mean": check["mean"].map(_number),
        "bootstrap interval": [f"[{_number(r.ci_low)}, {_number(r.ci_high)}]"
                       for r in check.itertuples(index=False)],
        "baseline": [f"{_number(r.baseline)} ({r.baseline_rule})"
                     for r in check.itertuples(index=False)],
        "best constant": check.bar.map(_number),
        "beats both": check.beats_baseline.map({True: "yes", False: "**no**"})})
    return shown.to_markdown(index=False) + "\n"


def _steps_to_target(row: Any) -> str:
    """``120 steps · 3840 ex (3/3)`` (tokens for a language model); never; no target."""
    steps = row.time_to_target_median_steps
    if math.isnan(steps):
        return "no target"
    if math.isinf(steps):
        return "never"
    unit = "tokens" if get_task(row.task).kind == "language_modeling" else "examples"
    seen = getattr(row, f"time_to_target_median_{unit}")
    seen_text = "" if math.isnan(seen) else f" · {seen:.0f} {'tok' if unit == 'tokens' else 'ex'}"
    return f"{steps:.0f} steps{seen_text} ({row.reached_target}/{row.seeds})"


def time_to_target_markdown(summary: pd.DataFrame, setting: str) -> str:
    """Optimizer x task: the median optimizer steps, and examples or tokens seen, to the task's
    target (not reached: never)."""
    cells = summary[summary.setting == setting]
    shown = cells.assign(cell=[_steps_to_target(row) for row in cells.itertuples(index=False)])
    table = shown.pivot(index="optimizer", columns="task", values="cell")
    order = in_table_order(table.index)
    return table.loc[order, list(dict.fromkeys(cells.task))].to_markdown() + "\n"


def machine_drift(summary: pd.DataFrame) -> float:
    """The largest throughput gap, as ``|log(fair / traditional)|``, between one optimizer's two
    settings on one task: the same computation per step (clipping's norm aside) run by
    different stages at different times, so how far the machine's speed drifts between stages,
    which the spread over one cell's seeds does not see (NaN where no cell pair exists)."""
    both = summary.pivot_table(index=["task", "optimizer"], columns="setting",
                               values="train_samples_per_s")
    if not {"fair", "traditional"} <= set(both.columns):
        return math.nan
    gaps = np.log(both.fair / both.traditional).dropna()
    return float(gaps.abs().max()) if len(gaps) else math.nan


def drift_sentence(drift: float) -> str:
    """Why the throughput column ranks little, and where the optimizer's own cost is."""
    own = ("The optimizer's own step cost, timed side by side in one process, is "
           "[`benchmarks/results/optimizer_step.txt`](benchmarks/results/optimizer_step.txt).")
    if math.isnan(drift):
        return ("No optimizer ran a task in both settings, so the drift between stages is "
                f"unmeasured and the count weighs only the seeds' spread. {own}\n")
    return (f"A ratio counts only beyond two combined spreads over seeds and beyond the "
            f"machine's drift between stages: up to {math.expm1(drift):.0%} between one "
            f"optimizer's fair and traditional cells on one task (the same computation, run at "
            f"different times). {own}\n")


def efficiency_markdown(summary: pd.DataFrame, setting: str) -> str:
    """Per optimizer: throughput relative to AdamW's on the same task (geometric mean over
    tasks) and on how many tasks that ratio lies beyond the machine's noise, the largest peak
    memory, and its state's size on each model.

    Every cell ran in its own stage, at its own time: a ratio ranks nothing within two combined
    spreads over seeds (the noise within a stage) or within the drift between stages
    (:func:`machine_drift`), whichever is wider.
    """
    cells = summary[summary.setting == setting].set_index(["task", "optimizer"])
    adamw = cells.xs("adamw", level="optimizer")
    tasks = cells.index.get_level_values("task")
    ratio = cells.train_samples_per_s / adamw.train_samples_per_s.reindex(tasks).values
    band = np.log1p(2 * np.hypot(cells.throughput_noise,
                                 adamw.throughput_noise.reindex(tasks).values))
    drift = machine_drift(summary)
    beyond = np.log(ratio).abs() > np.fmax(band, drift)  # a NaN drift leaves the band
    models = {task: "GPT" if get_task(task).kind == "language_modeling" else "MiniLM"
              for task in cells.index.get_level_values("task")}
    rows = {}
    for optimizer, group in cells.groupby(level="optimizer", sort=False):
        tasks = group.index.get_level_values("task")
        state = group.optimizer_state_mb.groupby(tasks.map(models)).max()
        rows[optimizer] = {
            "throughput vs adamw": float(np.exp(np.log(ratio.loc[group.index]).mean())),
            "beyond noise and drift": f"{int(beyond.loc[group.index].sum())} of {len(group)} "
                                      "tasks",
            "samples/s (range over tasks)": f"{group.train_samples_per_s.min():.1f}-"
                                            f"{group.train_samples_per_s.max():.1f}",
            "peak MiB (largest)": group.peak_memory_mb.max(),
            **{f"state MiB ({model})": value for model, value in state.items()},
        }
    table = pd.DataFrame(rows).T
    order = in_table_order(table.index)
    return table.loc[order].to_markdown(floatfmt=".2f") + "\n\n" + drift_sentence(drift)


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Outputs:
    """What the report reads: the evaluate stage's tables, the ablations', the prepare report
    and the learning-curve benchmark (tasks the profile's budget leaves at their baseline)."""

    summary: pd.DataFrame
    paired: pd.DataFrame
    runs: pd.DataFrame
    choices: pd.DataFrame
    prepared: dict[str, Any]
    precision: pd.DataFrame
    compression: dict[str, pd.DataFrame] = field(default_factory=dict)
    curves: pd.DataFrame | None = None


#: Where the report's inputs lie, relative to the project root.
RESULTS = Path("results")
PREPARE_REPORT = Path("data") / "prepare_report.json"
CURVES = Path("benchmarks") / "results" / "learning_curves.csv"


def load_outputs(root: str | Path, params: Params) -> Outputs:
    """The report's inputs for ``params``' sweep and ablations, from under ``root``."""
    root = Path(root)
    results = root / RESULTS
    curves = root / CURVES
    return Outputs(
        summary=pd.read_csv(results / "summary.csv"),
        paired=pd.read_csv(results / "paired.csv"),
        runs=pd.read_csv(results / "runs.csv"),
        choices=read_choices(results / "tuning.csv"),
        prepared=json.loads((root / PREPARE_REPORT).read_text()),
        precision=pd.read_csv(results / "precision.csv"),
        compression={task: pd.read_csv(results / "compression" / f"{task}.csv")
                     for task in params.compress.tasks},
        curves=pd.read_csv(curves) if curves.is_file() else None,
    )


# ----------------------------------------------------------------------------- sections


def _task_runs(params: Params, task: str) -> tuple[int, float]:
    """``task``'s cells and its runs in full-length equivalents (tuning trials at the task's
    tuning fraction, plus every cell's seeds); a task the profile does not train gets the
    trained tasks' medians."""
    cells = [cell for cell in params.cells if cell.task == task]
    if not cells:
        counts = [_task_runs(params, name) for name in params.sweep.tasks]
        return (int(np.median([n for n, _ in counts])), float(np.median([r for _, r in counts])))
    fraction = params.tuning_steps(task) / params.train_for(task).max_steps
    return len(cells), sum(params.tuning.trials * fraction + len(cell.seeds) for cell in cells)


def _budget_hours(params: Params, task: str, steps: int, seconds_per_step: float) -> float:
    """Training hours the profile's design spends on ``task`` at ``steps`` steps a run."""
    return _task_runs(params, task)[1] * steps * seconds_per_step / 3600


def clear_margin(metric: str, baseline: float, examples: int) -> float:
    """Two standard errors of a dev score near ``baseline`` on ``examples`` examples: what a
    single run must clear to count as above the baseline (accuracy: binomial; a correlation
    near zero: 1/sqrt(n); SQuAD's 0-100 scores: their largest possible spread, 50/sqrt(n))."""
    if metric == "accuracy":
        return 2 * math.sqrt(baseline * (1 - baseline) / examples)
    if metric in ("f1", "exact_match"):
        return 2 * 50 / math.sqrt(examples)
    return 2 / math.sqrt(examples)


def _curve_sentence(task: str, curves: pd.DataFrame | None, params: Params) -> str:
    """``task``'s measured selection-split learning curves, and the budget the profile would
    need to reach the step where the best learning rate first clears the split's trivial
    baseline by :func:`clear_margin`."""
    curve = None if curves is None else curves[curves.task == task]
    if curve is None or curve.empty:
        return " No learning curve was measured for it."
    first = curve.iloc[0]
    baseline = best_constant(task, float(first.baseline))  # the better class of the split
    margin = clear_margin(first.metric, baseline, int(first.examples))
    greater = get_task(task).greater_is_better
    above = (curve[curve.value > baseline + margin] if greater
             else curve[curve.value < baseline - margin])
    rates = ", ".join(f"{lr:g}" for lr in sorted(curve.lr.unique()))
    text = (f" Measured selection-split curves (`benchmarks/learning_curves.py`: "
            f"{first.optimizer}, {first.setting}, lr {rates}, batch {int(first.batch_size)}, "
            f"seed {int(first.seed)}, {first.metric} on {int(first.examples)} selection "
            f"examples, best constant prediction there {baseline:.3g}, "
            f"{curve.s_per_step.mean():.2f} s a step).")
    clear = f"that baseline by two standard errors of the split ({margin:.3g})"
    if above.empty:
        return text + (f" No learning rate clears {clear} within {int(curve.step.max())} "
                       "steps; the profile cannot buy this task a signal on this machine.")
    best = above.loc[above.step.idxmin()]
    step = int(best.step)
    hours = _budget_hours(params, task, step, float(curve.s_per_step.mean()))
    cells, _ = _task_runs(params, task)
    return text + (f" lr {best.lr:g} first clears {clear} at {step} steps: the protocol "
                   f"({params.tuning.trials} trials a cell, {cells} cells and their seeds) at "
                   f"that length needs about {hours:.1f} hours of training for this task alone.")


def unswept_tasks(params: Params) -> list[str]:
    """The prepared tasks this profile does not train (``data.tasks`` without a workload)."""
    return [task for task in params.prepared_tasks if task not in params.sweep.tasks]


def no_signal_markdown(check: pd.DataFrame, curves: pd.DataFrame | None, params: Params,
                       prepared: dict[str, Any]) -> str:
    """Each task whose best cell does not beat its baseline, and each prepared task the profile
    does not train: its measured learning curve and the budget a signal would need."""
    missing = check[~check.beats_baseline]
    lines = []
    for row in missing.itertuples(index=False):
        budget = params.train_for(row.task)
        against = (f"the baseline's {_number(row.baseline)}" if row.bar == row.baseline else
                   f"the better constant class's {_number(row.bar)}")
        lines.append(f"* **{row.task}**: {budget.max_steps} steps of {budget.batch_size} "
                     f"examples leave the best cell ({row.optimizer}, {row.setting}) at "
                     f"{_number(row.mean)} [{_number(row.ci_low)}, {_number(row.ci_high)}] "
                     f"against {against}." + _curve_sentence(row.task, curves, params))
    for task in unswept_tasks(params):
        baseline = prepared[task]["baseline"]
        lines.append(f"* **{task}**: prepared but not trained in this profile (no "
                     f"`workloads` entry); its baseline is {_number(baseline['value'])} "
                     f"({baseline['rule']})."
                     + _curve_sentence(task, curves, params))
    if not lines:
        return "Every task's best cell beats its trivial baseline.\n"
    return "\n".join(lines) + "\n"


def spaces_markdown(params: Params) -> str:
    """Each optimizer's grid per task family (fine-tuning; the language model's own), with the
    trials and their length per task."""
    rows = []
    for task in params.sweep.tasks:
        for optimizer in dict.fromkeys(c.optimizer for c in params.cells if c.task == task):
            grid = "; ".join(f"{name} " + ", ".join(f"{value:g}" for value in grid_values(g))
                             for name, g in params.space_for(task, optimizer).items())
            rows.append({"task": task, "optimizer": optimizer, "grid": grid})
    table = pd.DataFrame(rows)
    grouped = table.groupby(["optimizer", "grid"], sort=False).task.agg(", ".join).reset_index()
    budgets = pd.DataFrame([{
        "task": task, "steps": params.train_for(task).max_steps,
        "batch": params.train_for(task).batch_size, "tuning steps": params.tuning_steps(task),
        "trials": params.tuning.trials, "cells": _task_runs(params, task)[0],
        "seeds": _seed_counts(params, task)}
        for task in params.sweep.tasks])
    return (grouped[["optimizer", "task", "grid"]].rename(columns={"task": "tasks"})
            .to_markdown(index=False) + "\n\n" + budgets.to_markdown(index=False) + "\n")


def _seed_counts(params: Params, task: str) -> str:
    """The seeds of ``task``'s cells: one count, or the range of counts."""
    counts = sorted({len(cell.seeds) for cell in params.cells if cell.task == task})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def edges_sentence(choices: pd.DataFrame) -> str:
    edged = choices[choices.edges != ""]
    if edged.empty:
        return "No choice lies on the edge of its grid."
    sides = edged.edges.str.contains("upper").sum()
    return (f"{len(edged)} of {len(choices)} choices lie on the edge of their grid "
            f"({sides} at the upper edge, {len(edged) - sides} at the lower): there the best "
            "value may lie outside the grid.")


def precision_markdown(frame: pd.DataFrame) -> str:
    shown = frame[["optimizer", "precision", "dev", "status", "train_samples_per_s",
                   "throughput_vs_fp32", "peak_memory_mb", "wall_time_s"]]
    where = f"{frame.task.iloc[0]} on {frame.device.iloc[0]}, dev {frame.metric.iloc[0]}"
    return f"{where}:\n\n" + shown.to_markdown(index=False, floatfmt=".4g") + "\n"


def compression_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """Per task, the variants on the Pareto front of the dev metric against size or latency."""
    parts = []
    for task, frame in tables.items():
        latency = next(column for column in frame.columns if column.startswith("latency_b")
                       and not column.endswith("iqr_ms"))
        front = frame[frame.pareto_size | frame.pareto_latency]
        shown = front[["variant", "score", "size_mb", latency, "pareto_size", "pareto_latency"]]
        parts.append(f"**{task}** ({frame.metric.iloc[0]}):\n\n"
                     + shown.to_markdown(index=False, floatfmt=".4g") + "\n")
    return "\n".join(parts) if parts else "No task is compressed in this profile.\n"


def data_markdown(prepared: dict[str, Any], params: Params) -> str:
    """Per prepared task: training examples a run reads (none where the profile does not
    train it) against those prepared, and dev examples."""
    def count(split: dict[str, int], key: str) -> int:
        return split.get(key, split.get("blocks"))  # a language model counts blocks of text

    rows = []
    for task in params.prepared_tasks:
        splits, budget = prepared[task]["rows"], params.train_for(task)
        rows.append({
            "task": task, "train examples": count(splits["train"], "subsampled"),
            "read by a run": (budget.max_steps * budget.batch_size
                              if task in params.sweep.tasks else 0),
            "selection": count(splits["selection"], "carved"),
            "dev scored": count(splits["validation"], "subsampled"),
            "dev in the release": count(splits["validation"], "kept")})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def references_markdown() -> str:
    return REFERENCE_RESULTS.to_markdown(index=False) + "\n"


def _squad_exact_match(summary: pd.DataFrame) -> str:
    squad = summary[summary.task == "squad"]
    if squad.empty or "exact_match.mean" not in squad:
        return ""
    table = squad.pivot(index="optimizer", columns="setting", values="exact_match.mean")
    order = in_table_order(table.index)
    return ("SQuAD exact match (mean over finished seeds):\n\n"
            + table.loc[order].to_markdown(floatfmt=".1f") + "\n\n")


def cuts_markdown(summary: pd.DataFrame) -> str:
    """Every controlled cell: its controller's cuts per run, in seed order."""
    cells = summary[summary.cuts.fillna("") != ""]
    if cells.empty:
        return "No optimizer with a metric-driven controller in the sweep.\n"
    table = cells.assign(cell=cells.optimizer + " · " + cells.setting).pivot(
        index="cell", columns="task", values="cuts")
    return table[list(dict.fromkeys(cells.task))].rename_axis("cuts per run").to_markdown() + "\n"


def selected_steps_markdown(runs: pd.DataFrame) -> str:
    """Per controlled cell and seed, the steps of the controller's cuts and the step whose
    weights were kept (selected on the selection split), flagged where that came before the
    first cut: there the cuts changed nothing that was kept."""
    controlled = runs[runs.controlled.astype(bool) & (runs.status != "diverged")]
    if controlled.empty:
        return ""
    rows, early = [], 0
    for row in controlled.itertuples(index=False):
        cuts = cut_steps(row.cut_steps)
        before = bool(cuts) and row.best_step < cuts[0]
        early += before
        rows.append({"cell": f"{row.task} · {row.optimizer} · {row.setting}", "seed": row.seed,
                     "cuts at steps": " ".join(map(str, cuts)) or "none",
                     "kept step": f"{int(row.best_step)}" + (" (before the first cut)"
                                                            if before else "")})
    cut = sum(bool(cut_steps(value)) for value in controlled.cut_steps)
    return (f"{cut} of {len(controlled)} finished controlled runs cut at least once; in {early} "
            "of them the kept weights came before the first cut. Per run, the cuts and the "
            "step whose weights were kept (`figures/controller.png` draws, per task, the run "
            "that cut most):\n\n" + pd.DataFrame(rows).to_markdown(index=False) + "\n")


def machines_sentence(runs: pd.DataFrame) -> str:
    """Which machines the runs were made on: their numbers are byte-identical only there."""
    columns = ["machine.device", "machine.cpu_capability", "machine.torch", "machine.threads"]
    recorded = (runs[columns].dropna(how="all") if set(columns) <= set(runs.columns)
                else runs.iloc[:0])
    if recorded.empty:
        return "The runs predate the machine record: the machine they ran on is not recorded."
    kinds = recorded.astype(str).drop_duplicates()
    names = "; ".join(f"{r[0]} ({r[1]}), torch {r[2]}, {r[3]} threads"
                      for r in kinds.itertuples(index=False))
    older = len(runs) - len(recorded)
    return (f"The runs were made on: {names}"
            + (f"; {older} runs predate the machine record." if older else "."))


def render(outputs: Outputs, params: Params, registration: Preregistration, record: Record
           ) -> str:
    """``REPORT.md`` from the pipeline's outputs, judged by ``registration`` (``record``: where
    it was set, and whether it came before the runs)."""
    level = params.evaluate.confidence
    summary = outputs.summary
    verdicts = method_against_references(outputs.paired, registration)
    sentences = verdict_sentences(verdicts, registration)
    check = beats_baseline(summary)
    missing = check[~check.beats_baseline].task.tolist()
    signal = ("every trained task's best cell beats its trivial baseline" if not missing else
              f"no signal above the trivial baseline on {', '.join(missing)} (below)")
    if unswept := unswept_tasks(params):
        signal += f"; prepared but not trained at this budget: {', '.join(unswept)} (below)"
    profiles = "".join(
        f"{setting}:\n\n{performance_profile(summary, setting).to_markdown(floatfmt='.2f')}\n\n"
        for setting in SETTINGS)
    return (
        f"# Report: does the adaptive optimizer beat Adam? (profile `{params.profile}`)\n\n"
        "Generated by the pipeline's `report` stage (`python -m adaopt report`) from "
        "`results/`, `data/prepare_report.json` and `benchmarks/results/learning_curves.csv`; "
        "do not edit by hand. Every cell's detail is in `results/summary.md`.\n\n"
        "## Verdict\n\n" + "".join(f"* {sentence}\n" for sentence in sentences) +
        f"* Signal: {signal}.\n* {machines_sentence(outputs.runs)}\n\n"
        "### The rule, fixed before the runs\n\n"
        f"{registration_markdown(registration, record, params)}\n"
        "## The paper's table\n\n"
        f"Dev set, mean over finished seeds ± half-width of the {level:.0%} t-interval "
        "(finished/run seeds).\n\n"
        f"{headline_markdown(summary)}\n{_squad_exact_match(summary)}"
        "## AdaptiveAdam against each baseline\n\n"
        "Dev score of AdaptiveAdam minus the reference's, paired by seed and by dev example: a "
        "paired t-test over seeds (the training run is the unit) whose variance also carries "
        f"the dev set's sampling noise, {1 - registration.alpha:.0%} interval. The primary "
        "family is Holm-corrected over its full declared size; every other comparison is "
        "exploratory, corrected within its own (setting, reference) family over the tasks. In "
        "order: identical (bit-identical dev predictions on every seed; it votes, as "
        "equivalent, only where the controller cut); no signal (the task's best cell does not "
        "beat its trivial baseline: it does not vote); equivalent where the corrected two "
        "one-sided tests put the difference within the task's registered margin, whether or "
        "not it excludes zero (shown with its sign and size); better or worse where the "
        "corrected p of no difference is below alpha; inconclusive otherwise, with the "
        "smallest difference this budget could detect and the smallest margin it could have "
        "called equivalent. A diverged seed stands in as its cell's worst finished seed "
        "(`diverged`: the method's / the reference's). In the fair setting every optimizer "
        "gets AdaptiveAdam's warmup and exponential decay, so AdaptiveAdam differs from AdamW "
        "only by its metric-driven cuts (`cuts`: over the paired runs).\n\n"
        f"{verdict_markdown(verdicts)}\n"
        "The controller's learning-rate cuts, per run (seeds in order):\n\n"
        f"{cuts_markdown(summary)}\n"
        "![AdaptiveAdam's learning rate beside AdamW's, with its cuts and the selection score "
        "it read](figures/controller.png)\n\n"
        f"{selected_steps_markdown(outputs.runs)}\n"
        "## Does each task beat its trivial baseline?\n\n"
        "The best cell is chosen by its mean selection-split score; its dev score's bootstrap "
        "interval over seeds and dev examples must exclude the trivial baseline and every other "
        "constant prediction (on a two-class task scored by accuracy, the better class on "
        "dev).\n\n"
        f"{baseline_markdown(check)}\n"
        f"{no_signal_markdown(check, outputs.curves, params, outputs.prepared)}\n"
        "## Traditional against fair: how much is the schedule\n\n"
        "Fair minus traditional (the shared warmup, decay and clipping), paired by seed.\n\n"
        f"{schedule_markdown(schedule_effect(outputs.runs, level))}\n"
        "## Efficiency\n\n"
        "Median optimizer steps, and examples (tokens for the language model) seen, to the "
        "task's target on the selection split, checked at every evaluation (reached/run seeds), "
        "fair setting; the same for a seed on any machine. Wall-clock throughput follows, "
        "counted against the machine's noise and its drift between stages.\n\n"
        f"{time_to_target_markdown(summary, 'fair')}\n"
        f"{efficiency_markdown(summary, 'fair')}\n"
        "Performance profiles: the fraction of tasks on which an optimizer reaches the target "
        "within tau times the fastest optimizer's steps; never reaching it counts as never.\n\n"
        f"{profiles}"
        "## The tuning record\n\n"
        f"{spaces_markdown(params)}\n{edges_sentence(outputs.choices)}\n\n"
        f"{tuning_markdown(outputs.choices)}\n"
        f"## Mixed precision\n\n{precision_markdown(outputs.precision)}\n"
        f"## Compression: the Pareto fronts\n\n{compression_markdown(outputs.compression)}\n"
        "## Published numbers, and what this profile's data sizes imply\n\n"
        f"{references_markdown()}\n"
        "Published fine-tuning reads the whole training set for several epochs; this profile's "
        "runs read a small part of it once:\n\n"
        f"{data_markdown(outputs.prepared, params)}"
    )


def report_text(root: str | Path, params: Params, preregistration: str | Path = PREREGISTRATION
                ) -> str:
    """``REPORT.md`` for the outputs under ``root``, judged by its pre-registration, with where
    that was set against when the runs' records were last committed."""
    root = Path(root)
    outputs = load_outputs(root, params)
    registration = load_preregistration(root / preregistration)
    run_files = [f"runs/{r.task}/{r.optimizer}/{r.setting}/seed{r.seed}/metrics.json"
                 for r in outputs.runs.itertuples(index=False)]
    record = registration_record(root, run_files, str(preregistration))
    return render(outputs, params, registration, record)
