"""The committed reference results belong to the committed ``params.yaml`` and ``dvc.lock``.

The pipeline's outputs are in git (``runs/``, ``results/``, ``figures/``); these checks fail when
someone edits ``params.yaml`` and commits without re-running, or commits a partial run.

The committed results predate the protocol of issue #9 (selection split, tuning stages, one
stage per (task, optimizer, setting)), and re-running the CPU reference profile is the job of the
reference issue (#14), once every code change is in. Until then the checks that compare the
lock with the new ``params.yaml`` and sweep are expected to fail; #14 removes the marks.
"""

from __future__ import annotations

import json
import re
from functools import reduce
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ruamel.yaml import YAML

from adaopt.config import SETTINGS, load_params
from adaopt.summary import sweep_cells

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
# Read as dvc reads them (YAML 1.2: dvc writes 0.00002 as 2e-05, a string to YAML 1.1 readers).
RAW_PARAMS = YAML(typ="safe").load((ROOT / "params.yaml").read_text())
LOCK = YAML(typ="safe").load((ROOT / "dvc.lock").read_text())["stages"]


def _value(dotted: str) -> Any:
    return reduce(lambda section, key: section[key], dotted.split("."), RAW_PARAMS)


PREDATES_PROTOCOL = ("#14 re-runs the CPU reference profile: the committed results predate the "
                     "protocol of #9 (params.yaml gained the selection split, tuning spaces and "
                     "fixed targets; stages are per (task, optimizer, setting))")


@pytest.mark.xfail(reason=PREDATES_PROTOCOL, strict=True)
def test_every_locked_stage_ran_with_the_committed_params() -> None:
    stale = [f"{stage}: {key}" for stage in sorted(LOCK)
             for key, value in LOCK[stage].get("params", {}).get("params.yaml", {}).items()
             if _value(key) != value]
    assert not stale, f"dvc.lock differs from params.yaml in {len(stale)} entries: {stale[:3]}"


@pytest.mark.xfail(reason=PREDATES_PROTOCOL, strict=True)
def test_every_cell_of_the_sweep_is_tuned_trained_locked_and_has_its_run() -> None:
    for task, optimizer, setting, seed in sweep_cells(PARAMS):
        for stage in ("tune", "train"):
            assert f"{stage}@{task}-{optimizer}-{setting}" in LOCK
        run = ROOT / "runs" / task / optimizer / setting / f"seed{seed}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert (metrics["task"], metrics["optimizer"], metrics["setting"], metrics["seed"]) == \
            (task, optimizer, setting, seed)


PREDATES_LM = ("#14 re-runs the CPU reference profile: the committed results predate the "
               "language-model workload of #11 (data.tasks gained lm_pretrain)")


def test_the_summary_covers_the_swept_optimizers_and_seeds() -> None:
    summary = pd.read_csv(ROOT / "results" / "summary.csv")
    assert set(summary.optimizer) == set(PARAMS.sweep.optimizers)
    assert (summary.seeds == len(PARAMS.sweep.seeds)).all()


@pytest.mark.xfail(reason=PREDATES_LM, strict=True)
def test_the_summary_covers_the_swept_tasks() -> None:
    summary = pd.read_csv(ROOT / "results" / "summary.csv")
    assert set(summary.task) == set(PARAMS.data.tasks)
    assert len(summary) == len(PARAMS.data.tasks) * len(PARAMS.sweep.optimizers) * len(SETTINGS)


def test_the_readme_shows_committed_figures() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert images, "the README shows no figure"
    figures = {out["path"] for out in LOCK["figures"]["outs"]}
    for image in images:
        assert (ROOT / image).is_file(), image
        assert image in figures, f"{image} is not an output of the figures stage"
