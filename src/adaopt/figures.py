"""The paper's comparison as figures, drawn with seaborn from the gathered runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from adaopt import io
from adaopt.config import SETTINGS
from adaopt.optim import OPTIMIZERS
from adaopt.summary import confidence_interval

FACETS = {"col": "task", "row": "setting", "hue": "optimizer"}
# Bands and error bars (errorbar=confidence_interval) are the summary table's Student-t 95%
# interval over seeds: the same numbers as results/summary.*, and no bootstrap (which would
# redraw differently each run).


def _orders(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Optimizers in the registry's order and settings in the pipeline's, not the alphabet's."""
    return {"hue_order": [name for name in OPTIMIZERS if name in set(frame.optimizer)],
            "row_order": [name for name in SETTINGS if name in set(frame.setting)]}


def _save(grid: sns.FacetGrid, path: Path) -> Path:
    io.write_with(path, lambda tmp: grid.savefig(tmp, format="png", dpi=100))
    plt.close(grid.figure)
    return path


def with_score(evals: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add a ``score`` column holding each task's own model-selection metric."""
    metric = runs.drop_duplicates("task").set_index("task").metric
    return evals.assign(score=[row[metric[row.task]] for _, row in evals.iterrows()])


def training_loss(train_log: pd.DataFrame, path: Path) -> Path:
    """Training loss per step: a line per optimizer, the seeds' 95% t-interval as a band."""
    grid = sns.relplot(data=train_log, x="step", y="loss", kind="line",
                       errorbar=confidence_interval, facet_kws={"sharey": False}, height=2.6,
                       aspect=1.2, **FACETS,
                       **_orders(train_log))
    grid.set(yscale="log")
    return _save(grid, path)


def dev_metric(evals: pd.DataFrame, path: Path) -> Path:
    """The dev metric against the step, seeds as a band."""
    grid = sns.relplot(data=evals, x="step", y="score", kind="line", errorbar=confidence_interval,
                       marker="o", facet_kws={"sharey": False}, height=2.6, aspect=1.2, **FACETS,
                       **_orders(evals))
    grid.set_ylabels("dev metric")
    return _save(grid, path)


def best_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs in long form, one row per (run, dev metric its task reports): ``panel`` names the
    task and metric, ``value`` is the metric at the run's best evaluation."""
    columns = [c for c in runs.columns if c.startswith("best.")]
    long = runs.melt(id_vars=["task", "optimizer", "setting", "seed", "metric"],
                     value_vars=columns, var_name="name", value_name="value").dropna(
                         subset=["value"])
    long["name"] = long["name"].str.removeprefix("best.")
    return long.assign(panel=long.task + " · " + long.name)


def _panels(runs: pd.DataFrame, long: pd.DataFrame) -> dict[str, list[str]]:
    """Per task, its panels: the model-selection metric first, then its other metrics."""
    selection = runs.drop_duplicates("task").set_index("task").metric
    panels = {}
    for task in sorted(runs.task.unique()):
        others = sorted(set(long.loc[long.task == task, "name"]) - {selection[task]})
        panels[task] = [f"{task} · {name}" for name in [selection[task], *others]]
    return panels


def final_metric(runs: pd.DataFrame, path: Path) -> Path:
    """The paper's table as a figure: each task's dev metrics (the model-selection one first,
    then the others, e.g. SQuAD F1 and exact match) per optimizer, 95% t-interval over seeds.

    Runs that diverged have no score; a cell where every seed diverged is labelled so.
    """
    finished = runs[runs.status != "diverged"]
    long = best_metrics(finished)
    panels = _panels(runs, long)
    col_order = [panel for task_panels in panels.values() for panel in task_panels]
    orders = _orders(runs)
    order = orders["hue_order"]
    grid = sns.catplot(data=long, x="optimizer", y="value", hue="setting", col="panel",
                       col_wrap=min(len(col_order), 5), kind="bar", errorbar=confidence_interval,
                       sharey=False, height=3, aspect=1.3, order=order, col_order=col_order,
                       hue_order=orders["row_order"])
    diverged = runs.groupby(["task", "optimizer", "setting"]).status.apply(
        lambda s: (s == "diverged").all())
    for (task, optimizer, setting), all_diverged in diverged.items():
        if all_diverged:
            for panel in panels[task]:
                grid.axes_dict[panel].text(order.index(optimizer), 0, f"diverged\n({setting})",
                                           ha="center", va="bottom", fontsize=7, rotation=90)
    grid.set_titles("{col_name}")
    grid.set_xticklabels(order, rotation=45, ha="right")  # every panel: names are not drawn yet
    grid.set_ylabels("best dev metric")
    return _save(grid, path)


def learning_rate(train_log: pd.DataFrame, path: Path) -> Path:
    """Each optimizer's learning rate over training (the first seed), per task and setting."""
    first_seed = train_log[train_log.seed == train_log.seed.min()]
    grid = sns.relplot(data=first_seed, x="step", y="lr", kind="line", height=2.6, aspect=1.2,
                       facet_kws={"sharey": False}, **FACETS, **_orders(first_seed))
    grid.set(yscale="log")
    return _save(grid, path)


def draw_all(runs: pd.DataFrame, train_log: pd.DataFrame, evals: pd.DataFrame,
             out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        training_loss(train_log, out_dir / "training_loss.png"),
        dev_metric(with_score(evals, runs), out_dir / "dev_metric.png"),
        final_metric(runs, out_dir / "final_metric.png"),
        learning_rate(train_log, out_dir / "learning_rate.png"),
    ]
