"""How close ``python -m adaopt plan`` comes to the committed stages' measured wall times.

For the active profile (``params.yaml``, the cpu profile) every committed tune and train stage
is estimated with the plan's rates, measured on this machine, and compared with the wall time
papermill recorded in its executed notebook (``metadata.papermill.duration``). That duration
covers the kernel: its start, the notebook's imports, loading the task's data, the runs and the
kernel's shutdown. It leaves out what the stage paid around it (``python -m adaopt check``,
papermill's own start and dvc's bookkeeping), so the plan's estimate is compared without its
outside-the-kernel part (printed apart, as measured here).

The committed stages ran with older parameters (some evaluation intervals have changed since),
so each stage is estimated with the parameters it recorded in ``dvc.lock`` (its ``train``
section, its task's workload, ``tuning.*``, ``sweep.seeds`` and its cell), and the counts are
checked against the runs' own logs (``train.csv`` and ``eval.csv`` per seed, ``trials.csv``).
For the train stages the runs' ``efficiency.json`` splits the measured time into training
steps, scoring and the rest, beside the estimate's parts. Writes ``plan_check.md`` and
``plan_check.json`` to ``--out-dir``. Usage::

    python benchmarks/plan_check.py --prepared data/prepared --calibrate
    python benchmarks/plan_check.py --calibration .dvc/tmp/plan_calibration.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from adaopt import io
from adaopt.config import Params, parse_params
from adaopt.runner import plan

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.3  # the issue's: within this factor of the measured stage times
#: The keys of a stage's recorded params that set its budget, besides its task's workload.
BUDGET = ("train", "sweep.seeds", "tuning.trials", "tuning.max_steps", "tuning.eval_every")
FOLDERS = {"tune": ("tuning", "tune.ipynb"), "train": ("runs", "train.ipynb")}


def as_run(raw: dict[str, Any], recorded: dict[str, Any], task: str, kind: str) -> Params:
    """``params.yaml`` with the budget a stage recorded in ``dvc.lock`` when it ran (a stage
    records only the keys it depends on; a train stage, its cell's seeds)."""
    raw = copy.deepcopy(raw)
    if kind == "tune":  # a key it depends on now, absent from its record: not a key then
        raw["tuning"]["eval_every"] = None
    for key in (key for key in BUDGET if key in recorded):
        section, _, name = key.partition(".")
        if name:
            raw[section][name] = recorded[key]
        else:
            raw[section] = recorded[key]
    for key in (key for key in recorded if key.startswith("sweep.cells.")):
        raw["sweep"]["cells"][key.removeprefix("sweep.cells.")] = recorded[key]
    raw["workloads"][task] = recorded[f"workloads.{task}"]
    return parse_params(raw, "params.yaml as in dvc.lock")


def logged(cell: Path, kind: str) -> dict[str, float]:
    """What a stage's runs logged: steps and evaluations run; for a train stage also the time
    its runs spent in training steps, in scoring and in all."""
    if kind == "tune":
        trials = pd.read_csv(cell / "trials.csv")
        return {"steps": float(trials["steps"].sum())}
    seeds = sorted(cell.glob("seed*"))
    costs = [json.loads((seed / "efficiency.json").read_text()) for seed in seeds]
    return {"steps": float(sum(len(pd.read_csv(seed / "train.csv")) for seed in seeds)),
            "evaluations": float(sum(len(pd.read_csv(seed / "eval.csv")) for seed in seeds)),
            "steps_s": sum(cost["wall_time_s"] for cost in costs),
            "scoring_s": sum(cost["scoring_time_s"] for cost in costs),
            "runs_s": sum(cost["run_time_s"] for cost in costs)}


def stage_rows(params: Params, raw: dict[str, Any], lock: dict[str, Any],
               calibration: plan.Calibration) -> list[dict[str, Any]]:
    """One row per committed tune or train stage: its estimate and its measured time."""
    rows = []
    for current in plan.stage_kinds(params):
        folder, notebook = FOLDERS[current.kind]
        rates = calibration.tasks[current.task]
        for name in current.names():
            cell = ROOT / folder / Path(*name.partition("@")[2].split("-"))
            if name not in lock or not (cell / notebook).is_file():
                continue
            ran = as_run(raw, lock[name]["params"]["params.yaml"], current.task, current.kind)
            stages = next(s for s in plan.stage_kinds(ran) if name in s.names())
            guess = plan.estimate(stages, rates, calibration.startup)
            steps_s = guess.training_s + rates.warmup_s
            papermill = json.loads((cell / notebook).read_text())["metadata"]["papermill"]
            rows.append({
                "task": current.task, "kind": current.kind, "stage": name,
                "same_rates": plan.rate_shape(ran, current.task) == rates.shape,
                "steps_planned": stages.runs * stages.steps,
                "evaluations_planned": stages.runs * stages.evaluations,
                "eval_every_then": (ran.train_for(current.task).eval_every
                                    if current.kind == "train"
                                    else ran.tuning_eval_every(current.task)),
                "estimate_s": guess.in_kernel_s, "outside_s": guess.outside_s,
                "est_steps_s": steps_s, "est_scoring_s": guess.evaluation_s,
                "est_rest_s": guess.in_kernel_s - steps_s - guess.evaluation_s,
                "measured_s": papermill["duration"],
                **{f"logged_{key}": value for key, value in logged(cell, current.kind).items()},
            })
    return rows


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task and stage kind, then per task: the summed estimate, measured time, ratio."""
    groups = [*rows.groupby(["task", "kind"], sort=False)]
    groups += [((task, "all"), group) for task, group in rows.groupby("task", sort=False)]
    groups += [(("all", "all"), rows)]
    parts = []
    for keys, group in groups:
        estimate, measured = group["estimate_s"].sum(), group["measured_s"].sum()
        parts.append({"task": keys[0], "kind": keys[1], "stages": len(group),
                      "estimate_s": round(estimate, 1), "measured_s": round(measured, 1),
                      "ratio": round(estimate / measured, 3),
                      "within_target": bool(max(estimate / measured, measured / estimate)
                                            <= TARGET)})
    return pd.DataFrame(parts)


def train_parts(rows: pd.DataFrame) -> pd.DataFrame:
    """The train stages' time per part, estimated and as their runs logged it: training steps,
    scoring (selection split and dev) and the rest (kernel, data, model loading)."""
    train = rows[rows["kind"] == "train"].copy()
    train["logged_rest_s"] = (train["measured_s"] - train["logged_steps_s"]
                              - train["logged_scoring_s"])
    sums = train.groupby("task", sort=False)[
        ["est_steps_s", "logged_steps_s", "est_scoring_s", "logged_scoring_s", "est_rest_s",
         "logged_rest_s"]].sum()
    for part in ("steps", "scoring", "rest"):
        sums[f"{part}_ratio"] = sums[f"est_{part}_s"] / sums[f"logged_{part}_s"]
    return sums.round(3).reset_index()


def counts(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task and kind: the evaluation interval the stages ran with, and the steps and
    evaluations planned from dvc.lock's parameters against those the logs show."""
    keys = ["task", "kind"]
    table = rows.groupby(keys, sort=False).agg(
        eval_every_then=("eval_every_then", "first"), steps_planned=("steps_planned", "sum"),
        steps_logged=("logged_steps", "sum"),
        evaluations_planned=("evaluations_planned", "sum"),
        evaluations_logged=("logged_evaluations", lambda s: s.sum(min_count=1)),
        same_rates=("same_rates", "all"))
    return table.reset_index()


def report(summary: pd.DataFrame, parts: pd.DataFrame, numbers: pd.DataFrame,
           calibration: plan.Calibration, params: Params, load: tuple[float, ...]) -> str:
    startup = calibration.startup
    tasks = summary[(summary["kind"] == "all") & (summary["task"] != "all")]
    within = int(tasks["within_target"].sum())
    now = {task: (params.train_for(task).eval_every, params.tuning_eval_every(task))
           for task in params.sweep.tasks}
    lines = [
        "# plan_check: the plan's estimate against the committed stages",
        "",
        f"Generated by `benchmarks/plan_check.py`. Calibration: {calibration.machine}; load "
        f"average before it: {' '.join(f'{x:.2f}' for x in load)} (1, 5, 15 min); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}.",
        "",
        "Measured: papermill's `duration` of each committed `tune.ipynb` and `train.ipynb` (the "
        "kernel's start, imports, data, runs, shutdown). Estimate: the plan's per-stage estimate "
        "without what a stage pays outside the kernel, which the durations do not cover: "
        f"`python -m adaopt check` {startup.check_s:.2f} s and papermill's own start and "
        f"notebook I/O {startup.papermill_s:.2f} s per stage, as measured here (dvc's "
        "bookkeeping is in neither). Each stage is estimated with the budget it recorded in "
        "`dvc.lock`, not today's `params.yaml`.",
        "",
        f"Target: the estimate within {TARGET}x of the measured time. "
        f"{within} of {len(tasks)} tasks are within it.",
        "",
        "## Estimate / measured",
        "",
        summary.to_markdown(index=False),
        "",
        "## Train stages by part (seconds; measured parts from the runs' efficiency.json)",
        "",
        "steps: training steps (the estimate includes the first step's warm-up); scoring: "
        "selection-split evaluations and the dev scoring; rest: kernel start, imports, data, "
        "model loading and writing (measured: the duration less the two).",
        "",
        parts.to_markdown(index=False),
        "",
        "## Counts: dvc.lock's budget against the logs",
        "",
        "Evaluations are logged for train stages only (`eval.csv`). "
        "`same_rates`: the calibration was measured with the values these stages ran with.",
        "",
        numbers.to_markdown(index=False),
        "",
        "Evaluation intervals now (train, tuning): "
        + ", ".join(f"{task} {train}, {tune}" for task, (train, tune) in now.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--calibration", type=Path, default=ROOT / plan.CALIBRATION)
    parser.add_argument("--calibrate", action="store_true", help="measure the rates again")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    raw = yaml.safe_load(args.params.read_text())
    params = parse_params(raw, str(args.params))
    load = os.getloadavg()  # before the calibration: what else kept the machine busy
    calibration, measured = plan.calibrate(params, args.params, args.prepared, args.calibration,
                                           force=args.calibrate)
    print(f"calibration {'measured: ' + ', '.join(measured) if measured else 'read'} "
          f"({args.calibration})")
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    rows = pd.DataFrame(stage_rows(params, raw, lock, calibration))
    if rows.empty:
        raise SystemExit("no committed tune or train stage of params.yaml's sweep to compare")
    summary, parts, numbers = summarize(rows), train_parts(rows), counts(rows)
    text = report(summary, parts, numbers, calibration, params, load)
    io.write_text(args.out_dir / "plan_check.md", text)
    io.write_json(args.out_dir / "plan_check.json", {
        "target": TARGET, "calibration": calibration.to_dict(), "load_average": load,
        "summary": summary.to_dict("records"), "train_parts": parts.to_dict("records"),
        "counts": numbers.to_dict("records"), "stages": rows.to_dict("records")})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
