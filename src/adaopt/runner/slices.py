"""A sweep over several machines: each runs a slice of the tune and train stages, and one
gathers them, so that ``dvc repro`` there runs none of them again.

DVC's run cache does not carry the slices here: it restores no stage with a persisted output
or an uncached one (an uncached metric or plot only through a shared cache), and a cached
output lives in the DVC cache, not in git, where this project keeps its results
(docs/scaling.md, ``tests/test_pipeline_sweep.py``).
Each slice therefore commits its outputs and its ``dvc.lock`` on a branch of its own, and the
gatherer takes from each branch only what that slice was dealt (:func:`gather`): those stages'
lock entries, exactly as the slice recorded them, and their outputs. A slice's branch also holds
entries and outputs it inherited, stale ones included, for every stage other slices ran.
``dvc status`` then verifies the gathered entries against the files, code, params and data, as
for any stage.

The slices are dealt from the plan's estimates, longest cell first, so that they end together
(:func:`deal`); every machine must deal from the same estimates, so they come from one
calibration file named on the command line, not from each machine's own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from adaopt.config import Params, cell_name

STAGE_KINDS = ("tune", "train")


def cells(params: Params) -> list[tuple[str, str, str]]:
    """The design's (task, optimizer, setting) cells, in the comparison's order."""
    return [(cell.task, cell.optimizer, cell.setting) for cell in params.cells]


def stage_name(kind: str, task: str, optimizer: str, setting: str) -> str:
    """A tune or train stage's name as ``dvc.yaml``'s ``foreach`` over ``sweep.cells`` makes
    it."""
    return f"{kind}@{task}-{optimizer}-{setting}"


def deal(costs: list[float], count: int) -> list[list[int]]:
    """Items ``0..len(costs)-1`` dealt over ``count`` slices so that they finish together:
    longest first (ties in the given order), each to the slice with the least total so far,
    then the fewest items, then the lowest index (greedy longest-processing-time). Equal costs
    deal round-robin. Deterministic: every machine deals the same slices from the same costs."""
    totals: list[float] = [0.0] * count
    slices: list[list[int]] = [[] for _ in range(count)]
    for item in sorted(range(len(costs)), key=lambda item: -costs[item]):
        target = min(range(count), key=lambda k: (totals[k], len(slices[k]), k))
        totals[target] += costs[item]
        slices[target].append(item)
    return slices


def slice_stages(params: Params, count: int, index: int, *, base: int = 0,
                 costs: dict[str, float] | None = None) -> list[str]:
    """The stages of slice ``index`` of ``count`` (numbered from ``base``: 1 for a SLURM array
    ``--array=1-K``), each cell's tune stage, then its train stage (which reads the tune
    stage's choice). Cells are dealt by :func:`deal` on ``costs``, a cell's estimated seconds
    per task (:func:`adaopt.runner.plan.cell_seconds`); without them every cell costs the same,
    which deals round-robin in the pipeline's order (cell ``k``, ``k + count``, ...).

    Refused in one line, before anything runs: a count below 1, an index outside
    ``base..base + count - 1``, a task ``costs`` lacks, and a slice with no cell (more slices
    than cells), which would otherwise hand ``dvc repro`` no stage, i.e. the whole pipeline.
    """
    if count < 1:
        raise ValueError(f"--of {count}: the number of slices must be at least 1")
    if not base <= index < base + count:
        raise ValueError(f"slice {index} of {count}: the index must be in "
                         f"{base}..{base + count - 1}")
    sweep = cells(params)
    names = [cell_name(*cell) for cell in sweep]
    missing = ([] if costs is None else
               sorted({cell[0] for cell, name in zip(sweep, names, strict=True)
                       if name not in costs}))
    if missing:
        raise ValueError(f"the calibration has no estimate for {', '.join(missing)}: measure it "
                         "there (python -m adaopt plan) or deal without it")
    each = [1.0 if costs is None else costs[name] for name in names]
    mine = deal(each, count)[index - base]
    if not mine:
        raise ValueError(f"slice {index} of {count} is empty: the profile has {len(sweep)} "
                         f"cells, so --of can be at most {len(sweep)}")
    return [stage_name(kind, *sweep[cell]) for cell in mine for kind in STAGE_KINDS]


def _read_lock(path: Path) -> dict[str, Any]:
    lock = yaml.safe_load(path.read_text()) if path.is_file() else None
    return lock or {"schema": "2.0", "stages": {}}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode:
        said = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise ValueError(f"git {' '.join(args)}: {said[0]}")
    return done.stdout


def gather(root: Path, slices: list[tuple[str, list[str]]]) -> list[str]:
    """Into the repository at ``root``, from each slice (a git revision and the stages it was
    dealt): those stages' lock entries and their outputs, each output replaced whole by the
    slice's, so that no file of an earlier run is left in it. Nothing else of the revision is
    taken: its other entries and outputs are what it inherited. Returns the stages gathered; a
    dealt stage the slice's lock lacks stays as it is.

    Every lock and output is found before anything is written, so a revision or an output
    that git lacks changes nothing (one line).
    """
    taken: dict[str, tuple[str, list[str], Any]] = {}
    for revision, stages in slices:
        lock = yaml.safe_load(_git(root, "show", f"{revision}:./dvc.lock")) or {}
        entries = lock.get("stages") or {}
        for stage in (stage for stage in stages if stage in entries):
            outs = [out["path"] for out in entries[stage].get("outs", [])]
            for path in outs:
                if subprocess.run(["git", "cat-file", "-e", f"{revision}:./{path}"], cwd=root,
                                  capture_output=True).returncode:
                    raise ValueError(f"{stage}: {revision} has no {path}; commit the slice's "
                                     "outputs with its dvc.lock")
            taken[stage] = (revision, outs, entries[stage])
    for revision, outs, _ in taken.values():
        for path in outs:
            output = root / path
            if output.is_dir():
                shutil.rmtree(output)
            else:
                output.unlink(missing_ok=True)
            _git(root, "checkout", revision, "--", path)
    lock = _read_lock(root / "dvc.lock")
    lock["stages"].update({stage: entry for stage, (_, _, entry) in taken.items()})
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    return list(taken)


def sweep_stages(params: Params) -> list[str]:
    """Every tune and train stage of the sweep, in the pipeline's order."""
    return [stage_name(kind, *cell) for cell in cells(params) for kind in STAGE_KINDS]


__all__ = ["cells", "deal", "gather", "slice_stages", "stage_name", "sweep_stages"]
