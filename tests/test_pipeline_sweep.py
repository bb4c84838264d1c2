"""A sweep split over machines (docs/scaling.md): two clones each run a slice of the tune and
train stages, a third gathers their outputs and lock entries, and its ``dvc repro`` trains
nothing again. Its own file, so that it runs beside the other end-to-end files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from smoke_pipeline import IDENTITY, dvc, restrict_tasks, smoke_copy

pytestmark = pytest.mark.slow

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout


def adaopt(repo: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "adaopt", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def test_a_sweep_split_over_two_machines_is_gathered_without_training_again(
    tmp_path: Path,
) -> None:
    gatherer = smoke_copy(tmp_path / "gatherer")
    params = yaml.safe_load((gatherer / "params.yaml").read_text())
    restrict_tasks(params, ["sst2"])  # two cells: AdamW, traditional and fair
    params["sweep"]["optimizers"] = params["precision_ablation"]["optimizers"] = ["adamw"]
    (gatherer / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(gatherer, "repro", "prepare")  # once, before the fan-out: the data every slice reads
    git(gatherer, "add", "-A")
    git(gatherer, "commit", "-q", "-m", "prepared")
    cache = gatherer / ".dvc" / "cache"  # a file system the machines share

    locks = []
    for index in range(2):
        clone = tmp_path / f"slice{index}"
        git(tmp_path, "clone", "-q", str(gatherer), str(clone))
        dvc(clone, "cache", "dir", "--local", str(cache))
        dvc(clone, "checkout")
        stages = adaopt(clone, "slice", "--of", "2", "--index", str(index)).split()
        assert len(stages) == 2  # one cell: its tune and its train stage
        ran = dvc(clone, "repro", *stages).stdout
        assert "Running stage 'prepare'" not in ran
        assert all(f"Running stage '{stage}'" in ran for stage in stages)
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", f"slice {index}")
        git(gatherer, "fetch", "-q", str(clone), f"HEAD:slice{index}")
        git(gatherer, "checkout", f"slice{index}", "--", "runs", "tuning")
        locks.append(tmp_path / f"slice{index}.lock")
        locks[-1].write_text(git(gatherer, "show", f"slice{index}:dvc.lock"))

    said = adaopt(gatherer, "gather", *map(str, locks))
    assert said.strip() == "gathered 4 of the 4 tune and train stages into dvc.lock"
    stale = set(json.loads(dvc(gatherer, "status", "--json").stdout))
    assert not {stage for stage in stale if stage.startswith(("tune@", "train@"))}, stale
    ran = dvc(gatherer, "repro", "evaluate").stdout
    assert "Running stage 'evaluate'" in ran
    assert not [line for line in ran.splitlines()
                if line.startswith("Running stage") and "evaluate" not in line], ran
    summary = pd.read_csv(gatherer / "results" / "summary.csv")
    assert sorted(summary.setting) == ["fair", "traditional"]
