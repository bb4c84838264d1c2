"""The committed reference results belong to the committed ``params.yaml`` and ``dvc.lock``.

The pipeline's outputs are in git (``tuning/``, ``runs/``, ``results/``, ``figures/``,
``REPORT.md``); these checks fail when someone edits ``params.yaml`` and commits without
re-running, or commits a partial run.

The reference run of #33 lands in chunks (docs/reference-run.md). Until its last chunk re-runs
evaluate, figures, compress and report, the previous run's outputs stand beside the chunks that
have landed: the checks of a whole run are expected to fail (``UNDER_WAY``), and the last chunk
removes the mark.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import reduce
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ruamel.yaml import YAML

from adaopt.config import load_params
from adaopt.summary import sweep_cells

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
# Read as dvc reads them (YAML 1.2: dvc writes 0.00002 as 2e-05, a string to YAML 1.1 readers).
RAW_PARAMS = YAML(typ="safe").load((ROOT / "params.yaml").read_text())
LOCK = YAML(typ="safe").load((ROOT / "dvc.lock").read_text())["stages"]
#: What git may hold in all: the outputs are committed, so they must stay compact.
TREE_LIMIT_MIB = 50


#: The checks that hold only once every chunk of the reference run has landed (strict: a check
#: that passes while the mark stands fails, so the mark cannot outlive the run).
UNDER_WAY = pytest.mark.xfail(strict=True, reason="#33's reference run is landing in chunks "
                              "(docs/reference-run.md); the previous run's outputs stand until "
                              "the last chunk")


def _value(dotted: str) -> Any:
    return reduce(lambda section, key: section[key], dotted.split("."), RAW_PARAMS)


@UNDER_WAY
def test_every_locked_stage_ran_with_the_committed_params() -> None:
    stale = [f"{stage}: {key}" for stage in sorted(LOCK)
             for key, value in LOCK[stage].get("params", {}).get("params.yaml", {}).items()
             if _value(key) != value]
    assert not stale, f"dvc.lock differs from params.yaml in {len(stale)} entries: {stale[:3]}"


@UNDER_WAY
def test_every_locked_stage_is_a_stage_of_the_pipeline() -> None:
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
    assert all(stage["foreach"] == "${sweep.cells}" for stage in stages.values()
               if "foreach" in stage)  # a stage per cell of the design
    defined = {f"{name}@{key}" if "foreach" in stage else name
               for name, stage in stages.items()
               for key in (PARAMS.sweep.cells if "foreach" in stage else [None])}
    defined |= {f"{name}@" for name, stage in stages.items() if "matrix" in stage}
    orphans = [name for name in LOCK if name not in defined and f"{name.split('@')[0]}@"
               not in defined]
    assert not orphans, f"dvc.lock holds stages dvc.yaml no longer has: {orphans[:3]}"


def _assert_cell(task: str, optimizer: str, setting: str, seed: int) -> None:
    for stage in ("tune", "train"):
        assert f"{stage}@{task}-{optimizer}-{setting}" in LOCK
    run = ROOT / "runs" / task / optimizer / setting / f"seed{seed}"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["task"], metrics["optimizer"], metrics["setting"], metrics["seed"]) == \
        (task, optimizer, setting, seed)


@UNDER_WAY
def test_every_cell_of_the_sweep_is_tuned_trained_locked_and_has_its_run() -> None:
    for cell in sweep_cells(PARAMS):
        _assert_cell(*cell)


@UNDER_WAY
def test_the_summary_covers_exactly_the_sweep() -> None:
    summary = pd.read_csv(ROOT / "results" / "summary.csv")
    assert {(row.task, row.optimizer, row.setting): row.seeds
            for row in summary.itertuples()} == {
        (cell.task, cell.optimizer, cell.setting): len(cell.seeds) for cell in PARAMS.cells}
    assert len(summary) == len(PARAMS.cells)


def test_the_readme_shows_committed_figures() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert images, "the README shows no figure"
    figures = {out["path"] for stage in ("figures", "precision") if stage in LOCK
               for out in LOCK[stage]["outs"]}
    for image in images:
        assert (ROOT / image).is_file(), image
        assert image in figures, f"{image} is not an output of the figures stage"


def _shallow() -> bool:
    result = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    return result.returncode != 0 or result.stdout.strip() != "false"


@UNDER_WAY
def test_the_committed_report_is_the_one_its_outputs_give() -> None:
    """Its outputs, and the git history that dates the pre-registration against the runs."""
    from adaopt.report import report_text

    if _shallow():
        pytest.skip("the report dates its pre-registration from git history, absent here")
    assert "report" in LOCK
    assert (ROOT / "REPORT.md").read_text() == report_text(ROOT, PARAMS)


@UNDER_WAY
def test_the_committed_report_names_its_preregistrations_commit_and_hash() -> None:
    from adaopt.preregistration import file_sha256

    text = (ROOT / "REPORT.md").read_text()
    assert f"(sha256 `{file_sha256(ROOT / 'preregistration.yaml')[:16]}`), set at commit `" \
        in text


def test_what_git_tracks_stays_under_the_size_limit() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    sizes = {name: (ROOT / name).stat().st_size for name in files if (ROOT / name).is_file()}
    total = sum(sizes.values()) / 2**20
    largest = sorted(sizes, key=sizes.get, reverse=True)[:3]
    assert total < TREE_LIMIT_MIB, f"git tracks {total:.1f} MiB; largest: {largest}"
