"""``python -m adaopt plan``: the counts of a profile, the estimate from given rates, the
calibration file, ``dvc status`` and one real calibration on the fixture data."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaopt.config import Params, load_params, parse_params
from adaopt.runner import plan
from adaopt.runner.cli import main
from adaopt.runner.plan import Calibration, Stages, Startup, TaskRates

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "profiles" / "smoke.yaml"
STARTUP = Startup(check_s=1.0, papermill_s=2.0, kernel_s=5.0)


def rates(shape: dict[str, Any] | None = None, **changes: float) -> TaskRates:
    values = {"workload_s": 3.0, "run_setup_s": 0.5, "warmup_s": 0.2, "step_s": 0.1,
              "selection_s": 0.4, "dev_s": 2.0, "tokens_per_example": 10.0,
              "selection_tokens": 1000, "dev_tokens": 4000, **changes}
    return TaskRates(shape=shape or {}, **values)


def fake_calibration(params: Params, machine: dict[str, Any]) -> Calibration:
    return Calibration(machine=machine, startup=STARTUP,
                       tasks={task: rates(plan.rate_shape(params, task))
                              for task in params.sweep.tasks})


def test_counts_of_the_smoke_profile_for_sst2() -> None:
    """Read from the YAML itself: sst2 keeps the shared train section and tuning.max_steps."""
    raw = yaml.safe_load(SMOKE.read_text())
    assert raw["workloads"]["sst2"] == {}
    cells = len(raw["sweep"]["optimizers"]) * 2  # traditional and fair
    batch, steps, every = (raw["train"][key] for key in ("batch_size", "max_steps", "eval_every"))
    trials, tune_steps = raw["tuning"]["trials"], raw["tuning"]["max_steps"]
    seeds = len(raw["sweep"]["seeds"])
    kinds = {s.kind: s for s in plan.stage_kinds(load_params(SMOKE)) if s.task == "sst2"}
    tune, train = kinds["tune"], kinds["train"]
    assert (tune.stages, tune.total_runs, tune.total_steps) == (cells, cells * trials,
                                                                cells * trials * tune_steps)
    assert tune.total_examples == cells * trials * tune_steps * batch
    assert tune.total_evaluations == cells * trials * tune_steps // every  # no dev scoring
    assert (train.stages, train.total_runs, train.total_steps) == (cells, cells * seeds,
                                                                   cells * seeds * steps)
    assert train.total_examples == cells * seeds * steps * batch
    assert train.total_evaluations == cells * seeds * (steps // every + 1)  # + dev, once


def test_a_run_evaluates_every_interval_and_after_its_last_step() -> None:
    assert plan.evaluations(12, 5) == 3  # steps 5, 10 and 12
    assert plan.evaluations(30, 15) == 2
    assert plan.evaluations(6, 1) == 6


def test_the_estimate_scales_with_the_work_and_the_rates() -> None:
    stages = Stages("sst2", "train", stages=4, runs=3, steps=30, examples_per_step=32,
                    evaluations=6, dev_scorings=1)
    task = rates()
    base = plan.estimate(stages, task, STARTUP)
    assert base.outside_s == pytest.approx(3.0)
    assert base.setup_s == pytest.approx(5.0 + 3.0 + 0.2 + 3 * 0.5)
    assert base.training_s == pytest.approx(3 * 30 * 0.1)
    assert base.evaluation_s == pytest.approx(3 * (6 * 0.4 + 2.0))
    assert base.total_s == pytest.approx(base.outside_s + base.in_kernel_s)
    longer = plan.estimate(replace(stages, steps=60), task, STARTUP)
    assert longer.training_s == pytest.approx(2 * base.training_s)
    assert (longer.setup_s, longer.evaluation_s) == (base.setup_s, base.evaluation_s)
    slower = plan.estimate(stages, rates(step_s=0.2, selection_s=0.8, dev_s=4.0), STARTUP)
    assert slower.training_s == pytest.approx(2 * base.training_s)
    assert slower.evaluation_s == pytest.approx(2 * base.evaluation_s)
    gpu = plan.gpu_estimate(stages, task, STARTUP, tokens_per_s=1000.0)
    assert gpu.training_s == pytest.approx(3 * 30 * 32 * 10.0 / 1000.0)
    assert gpu.evaluation_s == pytest.approx(3 * (6 * 1000 + 4000) / (plan.EVAL_SPEEDUP * 1000))
    faster = plan.gpu_estimate(stages, task, STARTUP, tokens_per_s=2000.0)
    assert faster.training_s + faster.evaluation_s == pytest.approx(
        (gpu.training_s + gpu.evaluation_s) / 2)
    assert faster.setup_s == gpu.setup_s


def test_the_calibration_is_read_back_and_measured_again_where_it_no_longer_fits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[str] = []

    def measure_task(params: Params, task: str, prepared: Any) -> TaskRates:
        measured.append(task)
        return rates(plan.rate_shape(params, task), step_s=0.1 * len(measured))

    def measure_startup(params_path: Any) -> Startup:
        measured.append("start-up")
        return STARTUP

    machine = {"torch": "2.x", "device": "cpu", "cpu_capability": "AVX512", "threads": 2}
    monkeypatch.setattr(plan, "calibrate_task", measure_task)
    monkeypatch.setattr(plan, "measure_startup", measure_startup)
    monkeypatch.setattr("adaopt.training.machine", lambda: machine)
    params, path = load_params(SMOKE), tmp_path / "tmp" / "calibration.json"
    tasks = params.sweep.tasks

    first, said = plan.calibrate(params, SMOKE, "prepared", path)
    assert said == measured == ["start-up", *tasks]
    assert plan.read_calibration(path, machine) == first
    measured.clear()
    again, said = plan.calibrate(params, SMOKE, "prepared", path)
    assert (again, said, measured) == (first, [], [])

    raw = yaml.safe_load(SMOKE.read_text())
    raw["workloads"]["stsb"] = {"train": {"batch_size": 8}}  # its rates change, not the others'
    _, said = plan.calibrate(parse_params(raw), SMOKE, "prepared", path)
    assert said == measured == ["stsb"]
    measured.clear()
    assert plan.calibrate(params, SMOKE, "prepared", path, force=True)[1] == ["start-up", *tasks]

    measured.clear()
    monkeypatch.setattr("adaopt.training.machine", lambda: {**machine, "threads": 4})
    assert plan.read_calibration(path, {**machine, "threads": 4}) is None
    assert plan.calibrate(params, SMOKE, "prepared", path)[1] == ["start-up", *tasks]
    assert json.loads(path.read_text())["machine"]["threads"] == 4
    path.write_text("{not json")
    assert plan.read_calibration(path, machine) is None


def test_dvc_status_names_the_stages_not_done() -> None:
    canned = json.dumps({
        "train@sst2-adamw-fair": [{"changed deps": {"src/adaopt/training.py": "modified"}}],
        "tune@sst2-adamw-fair": ["always changed"],
        "pipelines/dvc.yaml:report": [{"changed outs": {"REPORT.md": "deleted"}}],
    })
    assert plan.stages_not_done(canned) == {"train@sst2-adamw-fair", "tune@sst2-adamw-fair",
                                            "report"}
    assert plan.stages_not_done("{}") == set()
    with pytest.raises(ValueError, match="expected a mapping, got list"):
        plan.stages_not_done("[]")


def test_dvc_status_says_in_one_line_when_it_cannot_tell(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    said = plan.dvc_status(tmp_path)  # not a DVC repository
    assert isinstance(said, str) and said.startswith("dvc status failed (") and "\n" not in said
    monkeypatch.setattr(plan.shutil, "which", lambda *args, **kwargs: None)
    assert plan.dvc_status(tmp_path) == "dvc not found: which stages are done is not known"


def test_the_table_counts_what_is_done_and_what_is_left() -> None:
    params = load_params(SMOKE)
    calibration = fake_calibration(params, {"device": "cpu", "cpu_capability": "AVX2",
                                            "threads": 2, "torch": "2.x"})
    not_done = {"tune@sst2-adamw-fair", "train@stsb-adamw-fair", "train@stsb-adamw-traditional",
                "report"}
    frame, totals = plan.table(params, calibration, not_done, gpu_tokens_per_s=1000.0)
    done = {(row.task, row.stage): row.done for row in frame.itertuples()}
    assert done[("sst2", "tune")] == 3 and done[("stsb", "train")] == 2
    assert sum(done.values()) == frame["stages"].sum() - 3
    per_stage = {(kind.task, kind.kind): plan.estimate(kind, calibration.tasks[kind.task],
                                                       STARTUP).total_s
                 for kind in plan.stage_kinds(params)}
    assert totals["left_s"] == pytest.approx(per_stage[("sst2", "tune")]
                                             + 2 * per_stage[("stsb", "train")])
    assert 0 < totals["gpu_s"] < totals["cpu_s"]
    text = plan.render(params, calibration, not_done, 1000.0)
    assert "not estimated: 1 other stages not done (report)" in text
    assert f"{frame['stages'].sum() - 3} of {frame['stages'].sum()} stages done" in text
    assert "evaluation forwards at 3x that" in text
    no_dvc = plan.render(params, calibration, "dvc not found: which stages are done is not known")
    assert "stages done" not in no_dvc and "GPU" not in no_dvc
    assert "dvc not found: which stages are done is not known" in no_dvc.splitlines()


def test_plan_reads_a_fitting_calibration_and_checks_dvc_only_for_params_yaml(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adaopt.training import machine

    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(fake_calibration(load_params(SMOKE), machine()).to_dict()))
    assert main(["plan", "--params", str(SMOKE), "--calibration", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"calibration read from {path}\nplan for profile smoke")
    assert f"done: not checked (dvc status compares params.yaml, not {SMOKE})" in out
    assert "| stage   |   stages |" in out and "\ntotal: " in out
    assert main(["plan", "--gpu-tokens-per-s", "0"]) == 2
    assert capsys.readouterr().err == ("error: --gpu-tokens-per-s=0: must be a positive number "
                                       "of training tokens per second\n")


def test_a_real_calibration_of_the_fixture_sst2(prepared_sst2: Path) -> None:
    """The smoke profile's tiny model on one thread: every rate is measured, and the token
    counts are the prepared splits'."""
    from datasets import load_from_disk

    raw = yaml.safe_load(SMOKE.read_text())
    raw["train"]["threads"] = 1
    params = parse_params(raw)
    task = plan.calibrate_task(params, "sst2", prepared_sst2)
    assert task.shape == plan.rate_shape(params, "sst2")
    for value in (task.workload_s, task.run_setup_s, task.step_s, task.selection_s, task.dev_s):
        assert math.isfinite(value) and value > 0
    assert task.warmup_s >= 0
    splits = load_from_disk(str(prepared_sst2 / "sst2"))
    lengths = splits["train"]["length"]
    assert task.tokens_per_example == pytest.approx(sum(lengths) / len(lengths))
    assert task.selection_tokens == sum(splits["selection"]["length"])
    assert task.dev_tokens == sum(splits["validation"]["length"])
    with pytest.raises(FileNotFoundError, match="run the prepare stage"):
        plan.calibrate_task(params, "stsb", prepared_sst2)


def test_a_design_whose_cells_differ_in_seeds_is_planned_cell_by_cell() -> None:
    """The cpu profile's design: cells left out of some tasks, ten seeds where a comparison
    needs them; every cell is tuned once and trained with its own seeds."""
    params = load_params(ROOT / "profiles" / "cpu.yaml")
    kinds = plan.stage_kinds(params)
    for kind in ("tune", "train"):
        names = [name for stages in kinds if stages.kind == kind for name in stages.names()]
        assert sorted(names) == sorted(f"{kind}@{cell.name}" for cell in params.cells)
    assert sum(s.total_runs for s in kinds if s.kind == "train") == sum(
        len(cell.seeds) for cell in params.cells)
    assert sum(s.total_runs for s in kinds if s.kind == "tune") == (
        len(params.cells) * params.tuning.trials)
    assert len({len(cell.seeds) for cell in params.cells}) > 1  # the case this test is about
