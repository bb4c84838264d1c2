"""Gathering the runs into one table: mean, spread and a 95% confidence interval over seeds.

Every number here is read from the runs' own ``metrics.json`` and CSV logs; nothing is typed in.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from adaopt.config import SETTINGS, Params
from adaopt.optim import OPTIMIZERS

#: A training cell: (task, optimizer, seed), the coordinates of one train stage.
Cell = tuple[str, str, int]

RUN_KEYS = ["task", "optimizer", "setting", "seed"]
GROUP_KEYS = ["task", "optimizer", "setting"]
EFFICIENCY = ["wall_time_s", "train_samples_per_s", "peak_memory_mb"]


def sweep_cells(params: Params) -> list[Cell]:
    """The cells of ``params``' sweep, in ``dvc.yaml``'s matrix order: one train stage each."""
    return list(itertools.product(params.data.tasks, params.sweep.optimizers, params.sweep.seeds))


def _metric_files(runs_dir: Path, cells: Iterable[Cell] | None) -> list[Path]:
    """Every run under ``runs_dir``, or exactly the runs of ``cells``.

    The pipeline passes the sweep of ``params.yaml``: runs left in the folder by an earlier,
    wider sweep (``dvc exp run -S sweep.seeds=[0]`` keeps the committed seed 1 and 2 runs) must
    not enter the summary, and a run of the sweep that is missing is an error, not a gap.
    """
    if cells is None:
        return sorted(runs_dir.glob("*/*/seed*/metrics.json"))
    paths = [runs_dir / task / optimizer / f"seed{seed}" / "metrics.json"
             for task, optimizer, seed in cells]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: missing ({len(missing)} of the sweep's "
                                f"{len(paths)} runs); run their train stages first")
    return paths


def load_runs(runs_dir: str | Path, cells: Iterable[Cell] | None = None) -> pd.DataFrame:
    """One row per (task, optimizer, setting, seed) with the run's best dev scores."""
    rows = []
    for path in _metric_files(Path(runs_dir), cells):
        cell = json.loads(path.read_text())
        costs = json.loads((path.parent / "efficiency.json").read_text())
        for setting, cost in costs.items():
            run = {**cell[setting], **cost}
            scores = {f"best.{k}": v for k, v in run["best"].items()}
            rows.append({
                "task": cell["task"], "optimizer": cell["optimizer"], "seed": cell["seed"],
                "setting": setting, "metric": cell["metric"], "status": run["status"],
                "steps": run["steps"], "best_step": run["best_step"],
                "score": run["best"].get(cell["metric"], math.nan),
                "last_finite_loss": run["last_finite_loss"],
                **{key: run[key] for key in EFFICIENCY}, **scores,
            })
    if not rows:
        raise FileNotFoundError(f"no runs/*/*/seed*/metrics.json under {runs_dir}")
    return pd.DataFrame(rows).sort_values(RUN_KEYS, ignore_index=True)


def load_logs(runs_dir: str | Path, kind: str, cells: Iterable[Cell] | None = None
              ) -> pd.DataFrame:
    """All ``<setting>_<kind>.csv`` logs (``kind`` is ``train`` or ``eval``) in long form."""
    frames = []
    for path in _metric_files(Path(runs_dir), cells):
        cell = json.loads(path.read_text())
        for log in sorted(path.parent.glob(f"*_{kind}.csv")):
            frame = pd.read_csv(log)
            if frame.empty:
                continue
            frame = frame.assign(
                task=cell["task"], optimizer=cell["optimizer"], seed=cell["seed"],
                setting=log.name.removesuffix(f"_{kind}.csv"),
            )
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean; undefined (NaN) with fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    mean, sem = values.mean(), stats.sem(values)
    if sem == 0:
        return float(mean), float(mean)
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def time_to_target(runs: pd.DataFrame, evals: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Training seconds until a run's dev metric first reaches ``fraction`` of the task's best.

    The target is per task: ``fraction`` times the best mean score of any (optimizer, setting)
    on that task, so every optimizer races to the same line.
    """
    if evals.empty:  # every run diverged before its first evaluation
        return pd.DataFrame(columns=[*RUN_KEYS, "time_to_target_s", "target"])
    means = runs[runs.status != "diverged"].groupby(GROUP_KEYS).score.mean()
    targets = (means.groupby("task").max() * fraction).rename("target")
    rows = []
    for keys, curve in evals.groupby(RUN_KEYS):
        task = keys[0]
        metric = runs.loc[runs.task == task, "metric"].iloc[0]
        reached = curve[curve[metric] >= targets.get(task, math.inf)]
        seconds = float(reached.elapsed_s.iloc[0]) if len(reached) else math.nan
        rows.append({**dict(zip(RUN_KEYS, keys, strict=True)), "time_to_target_s": seconds})
    frame = pd.DataFrame(rows, columns=[*RUN_KEYS, "time_to_target_s"])
    return frame.merge(targets.reset_index(), on="task", how="left")


def summarize(runs: pd.DataFrame, ttt: pd.DataFrame) -> pd.DataFrame:
    """Task x optimizer x setting: the score's mean, std and 95% CI over the finished seeds."""
    runs = runs.merge(ttt, on=RUN_KEYS, how="left")
    rows = []
    for keys, group in runs.groupby(GROUP_KEYS):
        ok = group[group.status != "diverged"]
        low, high = confidence_interval(ok.score.to_numpy())
        reached = ok.time_to_target_s.dropna()
        rows.append({
            **dict(zip(GROUP_KEYS, keys, strict=True)),
            "metric": group.metric.iloc[0],
            "seeds": len(group),
            "diverged": int((group.status == "diverged").sum()),
            "mean": ok.score.mean(),
            "std": ok.score.std(ddof=1) if len(ok) > 1 else math.nan,
            "ci95_low": low,
            "ci95_high": high,
            "target": group.target.iloc[0],
            "reached_target": len(reached),
            "time_to_target_s": reached.mean() if len(reached) else math.nan,
            **{key: ok[key].mean() for key in EFFICIENCY},
            **metric_statistics(ok),
        })
    return pd.DataFrame(rows)


def metric_statistics(runs: pd.DataFrame) -> dict[str, float]:
    """``<metric>.mean`` and ``<metric>.std`` over seeds for every dev metric the runs report.

    Each run's ``best`` holds all of its task's metrics at the evaluation that was best on the
    model-selection one (SQuAD: exact match and F1; MRPC: accuracy and F1...); metrics of other
    tasks are missing (NaN) and left out.
    """
    statistics = {}
    for column in runs.columns:
        values = runs[column].dropna() if column.startswith("best.") else ()
        if len(values):
            name = column.removeprefix("best.")
            statistics[f"{name}.mean"] = float(values.mean())
            statistics[f"{name}.std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return statistics


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


def to_markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table; a cell whose every seed diverged reads ``diverged``.

    ``mean ± std`` is the task's model-selection metric; ``other metrics`` lists the task's
    other dev metrics at the same evaluations (SQuAD: ``exact_match`` beside ``f1``).
    """
    shown = summary.copy()
    shown["score"] = [
        "diverged" if row.diverged == row.seeds
        else f"{row['mean']:.4f} ± {0.0 if math.isnan(row['std']) else row['std']:.4f}"
        + (f" ({row.diverged} diverged)" if row.diverged else "")
        for _, row in shown.iterrows()
    ]
    shown["95% CI"] = [
        "" if math.isnan(row.ci95_low) else f"[{row.ci95_low:.4f}, {row.ci95_high:.4f}]"
        for _, row in shown.iterrows()
    ]
    shown["other metrics"] = [_other_metrics(row) for _, row in shown.iterrows()]
    columns = {
        "task": "task", "setting": "setting", "optimizer": "optimizer", "metric": "metric",
        "score": "mean ± std", "95% CI": "95% CI", "other metrics": "other metrics (mean ± std)",
        "time_to_target_s": "time to target (s)", "train_samples_per_s": "samples/s",
        "peak_memory_mb": "peak MiB",
    }
    table = shown.sort_values(["task", "setting", "optimizer"])[list(columns)]
    table = table.rename(columns=columns)
    return table.to_markdown(index=False, floatfmt=".1f") + "\n"


def headline_markdown(summary: pd.DataFrame) -> str:
    """The paper's table: per setting, optimizer x task, the model-selection metric's mean.

    Each cell reads ``mean ± h`` with ``h`` the half-width of the 95% CI over seeds (just
    ``mean`` where fewer than two seeds finished, ``diverged`` where none did). Tasks keep the
    summary's order; settings and optimizers the order they are defined in.
    """
    sections = []
    for setting in [name for name in SETTINGS if name in set(summary.setting)]:
        rows = summary[summary.setting == setting]
        digits = {task: 1 if group["mean"].abs().max() > 1 else 3  # SQuAD's 0-100 scale
                  for task, group in rows.groupby("task")}
        table = rows.pivot(index="optimizer", columns="task", values="mean").astype(object)
        for _, row in rows.iterrows():
            d = digits[row.task]
            if row.diverged == row.seeds:
                cell = "diverged"
            elif math.isnan(row.ci95_low):
                cell = f"{row['mean']:.{d}f}"
            else:
                cell = f"{row['mean']:.{d}f} ± {(row.ci95_high - row.ci95_low) / 2:.{d}f}"
            table.loc[row.optimizer, row.task] = cell
        metrics = rows.drop_duplicates("task").set_index("task").metric
        table = table.loc[[name for name in OPTIMIZERS if name in table.index],
                          list(dict.fromkeys(rows.task))]
        table.columns = [f"{task} ({metrics[task]})" for task in table.columns]
        sections.append(f"### {setting}\n\n" + table.rename_axis("optimizer").to_markdown())
    return "\n\n".join(sections) + "\n"
