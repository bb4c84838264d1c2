"""End to end, each in its own copy of the project: the smoke profile on the real data, a
training stage killed and resumed, and an optimizer whose every run diverges. (Apart from
``test_pipeline.py``, whose tests share one finished smoke run, so that the two files run side
by side on two test workers.)"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from real_data import real_data_dir
from smoke_pipeline import (
    FIXTURE_MIRROR,
    assert_complete,
    dvc,
    dvc_env,
    figures,
    restrict_optimizers,
    restrict_settings,
    restrict_tasks,
    smoke_copy,
)

from adaopt.config import SETTINGS, load_params
from adaopt.experiment import run_setting

pytestmark = pytest.mark.slow


@pytest.mark.real_data
def test_smoke_profile_on_real_data(tmp_path: Path) -> None:
    mirror = real_data_dir()
    if mirror is None:
        pytest.skip("no real data directory (set ADAOPT_DATA_MIRROR or provide ../shared/data)")
    repo = smoke_copy(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    restrict_tasks(params, ["sst2"])  # CI time: the other heads run on the fixture mirror
    restrict_optimizers(params, ["adamw"])  # compression needs AdamW's runs
    restrict_settings(params, ["fair"])  # the setting compression reads its teacher from
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro", mirror=mirror)
    assert_complete(repo)
    report = json.loads((repo / "data" / "prepare_report.json").read_text())
    assert report["sst2"]["rows"]["train"]["read"] == 67349


def test_killed_training_stage_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a running ``train`` stage, run it again: it resumes and matches a clean run."""
    repo = smoke_copy(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    restrict_tasks(params, ["sst2"])
    params["train"].update(max_steps=300, eval_every=50, checkpoint_every=10,
                           checkpoint_interval_s=0, threads=1)
    params["tuning"]["eval_every"] = 1  # the controller's tuning trials still evaluate often
    params["precision_ablation"]["optimizers"] = ["adamw"]  # nor does `check` refuse its runs
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    params["sweep"]["seeds"] = [0]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tune = "tune@sst2-adaptive_adam-traditional"
    dvc(repo, "repro", "prepare")
    dvc(repo, "repro", "-s", tune)
    stage = "train@sst2-adaptive_adam-traditional"
    cell = Path("runs/sst2/adaptive_adam/traditional")
    checkpoints = repo / "checkpoints" / "train" / "sst2" / "adaptive_adam" / "traditional"

    child = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "-s", stage],
                             cwd=repo, env=dvc_env(FIXTURE_MIRROR), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("seed0-*.pt")) and child.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert not (repo / cell / "seed0" / "metrics.json").exists()
    assert any(checkpoints.glob("seed0-*.pt"))

    dvc(repo, "repro", "-s", stage)
    assert "resumed from" in (repo / cell / "train.ipynb").read_text()
    assert not checkpoints.exists(), "a finished stage removes its checkpoints"
    reference = tmp_path / "reference"
    run_setting(load_params(repo / "params.yaml"), "sst2", "adaptive_adam", "traditional",
                repo / "data" / "prepared", reference,
                repo / "tuning" / "sst2" / "adaptive_adam" / "traditional" / "choice.json",
                progress=False)
    assert (repo / cell / "seed0" / "metrics.json").read_bytes() == \
        (reference / "seed0" / "metrics.json").read_bytes()


def test_a_diverging_optimizer_is_recorded_not_fatal(tmp_path: Path) -> None:
    """SGD searched over absurd learning rates: every trial diverges, the choice says so, the
    final runs stop as ``diverged``; summaries, figures and compression still build.

    (The tiny smoke model survives SGD at lr 10 for a few steps; 1e12 overflows at once.)
    """
    repo = smoke_copy(tmp_path)
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    restrict_tasks(params, ["sst2"])  # CI time: one task shows it
    restrict_optimizers(params, ["sgd", "adamw"])  # beside one that learns
    restrict_settings(params, ["fair"])  # clipped to norm 1, and still every step overflows
    params["tuning"]["spaces"]["sgd"]["lr"] = [1e12, 2e12]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro")
    loaded = load_params(params_path)
    choice = json.loads((repo / "tuning" / "sst2" / "sgd" / "fair" / "choice.json").read_text())
    assert choice["no_finished_trial"]
    for seed in loaded.sweep.seeds:
        run = json.loads((repo / "runs" / "sst2" / "sgd" / "fair" / f"seed{seed}" /
                          "metrics.json").read_text())
        assert run["status"] == "diverged", seed
        assert run["steps"] < loaded.train.max_steps and run["dev"] == {}
        assert math.isfinite(run["last_finite_loss"])
    report = (repo / "results" / "summary.md").read_text()
    assert "diverged" in report and "0/2" in report
    for name in figures(loaded):
        assert (repo / "figures" / name).stat().st_size > 0


def test_adding_a_task_is_its_workload_and_its_cells(tmp_path: Path) -> None:
    """WNLI is in the fixture mirror and in no profile. One line under ``workloads`` and one per
    cell under ``sweep.cells`` make it a trained task: fetched, prepared, tuned and trained by
    the pipeline's own stages, with every other setting (time-to-target line, margin,
    compression, ablation) left as it was."""
    repo = smoke_copy(tmp_path)
    before = (repo / "params.yaml").read_text()
    assert "wnli" not in before.lower()
    lines = before.replace("\nworkloads:\n", "\nworkloads:\n  wnli: {}\n", 1).splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith("  cells:")) + 1
    lines[at:at] = [f"    wnli-adamw-{name}: {{task: wnli, optimizer: adamw, setting: {name}}}"
                    for name in SETTINGS]
    (repo / "params.yaml").write_text("\n".join(lines) + "\n")
    assert len(lines) == len(before.splitlines()) + 1 + len(SETTINGS)

    stale = dvc(repo, "status").stdout
    for setting in SETTINGS:
        assert f"tune@wnli-adamw-{setting}:" in stale
        assert f"train@wnli-adamw-{setting}:" in stale
    assert "tune@wnli-adaptive_adam" not in stale  # no cell of it
    dvc(repo, "repro", "train@wnli-adamw-fair")
    metrics = json.loads((repo / "runs" / "wnli" / "adamw" / "fair" / "seed0" / "metrics.json")
                         .read_text())
    assert metrics["task"] == "wnli" and math.isfinite(metrics["dev"]["accuracy"])
    report = json.loads((repo / "data" / "prepare_report.json").read_text())
    assert report["wnli"]["rows"]["validation"]["kept"] == 16
