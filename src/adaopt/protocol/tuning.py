"""The tuning ruleset, the same for every optimizer (after AlgoPerf's external tuning ruleset).

Each optimizer has a search space in ``params.yaml`` (``tuning.spaces``): a grid per
hyperparameter whose product holds exactly ``tuning.trials`` points, so every optimizer gets the
same number of trials. Every trial trains with ``tuning.seed`` (not an evaluation seed) for
the task's tuning steps (:meth:`adaopt.config.Params.tuning_steps`) and is scored by its best
evaluation on the selection split; the best trial's values are used by the final runs of that
(task, optimizer, setting). A trial that diverged has no score. Trials tied at the best score
(a few hundred selection examples make exact ties common, e.g. every trial that predicts one
class) go to the tied point nearest the grid's centre, and of two equally near, the earlier:
a rule that does not push choices onto the grid's edge, where "ties to the first point" put
every tied choice on the smallest learning rate. A choice on the edge of its grid is flagged:
the best value may lie outside it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from adaopt.config import Grid, grid_values


@dataclass(frozen=True)
class Trial:
    """One grid point and what its tuning run reached on the selection split."""

    index: int
    hparams: dict[str, Any]
    status: str
    score: float  # NaN where the run diverged or never scored a finite value
    best_step: int | None
    steps: int
    cuts: int = 0  # learning-rate cuts the method's controller made in this trial


@dataclass(frozen=True)
class Choice:
    """The chosen grid point of one (task, optimizer, setting), and why."""

    hparams: dict[str, Any]
    score: float
    trial: int
    edges: dict[str, str] = field(default_factory=dict)  # hyperparameter -> "lower" / "upper"
    no_finished_trial: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Choice:
        """Back from :meth:`to_dict` as written to JSON (which has no NaN: a missing score is
        written as null); other keys of ``choice.json`` are ignored."""
        values = {f.name: data[f.name] for f in fields(cls)}
        if values["score"] is None:  # the dataclass is frozen: restore NaN before building it
            values["score"] = math.nan
        return cls(**values)


def search_grid(space: dict[str, Grid]) -> list[dict[str, Any]]:
    """Every point of the space, the last hyperparameter varying fastest."""
    names = list(space)
    values = [grid_values(space[name]) for name in names]
    return [dict(zip(names, point, strict=True)) for point in itertools.product(*values)]


def edges(space: dict[str, Grid], chosen: dict[str, Any]) -> dict[str, str]:
    """The hyperparameters whose chosen value is the first or last of a grid of several."""
    flagged = {}
    for name, grid in space.items():
        values = grid_values(grid)
        if len(values) < 2:
            continue
        if chosen[name] == values[0]:
            flagged[name] = "lower"
        elif chosen[name] == values[-1]:
            flagged[name] = "upper"
    return flagged


def choose(trials: list[Trial], space: dict[str, Grid], greater_is_better: bool = True
           ) -> Choice:
    """The finished trial with the best selection score; the first grid point if none finished.

    A space where no trial finished is flagged (``no_finished_trial``): its final runs use the
    first grid point (the smallest values) and will most likely diverge too, which the summary
    then shows instead of hiding.
    """
    if not trials:
        raise ValueError("no trials to choose from")
    sign = 1.0 if greater_is_better else -1.0
    scored = [trial for trial in trials if math.isfinite(trial.score)]
    if not scored:
        first = min(trials, key=lambda trial: trial.index)
        return Choice(first.hparams, math.nan, first.index, edges(space, first.hparams),
                      no_finished_trial=True)
    top = max(sign * trial.score for trial in scored)
    tied = [trial for trial in scored if sign * trial.score == top]
    best = min(tied, key=lambda trial: (off_centre(space, trial.hparams), trial.index))
    return Choice(best.hparams, best.score, best.index, edges(space, best.hparams))


def off_centre(space: dict[str, Grid], point: dict[str, Any]) -> float:
    """How far ``point`` lies from the grid's centre: per hyperparameter, the distance of its
    value's position from the middle position, in grid steps, summed."""
    distance = 0.0
    for name, grid in space.items():
        values = grid_values(grid)
        distance += abs(values.index(point[name]) - (len(values) - 1) / 2)
    return distance
