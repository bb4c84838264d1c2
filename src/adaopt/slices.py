"""A sweep over several machines: each runs a slice of the tune and train stages, and one
gathers their outputs and lock entries, so that ``dvc repro`` there runs none of them again.

The training outputs are git-tracked (``cache: false``), so that every clone holds the
committed results; DVC keeps no run cache for such stages, and ``dvc repro`` on the gathering
machine would otherwise train everything again. Each slice therefore commits its outputs and its
``dvc.lock`` on a branch of its own; the gatherer checks the outputs out of every branch (they
are disjoint: one folder per cell) and copies each slice's lock entries for its own stages into
its ``dvc.lock`` (:func:`gather_locks`), exactly as the slice recorded them. ``dvc status`` then
verifies them against the gathered files, code, params and data, as for any stage.
docs/scaling.md gives the recipe.
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


def slice_stages(params: Params, count: int, index: int) -> list[str]:
    """Slice ``index`` of ``count``: every ``count``-th cell from the ``index``-th (tasks and
    optimizers are spread over the slices alike), each cell's tune stage, then its train stage
    (which reads the tune stage's choice)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"slice {index} of {count}: the index must be in 0..{count - 1}")
    return [stage_name(kind, *cell) for cell in cells(params)[index::count]
            for kind in STAGE_KINDS]


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
    """Every tune and train stage of the sweep."""
    return slice_stages(params, 1, 0)


__all__ = ["cells", "gather_locks", "slice_stages", "stage_name", "sweep_stages"]
