"""What a profile will cost before it runs: ``python -m adaopt plan``.

For every trained task and stage kind (``tune``, ``train``) the plan counts the stages, runs,
optimizer steps, training examples and tokens and evaluations the profile asks for, and turns
them into wall time with rates measured on this machine: a short calibration (per task, a few
AdamW steps after a warm-up step at the task's batch size, one selection-split evaluation, the
dev scoring, the model loading and the task's data loading) plus a stage's fixed start-up (the
``python -m adaopt check``, papermill and its kernel's imports every stage pays). A guess from
the step counts alone would miss what dominates a short CPU stage: the start-up and the
evaluations.

The calibration is written to a file and read back by the next plan, for as long as the
machine (:func:`adaopt.training.machine`) and what shapes a task's rates (its batch sizes,
precision, threads, data and model) stay the same; ``--calibrate`` measures afresh. Which
stages are already done comes from ``dvc status``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from adaopt import io
from adaopt.config import Params
from adaopt.protocol.controller import evaluations  # every eval_every steps, and the last
from adaopt.runner.slices import stage_name

#: Where the calibration lives by default: DVC's own scratch folder, ignored by git and DVC.
CALIBRATION = Path(".dvc/tmp/plan_calibration.json")
KINDS = ("tune", "train")
#: Timed AdamW steps per task, after the warm-up step.
CALIBRATION_STEPS = 8
#: On a GPU, evaluation forwards (no backward, no optimizer) over training tokens/s.
EVAL_SPEEDUP = 3.0
#: What a stage's notebook (notebooks/02_tune.ipynb, 02_train.ipynb) does besides its runs: its
#: imports, and its closing line's standing
#: (which asks DVC about every tune and train stage of the profile ``{params}`` names).
STAGE_FIXED = ("import pandas as pd\n\nfrom adaopt.config import load_params\n"
               "from adaopt.experiment import read_choice, run_setting, tune\n"
               "from adaopt.runner.progress import standing\n\nstanding(load_params({params!r}))\n")
#: The train keys a task's rates do not depend on (its budget and bookkeeping).
_BUDGET_KEYS = {"max_steps", "eval_every", "early_stopping_patience", "checkpoint_every",
                "checkpoint_interval_s", "busy_gpus", "dist_timeout_s"}


@dataclass(frozen=True)
class Stages:
    """The stages of one kind for one task, all alike: each runs ``runs`` runs of ``steps``
    optimizer steps, each run evaluated ``evaluations`` times on the selection split and
    scored ``dev_scorings`` times on dev. ``cells``: their (optimizer, setting) pairs."""

    task: str
    kind: str
    stages: int
    runs: int
    steps: int
    examples_per_step: int
    evaluations: int
    dev_scorings: int
    cells: tuple[tuple[str, str], ...] = ()

    @property
    def total_runs(self) -> int:
        return self.stages * self.runs

    @property
    def total_steps(self) -> int:
        return self.total_runs * self.steps

    @property
    def total_examples(self) -> int:
        return self.total_steps * self.examples_per_step

    @property
    def total_evaluations(self) -> int:
        return self.total_runs * (self.evaluations + self.dev_scorings)

    def names(self) -> list[str]:
        """The DVC stage names: ``<kind>@<task>-<optimizer>-<setting>``."""
        return [stage_name(self.kind, self.task, optimizer, setting)
                for optimizer, setting in self.cells]


def stage_kinds(params: Params) -> list[Stages]:
    """Per trained task its tune stages, then its train stages, one per cell of the design;
    train stages are grouped by their cells' seed counts."""
    out = []
    for task in params.sweep.tasks:
        cfg, mine = params.train_for(task), [c for c in params.cells if c.task == task]
        per_step = cfg.batch_size * cfg.grad_accum_steps
        tune_steps = params.tuning_steps(task)
        out.append(Stages(task, "tune", len(mine), params.tuning.trials, tune_steps, per_step,
                          evaluations(tune_steps, params.tuning_eval_every(task)), 0,
                          tuple((c.optimizer, c.setting) for c in mine)))
        for seeds in sorted({len(c.seeds) for c in mine}):
            group = tuple((c.optimizer, c.setting) for c in mine if len(c.seeds) == seeds)
            out.append(Stages(task, "train", len(group), seeds, cfg.max_steps, per_step,
                              evaluations(cfg.max_steps, cfg.eval_every), 1, group))
    return out


@dataclass(frozen=True)
class Startup:
    """A stage's fixed cost in seconds: ``python -m adaopt check``, ``python -m adaopt
    notebook`` outside its kernel (papermill's start, reading and writing the notebook) and the
    kernel (start, the stage notebook's imports and closing standing, shutdown: inside
    papermill's recorded duration)."""

    check_s: float
    papermill_s: float
    kernel_s: float


@dataclass(frozen=True)
class TaskRates:
    """One task's measured costs in seconds, and its token counts.

    ``workload_s``: loading its tokenizer, data and evaluators, once per stage; ``warmup_s``:
    what a process's first step costs beyond a step; ``run_setup_s``: a run's cost beyond its
    steps and evaluations (model loading, optimizer, loader, copies of the best weights).
    """

    shape: dict[str, Any]
    workload_s: float
    run_setup_s: float
    warmup_s: float
    step_s: float
    selection_s: float
    dev_s: float
    tokens_per_example: float
    selection_tokens: int
    dev_tokens: int


@dataclass(frozen=True)
class Estimate:
    """One stage's estimated wall time in seconds, by part."""

    outside_s: float  # check and papermill outside the kernel
    setup_s: float  # the kernel, the task's data, the first step's warm-up, the runs' setup
    training_s: float
    evaluation_s: float  # selection split and dev

    @property
    def total_s(self) -> float:
        return self.outside_s + self.in_kernel_s

    @property
    def in_kernel_s(self) -> float:
        """What papermill's recorded duration covers."""
        return self.setup_s + self.training_s + self.evaluation_s


def estimate(stages: Stages, rates: TaskRates, startup: Startup) -> Estimate:
    """One stage of ``stages`` on the CPU, from the measured rates."""
    return Estimate(
        outside_s=startup.check_s + startup.papermill_s,
        setup_s=(startup.kernel_s + rates.workload_s + rates.warmup_s
                 + stages.runs * rates.run_setup_s),
        training_s=stages.runs * stages.steps * rates.step_s,
        evaluation_s=stages.runs * (stages.evaluations * rates.selection_s
                                    + stages.dev_scorings * rates.dev_s),
    )


def gpu_estimate(stages: Stages, rates: TaskRates, startup: Startup,
                 tokens_per_s: float) -> Estimate:
    """One stage on a GPU training ``tokens_per_s``, evaluating at ``EVAL_SPEEDUP`` times that,
    with this machine's start-up, data and model loading."""
    train_tokens = stages.steps * stages.examples_per_step * rates.tokens_per_example
    eval_tokens = (stages.evaluations * rates.selection_tokens
                   + stages.dev_scorings * rates.dev_tokens)
    return Estimate(
        outside_s=startup.check_s + startup.papermill_s,
        setup_s=startup.kernel_s + rates.workload_s + stages.runs * rates.run_setup_s,
        training_s=stages.runs * train_tokens / tokens_per_s,
        evaluation_s=stages.runs * eval_tokens / (EVAL_SPEEDUP * tokens_per_s),
    )


# --------------------------------------------------------------------------- calibration


def rate_shape(params: Params, task: str) -> dict[str, Any]:
    """What a task's rates depend on: a calibration made with other values is measured again."""
    workload = params.workload(task)
    return json.loads(json.dumps({
        "task": task, "model": params.model.model_dump(), "data": params.data.model_dump(),
        "train": params.train_for(task).model_dump(exclude=_BUDGET_KEYS),
        "gpt": workload.gpt.model_dump() if workload.gpt else None,
        "decoding": workload.decoding.model_dump(),
    }))


def calibrate_task(params: Params, task: str, prepared_dir: str | Path) -> TaskRates:
    """Measure one task in this process: load its workload, train AdamW for a warm-up step and
    ``CALIBRATION_STEPS`` steps evaluated once at the end, then score dev."""
    from adaopt.experiment import Workload
    from adaopt.protocol.splits import TRAIN
    from adaopt.protocol.tuning import search_grid

    if not (Path(prepared_dir) / task).is_dir():
        raise FileNotFoundError(f"{Path(prepared_dir) / task}: missing; the calibration reads "
                                "the prepared data: run the prepare stage (dvc repro prepare)")
    started = time.perf_counter()
    work = Workload(params, task, prepared_dir)
    workload_s = time.perf_counter() - started
    point = search_grid(params.space_for(task, "adamw"))[0]  # the smallest learning rate
    steps = CALIBRATION_STEPS + 1
    started = time.perf_counter()
    result, model = work.train_run("adamw", {**params.optimizers["adamw"], **point}, "fair",
                                   params.tuning.seed, steps, None, False, eval_every=steps)
    run_s = time.perf_counter() - started
    if result.steps != steps:
        raise ValueError(f"{task}: the calibration run stopped after {result.steps} of {steps} "
                         f"steps ({result.status}); it cannot time the steps")
    started = time.perf_counter()
    work.dev(model)
    dev_s = time.perf_counter() - started
    elapsed = [row["elapsed_s"] for row in result.train_log]
    step_s = (elapsed[-1] - elapsed[0]) / CALIBRATION_STEPS
    lengths = work.splits[TRAIN]["length"]
    return TaskRates(
        shape=rate_shape(params, task), workload_s=workload_s,
        run_setup_s=run_s - result.wall_time_s - result.scoring_time_s,
        warmup_s=max(elapsed[0] - step_s, 0.0), step_s=step_s,
        selection_s=result.scoring_time_s, dev_s=dev_s,
        tokens_per_example=sum(lengths) / len(lengths),
        selection_tokens=sum(work.splits[work.selection.split]["length"]),
        dev_tokens=sum(work.splits[work.dev.split]["length"]),
    )


def measure_startup(params_path: str | Path) -> Startup:
    """Time ``python -m adaopt check`` and ``python -m adaopt notebook`` (as a stage runs them,
    in this project) on a notebook that only does what a stage notebook does besides its runs
    (:data:`STAGE_FIXED`); split the notebook command's wall time at papermill's recorded
    duration of the kernel."""
    import nbformat

    def timed(*args: str) -> float:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise ValueError(f"{' '.join(args[:3])} failed: {result.stderr.strip()[-300:]}")
        return time.perf_counter() - started

    check_s = timed("-m", "adaopt", "check", "--params", str(params_path))
    with tempfile.TemporaryDirectory() as folder:
        source, executed = Path(folder) / "imports.ipynb", Path(folder) / "out.ipynb"
        code = STAGE_FIXED.format(params=str(params_path))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, source)
        wall = timed("-m", "adaopt", "notebook", str(source), str(executed))
        kernel_s = json.loads(executed.read_text())["metadata"]["papermill"]["duration"]
    return Startup(check_s=check_s, papermill_s=wall - kernel_s, kernel_s=kernel_s)


@dataclass(frozen=True)
class Calibration:
    """The measured rates of one machine: its start-up and each task's."""

    machine: dict[str, Any]
    startup: Startup
    tasks: dict[str, TaskRates]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(machine=data["machine"], startup=Startup(**data["startup"]),
                   tasks={task: TaskRates(**rates) for task, rates in data["tasks"].items()})


def read_calibration(path: str | Path, machine: dict[str, Any]) -> Calibration | None:
    """The calibration at ``path`` if it was measured on ``machine``; None if there is none,
    it cannot be read, or it belongs to another machine."""
    try:
        calibration = Calibration.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return calibration if calibration.machine == machine else None


def calibrate(params: Params, params_path: str | Path, prepared_dir: str | Path,
              path: str | Path, *, force: bool = False) -> tuple[Calibration, list[str]]:
    """The calibration for ``params`` on this machine: read from ``path``, with what is missing
    or was measured for other values (or everything, with ``force``) measured now and written
    back. Also returns what was measured."""
    from adaopt.training import machine

    here = machine()
    known = None if force else read_calibration(path, here)
    startup = known.startup if known else measure_startup(params_path)
    tasks = dict(known.tasks) if known else {}
    measured = [] if known else ["start-up"]
    for task in params.sweep.tasks:
        if task not in tasks or tasks[task].shape != rate_shape(params, task):
            tasks[task] = calibrate_task(params, task, prepared_dir)
            measured.append(task)
    calibration = Calibration(machine=here, startup=startup, tasks=tasks)
    if measured:
        io.write_json(path, calibration.to_dict())
    return calibration, measured


def cell_seconds(params: Params, calibration_path: str | Path) -> dict[str, float]:
    """Per cell of the design (its name, ``<task>-<optimizer>-<setting>``), the estimate in
    seconds of its tune and its train stage, from the calibration at ``calibration_path``
    whichever machine measured it: what the slices of a sweep are dealt by
    (:func:`adaopt.runner.slices.slice_stages`), so every machine reading the file deals alike.
    A task the file lacks is left out; an unreadable file is refused in one line."""
    try:
        calibration = Calibration.from_dict(json.loads(Path(calibration_path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{calibration_path}: not a calibration written by `python -m adaopt "
                         f"plan` ({type(error).__name__}: {error})") from error
    seconds: dict[str, float] = {}
    for stages in stage_kinds(params):
        rates = calibration.tasks.get(stages.task)
        if rates is not None:
            each = estimate(stages, rates, calibration.startup).total_s
            for name in stages.names():
                cell = name.partition("@")[2]
                seconds[cell] = seconds.get(cell, 0.0) + each
    return seconds


# --------------------------------------------------------------------------- dvc status


def stages_not_done(status_json: str) -> set[str]:
    """The stages ``dvc status --json`` reports as changed; a stage it omits is up to date.
    Keys of a ``dvc.yaml`` in a subfolder (``sub/dvc.yaml:stage``) are cut to the stage."""
    status = json.loads(status_json)
    if not isinstance(status, dict):
        raise ValueError(f"dvc status --json: expected a mapping, got {type(status).__name__}")
    return {name.rpartition(":")[2] for name in status}


def dvc_status(root: str | Path = ".") -> set[str] | str:
    """The stages not up to date in ``root``, or one line saying why it is not known."""
    venv = str(Path(sys.executable).parent)
    dvc = shutil.which("dvc", path=f"{venv}{os.pathsep}{os.environ.get('PATH', '')}")
    if dvc is None:
        return "dvc not found: which stages are done is not known"
    try:
        result = subprocess.run([dvc, "status", "--json"], cwd=root, capture_output=True,
                                text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "dvc status took over 10 minutes: which stages are done is not known"
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"dvc status failed ({why}): which stages are done is not known"
    try:
        return stages_not_done(result.stdout)
    except ValueError as error:
        return f"{error}: which stages are done is not known"


# --------------------------------------------------------------------------- the table


def duration(seconds: float) -> str:
    """``1 h 05 min``, ``4 min 12 s`` or ``38 s``."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def table(params: Params, calibration: Calibration, not_done: set[str] | None,
          gpu_tokens_per_s: float | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """One row per (task, stage kind), and the totals in seconds (``cpu_s``, ``left_s``,
    ``gpu_s``)."""
    rows, totals = [], {"cpu_s": 0.0, "left_s": 0.0, "gpu_s": 0.0}
    for stages in stage_kinds(params):
        rates = calibration.tasks[stages.task]
        per_stage = estimate(stages, rates, calibration.startup).total_s
        left = None if not_done is None else sum(name in not_done
                                                 for name in stages.names())
        row = {"task": stages.task, "stage": stages.kind, "stages": stages.stages,
               "runs": stages.total_runs, "steps": stages.total_steps,
               "examples": stages.total_examples,
               "tokens": round(stages.total_examples * rates.tokens_per_example),
               "evaluations": stages.total_evaluations,
               "per stage": duration(per_stage), "CPU": duration(stages.stages * per_stage)}
        totals["cpu_s"] += stages.stages * per_stage
        if gpu_tokens_per_s is not None:
            gpu = gpu_estimate(stages, rates, calibration.startup, gpu_tokens_per_s).total_s
            row["GPU"] = duration(stages.stages * gpu)
            totals["gpu_s"] += stages.stages * gpu
        if left is not None:
            row["done"] = stages.stages - left
            row["left (CPU)"] = duration(left * per_stage)
            totals["left_s"] += left * per_stage
        rows.append(row)
    return pd.DataFrame(rows), totals


def render(params: Params, calibration: Calibration, not_done: set[str] | str,
           gpu_tokens_per_s: float | None = None) -> str:
    """The plan as text: a table per task, a total line and the assumptions."""
    known = not_done if isinstance(not_done, set) else None
    frame, totals = table(params, calibration, known, gpu_tokens_per_s)
    startup = calibration.startup
    machine = calibration.machine
    lines = [f"plan for profile {params.profile}: its tune and train stages on {machine['device']} "
             f"({machine['cpu_capability']}, {machine['threads']} threads, torch "
             f"{machine['torch']})",
             f"stage start-up {duration(startup.check_s + startup.papermill_s + startup.kernel_s)}"
             f" (check {startup.check_s:.1f} s, papermill {startup.papermill_s:.1f} s, kernel "
             f"and imports {startup.kernel_s:.1f} s)", ""]
    for task, rows in frame.groupby("task", sort=False):
        rates = calibration.tasks[str(task)]
        lines += [f"## {task}: {rates.step_s:.3f} s/step, selection split {rates.selection_s:.2f}"
                  f" s, dev {rates.dev_s:.2f} s, data {rates.workload_s:.1f} s, per run "
                  f"{rates.run_setup_s:.2f} s",
                  rows.drop(columns="task").to_markdown(index=False), ""]
    stages = int(frame["stages"].sum())
    total = (f"total: {stages} stages, {int(frame['runs'].sum())} runs, "
             f"{int(frame['steps'].sum())} steps, {int(frame['evaluations'].sum())} evaluations; "
             f"estimated {duration(totals['cpu_s'])} on this machine")
    if gpu_tokens_per_s is not None:
        total += f", {duration(totals['gpu_s'])} on the GPU"
    if known is not None:
        total += (f"; {int(frame['done'].sum())} of {stages} stages done, "
                  f"{duration(totals['left_s'])} left")
    lines.append(total)
    if not isinstance(not_done, set):
        lines.append(not_done)
    else:
        others = sorted(name for name in not_done if name.split("@")[0] not in KINDS)
        if others:
            lines.append(f"not estimated: {len(others)} other stages not done "
                         f"({', '.join(others[:4])}{', ...' if len(others) > 4 else ''})")
    lines.append("assumes: every optimizer steps as fast as AdamW; every run goes its full steps "
                 "(early stopping and divergence end runs sooner); one process per stage, one "
                 "stage at a time; dvc's own bookkeeping per stage is not counted")
    if gpu_tokens_per_s is not None:
        lines.append(f"GPU column assumes: training at {gpu_tokens_per_s:g} real tokens/s, "
                     f"evaluation forwards at {EVAL_SPEEDUP:g}x that, this machine's start-up, "
                     "data and model loading")
    return "\n".join(lines)


def plan(params: Params, params_path: str | Path, prepared_dir: str | Path,
         calibration_path: str | Path, *, force: bool = False,
         gpu_tokens_per_s: float | None = None) -> str:
    """The whole plan; ``dvc status`` is asked only where ``params_path`` is the project's
    ``params.yaml``, which is what it compares against."""
    calibration, measured = calibrate(params, params_path, prepared_dir, calibration_path,
                                      force=force)
    source = (f"calibration measured now ({', '.join(measured)}), written to {calibration_path}"
              if measured else f"calibration read from {calibration_path}")
    if Path(params_path).resolve() == Path("params.yaml").resolve():
        not_done = dvc_status()
    else:
        not_done = f"done: not checked (dvc status compares params.yaml, not {params_path})"
    return f"{source}\n{render(params, calibration, not_done, gpu_tokens_per_s)}"
