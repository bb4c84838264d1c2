"""The one line a tune or train stage ends with: what it found, and where the profile stands.

A many-hour ``dvc repro`` otherwise says only which stage it runs. The stage's notebook prints
this line in a cell tagged ``summary``, which ``python -m adaopt notebook`` echoes to the log.
It comes after the stage's outputs are written and its checkpoints cleared: a failure here
would fail a finished stage and train it all again, so the standing's parts that ask DVC or
the plan say they could not be computed instead of raising.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adaopt.config import Params
from adaopt.runner.slices import cells, stage_name
from adaopt.tasks import get_task


def _number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"


def tune_found(choice_path: str | Path) -> str:
    """The chosen values and their selection score (``choice.json``)."""
    choice = json.loads(Path(choice_path).read_text())
    if choice["no_finished_trial"]:
        return "every trial diverged"
    values = ", ".join(f"{name} {value:g}" for name, value in choice["hparams"].items())
    edges = ", ".join(f"{name} at the {side} edge" for name, side in choice["edges"].items())
    return (f"{values}{f' ({edges} of the grid)' if edges else ''}: selection "
            f"{choice['metric']} {_number(choice['score'])}, trial {choice['trial'] + 1} of "
            f"{choice['trials']}")


def train_found(runs: dict[int, dict[str, Any]]) -> str:
    """Each seed's dev score (or how it ended) and the controller's cuts."""
    first = next(iter(runs.values()))
    metric = first["metric"]
    scores = " ".join(_number(run["dev"].get(metric)) if run["status"] != "diverged"
                      else "diverged" for run in runs.values())
    cuts = (f", cuts per seed {' '.join(str(len(run['cuts'])) for run in runs.values())}"
            if first["controlled"] else "")
    return f"dev {metric} {scores} (seeds {' '.join(map(str, runs))}){cuts}"


def stages_with_outputs(params: Params, root: str | Path = ".") -> set[str]:
    """The profile's tune and train stages whose outputs exist under ``root`` (``choice.json``;
    every seed's ``metrics.json``), current or not: what a folder outside a DVC project says."""
    root, done = Path(root), set()
    for cell in params.cells:
        folder = Path(cell.task, cell.optimizer, cell.setting)
        if (root / "tuning" / folder / "choice.json").is_file():
            done.add(stage_name("tune", *cell[:3]))
        if all((root / "runs" / folder / f"seed{seed}" / "metrics.json").is_file()
               for seed in cell.seeds):
            done.add(stage_name("train", *cell[:3]))
    return done


def up_to_date(params: Params, root: str | Path = ".") -> set[str] | None:
    """The profile's tune and train stages that ``dvc status`` would call up to date: every
    dependency and output as the stage's ``dvc.lock`` entry records it (``None`` outside a DVC
    project). Asked of each dependency and output, not of the stage: ``dvc status`` waits for
    the repository lock, which the ``dvc repro`` running this stage holds to the end."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    names = {stage_name(kind, *cell) for cell in cells(params) for kind in ("tune", "train")}
    try:
        repo = Repo(str(root))
    except NotDvcRepoError:
        return None
    changed: dict[tuple[str, str], bool] = {}  # stages share most dependencies: ask once

    def current(item: Any) -> bool:
        key = (item.def_path, repr(item.hash_info))
        if key not in changed:
            changed[key] = bool(item.status())
        return not changed[key]

    with repo:
        return {stage.name for stage in repo.index.stages if stage.name in names
                and all(current(item) for item in [*stage.deps, *stage.outs])}


def time_left(params: Params, done: set[str], root: str | Path = ".") -> str:
    """The plan's estimate for the stages not in ``done``, from the calibration ``make plan``
    keeps under ``root``, if it was measured on this machine with these tasks' settings."""
    from adaopt.runner import plan  # pandas; only once a stage has finished
    from adaopt.training import machine

    calibration = plan.read_calibration(Path(root) / plan.CALIBRATION, machine())
    seconds = 0.0
    for stages in plan.stage_kinds(params):
        rates = calibration.tasks.get(stages.task) if calibration else None
        if rates is None or rates.shape != plan.rate_shape(params, stages.task):
            return "`make plan` estimates the time left"
        left = sum(name not in done for name in stages.names())
        seconds += left * plan.estimate(stages, rates, calibration.startup).total_s
    return f"about {plan.duration(seconds)} left (plan)"


def _failed(what: str, error: Exception) -> str:
    """One line for a part of the standing that raised, in place of that part."""
    why = (str(error).strip().splitlines() or [""])[0]
    return f"{what} could not be computed ({type(error).__name__}{f': {why}' if why else ''})"


def standing(params: Params, root: str | Path = ".", running: str | None = None) -> str:
    """How many of the profile's tune and train stages are up to date (the stage ``running``,
    which has just written its outputs, among them), and the time the others will take; a part
    that raises is replaced by a line saying it could not be computed (the module's why)."""
    total = 2 * len(cells(params))
    try:
        current = up_to_date(params, root)
        if current is None:
            done, state = stages_with_outputs(params, root), "have outputs"
        else:
            done, state = current | ({running} if running else set()), "are up to date"
    except Exception as error:  # DVC's own errors are many and not ours to list
        return _failed(f"how many of the {total} tune and train stages are up to date", error)
    try:
        left = time_left(params, done, root)
    except Exception as error:  # a damaged calibration, an import
        left = _failed("the time left", error)
    return f"{len(done)} of {total} tune and train stages {state}, {left}"


def stage_line(kind: str, params: Params, task: str, optimizer: str, setting: str,
               found: str, root: str | Path = ".") -> str:
    """``<stage>: <found>; <standing>``, the stage named as ``dvc repro`` names it."""
    stage = stage_name(kind, get_task(task).name, optimizer, setting)
    return f"{stage}: {found}; {standing(params, root, stage)}"


__all__ = ["stage_line", "stages_with_outputs", "standing", "time_left", "train_found",
           "tune_found", "up_to_date"]
