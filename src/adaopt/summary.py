"""Gathering the runs into tables: per cell, the dev score over seeds with its intervals, the
paired comparisons against the reference optimizers with their verdicts, and the time to a
fixed target in optimizer steps and in examples (tokens for a language model) seen.

Every number here is read from the runs' own files (``metrics.json``, ``efficiency.json``, the
CSV logs, ``predictions.json``) and the prepared dev sets; nothing is typed in. The statistics
themselves live in :mod:`adaopt.statistics`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaopt.config import SETTINGS, Params
from adaopt.hparams import CONTROLLED, in_table_order
from adaopt.metrics.squad import exact_match_score, f1_score, metric_max_over_ground_truths
from adaopt.preregistration import Preregistration
from adaopt.protocol.splits import DEV, examples_split
from adaopt.statistics import (
    Member,
    PairedComparison,
    bootstrap_interval,
    confidence_interval,
    decide,
    paired_test,
)
from adaopt.tasks import get_task
from adaopt.training import EFFICIENCY

#: One run: (task, optimizer, setting, seed), its folder ``runs/<task>/<opt>/<set>/seed<k>``.
Run = tuple[str, str, str, int]

RUN_KEYS = ["task", "optimizer", "setting", "seed"]
GROUP_KEYS = ["task", "optimizer", "setting"]
#: The optimizers every other one is compared with, when the sweep has them.
REFERENCES = ("adamw", "adam")


def sweep_cells(params: Params) -> list[Run]:
    """The runs of ``params``' design: each cell's seeds, the cells in the comparison's order."""
    return [(cell.task, cell.optimizer, cell.setting, seed)
            for cell in params.cells for seed in cell.seeds]


def cut_steps(value: Any) -> list[int]:
    """A run's ``cut_steps`` column as steps; read back from ``results/runs.csv`` an empty one
    is NaN."""
    return [int(step) for step in value.split()] if isinstance(value, str) else []


def run_dir(runs_dir: str | Path, run: Run) -> Path:
    task, optimizer, setting, seed = run
    return Path(runs_dir) / task / optimizer / setting / f"seed{seed}"


def _run_dirs(runs_dir: str | Path, cells: Iterable[Run]) -> list[tuple[Run, Path]]:
    """Exactly the runs of ``cells``; a missing one is an error that names it.

    Runs left in the folder by an earlier, wider sweep must not enter the summary, and a run
    of the sweep that is missing is an error, not a gap.
    """
    runs = [(cell, run_dir(runs_dir, cell)) for cell in cells]
    if not runs:
        raise ValueError("the sweep has no runs")
    missing = [path / "metrics.json" for _, path in runs if not (path / "metrics.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: missing ({len(missing)} of the sweep's "
                                f"{len(runs)} runs); run their train stages first")
    return runs


#: Metrics that are undefined (NaN, as scipy and HF ``evaluate`` give them) for a constant
#: predictor; a finished run scores 0 there, as Matthews' correlation does, and is flagged
#: (``constant_predictions``), instead of dropping out of its cell's seeds.
CORRELATIONS = ("pearson", "spearmanr")


def _score(run: dict[str, Any], split: str) -> float:
    """A run's score on ``split`` on its model-selection metric: NaN only for a diverged run."""
    score = run[split].get(run["metric"], math.nan)
    if math.isnan(score) and run["status"] != "diverged" and run["metric"] in CORRELATIONS:
        return 0.0
    return score


def _run_row(path: Path) -> dict[str, Any]:
    """One run's ``metrics.json`` and ``efficiency.json`` as a flat row."""
    run = json.loads((path / "metrics.json").read_text())
    cost = json.loads((path / "efficiency.json").read_text())
    metric = run["metric"]
    cuts = run.get("cuts")  # runs that predate the record: NaN, "not recorded"
    return {
        **{key: run[key] for key in RUN_KEYS},
        "metric": metric, "greater_is_better": run["greater_is_better"],
        "status": run["status"], "diverged_on": run["diverged_on"],
        "steps": run["steps"], "best_step": run["best_step"],
        "controlled": run.get("controlled", run["optimizer"] in CONTROLLED),
        "cuts": math.nan if cuts is None else len(cuts),
        "cut_steps": "" if not cuts else " ".join(str(cut["step"]) for cut in cuts),
        **{f"machine.{key}": value for key, value in run.get("machine", {}).items()},
        "score": _score(run, "dev"),
        "selection_score": _score(run, "selection"),
        "constant_predictions": run["status"] != "diverged" and math.isnan(
            run["dev"].get(metric, math.nan)) and metric in CORRELATIONS,
        "last_finite_loss": run["last_finite_loss"],
        **{key: run[key] for key in ("train_examples", "selection_examples", "dev_examples")},
        **{key: cost.get(key, math.nan) for key in EFFICIENCY},  # runs predating a key: NaN
        **{f"hparams.{key}": value for key, value in run["hparams"].items()},
        **{f"dev.{key}": value for key, value in run["dev"].items()},
    }


def load_runs(runs_dir: str | Path, cells: Iterable[Run]) -> pd.DataFrame:
    """One row per run of ``cells`` (in their order): status, dev scores, hyperparameters, costs.

    ``score`` is the dev score on the task's model-selection metric (NaN for a diverged run),
    ``dev.<metric>`` every dev metric, ``selection_score`` the selection-split score.
    """
    return pd.DataFrame([_run_row(path) for _, path in _run_dirs(runs_dir, cells)])


def load_logs(runs_dir: str | Path, kind: str, cells: Iterable[Run]) -> pd.DataFrame:
    """Every run's ``<kind>.csv`` (``train`` or ``eval``) in long form, tagged with the run."""
    frames = []
    for cell, path in _run_dirs(runs_dir, cells):
        frame = pd.read_csv(path / f"{kind}.csv")
        if not frame.empty:  # a run that diverged at once logged nothing
            frames.append(frame.assign(**dict(zip(RUN_KEYS, cell, strict=True))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_KEYS)


def load_baselines(report_path: str | Path) -> pd.DataFrame:
    """Per task, the trivial baseline on the model-selection metric, if the report has one.

    The report is optional (a summary of old runs may predate it): no file, no baselines.
    """
    path = Path(report_path)
    report = json.loads(path.read_text()) if path.is_file() else {}
    rows = [{"task": task, "baseline_rule": entry["baseline"]["rule"],
             "baseline": entry["baseline"]["value"]}
            for task, entry in report.items() if isinstance(entry, dict) and "baseline" in entry]
    return pd.DataFrame(rows, columns=["task", "baseline_rule", "baseline"])


# ----------------------------------------------------------------------------- time to target


#: What time to target is counted in, each from the eval log's column: optimizer steps and
#: examples (``samples``) or tokens seen, deterministic for a seed; training seconds beside them,
#: which vary from run to run and rank nothing.
TTT_UNITS = {"steps": "step", "examples": "samples", "tokens": "tokens", "s": "elapsed_s"}
TTT_COLUMNS = [f"time_to_target_{unit}" for unit in TTT_UNITS]


def _first_reach(curve: pd.DataFrame, metric: str, target: float, greater: bool
                 ) -> dict[str, float]:
    """Per unit, the count at the first evaluation at or beyond ``target``; +inf if none (NaN
    where the log predates the unit's column)."""
    reached = curve[curve[metric] >= target] if greater else curve[curve[metric] <= target]
    return {f"time_to_target_{unit}": (math.inf if not len(reached) else
                                       float(reached[column].iloc[0]) if column in curve
                                       else math.nan)
            for unit, column in TTT_UNITS.items()}


def time_to_target(runs: pd.DataFrame, evals: pd.DataFrame, targets: Mapping[str, float]
                   ) -> pd.DataFrame:
    """Per run, the optimizer steps, examples, tokens and seconds until the selection-split
    metric first reaches its task's line, checked at every evaluation.

    ``targets`` are the fixed per-task lines of ``params.evaluate.targets``; a task without
    one has no time to target (NaN). A run that never reaches its line, or diverged, gets +inf
    (``reached_target`` False): it stays in the table and counts in the cell's k/n.
    """
    curves = dict(tuple(evals.groupby(RUN_KEYS))) if len(evals) else {}
    never = dict.fromkeys(TTT_COLUMNS, math.inf)
    rows = []
    for run in runs.itertuples(index=False):
        key = (run.task, run.optimizer, run.setting, run.seed)
        target = targets.get(run.task, math.nan)
        curve = curves.get(key)
        if math.isnan(target):
            reach = dict.fromkeys(TTT_COLUMNS, math.nan)
        elif run.status == "diverged" or curve is None:
            reach = never
        else:
            reach = _first_reach(curve, run.metric, target, run.greater_is_better)
        rows.append({**dict(zip(RUN_KEYS, key, strict=True)), "target": target,
                     "reached_target": math.isfinite(reach["time_to_target_steps"]), **reach})
    return pd.DataFrame(rows, columns=[*RUN_KEYS, "target", "reached_target", *TTT_COLUMNS])


# ----------------------------------------------------------------------------- bootstrap


def _glue_arrays(predictions: list[dict[str, Any]], dev: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (seeds, n) aligned with the dev labels: key ``"i"`` is dev row ``i``."""
    labels = np.asarray(dev["labels"])
    keys = [str(i) for i in range(len(labels))]
    return np.array([[run[key] for key in keys] for run in predictions]), labels


def _squad_scores(predictions: list[dict[str, str]], dev: Any, metric: str) -> np.ndarray:
    """Per question (0-100): the best match against any gold answer; no prediction scores 0.

    Their mean is :func:`adaopt.metrics.squad_metrics`' number, so the bootstrap of a mean
    over questions recomputes the SQuAD metric on resampled questions.
    """
    score = {"f1": f1_score, "exact_match": exact_match_score}[metric]
    golds = [(qid, answers["text"]) for qid, answers in zip(dev["id"], dev["answers"],
                                                                strict=True)]
    return np.array([[100.0 * metric_max_over_ground_truths(score, run[qid], gold)
                      if qid in run else 0.0 for qid, gold in golds] for run in predictions])


def _block_losses(predictions: list[dict[str, float]], dev: Any, metric: str) -> np.ndarray:
    """Per dev block, its mean loss (nats per token); their mean is the validation loss."""
    keys = [str(i) for i in range(len(dev))]
    return np.array([[run[key] for key in keys] for run in predictions])


# Per-example scores whose mean over examples is the task's metric, by TaskSpec.kind (the
# other kinds resample predictions and labels: :func:`adaopt.statistics.bootstrap_statistics`).
PER_EXAMPLE: dict[str, Callable[[list[dict[str, Any]], Any, str], np.ndarray]] = {
    "extractive_qa": _squad_scores,
    "language_modeling": _block_losses,
}


def _load_dev(prepared_dir: str | Path, task: str) -> Any:
    from datasets import load_from_disk  # heavy; only the bootstrap needs it

    split = examples_split(DEV) if get_task(task).kind == "extractive_qa" else DEV
    return load_from_disk(str(Path(prepared_dir) / task))[split]


def _resampled(task: str, metric: str, predictions: list[dict[str, Any]], dev: Any
               ) -> tuple[str, np.ndarray, np.ndarray | None]:
    """What the bootstrap resamples for ``task``: ``(metric, values, labels)``, where values
    are the runs' predictions (seeds, n), or per-example scores under ``"mean"``."""
    per_example = PER_EXAMPLE.get(get_task(task).kind)
    if per_example is not None:
        return "mean", per_example(predictions, dev, metric), None
    values, labels = _glue_arrays(predictions, dev)
    return metric, values, labels


class DevPredictions:
    """The runs' saved dev predictions and the tasks' dev sets, each read once."""

    def __init__(self, runs_dir: str | Path, prepared_dir: str | Path) -> None:
        self.runs_dir, self.prepared_dir = runs_dir, prepared_dir
        self._dev: dict[str, Any] = {}
        self._runs: dict[Run, dict[str, Any]] = {}

    def dev(self, task: str) -> Any:
        return self._dev.setdefault(task, _load_dev(self.prepared_dir, task))

    def run(self, cell: Run) -> dict[str, Any]:
        if cell not in self._runs:
            path = run_dir(self.runs_dir, cell) / "predictions.json"
            self._runs[cell] = json.loads(path.read_text())
        return self._runs[cell]

    def arrays(self, task: str, metric: str, cells: list[Run]
               ) -> tuple[str, np.ndarray, np.ndarray | None]:
        """:func:`_resampled` of ``cells``' runs; a missing dev row is one clear error."""
        try:
            return _resampled(task, metric, [self.run(cell) for cell in cells], self.dev(task))
        except KeyError as error:  # predictions of another dev set, or a truncated file
            raise ValueError(f"{'/'.join(map(str, cells[0][:3]))}: a predictions.json has no "
                             f"prediction for dev row {error}") from None


def bootstrap_intervals(runs: pd.DataFrame, runs_dir: str | Path, prepared_dir: str | Path,
                        level: float, samples: int) -> pd.DataFrame:
    """Per cell, the bootstrap interval of the dev score over seeds and dev examples.

    Reads each finished run's ``predictions.json`` and the task's prepared dev set; a cell
    without a finished seed has no interval (NaN).
    """
    predictions = DevPredictions(runs_dir, prepared_dir)
    rows = []
    for keys, group in runs.groupby(GROUP_KEYS, sort=False):
        finished = group[group.status != "diverged"]
        low = high = math.nan
        if len(finished):
            cells = [tuple(cell) for cell in finished[RUN_KEYS].itertuples(index=False)]
            metric, values, labels = predictions.arrays(keys[0], group.metric.iloc[0], cells)
            low, high = bootstrap_interval(metric, values, labels, level, samples)
        rows.append({**dict(zip(GROUP_KEYS, keys, strict=True)),
                     "bootstrap_low": low, "bootstrap_high": high})
    return pd.DataFrame(rows, columns=[*GROUP_KEYS, "bootstrap_low", "bootstrap_high"])


# ----------------------------------------------------------------------------- the summary


def metric_statistics(runs: pd.DataFrame) -> dict[str, float]:
    """``<metric>.mean`` and ``<metric>.std`` over seeds for every dev metric the runs report.

    Metrics of other tasks are missing (NaN) in these rows and left out.
    """
    statistics = {}
    for column in runs.columns:
        values = runs[column].dropna() if column.startswith("dev.") else ()
        if len(values):
            name = column.removeprefix("dev.")
            statistics[f"{name}.mean"] = float(values.mean())
            statistics[f"{name}.std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return statistics


def _time_statistics(group: pd.DataFrame) -> dict[str, Any]:
    """Reached k, and per unit the median over all runs (not reached = +inf)."""
    return {"reached_target": int(group.reached_target.sum()),
            **{f"time_to_target_median_{unit}": float(np.median(group[f"time_to_target_{unit}"]))
               for unit in TTT_UNITS}}


def cuts_label(cuts: pd.Series) -> str:
    """A controlled cell's cuts per run, in seed order (``2 1 2``); ``not recorded`` for runs
    that predate the record."""
    if cuts.isna().any():
        return "not recorded"
    return " ".join(str(int(n)) for n in cuts)


def throughput_noise(samples_per_s: pd.Series) -> float:
    """The spread of a cell's throughput over its seeds, relative to its mean: the seeds do the
    same computation per step, so this is the machine's own noise (NaN under two runs)."""
    values = samples_per_s.dropna()
    return float(values.std(ddof=1) / values.mean()) if len(values) > 1 else math.nan


def _cell_row(group: pd.DataFrame, level: float) -> dict[str, Any]:
    """One (task, optimizer, setting): the dev score over its finished seeds, k/n, costs."""
    finished = group[group.status != "diverged"]
    low, high = confidence_interval(finished.score.to_numpy(), level)
    return {
        "metric": group.metric.iloc[0],
        "greater_is_better": bool(group.greater_is_better.iloc[0]),
        "seeds": len(group),
        "finished": len(finished),
        "diverged": len(group) - len(finished),
        "early_stopped": int((group.status == "early_stopped").sum()),
        "mean": finished.score.mean(),
        "std": finished.score.std(ddof=1) if len(finished) > 1 else math.nan,
        "confidence": level,
        "ci_low": low,
        "ci_high": high,
        "selection_mean": finished.selection_score.mean(),
        "cuts": cuts_label(group.cuts) if group.controlled.all() else "",
        "target": group.target.iloc[0],
        **_time_statistics(group),
        **{key: finished[key].mean() for key in EFFICIENCY},
        "throughput_noise": throughput_noise(finished.train_samples_per_s),
        **metric_statistics(finished),
    }


def summarize(runs: pd.DataFrame, ttt: pd.DataFrame, level: float,
              bootstrap: pd.DataFrame | None = None, baselines: pd.DataFrame | None = None
              ) -> pd.DataFrame:
    """Task x optimizer x setting, in the runs' order: one row per cell of the comparison.

    ``mean``, ``std`` and the t-interval (``ci_low``, ``ci_high``) are over the finished seeds
    (``finished`` of ``seeds``); ``bootstrap_low``/``high`` add the dev set's noise; the time
    to target counts every run (its median is +inf, null in JSON, when under half reached).
    """
    runs = runs.merge(ttt, on=RUN_KEYS, how="left")
    rows = [{**dict(zip(GROUP_KEYS, keys, strict=True)), **_cell_row(group, level)}
            for keys, group in runs.groupby(GROUP_KEYS, sort=False)]
    summary = pd.DataFrame(rows)
    if bootstrap is not None:
        summary = summary.merge(bootstrap, on=GROUP_KEYS, how="left")
    if baselines is not None:
        summary = summary.merge(baselines, on="task", how="left")
    return summary


def best_constant(task: str, baseline: float) -> float:
    """The best dev score of any constant prediction, given the trivial baseline's: on a
    two-class task scored by accuracy, the better of the two classes (the training split's
    majority class is dev's minority on RTE); elsewhere the baseline itself."""
    spec = get_task(task)
    if spec.metric == "accuracy" and spec.label_names is not None and len(spec.label_names) == 2:
        return max(baseline, 1 - baseline)
    return baseline


def beats_baseline(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task, the best cell by its mean selection-split score (dev chooses nothing) and
    whether its bootstrap interval over seeds and dev examples excludes, on the better side,
    the task's trivial baseline and every other constant prediction (``bar``)."""
    rows = []
    for task, cells in summary.groupby("task", sort=False):
        greater = get_task(task).greater_is_better
        finished = cells[cells.finished > 0]
        chosen = finished.selection_mean
        best = finished.loc[chosen.idxmax() if greater else chosen.idxmin()]
        baseline = best.get("baseline", math.nan)
        bar = best_constant(task, baseline)
        beats = (bool(best.bootstrap_low > bar) if greater
                 else bool(best.bootstrap_high < bar))
        rows.append({"task": task, "optimizer": best.optimizer, "setting": best.setting,
                     "metric": best.metric, "mean": best["mean"],
                     "ci_low": best.bootstrap_low, "ci_high": best.bootstrap_high,
                     "baseline": baseline,
                     "baseline_rule": best.get("baseline_rule", ""), "bar": bar,
                     "beats_baseline": beats and not math.isnan(baseline)})
    return pd.DataFrame(rows)


PAIRED_COLUMNS = ["task", "setting", "reference", "optimizer", "family", "family_size", "pairs",
                  "diverged", "reference_diverged", "difference", "low", "high", "se", "df",
                  "p_value", "p_equivalent", "margin", "p_adjusted", "p_equivalent_adjusted",
                  "detectable", "equivalence_bound", "identical", "cuts", "signal", "verdict",
                  "votes", "confidence", "per_seed"]
PRIMARY = "primary"


def _side(runs: pd.DataFrame, task: str, setting: str, optimizer: str, seeds: list[int]
          ) -> tuple[list[Run], int]:
    """The runs that stand for ``optimizer``'s ``seeds``, and how many of those diverged: a
    diverged seed counts with its cell's worst finished seed (the pre-registered rule), so a
    method that diverges is not spared its worst seeds. Empty when no seed finished."""
    cell = runs[(runs.task == task) & (runs.setting == setting) & (runs.optimizer == optimizer)
                & runs.seed.isin(seeds)].set_index("seed")
    finished = cell[cell.status != "diverged"]
    if finished.empty:
        return [], len(cell)
    greater = get_task(task).greater_is_better
    worst = int(finished.score.idxmin() if greater else finished.score.idxmax())
    stand_in = [seed if cell.status[seed] != "diverged" else worst for seed in seeds]
    return [(task, optimizer, setting, seed) for seed in stand_in], int(len(cell) - len(finished))


def _pair(runs: pd.DataFrame, predictions: DevPredictions, task: str, setting: str,
          optimizer: str, reference: str, registration: Preregistration
          ) -> tuple[dict[str, Any], PairedComparison]:
    """One comparison, ``optimizer - reference`` over the seeds both ran (a diverged seed
    standing in as its cell's worst): its row and the comparison its verdict comes from."""
    here = runs[(runs.task == task) & (runs.setting == setting)]
    seeds = sorted(set(here[here.optimizer == optimizer].seed)
                   & set(here[here.optimizer == reference].seed))
    own, diverged = _side(runs, task, setting, optimizer, seeds)
    other, reference_diverged = _side(runs, task, setting, reference, seeds)
    metric = runs[runs.task == task].metric.iloc[0]
    comparison = PairedComparison.untested(pairs=len(seeds) if own and other else 0)
    identical = False
    margin = registration.margins.get(task)
    if own and other:
        identical = not diverged and not reference_diverged and all(
            predictions.run(a) == predictions.run(b) for a, b in zip(own, other, strict=True))
        kind, values, labels = predictions.arrays(task, metric, own)
        _, reference_values, _ = predictions.arrays(task, metric, other)
        comparison = paired_test(kind, values, reference_values, labels,
                                 1 - registration.alpha, registration.bootstrap.samples,
                                 margin, registration.bootstrap.seed)
    cuts = here[(here.optimizer == optimizer) & here.seed.isin(seeds)].cuts
    row = {"task": task, "setting": setting, "reference": reference, "optimizer": optimizer,
           "pairs": comparison.pairs, "diverged": diverged,
           "reference_diverged": reference_diverged, "difference": comparison.difference,
           "low": comparison.low, "high": comparison.high, "se": comparison.se,
           "df": comparison.df, "p_value": comparison.p_value,
           "p_equivalent": comparison.p_equivalent,
           "margin": math.nan if margin is None else margin, "identical": identical,
           "cuts": cuts.sum(min_count=1), "confidence": 1 - registration.alpha,
           "per_seed": " ".join(f"{d:+.4g}" for d in comparison.per_seed)}
    return row, comparison


def _family(row: dict[str, Any], registration: Preregistration) -> str:
    """The primary family, or the exploratory family of one optimizer against one reference in
    one setting over the tasks."""
    if registration.primary_member(row["task"], row["setting"], row["reference"],
                                   row["optimizer"]):
        return PRIMARY
    return f"{row['setting']}: {row['optimizer']} - {row['reference']}"


def paired_comparisons(runs: pd.DataFrame, runs_dir: str | Path, prepared_dir: str | Path,
                       registration: Preregistration, signal: Mapping[str, bool]
                       ) -> pd.DataFrame:
    """Per task and setting, every optimizer minus each registered reference the design trains
    there,
    paired by seed and by dev example (:func:`adaopt.statistics.paired_test`), with its verdict
    (:func:`adaopt.statistics.decide`).

    The primary family (``registration.primary``) is corrected over its declared size, members
    this profile does not train included; every other comparison belongs to the exploratory
    family of its optimizer, reference and setting over the swept tasks. ``signal`` says per
    task whether its best cell beats its trivial baseline (:func:`beats_baseline`): a task
    where nothing learned gets the verdict "no signal". ``cuts`` counts the optimizer's
    controller cuts over the paired runs; ``diverged`` the seeds that stood in as their
    cell's worst.
    """
    predictions = DevPredictions(runs_dir, prepared_dir)
    pairs = []
    for task, setting in runs[["task", "setting"]].drop_duplicates().itertuples(index=False):
        trained = runs[(runs.task == task) & (runs.setting == setting)].optimizer.unique()
        present = [name for name in registration.references if name in set(trained)]
        pairs += [_pair(runs, predictions, task, setting, optimizer, reference, registration)
                  for reference, optimizer in itertools.product(present, trained)
                  if optimizer != reference]
    table = pd.DataFrame([row for row, _ in pairs])
    if table.empty:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    table["family"] = [_family(row, registration) for row, _ in pairs]
    table["signal"] = table.task.map(lambda task: bool(signal.get(task, True)))
    verdicts = []
    for name, family in table.groupby("family", sort=False):
        members = [Member(pairs[i][1], get_task(row.task).greater_is_better, bool(row.identical),
                          row.cuts, bool(row.signal)) for i, row in family.iterrows()]
        size = registration.primary.size if name == PRIMARY else None
        decided = decide(members, registration.alpha, registration.power, size)
        verdicts.append(pd.DataFrame(decided, index=family.index))
    return table.join(pd.concat(verdicts))[PAIRED_COLUMNS]


# ----------------------------------------------------------------------------- Markdown


def _digits(frame: pd.DataFrame) -> dict[str, int]:
    """Per task, decimals for its scores: 1 on SQuAD's 0-100 scale, 3 on fractions and losses."""
    return {task: 1 if group["mean"].abs().max() > 10 else 3
            for task, group in frame.groupby("task", sort=False)}


def finished_label(row: pd.Series) -> str:
    """``3/3`` or ``2/3, 1 diverged``: how many seeds finished of how many ran."""
    label = f"{row.finished}/{row.seeds}"
    return label + (f", {row.diverged} diverged" if 0 < row.diverged < row.seeds else "")


def headline_cell(row: pd.Series, digits: int) -> str:
    """``0.812 ± 0.031 (3/3)``, ``0.700 (1/3, 2 diverged)`` or ``diverged (0/3)``."""
    if row.finished == 0:
        return f"diverged ({finished_label(row)})"
    half = "" if math.isnan(row.ci_low) else f" ± {(row.ci_high - row.ci_low) / 2:.{digits}f}"
    return f"{row['mean']:.{digits}f}{half} ({finished_label(row)})"


def _optimizer_by_task(rows: pd.DataFrame, cells: pd.Series, metrics: pd.Series) -> str:
    """A Markdown table, optimizers (registry order) by tasks (given order), of ``cells``."""
    table = rows.assign(cell=cells).pivot(index="optimizer", columns="task", values="cell")
    tasks = list(dict.fromkeys(rows.task))
    table = table.loc[in_table_order(table.index), tasks]
    table.columns = [f"{task} ({metrics[task]}"
                     f"{'' if get_task(task).greater_is_better else ', lower is better'})"
                     for task in tasks]
    return table.rename_axis("optimizer").fillna("").to_markdown()


def _settings(frame: pd.DataFrame) -> list[str]:
    return [name for name in SETTINGS if name in set(frame.setting)]


def headline_markdown(summary: pd.DataFrame) -> str:
    """The paper's table: per setting, optimizer x task, ``mean ± t half-width (k/n)``."""
    digits = _digits(summary)
    metrics = summary.drop_duplicates("task").set_index("task").metric
    sections = []
    for setting in _settings(summary):
        rows = summary[summary.setting == setting]
        cells = [headline_cell(row, digits[row.task]) for _, row in rows.iterrows()]
        sections.append(f"### {setting}\n\n"
                        + _optimizer_by_task(rows, pd.Series(cells, index=rows.index), metrics))
    return "\n\n".join(sections) + "\n"


def headline_metrics(summary: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """The paper's table as DVC metrics, one file per task: ``{setting: {optimizer: mean}}``.

    ``dvc metrics show`` then prints one row per task and one column per (setting, optimizer);
    a cell where no seed finished is ``None``.
    """
    tables: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in summary.itertuples(index=False):
        value = None if math.isnan(row.mean) else round(float(row.mean), 4)
        tables.setdefault(row.task, {}).setdefault(row.setting, {})[row.optimizer] = value
    return tables


def paired_cell(row: pd.Series, digits: int) -> str:
    """``+0.012 [-0.004, 0.028] inconclusive``, ``identical (0 cuts)``; ``n/a`` without pairs."""
    if row.pairs == 0:
        return "n/a (0 pairs)"
    if row.identical:
        cuts = "" if pd.isna(row.cuts) else f" ({int(row.cuts)} cuts)"
        return f"identical{cuts}"
    if math.isnan(row.low):
        return f"{row.difference:+.{digits}f}, n/a ({row.pairs} pair)"
    return (f"{row.difference:+.{digits}f} [{row.low:+.{digits}f}, {row.high:+.{digits}f}] "
            f"{row.verdict}")


def paired_markdown(paired: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Per setting and reference, optimizer x task: the paired difference to the reference."""
    digits = _digits(summary)
    metrics = summary.drop_duplicates("task").set_index("task").metric
    sections = []
    for setting in _settings(paired):
        for reference in [name for name in REFERENCES if name in set(paired.reference)]:
            rows = paired[(paired.setting == setting) & (paired.reference == reference)]
            cells = [paired_cell(row, digits[row.task]) for _, row in rows.iterrows()]
            sections.append(f"### {setting}: minus {reference}\n\n"
                            + _optimizer_by_task(rows, pd.Series(cells, index=rows.index),
                                                 metrics))
    return "\n\n".join(sections) + "\n" if sections else "No reference optimizer in the sweep.\n"


def _other_metrics(row: pd.Series) -> str:
    """The row's dev metrics besides the model-selection one, as ``name mean ± std``."""
    parts = []
    for column, value in row.items():
        name = str(column).removesuffix(".mean")
        if name == column or name == row.metric or not math.isfinite(value):
            continue
        std = row.get(f"{name}.std", math.nan)
        parts.append(f"{name} {value:.4f} ± {0.0 if math.isnan(std) else std:.4f}")
    return "; ".join(parts)


def format_interval(low: float, high: float, digits: int = 4, *, signed: bool = False,
                    missing: str = "") -> str:
    """``[0.8120, 0.8440]``, or ``[-0.004, +0.028]`` for a difference (``signed``); ``missing``
    where the interval is undefined. Every table's intervals are written by this one."""
    if math.isnan(low):
        return missing
    sign = "+" if signed else ""
    return f"[{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def _time_to_target(row: pd.Series) -> str:
    """``120 steps, 3840 examples (2/3 reached)``: medians, where not reached counts as +inf."""
    if math.isnan(row.time_to_target_median_steps):
        return "no target"
    if math.isinf(row.time_to_target_median_steps):
        return f"not reached ({row.reached_target}/{row.seeds} reached)"
    seen = row.time_to_target_median_examples
    seen_text = "" if math.isnan(seen) else f", {seen:.0f} examples"
    return (f"{row.time_to_target_median_steps:.0f} steps{seen_text} "
            f"({row.reached_target}/{row.seeds} reached)")


def _baseline(row: pd.Series) -> str:
    value = row.get("baseline", math.nan)
    return "" if pd.isna(value) else f"{value:.4f} ({row.baseline_rule})"


def _percent(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1%}"


def to_markdown(summary: pd.DataFrame) -> str:
    """Every cell in detail: the score with both intervals, other metrics, baseline, costs.

    ``mean ± std`` is the model-selection metric over the finished seeds (k/n); ``other
    metrics`` the task's other dev metrics (SQuAD: ``exact_match`` beside ``f1``).
    """
    columns = {
        "task": "task", "setting": "setting", "optimizer": "optimizer", "metric": "metric",
        "finished": "finished", "score": "mean ± std", "t": "t-interval",
        "bootstrap": "bootstrap interval", "other": "other metrics (mean ± std)",
        "baseline_shown": "baseline", "cuts": "cuts per run", "target": "target",
        "ttt": "time to target (median)",
        "train_samples_per_s": "samples/s", "noise": "samples/s spread",
        "train_tokens_per_s": "tokens/s",
        "peak_memory_mb": "peak MiB", "optimizer_state_mb": "optimizer state MiB",
    }
    shown = summary.assign(
        finished=[finished_label(row) for _, row in summary.iterrows()],
        score=["diverged" if row.finished == 0 else
               f"{row['mean']:.4f} ± {0.0 if math.isnan(row['std']) else row['std']:.4f}"
               for _, row in summary.iterrows()],
        t=[format_interval(row.ci_low, row.ci_high) for _, row in summary.iterrows()],
        bootstrap=[format_interval(row.get("bootstrap_low", math.nan), row.get("bootstrap_high",
                                                                         math.nan))
                   for _, row in summary.iterrows()],
        other=[_other_metrics(row) for _, row in summary.iterrows()],
        baseline_shown=[_baseline(row) for _, row in summary.iterrows()],
        ttt=[_time_to_target(row) for _, row in summary.iterrows()],
        noise=[_percent(row.throughput_noise) for _, row in summary.iterrows()],
    )
    table = shown[list(columns)].rename(columns=columns)
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def load_choices(tuning_dir: str | Path, params: Params) -> pd.DataFrame:
    """One row per cell of the design: what its tune stage chose and how.

    ``edges`` names the hyperparameters whose choice lies on the edge of its grid, where the
    best value may lie outside it; ``no_finished_trial`` marks a space where every trial
    diverged.
    """
    rows = []
    for task, optimizer, setting, _ in params.cells:
        path = Path(tuning_dir) / task / optimizer / setting / "choice.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; run its tune stage first")
        choice = json.loads(path.read_text())
        rows.append({
            "task": task, "optimizer": optimizer, "setting": setting,
            "trials": choice["trials"], "selection_score": choice["score"],
            **{f"hparams.{name}": value for name, value in choice["hparams"].items()},
            "edges": ", ".join(f"{name} at the {side} edge"
                               for name, side in sorted(choice["edges"].items())),
            "no_finished_trial": choice["no_finished_trial"],
        })
    return pd.DataFrame(rows)


def cell_records(params: Params, runs_dir: str | Path, tuning_dir: str | Path
                 ) -> dict[str, dict[str, Any]]:
    """Per task, each cell's tuned values and each run's status, selection and dev scores,
    exactly as the tune and train stages wrote them (``choice.json``, ``metrics.json``).

    Written by the evaluate stage as ``results/cells/<task>.json``: what a stage downstream of
    training reads (the compress stage), without the executed notebooks and timings whose
    bytes change on every re-run, so that it re-runs only when a score or a choice changed.
    """
    records: dict[str, dict[str, Any]] = {}
    for task, optimizer, setting, seeds in params.cells:
        choice = json.loads((Path(tuning_dir) / task / optimizer / setting / "choice.json")
                            .read_text())
        runs = []
        for seed in seeds:
            run = json.loads((run_dir(runs_dir, (task, optimizer, setting, seed)) / "metrics.json")
                             .read_text())
            runs.append({"seed": seed, "status": run["status"], "selection": run["selection"],
                         "dev": run["dev"], "machine": run.get("machine")})
        record = records.setdefault(task, {"task": task, "cells": []})
        record["cells"].append({"optimizer": optimizer, "setting": setting,
                                "hparams": choice["hparams"], "runs": runs})
    return records


def read_choices(path: str | Path) -> pd.DataFrame:
    """``load_choices``' table as the evaluate stage wrote it (``results/tuning.csv``): a CSV
    reads an empty ``edges`` (a choice inside its grid) back as NaN, so it is restored."""
    return pd.read_csv(path).fillna({"edges": ""})


def tuning_markdown(choices: pd.DataFrame) -> str:
    """The tuned values per (task, setting, optimizer), with the grid-edge flags: tasks in the
    sweep's order (as the paper's table), each setting in ``SETTINGS`` order."""
    hparams = [column for column in choices.columns if column.startswith("hparams.")]
    shown = choices.assign(**{
        column.removeprefix("hparams."): choices[column].map(
            lambda value: "" if pd.isna(value) else f"{value:g}") for column in hparams})
    columns = ["task", "setting", "optimizer", *(c.removeprefix("hparams.") for c in hparams),
               "trials", "selection_score", "edges", "no_finished_trial"]
    ranks = {"task": {task: rank for rank, task in enumerate(dict.fromkeys(choices.task))},
             "setting": {setting: rank for rank, setting in enumerate(SETTINGS)}}
    table = shown.sort_values(["task", "setting"], key=lambda column: column.map(
        ranks[column.name]), kind="stable")[columns]
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def unfinished_markdown(runs: pd.DataFrame) -> str:
    """The runs whose status is not ``ok`` (diverged or stopped early), one row each."""
    columns = [*RUN_KEYS, "status", "diverged_on", "steps", "best_step", "last_finite_loss"]
    rows = runs[runs.status != "ok"][columns]
    return rows.to_markdown(index=False, floatfmt=".4g") + "\n" if len(rows) else "None.\n"


def report_markdown(summary: pd.DataFrame, paired: pd.DataFrame, runs: pd.DataFrame,
                    choices: pd.DataFrame) -> str:
    """``results/summary.md``: the paper's table, the paired comparisons, every cell, the
    tuned values, the runs that did not finish normally."""
    level = f"{summary.confidence.iloc[0]:.0%}"
    return (
        "## The paper's table\n\n"
        "Dev set, scored once with the weights selected on the selection split: mean over the "
        f"finished seeds ± half-width of the {level} Student-t interval (finished/run seeds); "
        "the bootstrap interval over seeds and dev examples is in the detailed table.\n\n"
        f"{headline_markdown(summary)}\n"
        "## Paired comparisons\n\n"
        "Dev score minus the reference's over the seeds where both finished, paired by seed "
        f"and by dev example: mean difference [{level} paired-bootstrap interval] and the "
        "verdict, Holm-corrected over the tasks (better, worse, equivalent within the task's "
        "declared margin, inconclusive, identical: bit-identical dev predictions, with the "
        "controller's cuts); `results/paired.csv` has the p-values and the smallest detectable "
        "difference.\n\n"
        f"{paired_markdown(paired, summary)}\n"
        f"## Every cell\n\n{to_markdown(summary)}\n"
        "## Tuned hyperparameters\n\n"
        "Chosen per (task, setting, optimizer) by the tune stage: the grid point with the best "
        "selection-split score, every optimizer with the same number of trials "
        "(`tuning/<task>/<optimizer>/<setting>/trials.csv` has every trial).\n\n"
        f"{tuning_markdown(choices)}\n"
        f"## Runs that did not finish normally\n\n{unfinished_markdown(runs)}"
    )
