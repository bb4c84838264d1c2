"""The line a tune or train stage ends with (adaopt.runner.progress)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from adaopt import io
from adaopt.config import load_params
from adaopt.runner import plan
from adaopt.runner.progress import (
    stage_line,
    stages_with_outputs,
    standing,
    time_left,
    train_found,
    tune_found,
    up_to_date,
)
from adaopt.training import machine

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "profiles" / "smoke.yaml")


def _choice(path: Path, **changes: object) -> Path:
    io.write_json(path, {"hparams": {"lr": 0.000316}, "edges": {}, "metric": "accuracy",
                         "score": 0.79, "trial": 2, "trials": 4, "no_finished_trial": False,
                         **changes})
    return path


def test_a_tune_stage_says_its_choice_and_score(tmp_path: Path) -> None:
    assert tune_found(_choice(tmp_path / "a.json")) == (
        "lr 0.000316: selection accuracy 0.79, trial 3 of 4")
    assert tune_found(_choice(tmp_path / "b.json", edges={"lr": "upper"})) == (
        "lr 0.000316 (lr at the upper edge of the grid): selection accuracy 0.79, trial 3 of 4")
    assert tune_found(_choice(tmp_path / "c.json", no_finished_trial=True, score=None)) == (
        "every trial diverged")


def _run(dev: float, status: str = "ok", cuts: int = 0, controlled: bool = True) -> dict:
    return {"metric": "pearson", "dev": {} if status == "diverged" else {"pearson": dev},
            "status": status, "cuts": [{"step": 4, "lr": 1e-4}] * cuts,
            "controlled": controlled}


def test_a_train_stage_says_each_seeds_dev_score_and_cuts() -> None:
    runs = {0: _run(0.51234, cuts=2), 1: _run(0.0, "diverged"), 2: _run(0.5, cuts=0)}
    assert train_found(runs) == "dev pearson 0.5123 diverged 0.5 (seeds 0 1 2), cuts per seed 2 0 0"
    plain = {0: _run(0.5, controlled=False)}
    assert train_found(plain) == "dev pearson 0.5 (seeds 0)"


NO_PLAN = "`make plan` estimates the time left"


def test_outside_a_dvc_project_the_standing_counts_the_stages_whose_outputs_exist(
    tmp_path: Path,
) -> None:
    total = 2 * len(PARAMS.sweep.tasks) * len(PARAMS.sweep.optimizers) * 2
    assert standing(PARAMS, tmp_path) == (
        f"0 of {total} tune and train stages have outputs, {NO_PLAN}")
    cell = Path("sst2") / "adamw" / "fair"
    _choice(tmp_path / "tuning" / cell / "choice.json")
    io.write_json(tmp_path / "runs" / cell / "seed0" / "metrics.json", {})
    assert stages_with_outputs(PARAMS, tmp_path) == {"tune@sst2-adamw-fair"}  # seed 1 missing
    io.write_json(tmp_path / "runs" / cell / "seed1" / "metrics.json", {})
    line = stage_line("train", PARAMS, "SST-2", "adamw", "fair", "dev accuracy 0.5", tmp_path)
    assert line == (f"train@sst2-adamw-fair: dev accuracy 0.5; 2 of {total} tune and train "
                    f"stages have outputs, {NO_PLAN}")


# Two stages named as the profile's: train reads up_to_date under dvc repro's lock.
DVC_YAML = """
stages:
  tune:
    matrix: {task: [sst2], optimizer: [adamw], setting: [fair]}
    cmd: echo 1 > chosen
    params: [lr]
    outs: [{chosen: {cache: false}}]
  train:
    matrix: {task: [sst2], optimizer: [adamw], setting: [fair]}
    cmd: >-
      %(python)s -c "from adaopt.runner.progress import up_to_date; from adaopt.config import
      load_params; open('seen', 'w').write(repr(sorted(up_to_date(load_params('%(params)s')))))"
    deps: [chosen]
    outs: [{seen: {cache: false}}]
"""


def test_up_to_date_is_what_dvc_status_says_also_under_dvc_repros_lock(tmp_path: Path) -> None:
    def dvc(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    dvc("init", "--no-scm")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML % {"python": sys.executable,
                                                   "params": ROOT / "profiles" / "smoke.yaml"})
    (tmp_path / "params.yaml").write_text("lr: 1\n")
    assert up_to_date(PARAMS, tmp_path) == set()
    dvc("repro")
    assert (tmp_path / "seen").read_text() == "['tune@sst2-adamw-fair']"  # train was running
    assert up_to_date(PARAMS, tmp_path) == {"tune@sst2-adamw-fair", "train@sst2-adamw-fair"}
    (tmp_path / "params.yaml").write_text("lr: 2\n")  # the old outputs stay, outdated
    assert up_to_date(PARAMS, tmp_path) == {"train@sst2-adamw-fair"}
    assert standing(PARAMS, tmp_path, running="tune@sst2-adamw-fair").startswith(
        f"2 of {2 * 2 * len(PARAMS.sweep.optimizers) * len(PARAMS.sweep.tasks)} tune and "
        "train stages are up to date, ")


def test_the_time_left_is_the_plans_estimate_of_the_stages_without_outputs(
    tmp_path: Path,
) -> None:
    """With a calibration where every stage costs one second (its check), the time left is one
    second per stage without outputs; a calibration of another machine gives no estimate."""
    nothing = {"workload_s": 0.0, "run_setup_s": 0.0, "warmup_s": 0.0, "step_s": 0.0,
               "selection_s": 0.0, "dev_s": 0.0, "tokens_per_example": 1.0,
               "selection_tokens": 1, "dev_tokens": 1}
    calibration = plan.Calibration(
        machine=machine(), startup=plan.Startup(check_s=1.0, papermill_s=0.0, kernel_s=0.0),
        tasks={task: plan.TaskRates(shape=plan.rate_shape(PARAMS, task), **nothing)
               for task in PARAMS.sweep.tasks})
    io.write_json(tmp_path / plan.CALIBRATION, calibration.to_dict())
    total = 2 * len(PARAMS.sweep.tasks) * len(PARAMS.sweep.optimizers) * 2
    done = {"tune@sst2-adamw-fair", "train@sst2-adamw-fair"}
    assert time_left(PARAMS, done, tmp_path) == f"about {total - 2} s left (plan)"
    io.write_json(tmp_path / plan.CALIBRATION, {**calibration.to_dict(), "machine": {}})
    assert time_left(PARAMS, done, tmp_path) == NO_PLAN


def test_the_closing_line_says_what_could_not_be_computed_instead_of_failing(
    tmp_path: Path, monkeypatch,
) -> None:
    """It comes after a finished stage cleared its checkpoints: a raise there would train the
    stage again. An up-to-date count or a time left that raises is named, not raised."""
    import adaopt.runner.progress as progress

    total = 2 * len(PARAMS.sweep.tasks) * len(PARAMS.sweep.optimizers) * 2

    def broken(*args: object) -> None:
        raise RuntimeError("lock file damaged\nsecond line")

    monkeypatch.setattr(progress, "time_left", broken)
    assert standing(PARAMS, tmp_path) == (
        f"0 of {total} tune and train stages have outputs, the time left could not be computed "
        "(RuntimeError: lock file damaged)")
    monkeypatch.setattr(progress, "up_to_date", broken)
    line = stage_line("tune", PARAMS, "sst2", "adamw", "fair", "lr 0.001", tmp_path)
    assert line == (f"tune@sst2-adamw-fair: lr 0.001; how many of the {total} tune and train "
                    "stages are up to date could not be computed (RuntimeError: lock file "
                    "damaged)")
