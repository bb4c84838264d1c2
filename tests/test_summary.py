"""Tests of adaopt.summary on a synthetic runs/ tree, written as experiment.run_cell writes it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from adaopt import io
from adaopt.config import parse_params
from adaopt.experiment import _write_run
from adaopt.summary import (
    confidence_interval,
    headline_markdown,
    load_logs,
    load_runs,
    summarize,
    sweep_cells,
    time_to_target,
    to_markdown,
)
from adaopt.training import RunResult

ROOT = Path(__file__).resolve().parents[1]
FRACTION = 0.9

# (optimizer, setting, seed) -> eval curve [(elapsed_s, accuracy), ...] and whether it diverged
# after it. adamw/traditional: seed 2 diverged after one (good) evaluation, so including it would
# move both the mean (0.85 -> 0.83) and the time to target (1.75 -> 1.33).
# sgd/traditional: every seed diverged, seed 0 before its first step.
CURVES: dict[tuple[str, str, int], tuple[list[tuple[float, float]], bool]] = {
    ("adamw", "traditional", 0): ([(1.0, 0.60), (2.0, 0.78), (3.0, 0.80)], False),
    ("adamw", "traditional", 1): ([(1.5, 0.77), (3.0, 0.85), (4.5, 0.90)], False),
    ("adamw", "traditional", 2): ([(0.5, 0.79)], True),
    ("adamw", "fair", 0): ([(1.0, 0.65), (2.0, 0.70)], False),
    ("adamw", "fair", 1): ([(1.0, 0.66), (2.0, 0.72)], False),
    ("adamw", "fair", 2): ([(1.0, 0.74), (2.0, 0.60)], False),
    ("sgd", "traditional", 0): ([], True),
    ("sgd", "traditional", 1): ([], True),
    ("sgd", "traditional", 2): ([(0.4, 0.55)], True),
    ("sgd", "fair", 0): ([(1.0, 0.50)], False),
    ("sgd", "fair", 1): ([(1.0, 0.60)], False),
    ("sgd", "fair", 2): ([(1.0, 0.55)], False),
}
TARGET = FRACTION * 0.85  # the best mean on the task is adamw/traditional without seed 2


def run_result(curve: list[tuple[float, float]], diverged: bool, seed: int) -> RunResult:
    """A RunResult as train() returns it: evals every 10 steps, one train row per step."""
    steps = 10 * len(curve) + (5 if diverged and curve else 0)  # no curve: diverged at step 1
    train_log = [{"step": s, "loss": 1.0 / s, "lr": 0.01, "elapsed_s": 0.1 * s}
                 for s in range(1, steps + 1)]
    eval_log = [{"step": 10 * (i + 1), "elapsed_s": t, "accuracy": a, "f1": a - 0.01}
                for i, (t, a) in enumerate(curve)]
    best = max(eval_log, key=lambda row: row["accuracy"], default=None)
    return RunResult(
        status="diverged" if diverged else "ok",
        steps=steps,
        best_step=best["step"] if best else None,
        best={k: v for k, v in best.items() if k not in ("step", "elapsed_s")} if best else {},
        last={k: v for k, v in eval_log[-1].items() if k not in ("step", "elapsed_s")}
        if eval_log else {},
        last_finite_loss=train_log[-1]["loss"] if train_log else None,
        wall_time_s=10.0 + seed,
        train_samples_per_s=100.0 + seed,
        peak_memory_mb=math.nan if diverged else 500.0,
        train_log=train_log,
        eval_log=eval_log,
    )


def write_cell(runs: Path, optimizer: str, seed: int) -> None:
    """What experiment.run_cell writes for one (task, optimizer, seed)."""
    out = runs / "sst2" / optimizer / f"seed{seed}"
    metrics: dict[str, Any] = {"task": "sst2", "optimizer": optimizer, "seed": seed,
                               "metric": "accuracy", "train_examples": 64, "eval_examples": 32}
    efficiency: dict[str, Any] = {}
    for setting in ("traditional", "fair"):
        result = run_result(*CURVES[optimizer, setting, seed], seed)
        _write_run(out, setting, result)
        metrics[setting] = result.outcome()
        efficiency[setting] = result.efficiency()
    io.write_json(out / "metrics.json", metrics)
    io.write_json(out / "efficiency.json", efficiency)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("project") / "runs"
    for optimizer in ("adamw", "sgd"):
        for seed in range(3):
            write_cell(runs, optimizer, seed)
    return runs


@pytest.fixture(scope="module")
def tables(runs_dir: Path) -> dict[str, pd.DataFrame]:
    runs = load_runs(runs_dir)
    evals = load_logs(runs_dir, "eval")
    ttt = time_to_target(runs, evals, FRACTION)
    summary = summarize(runs, ttt).set_index(["optimizer", "setting"])
    return {"runs": runs, "evals": evals, "ttt": ttt, "summary": summary}


# ----------------------------------------------------------------------------- the interval


def hand_interval(values: list[float], level: float) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
@pytest.mark.parametrize("values", [[0.8, 0.9], [0.81, 0.85, 0.79, 0.9, 0.88], [-1.0, 2.0, 0.5]])
def test_confidence_interval_matches_a_hand_t_interval(values: list[float], level: float) -> None:
    assert confidence_interval(np.array(values), level) == pytest.approx(
        hand_interval(values, level), rel=1e-12, abs=1e-12)


def test_confidence_interval_widens_with_the_level() -> None:
    values = np.array([0.8, 0.85, 0.9])
    low95, high95 = confidence_interval(values, 0.95)
    low99, high99 = confidence_interval(values, 0.99)
    assert low99 < low95 < 0.85 < high95 < high99


@pytest.mark.parametrize("values", [[], [0.7], [0.7, math.nan], [math.inf, math.nan]])
def test_confidence_interval_is_nan_with_fewer_than_two_finite_values(values) -> None:
    low, high = confidence_interval(np.array(values, dtype=float))
    assert math.isnan(low) and math.isnan(high)


def test_confidence_interval_ignores_non_finite_values() -> None:
    assert confidence_interval(np.array([0.8, math.nan, 0.9, math.inf])) == \
        confidence_interval(np.array([0.8, 0.9]))


def test_confidence_interval_of_identical_values_is_the_value() -> None:
    assert confidence_interval(np.array([0.75, 0.75, 0.75])) == (0.75, 0.75)


# ----------------------------------------------------------------------------- loading


def test_load_runs_has_one_row_per_setting_and_seed(tables) -> None:
    runs = tables["runs"]
    assert len(runs) == 12
    assert list(runs.columns[:4]) == ["task", "optimizer", "seed", "setting"]
    row = runs.set_index(["optimizer", "setting", "seed"]).loc[("adamw", "traditional", 1)]
    assert (row.status, row.score, row.best_step, row["best.f1"]) == ("ok", 0.9, 30, 0.89)
    assert row.wall_time_s == 11.0
    never = runs.set_index(["optimizer", "setting", "seed"]).loc[("sgd", "traditional", 0)]
    assert never.status == "diverged" and math.isnan(never.score)


def test_load_runs_on_an_empty_folder_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        load_runs(tmp_path)


def test_load_runs_of_a_sweep_leaves_out_runs_of_other_sweeps(runs_dir: Path) -> None:
    """A narrower sweep (one optimizer, two seeds) over a folder that also holds a wider one."""
    cells = [("sst2", "adamw", 0), ("sst2", "adamw", 2)]
    runs = load_runs(runs_dir, cells)
    assert set(zip(runs.task, runs.optimizer, runs.seed, strict=True)) == set(cells)
    assert len(runs) == 4  # two settings each
    evals = load_logs(runs_dir, "eval", cells)
    assert set(evals.seed) == {0, 2} and set(evals.optimizer) == {"adamw"}


def test_load_runs_names_a_missing_run_of_the_sweep(runs_dir: Path) -> None:
    cells = [("sst2", "adamw", 0), ("sst2", "lamb", 0), ("rte", "adamw", 0)]
    with pytest.raises(FileNotFoundError, match=r"sst2/lamb/seed0/metrics\.json: missing "
                                                r"\(2 of the sweep's 3 runs\)"):
        load_runs(runs_dir, cells)


def test_sweep_cells_follow_the_dvc_matrix_order() -> None:
    params = parse_params(yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text()))
    cells = sweep_cells(params)
    assert len(cells) == (len(params.data.tasks) * len(params.sweep.optimizers)
                          * len(params.sweep.seeds))
    assert cells[:2] == [(params.data.tasks[0], params.sweep.optimizers[0], params.sweep.seeds[0]),
                         (params.data.tasks[0], params.sweep.optimizers[0], params.sweep.seeds[1])]


def test_load_logs_reads_every_csv_in_long_form(tables, runs_dir: Path) -> None:
    evals = tables["evals"]
    assert len(evals) == sum(len(curve) for curve, _ in CURVES.values())
    assert set(evals.setting) == {"traditional", "fair"}
    assert {"step", "elapsed_s", "accuracy", "task", "optimizer", "seed"} <= set(evals.columns)
    train = load_logs(runs_dir, "train")
    assert set(train.columns) >= {"step", "loss", "lr", "elapsed_s"}
    empty = runs_dir / "sst2" / "sgd" / "seed0" / "traditional_train.csv"
    assert empty.read_text() == "step,loss,lr,elapsed_s\n"  # diverged at once: header only
    seed0 = train[(train.optimizer == "sgd") & (train.seed == 0)]
    assert set(seed0.setting) == {"fair"}


# ----------------------------------------------------------------------------- time to target


def test_time_to_target_is_the_first_evaluation_at_the_target(tables) -> None:
    ttt = tables["ttt"].set_index(["optimizer", "setting", "seed"])
    assert ttt.target.unique() == pytest.approx([TARGET])
    assert ttt.loc[("adamw", "traditional", 0), "time_to_target_s"] == 2.0
    assert ttt.loc[("adamw", "traditional", 1), "time_to_target_s"] == 1.5
    assert math.isnan(ttt.loc[("adamw", "fair", 2), "time_to_target_s"])  # 0.74 < 0.765


def test_time_to_target_scales_with_the_fraction(tables) -> None:
    ttt = time_to_target(tables["runs"], tables["evals"], 0.7).set_index(
        ["optimizer", "setting", "seed"])
    assert ttt.loc[("adamw", "traditional", 0), "time_to_target_s"] == 1.0  # 0.60 >= 0.595
    assert ttt.loc[("adamw", "fair", 0), "time_to_target_s"] == 1.0
    assert ttt.loc[("sgd", "fair", 0), "time_to_target_s"] != ttt.loc[
        ("sgd", "fair", 1), "time_to_target_s"]  # 0.50 misses 0.595, 0.60 reaches it


# ----------------------------------------------------------------------------- summary


def test_summary_mean_and_interval_leave_out_the_diverged_seed(tables) -> None:
    cell = tables["summary"].loc[("adamw", "traditional")]
    assert (cell.seeds, cell.diverged) == (3, 1)
    assert cell["mean"] == pytest.approx(0.85)
    assert cell["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert (cell.ci95_low, cell.ci95_high) == pytest.approx(hand_interval([0.8, 0.9], 0.95))
    assert cell.reached_target == 2
    assert cell.time_to_target_s == pytest.approx(1.75)
    assert cell.wall_time_s == pytest.approx(10.5)


def test_summary_of_a_cell_where_every_seed_diverged(tables) -> None:
    cell = tables["summary"].loc[("sgd", "traditional")]
    assert (cell.seeds, cell.diverged, cell.reached_target) == (3, 3, 0)
    assert math.isnan(cell["mean"]) and math.isnan(cell.ci95_low)


def test_summary_has_one_row_per_task_optimizer_setting(tables) -> None:
    summary = tables["summary"]
    assert len(summary) == 4
    assert summary.loc[("adamw", "fair"), "mean"] == pytest.approx(0.72)
    assert summary.loc[("adamw", "fair"), "diverged"] == 0


def test_markdown_reads_diverged_where_every_seed_diverged(tables) -> None:
    lines = to_markdown(tables["summary"].reset_index()).splitlines()
    assert lines[0].startswith("| task")
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line
            for line in lines[2:]}
    assert set(rows) == {("sst2", setting, optimizer) for setting in ("traditional", "fair")
                         for optimizer in ("adamw", "sgd")}
    assert "| diverged " in rows["sst2", "traditional", "sgd"]
    assert "0.8500 ± 0.0707 (1 diverged)" in rows["sst2", "traditional", "adamw"]
    assert "diverged" not in rows["sst2", "fair", "adamw"]
    assert "[0.2147, 1.4853]" in rows["sst2", "traditional", "adamw"]


# ----------------------------------------------------------------------------- every metric


def squad_runs() -> pd.DataFrame:
    """load_runs rows of a SQuAD cell (selected on F1, exact match beside it) and an SST-2 one."""
    rows = []
    for task, metric, scores in [
        ("squad", "f1", [{"f1": 50.0, "exact_match": 40.0}, {"f1": 60.0, "exact_match": 44.0}]),
        ("sst2", "accuracy", [{"accuracy": 0.8}, {"accuracy": 0.9}]),
    ]:
        for seed, best in enumerate(scores):
            rows.append({
                "task": task, "optimizer": "adamw", "setting": "fair", "seed": seed,
                "metric": metric, "status": "ok", "steps": 4, "best_step": 4,
                "score": best[metric], "last_finite_loss": 1.0, "wall_time_s": 1.0,
                "train_samples_per_s": 2.0, "peak_memory_mb": 3.0,
                **{f"best.{k}": v for k, v in best.items()},
            })
    return pd.DataFrame(rows)


def test_summary_carries_every_metric_of_a_task() -> None:
    runs = squad_runs()
    ttt = runs[["task", "optimizer", "setting", "seed"]].assign(time_to_target_s=1.0, target=0.5)
    summary = summarize(runs, ttt).set_index("task")
    assert summary.loc["squad", "mean"] == pytest.approx(55.0)
    assert summary.loc["squad", "f1.mean"] == pytest.approx(55.0)
    assert summary.loc["squad", "exact_match.mean"] == pytest.approx(42.0)
    assert summary.loc["squad", "exact_match.std"] == pytest.approx(np.std([40, 44], ddof=1))
    assert math.isnan(summary.loc["sst2", "exact_match.mean"])  # not an SST-2 metric
    lines = {line.split("|")[1].strip(): line
             for line in to_markdown(summary.reset_index()).splitlines()[2:]}
    assert "| exact_match 42.0000 ± 2.8284 |" in lines["squad"]
    assert "55.0000 ± 7.0711" in lines["squad"]
    assert "exact_match" not in lines["sst2"] and "f1" not in lines["sst2"]


def test_final_metric_figure_has_a_panel_per_task_metric(tmp_path: Path) -> None:
    from adaopt.figures import best_metrics, final_metric

    runs = squad_runs()
    long = best_metrics(runs)
    assert sorted(set(long.panel)) == ["squad · exact_match", "squad · f1", "sst2 · accuracy"]
    assert long.loc[long.panel == "squad · exact_match", "value"].tolist() == [40.0, 44.0]
    path = final_metric(runs, tmp_path / "final_metric.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_headline_is_optimizer_by_task_per_setting(tables) -> None:
    text = headline_markdown(tables["summary"].reset_index())
    traditional, fair = text.split("### fair")
    assert traditional.startswith("### traditional")
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in fair.splitlines() if line.startswith("|")}
    assert next(iter(rows)) == "optimizer" and rows["optimizer"] == "sst2 (accuracy)"
    assert list(rows)[2:] == ["sgd", "adamw"]  # the registry's order, not the alphabet
    low, high = hand_interval([0.70, 0.72, 0.74], 0.95)
    assert rows["adamw"] == f"0.720 ± {(high - low) / 2:.3f}"
    sgd = {line.split("|")[1].strip(): line.split("|")[2].strip()
           for line in traditional.splitlines() if line.startswith("|")}["sgd"]
    assert sgd == "diverged"
