"""Running the pipeline in a temporary copy of the repository, and checking what it wrote.

Shared by the end-to-end tests (``test_pipeline.py``, ``test_pipeline_runs.py``). The fixture
mirror (tests/fixtures/mirror) is written for the tests, so the smoke profile runs on any
machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from design import full_matrix

from adaopt.config import Params, load_params
from adaopt.precision import native_bf16
from adaopt.report import report_text

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"
OUTPUTS = ("runs", "tuning", "results", "data", "figures", ".dvc/cache", ".dvc/tmp")
#: What a clone of the repository lacks: the DVC-cached data, checkpoints, DVC's own files.
UNCOMMITTED = ("data/raw", "data/prepared", "checkpoints", ".dvc/cache", ".dvc/tmp")
IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
SWEEP_FIGURES = ("training_loss.png", "dev_metric.png", "final_metric.png", "learning_rate.png",
                 "paired_difference.png", "lm_validation_loss.png", "controller.png",
                 "precision.png")


def figures(params: Params) -> list[str]:
    """The figures a run of ``params`` draws: the sweep's, and one per compressed task."""
    return [*SWEEP_FIGURES, *(f"compression_{task}.png" for task in params.compress.tasks)]


def dvc_env(mirror: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "ADAOPT_DATA_MIRROR": str(mirror), "PYTHONHASHSEED": "0"}


def dvc(repo: Path, *args: str, mirror: Path = FIXTURE_MIRROR,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo,
                            env={**dvc_env(mirror), **(env or {})}, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def smoke_copy(tmp: Path, *, as_committed: bool = False) -> Path:
    """A fresh copy of the project with the smoke profile active and no outputs in it; or,
    ``as_committed``, with the committed outputs and ``dvc.lock`` kept, as a clone has them
    (their entries stale for the smoke profile)."""
    repo = tmp / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(ROOT, repo, ignore=ignore)
    for output in UNCOMMITTED if as_committed else OUTPUTS:
        shutil.rmtree(repo / output, ignore_errors=True)
    if not as_committed:
        for written in ("dvc.lock", "REPORT.md"):
            (repo / written).unlink(missing_ok=True)
    shutil.copy(repo / "profiles" / "smoke.yaml", repo / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def restrict_tasks(params: dict, tasks: list[str]) -> None:
    """Prepare, train (and compress) only ``tasks`` in a raw params mapping."""
    params["data"]["tasks"] = []
    params["workloads"] = {task: params["workloads"].get(task, {}) for task in tasks}
    params["compress"]["tasks"] = [task for task in params["compress"]["tasks"] if task in tasks]
    params["sweep"]["cells"] = {key: cell for key, cell in params["sweep"]["cells"].items()
                                if cell["task"] in tasks}


def restrict_optimizers(params: dict, optimizers: list[str]) -> None:
    """Sweep only ``optimizers`` (the precision ablation those of them it ran) in a raw params
    mapping, every one in both settings on each trained task."""
    params["sweep"]["optimizers"] = optimizers
    params["precision_ablation"]["optimizers"] = [
        name for name in params["precision_ablation"]["optimizers"] if name in optimizers]
    full_matrix(params)


def restrict_settings(params: dict, settings: list[str],
                      tasks: Iterable[str] | None = None) -> None:
    """Keep only the cells of ``settings`` (of ``tasks``; of every task if None) in a raw params
    mapping: each cell dropped is two stages fewer."""
    params["sweep"]["cells"] = {
        key: cell for key, cell in params["sweep"]["cells"].items()
        if cell["setting"] in settings or (tasks is not None and cell["task"] not in tasks)}


def _finite(value: object) -> bool:
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def assert_complete(repo: Path) -> None:
    """Every choice, metrics file, the summary and every figure exist and hold finite
    numbers."""
    params = load_params(repo / "params.yaml")
    for task, optimizer, setting, seeds in params.cells:
        tuned = repo / "tuning" / task / optimizer / setting
        choice = json.loads((tuned / "choice.json").read_text())
        assert choice["trials"] == params.tuning.trials, tuned
        assert (tuned / "tune.ipynb").is_file()
        cell = repo / "runs" / task / optimizer / setting
        assert (cell / "train.ipynb").is_file()
        for seed in seeds:
            run = cell / f"seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert _finite(metrics), run
            assert metrics["status"] in {"ok", "early_stopped"}, run
            assert metrics["selection"] and metrics["dev"], run
            assert metrics["hparams"]["lr"] == choice["hparams"]["lr"], run
            assert (run / "train.csv").stat().st_size > 0
    summary = pd.read_csv(repo / "results" / "summary.csv")
    assert len(summary) == len(params.cells)
    assert summary["mean"].map(math.isfinite).all()
    assert summary["ci_low"].map(math.isfinite).all()
    assert _finite(json.loads((repo / "results" / "summary.json").read_text()))
    report = (repo / "results" / "summary.md").read_text()
    assert report.startswith("## The paper's table")
    assert all(f"### {cell.setting}" in report for cell in params.cells)
    assert "\n| task" in report
    for name in figures(params):
        assert (repo / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    ablation = pd.read_csv(repo / "results" / "precision.csv")
    runs = params.precision_ablation
    assert len(ablation) == len(runs.optimizers) * len(runs.precisions)
    trained = ablation[~ablation.status.str.startswith("skipped")]  # bf16 on an AVX2 CPU
    assert trained.dev.map(math.isfinite).all() and (trained.steps == runs.max_steps).all()
    assert len(trained) == len(ablation) or not native_bf16("cpu")
    assert_compressed(repo)
    report = (repo / "REPORT.md").read_text()
    assert report.startswith("# Report") and "## Verdict" in report
    assert report == report_text(repo, params)  # the stage wrote the render
    assert "### The rule, fixed before the runs" in report


def assert_compressed(repo: Path) -> None:
    """Each compressed task's table, from a teacher retrained to the train stage's own weights
    (the same dev score, in another process)."""
    params = load_params(repo / "params.yaml")
    for task in params.compress.tasks:
        table = pd.read_csv(repo / "results" / "compression" / f"{task}.csv")
        methods = {"fp32", "int8", "pruned", "pruned+recovery", "ffn+recovery", "student",
                   "student+kd"}
        assert set(table.method) == methods, task
        assert table.score.map(math.isfinite).all() and (table.size_mb > 0).all(), task
        assert table.pareto_size.any() and table.pareto_latency.any(), task
        text = (repo / "results" / "compression" / f"{task}.md").read_text()
        assert text.startswith("## ") and "retrained (seed 0)" in text, task
        assert "NOT the same" not in text, task
