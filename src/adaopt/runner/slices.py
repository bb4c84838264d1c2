"""A sweep over several machines: each runs a slice of the tune and train stages, and one
gathers their outputs and lock entries, so that ``dvc repro`` there runs none of them again.

The training outputs are git-tracked (``cache: false``), so that every clone holds the
committed results, and persist (``persist: true``), so that a stage resumes; DVC keeps no run
cache for a stage with either kind of output, and ``dvc repro`` on the gathering machine would
otherwise train everything again. Each slice therefore commits its outputs and its
``dvc.lock`` on a branch of its own; the gatherer checks the outputs out of every branch (they
are disjoint: one folder per cell) and copies each slice's lock entries for its own stages into
its ``dvc.lock`` (:func:`gather_locks`), exactly as the slice recorded them. ``dvc status`` then
verifies them against the gathered files, code, params and data, as for any stage.
docs/scaling.md gives the recipe.

The slices are dealt from the plan's estimates, longest cell first, so that they end together
(:func:`deal`); every machine must deal from the same estimates, so they come from one
calibration file named on the command line, not from each machine's own.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from adaopt.config import SETTINGS, Params

STAGE_KINDS = ("tune", "train")


def cells(params: Params) -> list[tuple[str, str, str]]:
    """The sweep's (task, optimizer, setting) cells, in the pipeline's order."""
    return list(itertools.product(params.sweep.tasks, params.sweep.optimizers, SETTINGS))


def stage_name(kind: str, task: str, optimizer: str, setting: str) -> str:
    """A tune or train stage's name as ``dvc.yaml``'s matrix makes it."""
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
    missing = sorted({task for task, _, _ in sweep} - set(costs)) if costs is not None else []
    if missing:
        raise ValueError(f"the calibration has no estimate for {', '.join(missing)}: measure it "
                         "there (python -m adaopt plan) or deal without it")
    each = [1.0 if costs is None else costs[task] for task, _, _ in sweep]
    mine = deal(each, count)[index - base]
    if not mine:
        raise ValueError(f"slice {index} of {count} is empty: the profile has {len(sweep)} "
                         f"cells, so --of can be at most {len(sweep)}")
    return [stage_name(kind, *sweep[cell]) for cell in mine for kind in STAGE_KINDS]


def _read_lock(path: Path) -> dict[str, Any]:
    lock = yaml.safe_load(path.read_text()) if path.is_file() else None
    return lock or {"schema": "2.0", "stages": {}}


def gather_locks(target: Path, sources: list[Path], stages: list[str]) -> list[str]:
    """Copy each source lock's entries for ``stages`` (the sweep's tune and train stages) into
    the lock at ``target``; the stages gathered. Two sources with different entries for one
    stage are refused in one line: the same cell must not have been run twice differently."""
    wanted = set(stages)
    gathered: dict[str, tuple[Path, Any]] = {}
    for source in sources:
        for stage, entry in _read_lock(source)["stages"].items():
            if stage not in wanted:
                continue  # fetch, prepare, ...: the gathering machine's own
            if stage in gathered and gathered[stage][1] != entry:
                raise ValueError(f"{stage}: {gathered[stage][0]} and {source} hold different "
                                 "lock entries; each stage must come from one slice")
            gathered[stage] = (source, entry)
    lock = _read_lock(target)
    lock["stages"].update({stage: entry for stage, (_, entry) in gathered.items()})
    target.write_text(yaml.safe_dump(lock, sort_keys=False))
    return [stage for stage in stages if stage in gathered]


def sweep_stages(params: Params) -> list[str]:
    """Every tune and train stage of the sweep, in the pipeline's order."""
    return [stage_name(kind, *cell) for cell in cells(params) for kind in STAGE_KINDS]


__all__ = ["cells", "deal", "gather_locks", "slice_stages", "stage_name", "sweep_stages"]
