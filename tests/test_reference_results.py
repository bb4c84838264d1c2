"""The committed reference results belong to the committed ``params.yaml`` and ``dvc.lock``.

The pipeline's outputs are in git (``runs/``, ``results/``, ``figures/``); these checks fail when
someone edits ``params.yaml`` and commits without re-running, or commits a partial run.
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


@pytest.mark.parametrize("stage", sorted(LOCK))
def test_every_locked_stage_ran_with_the_committed_params(stage: str) -> None:
    for key, value in LOCK[stage].get("params", {}).get("params.yaml", {}).items():
        assert _value(key) == value, f"{stage}: {key} in dvc.lock differs from params.yaml"


def test_every_cell_of_the_sweep_is_locked_and_has_its_run() -> None:
    for task, optimizer, seed in sweep_cells(PARAMS):
        assert f"train@{task}-{optimizer}-{seed}" in LOCK
        run = ROOT / "runs" / task / optimizer / f"seed{seed}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert (metrics["task"], metrics["optimizer"], metrics["seed"]) == (task, optimizer, seed)
        assert set(SETTINGS) <= set(metrics)


def test_the_summary_covers_the_sweep() -> None:
    summary = pd.read_csv(ROOT / "results" / "summary.csv")
    assert set(summary.task) == set(PARAMS.data.tasks)
    assert set(summary.optimizer) == set(PARAMS.sweep.optimizers)
    assert len(summary) == len(PARAMS.data.tasks) * len(PARAMS.sweep.optimizers) * len(SETTINGS)
    assert (summary.seeds == len(PARAMS.sweep.seeds)).all()


def test_the_readme_shows_committed_figures() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert images, "the README shows no figure"
    figures = {out["path"] for out in LOCK["figures"]["outs"]}
    for image in images:
        assert (ROOT / image).is_file(), image
        assert image in figures, f"{image} is not an output of the figures stage"
