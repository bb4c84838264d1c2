"""Gathering the runs into one table: mean, spread and a 95% confidence interval over seeds.

Every number here is read from the runs' own ``metrics.json`` and CSV logs; nothing is typed in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

RUN_KEYS = ["task", "optimizer", "setting", "seed"]
GROUP_KEYS = ["task", "optimizer", "setting"]
EFFICIENCY = ["wall_time_s", "train_samples_per_s", "peak_memory_mb"]


def _metric_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob("*/*/seed*/metrics.json"))


def load_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per (task, optimizer, setting, seed) with the run's best dev scores."""
    rows = []
    for path in _metric_files(Path(runs_dir)):
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


def load_logs(runs_dir: str | Path, kind: str) -> pd.DataFrame:
    """All ``<setting>_<kind>.csv`` logs (``kind`` is ``train`` or ``eval``) in long form."""
    frames = []
    for path in _metric_files(Path(runs_dir)):
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
