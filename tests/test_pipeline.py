"""End to end: ``dvc repro`` of the smoke profile in a temporary copy of the repository.

The fixture mirror (tests/fixtures/mirror) is written for the tests, so this runs on any
machine; a second run on the real data directory runs where one exists.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from adaopt.config import SETTINGS, load_params
from adaopt.experiment import run_setting

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"
OUTPUTS = ("runs", "tuning", "results", "data", "figures", ".dvc/cache", ".dvc/tmp")
FIGURES = ("training_loss.png", "dev_metric.png", "final_metric.png", "learning_rate.png",
           "paired_difference.png", "lm_validation_loss.png", "precision.png",
           *(f"compression_{task}.png"
             for task in load_params(ROOT / "profiles" / "smoke.yaml").compress.tasks))

pytestmark = pytest.mark.slow


def real_data_dir() -> Path | None:
    candidate = os.environ.get("ADAOPT_DATA_MIRROR") or ROOT.parent / "shared" / "data"
    return Path(candidate) if Path(candidate, "glue").is_dir() else None


def _env(mirror: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "ADAOPT_DATA_MIRROR": str(mirror), "PYTHONHASHSEED": "0"}


def dvc(repo: Path, *args: str, mirror: Path = FIXTURE_MIRROR,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo,
                            env={**_env(mirror), **(env or {})}, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def smoke_copy(tmp: Path) -> Path:
    """A fresh copy of the project with the smoke profile active and no outputs in it."""
    repo = tmp / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(ROOT, repo, ignore=ignore)
    for output in OUTPUTS:
        shutil.rmtree(repo / output, ignore_errors=True)
    for lock in ("dvc.lock",):
        (repo / lock).unlink(missing_ok=True)
    shutil.copy(repo / "profiles" / "smoke.yaml", repo / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def restrict_tasks(params: dict, tasks: list[str]) -> None:
    """Prepare (and compress) only ``tasks`` in a raw params mapping."""
    params["data"]["tasks"] = tasks
    params["compress"]["tasks"] = [task for task in params["compress"]["tasks"] if task in tasks]


def _finite(value: object) -> bool:
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def assert_complete(repo: Path) -> None:
    """Every choice, metrics file, the summary and every figure exist and hold finite numbers."""
    params = load_params(repo / "params.yaml")
    for task in params.data.tasks:
        for optimizer in params.sweep.optimizers:
            for setting in SETTINGS:
                tuned = repo / "tuning" / task / optimizer / setting
                choice = json.loads((tuned / "choice.json").read_text())
                assert choice["trials"] == params.tuning.trials, tuned
                assert (tuned / "tune.ipynb").is_file()
                cell = repo / "runs" / task / optimizer / setting
                assert (cell / "train.ipynb").is_file()
                for seed in params.sweep.seeds:
                    run = cell / f"seed{seed}"
                    metrics = json.loads((run / "metrics.json").read_text())
                    assert _finite(metrics), run
                    assert metrics["status"] in {"ok", "early_stopped"}, run
                    assert metrics["selection"] and metrics["dev"], run
                    assert metrics["hparams"]["lr"] == choice["hparams"]["lr"], run
                    assert (run / "train.csv").stat().st_size > 0
    summary = pd.read_csv(repo / "results" / "summary.csv")
    expected = len(params.data.tasks) * len(params.sweep.optimizers) * len(SETTINGS)
    assert len(summary) == expected
    assert summary["mean"].map(math.isfinite).all()
    assert summary["ci_low"].map(math.isfinite).all()
    assert _finite(json.loads((repo / "results" / "summary.json").read_text()))
    report = (repo / "results" / "summary.md").read_text()
    assert report.startswith("## The paper's table")
    assert "### traditional" in report and "### fair" in report and "\n| task" in report
    for name in FIGURES:
        assert (repo / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    ablation = pd.read_csv(repo / "results" / "precision.csv")
    runs = params.precision_ablation
    assert len(ablation) == len(runs.optimizers) * len(runs.precisions)
    assert ablation.dev.map(math.isfinite).all() and (ablation.steps == runs.max_steps).all()
    assert_compressed(repo)


def assert_compressed(repo: Path) -> None:
    """The kept weights (in the DVC cache, not in git) and each compressed task's table."""
    params = load_params(repo / "params.yaml")
    for task in params.data.tasks:
        for optimizer in params.sweep.optimizers:
            for setting in SETTINGS:
                folder = repo / "models" / task / optimizer / setting
                kept = json.loads((folder / "kept.json").read_text())["kept"]
                assert kept == params.keeps_weights(task, optimizer, setting), folder
                assert (folder / "model.safetensors").is_file() == kept, folder
    untracked = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout
    assert "model.safetensors" not in untracked  # DVC's .gitignore keeps the weights out of git
    for task in params.compress.tasks:
        table = pd.read_csv(repo / "results" / "compression" / f"{task}.csv")
        methods = {"fp32", "int8", "pruned", "pruned+recovery", "ffn+recovery", "student",
                   "student+kd"}
        assert set(table.method) == methods, task
        assert table.score.map(math.isfinite).all() and (table.size_mb > 0).all(), task
        assert table.pareto_size.any() and table.pareto_latency.any(), task
        assert (repo / "results" / "compression" / f"{task}.md").read_text().startswith("## ")


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = smoke_copy(tmp_path_factory.mktemp("smoke"))
    dvc(repo, "repro")
    return repo


def test_smoke_profile_runs_end_to_end(smoke_repo: Path) -> None:
    assert_complete(smoke_repo)


def test_second_repro_does_nothing_quickly(smoke_repo: Path) -> None:
    start = time.perf_counter()
    result = dvc(smoke_repo, "repro")
    seconds = time.perf_counter() - start
    assert "Running stage" not in result.stdout
    assert seconds <= 5.0, f"a no-op dvc repro took {seconds:.1f} s"


def test_dvc_metrics_show_is_the_papers_table(smoke_repo: Path) -> None:
    """One row per task, one column per (setting, optimizer): no data-preparation keys."""
    shown = json.loads(dvc(smoke_repo, "metrics", "show", "--json").stdout)[""]["data"]
    params = load_params(smoke_repo / "params.yaml")
    assert set(shown) == {f"results/headline/{task}.json" for task in params.data.tasks}
    for metrics in shown.values():
        assert set(metrics["data"]) == set(SETTINGS)
        for row in metrics["data"].values():
            assert set(row) == set(params.sweep.optimizers)
    assert "prepare_report" not in json.dumps(shown)


def test_dvc_plots_show_gives_the_figures_only(smoke_repo: Path) -> None:
    plots = json.loads(dvc(smoke_repo, "plots", "show", "--json").stdout)["data"]
    assert sorted(plots) == sorted(f"figures/{name}" for name in FIGURES)


IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def committed_copy(smoke_repo: Path, tmp_path: Path) -> Path:
    """A copy of the finished smoke run, committed to git: the baseline experiments start from."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke_repo, repo, symlinks=True)
    for args in (["add", "-A"], ["commit", "-q", "-m", "smoke baseline"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env={**os.environ, **IDENTITY})
    return repo


def test_dvc_exp_show_only_changed_reads_at_a_glance(smoke_repo: Path, tmp_path: Path) -> None:
    """An ablation as a user runs it: the changed parameter and the headline metrics only."""
    repo = committed_copy(smoke_repo, tmp_path)
    # Only one cell's stages and the summary re-run (-s): the view, not the sweep, is tested.
    dvc(repo, "exp", "run", "-s", "-S", "optimizers.adamw.weight_decay=0.1",
        "tune@stsb-adamw-fair", "train@stsb-adamw-fair", "evaluate", env=IDENTITY)
    table = dvc(repo, "exp", "show", "--only-changed", "--csv").stdout
    columns = table.splitlines()[0].split(",")
    metrics = [c for c in columns if c.startswith("results/headline/")]
    deps = [c for c in columns if c not in metrics and (repo / c).exists()]  # hashes that moved
    params = [c for c in columns
              if c not in {"Experiment", "rev", "typ", "Created", *metrics, *deps}]
    assert params == ["optimizers.adamw.weight_decay"], columns
    assert metrics and all(c.endswith(".adamw") for c in metrics), columns
    assert all(c in ("runs", "tuning") or "/adamw/" in c for c in deps), columns


def test_queued_experiments_run_two_at_a_time(smoke_repo: Path, tmp_path: Path) -> None:
    """The grid as the README queues it: `dvc exp run --queue`, then `dvc queue start -j 2`.

    Each experiment re-runs one cell (its tune and train stages) with another weight decay, in
    its own temporary workspace; both must finish and show up in `dvc exp show`.
    """
    repo = committed_copy(smoke_repo, tmp_path)
    names = {"wd-0.1": 0.1, "wd-0.3": 0.3}
    for name, decay in names.items():
        dvc(repo, "exp", "run", "--queue", "-n", name, "-S",
            f"optimizers.adamw.weight_decay={decay}", "train@stsb-adamw-fair", env=IDENTITY)
    dvc(repo, "queue", "start", "-j", "2", env=IDENTITY)
    deadline = time.monotonic() + 600
    while True:
        status = dvc(repo, "queue", "status", env=IDENTITY).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status.count("Success") == len(names), status
    shown = pd.read_csv(io.StringIO(dvc(repo, "exp", "show", "--csv", env=IDENTITY).stdout))
    decays = dict(zip(shown.Experiment, shown["optimizers.adamw.weight_decay"], strict=True))
    assert {name: decays.get(name) for name in names} == names, decays


def _stale_after(repo: Path, change: Callable[[dict], None]) -> set[str]:
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    change(params)
    try:
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        return set(json.loads(dvc(repo, "status", "--json").stdout))
    finally:
        params_path.write_text(original)


def test_changing_one_search_space_outdates_only_that_optimizer(smoke_repo: Path) -> None:
    def double(params: dict) -> None:
        space = params["tuning"]["spaces"]["adamw"]
        space["lr"] = [2 * lr for lr in space["lr"]]

    stale = _stale_after(smoke_repo, double)
    tasks = load_params(smoke_repo / "params.yaml").data.tasks
    tune, train = ({f"{stage}@{task}-adamw-{setting}" for task in tasks for setting in SETTINGS}
                   for stage in ("tune", "train"))
    assert tune <= stale
    # AdamW's train stages follow through their choice.json (re-run where it changes); no other
    # optimizer's stage is touched.
    assert stale - tune <= train | {"evaluate", "figures"}


def test_changing_the_fair_setting_outdates_only_fair_runs(smoke_repo: Path) -> None:
    stale = _stale_after(smoke_repo, lambda p: p["settings"]["fair"].update(gamma=0.5))
    params = load_params(smoke_repo / "params.yaml")
    fair = {f"{stage}@{task}-{optimizer}-fair" for stage in ("tune", "train")
            for task in params.data.tasks for optimizer in params.sweep.optimizers}
    assert fair <= stale
    assert stale - fair <= {"evaluate", "figures", "precision"}  # the ablation runs fair


@pytest.mark.real_data
def test_smoke_profile_on_real_data(tmp_path: Path) -> None:
    mirror = real_data_dir()
    if mirror is None:
        pytest.skip("no real data directory (set ADAOPT_DATA_MIRROR or provide ../shared/data)")
    repo = smoke_copy(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    restrict_tasks(params, ["sst2", "squad"])  # one task per head (CI time)
    params["sweep"]["optimizers"] = ["adamw"]  # compression needs AdamW's runs
    params["precision_ablation"]["optimizers"] = ["adamw"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro", mirror=mirror)
    assert_complete(repo)
    report = json.loads((repo / "data" / "prepare_report.json").read_text())
    assert report["sst2"]["rows"]["train"]["read"] == 67349


def test_a_diverging_optimizer_is_recorded_not_fatal(smoke_repo: Path) -> None:
    """SGD searched over absurd learning rates: every trial diverges, the choice says so, the
    final runs stop as ``diverged``; summaries still build.

    (The tiny smoke model survives SGD at lr 10 for a few steps; 1e12 overflows at once.)
    """
    params_path = smoke_repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    restrict_tasks(params, ["sst2"])  # CI time: the new stages are sst2's only
    params["sweep"]["optimizers"] = ["sgd", *params["sweep"]["optimizers"]]
    params["tuning"]["spaces"]["sgd"]["lr"] = [1e12, 2e12]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(smoke_repo, "repro")
    loaded = load_params(params_path)
    for task in loaded.data.tasks:
        for setting in SETTINGS:
            choice = json.loads((smoke_repo / "tuning" / task / "sgd" / setting /
                                 "choice.json").read_text())
            assert choice["no_finished_trial"], (task, setting)
            for seed in loaded.sweep.seeds:
                run = json.loads((smoke_repo / "runs" / task / "sgd" / setting / f"seed{seed}" /
                                  "metrics.json").read_text())
                assert run["status"] == "diverged", (task, seed, setting)
                assert run["steps"] < loaded.train.max_steps and run["dev"] == {}
                assert math.isfinite(run["last_finite_loss"])
    report = (smoke_repo / "results" / "summary.md").read_text()
    assert "diverged" in report and "0/2" in report
    for name in FIGURES:
        assert (smoke_repo / "figures" / name).stat().st_size > 0


def test_killed_training_stage_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a running ``train`` stage, run it again: it resumes and matches a clean run."""
    repo = smoke_copy(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    restrict_tasks(params, ["sst2"])
    params["train"].update(max_steps=300, eval_every=50, checkpoint_every=10,
                           checkpoint_interval_s=0, threads=1)
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
                             cwd=repo, env=_env(FIXTURE_MIRROR), start_new_session=True,
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
