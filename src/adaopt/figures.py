"""The paper's comparison as figures, drawn with seaborn from the gathered runs.

Bands and error bars (``errorbar=`` a Student-t interval over seeds) are the summary table's
t-interval: the same numbers as ``results/summary.*``, and no seaborn bootstrap, which would
redraw differently each time. Counts of finished seeds (k/n) are written on the bars, so a
partly diverged cell is never hidden in its mean.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from adaopt import io
from adaopt.config import SETTINGS
from adaopt.hparams import in_table_order
from adaopt.statistics import confidence_interval
from adaopt.summary import GROUP_KEYS, REFERENCES, cut_steps
from adaopt.tasks import get_task

FACETS = {"col": "task", "row": "setting", "hue": "optimizer"}
BAR_WIDTH = 0.8  # seaborn's default: each x category's dodged bars share this width


def _orders(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Optimizers in the registry's order and settings in the pipeline's, not the alphabet's."""
    return {"hue_order": in_table_order(frame.optimizer),
            "row_order": [name for name in SETTINGS if name in set(frame.setting)]}


def _interval(level: float) -> Callable[[np.ndarray], tuple[float, float]]:
    return partial(confidence_interval, level=level)


def _save(figure: Figure, path: Path) -> Path:
    io.write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path


def with_score(evals: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add a ``score`` column holding each task's own model-selection metric."""
    metric = runs.drop_duplicates("task").set_index("task").metric
    return evals.assign(score=[row[metric[row.task]] for _, row in evals.iterrows()])


def training_loss(train_log: pd.DataFrame, path: Path, level: float = 0.95) -> Path:
    """Training loss per step: a line per optimizer, the seeds' t-interval as a band."""
    grid = sns.relplot(data=train_log, x="step", y="loss", kind="line", errorbar=_interval(level),
                       facet_kws={"sharey": False}, height=2.6, aspect=1.2, **FACETS,
                       **_orders(train_log))
    grid.set(yscale="log")
    return _save(grid.figure, path)


def selection_metric(evals: pd.DataFrame, path: Path, level: float = 0.95) -> Path:
    """The selection-split metric against the step (what model selection saw), seeds as a band.

    The dev set is scored once, after selection, so it has no curve.
    """
    grid = sns.relplot(data=evals, x="step", y="score", kind="line", errorbar=_interval(level),
                       marker="o", facet_kws={"sharey": False}, height=2.6, aspect=1.2, **FACETS,
                       **_orders(evals))
    grid.set_ylabels("selection-split metric")
    return _save(grid.figure, path)


def dev_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs in long form, one row per (run, dev metric its task reports): ``panel`` names the
    task and metric, ``value`` is the selected weights' dev score."""
    columns = [c for c in runs.columns if c.startswith("dev.")]
    long = runs.melt(id_vars=["task", "optimizer", "setting", "seed", "metric"],
                     value_vars=columns, var_name="name", value_name="value").dropna(
                         subset=["value"])
    long["name"] = long["name"].str.removeprefix("dev.")
    return long.assign(panel=long.task + " · " + long.name)


def _panels(runs: pd.DataFrame, long: pd.DataFrame) -> dict[str, list[str]]:
    """Per task, its panels: the model-selection metric first, then its other metrics."""
    selection = runs.drop_duplicates("task").set_index("task").metric
    panels = {}
    for task in runs.task.unique():
        others = sorted(set(long.loc[long.task == task, "name"]) - {selection[task]})
        panels[task] = [f"{task} · {name}" for name in [selection[task], *others]]
    return panels


def _bar_x(optimizer: str, setting: str, order: list[str], hue_order: list[str]) -> float:
    """Where seaborn draws the (optimizer, setting) bar: dodged within the optimizer's slot."""
    width = BAR_WIDTH / len(hue_order)
    return order.index(optimizer) - BAR_WIDTH / 2 + width * (hue_order.index(setting) + 0.5)


def _label_bars(ax: Axes, counts: pd.DataFrame, order: list[str], hue_order: list[str]) -> None:
    """Write k/n (finished of run seeds) at each bar's foot; red where a seed diverged."""
    for row in counts.itertuples(index=False):
        none = row.finished == 0
        ax.text(_bar_x(row.optimizer, row.setting, order, hue_order), 0,
                f"diverged {row.finished}/{row.seeds}" if none else f"{row.finished}/{row.seeds}",
                ha="center", va="bottom", fontsize=7, rotation=90 if none else 0,
                color="tab:red" if row.finished < row.seeds else "black",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})


def final_metric(runs: pd.DataFrame, path: Path, level: float = 0.95) -> Path:
    """The paper's table as a figure: each task's dev metrics (the model-selection one first)
    per optimizer and setting, with the t-interval over finished seeds and k/n on each bar."""
    long = dev_scores(runs[runs.status != "diverged"])
    panels = _panels(runs, long)
    col_order = [panel for task_panels in panels.values() for panel in task_panels]
    orders = _orders(runs)
    order, hue_order = orders["hue_order"], orders["row_order"]
    grid = sns.catplot(data=long, x="optimizer", y="value", hue="setting", col="panel",
                       col_wrap=min(len(col_order), 5), kind="bar", errorbar=_interval(level),
                       sharey=False, height=3, aspect=1.3, order=order, col_order=col_order,
                       hue_order=hue_order, width=BAR_WIDTH)
    counts = runs.groupby(GROUP_KEYS, sort=False).status.agg(
        seeds="size", finished=lambda s: int((s != "diverged").sum())).reset_index()
    for task, task_panels in panels.items():
        for panel in task_panels:
            _label_bars(grid.axes_dict[panel], counts[counts.task == task], order, hue_order)
    grid.set_titles("{col_name}")
    grid.set_xticklabels(order, rotation=45, ha="right")  # every panel: names are not drawn yet
    grid.set_ylabels("dev metric (selected weights)")
    return _save(grid.figure, path)


def learning_rate(train_log: pd.DataFrame, path: Path) -> Path:
    """Each optimizer's learning rate over training (the first seed), per task and setting."""
    first_seed = train_log[train_log.seed == train_log.seed.min()]
    grid = sns.relplot(data=first_seed, x="step", y="lr", kind="line", height=2.6, aspect=1.2,
                       facet_kws={"sharey": False}, **FACETS, **_orders(first_seed))
    grid.set(yscale="log")
    return _save(grid.figure, path)


def _difference_panel(ax: Axes, rows: pd.DataFrame, order: list[str]) -> None:
    """Differences with their intervals at the optimizers' positions, pairs under each."""
    rows = rows.set_index("optimizer").reindex(order)
    x = np.arange(len(order))
    below = (rows.difference - rows.low).fillna(0).to_numpy()
    above = (rows.high - rows.difference).fillna(0).to_numpy()
    ax.errorbar(x, rows.difference, yerr=[below, above], fmt="o", capsize=3)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.margins(x=0.15, y=0.25)  # room for the pair counts along the top
    for position, (pairs, interval) in enumerate(zip(rows.pairs, rows.low, strict=True)):
        label = f"n={pairs:.0f}" + (" n/a" if np.isnan(interval) else "")
        ax.annotate(label, (position, 1), xycoords=("data", "axes fraction"), xytext=(0, -8),
                    textcoords="offset points", ha="center", fontsize=7)


def paired_difference(paired: pd.DataFrame, path: Path) -> Path:
    """Each optimizer's dev score minus the first reference's (AdamW, else Adam), per task and
    setting: the paired mean difference over seeds with its interval, and a zero line."""
    reference = next((name for name in REFERENCES if name in set(paired.reference)), None)
    if reference is None:
        figure = plt.figure(figsize=(4, 1))
        figure.text(0.5, 0.5, "no reference optimizer in the sweep", ha="center")
        return _save(figure, path)
    rows = paired[paired.reference == reference]
    order = in_table_order(rows.optimizer)
    grid = sns.FacetGrid(rows, row="setting", col="task", height=2.6, aspect=1.2, sharey=False,
                         row_order=_orders(rows)["row_order"])
    for (setting, task), ax in grid.axes_dict.items():
        _difference_panel(ax, rows[(rows.setting == setting) & (rows.task == task)], order)
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    grid.set_titles("{row_name} · {col_name}")
    grid.set_ylabels(f"dev score − {reference}")
    grid.tight_layout()  # the rotated optimizer names were set after the grid's own layout
    return _save(grid.figure, path)


def _curve_band(ax: Axes, curve: pd.DataFrame, x: str, label: str, level: float) -> None:
    """Mean over seeds per evaluation, the seeds' t-interval as a band."""
    interval = np.array([confidence_interval(np.asarray(v), level) for v in curve["values"]])
    ax.plot(curve[x], curve["mean"], label=label)
    ax.fill_between(curve[x], interval[:, 0], interval[:, 1], alpha=0.2)


def language_model(evals: pd.DataFrame, path: Path, level: float = 0.95) -> Path:
    """Each language-modeling task's held-out (selection split) loss against tokens seen and
    against training time: a line per optimizer (mean over seeds, the seeds' t-interval as a
    band), a row per setting."""
    tasks = [task for task in dict.fromkeys(evals.task)
             if get_task(task).kind == "language_modeling"]
    if not tasks:
        figure = plt.figure(figsize=(4, 1))
        figure.text(0.5, 0.5, "no language-modeling task in the sweep", ha="center")
        return _save(figure, path)
    frame = evals[evals.task.isin(tasks)]
    rows = [(task, setting) for task in tasks
            for setting in _orders(frame[frame.task == task])["row_order"]]
    figure, axes = plt.subplots(len(rows), 2, figsize=(10, 3 * len(rows)), squeeze=False,
                                sharey="row")
    for (task, setting), (by_tokens, by_time) in zip(rows, axes, strict=True):
        cell = frame[(frame.task == task) & (frame.setting == setting)]
        curves = cell.groupby(["optimizer", "step"], sort=False).agg(
            tokens=("tokens", "mean"), seconds=("elapsed_s", "mean"), mean=("loss", "mean"),
            values=("loss", list)).reset_index()
        for optimizer in _orders(cell)["hue_order"]:
            curve = curves[curves.optimizer == optimizer]
            _curve_band(by_tokens, curve, "tokens", optimizer, level)
            _curve_band(by_time, curve, "seconds", optimizer, level)
        by_tokens.set(title=f"{setting} · {task}", xlabel="tokens seen",
                      ylabel="held-out loss (nats/token)")
        by_time.set(title=f"{setting} · {task}", xlabel="training time (s, evaluation excluded)")
    axes[0, 1].legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


#: The controller's story is told in the fair setting: there AdaptiveAdam and AdamW share the
#: warmup and decay, so the cuts are the whole difference.
METHOD, REFERENCE, STORY_SETTING = "adaptive_adam", "adamw", "fair"


def story_seed(runs: pd.DataFrame, task: str, setting: str = STORY_SETTING) -> int | None:
    """The method's seed whose controller cut most on ``task`` (ties: the lowest seed), the one
    the controller figure draws; None when the method has no finished run there."""
    cell = runs[(runs.task == task) & (runs.setting == setting) & (runs.optimizer == METHOD)
                & (runs.status != "diverged")]
    if cell.empty:
        return None
    ranked = cell.assign(n=cell.cuts.fillna(0)).sort_values(["n", "seed"],
                                                            ascending=[False, True])
    return int(ranked.seed.iloc[0])


def _warmup_end(lrs: pd.DataFrame) -> int:
    """The step at which a run's learning rate first peaks: where its warmup ends."""
    return int(lrs.step[lrs.lr.idxmax()]) if not lrs.empty else 0


def _one_run(frame: pd.DataFrame, task: str, setting: str, optimizer: str, seed: int
             ) -> pd.DataFrame:
    return frame[(frame.task == task) & (frame.setting == setting)
                 & (frame.optimizer == optimizer) & (frame.seed == seed)]


def _story(lr_ax: Axes, score_ax: Axes, run: pd.Series, train_log: pd.DataFrame,
           scored: pd.DataFrame) -> None:
    """One task's column of the controller figure."""
    task, setting, seed = run.task, run.setting, int(run.seed)
    for optimizer, style in ((METHOD, "-"), (REFERENCE, "--")):
        lrs = _one_run(train_log, task, setting, optimizer, seed)
        lr_ax.plot(lrs.step, lrs.lr, style, label=optimizer)
        curve = _one_run(scored, task, setting, optimizer, seed)
        score_ax.plot(curve.step, curve.score, style + "o", markersize=3, label=optimizer)
    curve = _one_run(scored, task, setting, METHOD, seed)
    counted = curve[curve.step >= _warmup_end(_one_run(train_log, task, setting, METHOD, seed))]
    best = counted.score.cummax() if run.greater_is_better else counted.score.cummin()
    score_ax.step(counted.step, best, where="post", color="0.4", linewidth=1,
                  label="best so far (after warmup)")
    cuts = cut_steps(run.cut_steps)
    for step in cuts:
        for ax in (lr_ax, score_ax):
            ax.axvline(step, color="tab:red", linestyle=":", linewidth=1)
    selected = curve[curve.step == run.best_step]
    score_ax.plot(selected.step, selected.score, "*", color="tab:red", markersize=10,
                  label="selected checkpoint")
    early = bool(cuts) and run.best_step < cuts[0]
    lr_ax.set(title=f"{task}, seed {seed}: {len(cuts)} cuts", yscale="log")
    score_ax.set(title=f"selected step {int(run.best_step)}"
                 + (" (before its first cut)" if early else ""), xlabel="step")


def controller(runs: pd.DataFrame, train_log: pd.DataFrame, evals: pd.DataFrame,
               path: Path, setting: str = STORY_SETTING) -> Path:
    """The method's learning rate beside AdamW's over the steps (above), and the selection
    score the controller read with the best it compared against (below), per task for the seed
    that cut most: each cut a dotted line, the selected checkpoint a star (its title says when
    it came before the first cut). Warmup evaluations, which the controller ignores, are left
    out of the running best."""
    seeds = {task: story_seed(runs, task, setting) for task in dict.fromkeys(runs.task)}
    tasks = [task for task, seed in seeds.items() if seed is not None]
    if not tasks:
        figure = plt.figure(figsize=(4, 1))
        figure.text(0.5, 0.5, f"no {METHOD} run in the {setting} setting", ha="center")
        return _save(figure, path)
    scored = with_score(evals, runs)
    figure, axes = plt.subplots(2, len(tasks), figsize=(3.6 * len(tasks), 5.4), squeeze=False,
                                sharex="col")
    for column, task in enumerate(tasks):
        run = _one_run(runs, task, setting, METHOD, seeds[task]).iloc[0]
        _story(axes[0, column], axes[1, column], run, train_log, scored)
    axes[0, 0].set(ylabel="learning rate")
    axes[1, 0].set(ylabel="selection score")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    figure.suptitle(f"{METHOD} against {REFERENCE}, {setting} setting: the cuts (dotted) and "
                    "what the controller read", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def precision_ablation(frame: pd.DataFrame, path: Path) -> Path:
    """The mixed-precision ablation: dev metric, training throughput and peak memory per
    optimizer, a bar per precision; the title gives each precision's measured throughput
    relative to fp32, measured in the same run."""
    task = frame.task.iloc[0]
    better = "higher" if get_task(task).greater_is_better else "lower"
    panels = (("dev", f"dev {frame.metric.iloc[0]} ({better} is better)"),
              ("train_samples_per_s", "training samples/s"),
              ("peak_memory_mb", "peak memory (MB)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    order = in_table_order(frame.optimizer)
    for ax, (column, label) in zip(axes, panels, strict=True):
        sns.barplot(frame, x="optimizer", y=column, hue="precision", order=order, ax=ax)
        ax.set(xlabel="", ylabel=label)
        for bars in ax.containers:
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        if ax is not axes[0]:
            ax.get_legend().remove()
    ratios = frame[frame.precision != "fp32"].groupby("precision", sort=False)
    speed = "; ".join(f"{precision} at {rows.throughput_vs_fp32.mean():.2g}x fp32's samples/s"
                      for precision, rows in ratios)
    figure.suptitle(f"{task} · {frame.device.iloc[0]} · {speed}", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def draw_all(runs: pd.DataFrame, train_log: pd.DataFrame, evals: pd.DataFrame,
             paired: pd.DataFrame, out_dir: str | Path, level: float = 0.95) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        training_loss(train_log, out_dir / "training_loss.png", level),
        selection_metric(with_score(evals, runs), out_dir / "dev_metric.png", level),
        final_metric(runs, out_dir / "final_metric.png", level),
        learning_rate(train_log, out_dir / "learning_rate.png"),
        paired_difference(paired, out_dir / "paired_difference.png"),
        language_model(evals, out_dir / "lm_validation_loss.png", level),
        controller(runs, train_log, evals, out_dir / "controller.png"),
    ]


def compression_front(frame: pd.DataFrame, task: str, greater_is_better: bool, path: Path
                      ) -> Path:
    """The dev metric against size and against batch-1 latency, a point per compressed variant
    (colour: method; marker: the optimizer it came from), each panel's Pareto front drawn as a
    line through its ringed points."""
    latency = next(column for column in frame.columns
                   if column.startswith("latency_b") and not column.endswith("_iqr_ms"))
    panels = (("size_mb", "pareto_size", "size on disk (MB)"),
              (latency, "pareto_latency", f"CPU latency, batch {latency[9:-3]} (ms/example)"))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (cost, front, label) in zip(axes, panels, strict=True):
        sns.scatterplot(data=frame, x=cost, y="score", hue="method", style="source", s=60,
                        ax=ax, legend=ax is axes[-1])
        best = frame[frame[front]].sort_values(cost)
        ax.plot(best[cost], best.score, drawstyle="steps-post", color="black", lw=1,
                label="Pareto front")
        ax.scatter(best[cost], best.score, s=160, facecolors="none", edgecolors="black")
        ax.set(xlabel=label, ylabel=f"dev {frame.metric.iloc[0]}", xscale="log")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    better = "higher" if greater_is_better else "lower"
    figure.suptitle(f"{task}: compressed variants ({better} is better)")
    figure.tight_layout()
    return _save(figure, path)
