"""The paper's comparison as figures, drawn with seaborn from the gathered runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from adaopt import io

FACETS = {"col": "task", "row": "setting", "hue": "optimizer"}


def _save(grid: sns.FacetGrid, path: Path) -> Path:
    io.write_with(path, lambda tmp: grid.savefig(tmp, format="png", dpi=100))
    plt.close(grid.figure)
    return path


def with_score(evals: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add a ``score`` column holding each task's own model-selection metric."""
    metric = runs.drop_duplicates("task").set_index("task").metric
    return evals.assign(score=[row[metric[row.task]] for _, row in evals.iterrows()])


def training_loss(train_log: pd.DataFrame, path: Path) -> Path:
    """Training loss per step: a line per optimizer, the band spans the seeds (95% CI)."""
    grid = sns.relplot(data=train_log, x="step", y="loss", kind="line", errorbar=("ci", 95),
                       facet_kws={"sharey": False}, height=2.6, aspect=1.2, **FACETS)
    grid.set(yscale="log")
    return _save(grid, path)


def dev_metric(evals: pd.DataFrame, path: Path) -> Path:
    """The dev metric against the step, seeds as a band."""
    grid = sns.relplot(data=evals, x="step", y="score", kind="line", errorbar=("ci", 95),
                       marker="o", facet_kws={"sharey": False}, height=2.6, aspect=1.2, **FACETS)
    grid.set_ylabels("dev metric")
    return _save(grid, path)


def final_metric(runs: pd.DataFrame, path: Path) -> Path:
    """The paper's table as a figure: best dev metric per optimizer, 95% CI over seeds.

    Runs that diverged have no score; a cell where every seed diverged is labelled so.
    """
    finished = runs[runs.status != "diverged"]
    grid = sns.catplot(data=finished, x="optimizer", y="score", hue="setting", col="task",
                       kind="bar", errorbar=("ci", 95), sharey=False, height=3, aspect=1.3,
                       order=sorted(runs.optimizer.unique()), col_order=sorted(runs.task.unique()))
    diverged = runs.groupby(["task", "optimizer", "setting"]).status.apply(
        lambda s: (s == "diverged").all())
    order = sorted(runs.optimizer.unique())
    for (task, optimizer, setting), all_diverged in diverged.items():
        if all_diverged:
            grid.axes_dict[task].text(order.index(optimizer), 0, f"diverged\n({setting})",
                                      ha="center", va="bottom", fontsize=7, rotation=90)
    grid.set_xticklabels(rotation=45, ha="right")
    grid.set_ylabels("best dev metric")
    return _save(grid, path)


def learning_rate(train_log: pd.DataFrame, path: Path) -> Path:
    """Each optimizer's learning rate over training (the first seed), per task and setting."""
    first_seed = train_log[train_log.seed == train_log.seed.min()]
    grid = sns.relplot(data=first_seed, x="step", y="lr", kind="line", height=2.6, aspect=1.2,
                       facet_kws={"sharey": False}, **FACETS)
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
