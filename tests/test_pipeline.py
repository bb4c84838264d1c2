"""End to end: ``dvc repro`` of the smoke profile in a temporary copy of the repository, then
what DVC's views show of it, what an edit outdates, experiments and the queue on top of it.

(The real-data run, the killed-stage test and the diverging optimizer, which need copies of
their own, are in ``test_pipeline_runs.py``.)"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from smoke_pipeline import (
    IDENTITY,
    assert_complete,
    dvc,
    figures,
    restrict_settings,
    smoke_copy,
)

from adaopt.config import load_params
from adaopt.figures import story_seed
from adaopt.protocol.tuning import search_grid
from adaopt.summary import load_runs, sweep_cells

pytestmark = pytest.mark.slow


SPARSE = ("stsb", "squad", "lm_pretrain")  # fair cells only: the traditional setting on SST-2
MORE_SEEDS = 3  # SST-2's fair AdaptiveAdam and AdamW: more seeds than the rest, as in cpu


def sparse_design(params_path: Path) -> None:
    """Thin the smoke profile's full matrix to a design like the cpu profile's: some tasks in
    one setting, one pair with more seeds. A smoke stage is nearly all fixed start, so each
    dropped cell is test time saved (benchmarks/results/pipeline_overhead_smoke.txt)."""
    raw = yaml.safe_load(params_path.read_text())
    restrict_settings(raw, ["fair"], SPARSE)
    for optimizer in ("adaptive_adam", "adamw"):
        raw["sweep"]["cells"][f"sst2-{optimizer}-fair"]["seeds"] = MORE_SEEDS
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The finished smoke run of a sparse design, and what its ``dvc repro`` printed."""
    repo = smoke_copy(tmp_path_factory.mktemp("smoke"))
    sparse_design(repo / "params.yaml")
    result = dvc(repo, "repro")
    return repo, result.stdout + result.stderr


@pytest.fixture(scope="module")
def smoke_repo(smoke_run: tuple[Path, str]) -> Path:
    return smoke_run[0]


def test_smoke_profile_runs_end_to_end(smoke_repo: Path) -> None:
    assert_complete(smoke_repo)


def test_each_stage_shows_its_runs_progress_and_ends_with_one_line_and_no_kernel_warning(
    smoke_run: tuple[Path, str],
) -> None:
    """A long ``dvc repro`` shows each run's progress in whole lines (from inside the notebook's
    kernel), says what each stage found and where the profile stands; papermill's banner and
    the kernel's start-up warning are not repeated per stage."""
    repo, log = smoke_run
    params = load_params(repo / "params.yaml")
    total = 2 * len(params.cells)
    lines = log.splitlines()
    for task in params.sweep.tasks:
        trials = len(search_grid(params.space_for(task, "adamw")))
        steps = params.tuning_steps(task)
        tuning = [line for line in lines if line.startswith(f"tune@{task}-adamw-fair, trial ")]
        assert list(dict.fromkeys(line.split(":")[0].split(", ")[1] for line in tuning)) == [
            f"trial {k} of {trials}" for k in range(1, trials + 1)]
        assert all(re.search(rf"\| \d+/{steps} \[", line) for line in tuning), tuning
    assert len({len(cell.seeds) for cell in params.cells}) > 1
    for cell in params.cells:
        run = f"train@{cell.name}, seed"
        assert list(dict.fromkeys(line.split(":")[0] for line in lines
                                  if line.startswith(run))) == [
            f"{run} {seed} ({k} of {len(cell.seeds)})" for k, seed in enumerate(cell.seeds, 1)]
        tune = [line for line in lines if line.startswith(f"tune@{cell.name}: lr ")]
        train = [line for line in lines if line.startswith(f"train@{cell.name}: dev ")]
        assert len(tune) == len(train) == 1, cell
        assert train[0].endswith("`make plan` estimates the time left")
    counts = [int(found) for found in re.findall(
        rf"; (\d+) of {total} tune and train stages are up to date, ", log)]
    assert counts == list(range(1, total + 1))  # each stage counts itself and those before it
    assert "without encryption" not in log and "Executing notebook" not in log
    assert "\r" not in log


def test_second_repro_does_nothing(smoke_repo: Path) -> None:
    """(How long a no-op repro takes is measured by benchmarks/noop_repro.py, not here.)"""
    assert "Running stage" not in dvc(smoke_repo, "repro").stdout


def test_dvc_metrics_show_is_the_papers_table(smoke_repo: Path) -> None:
    """One row per task, one column per (setting, optimizer): no data-preparation keys."""
    shown = json.loads(dvc(smoke_repo, "metrics", "show", "--json").stdout)[""]["data"]
    params = load_params(smoke_repo / "params.yaml")
    assert set(shown) == {f"results/headline/{task}.json" for task in params.sweep.tasks}
    for task in params.sweep.tasks:
        table = shown[f"results/headline/{task}.json"]["data"]
        design = {(cell.setting, cell.optimizer) for cell in params.cells if cell.task == task}
        assert {(setting, optimizer) for setting, row in table.items()
                for optimizer in row} == design, task
    assert "prepare_report" not in json.dumps(shown)


def test_dvc_plots_show_gives_the_figures_only(smoke_repo: Path) -> None:
    plots = json.loads(dvc(smoke_repo, "plots", "show", "--json").stdout)["data"]
    expected = figures(load_params(smoke_repo / "params.yaml"))
    assert sorted(plots) == sorted(f"figures/{name}" for name in expected)


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
    # A weight decay large enough to move the tiny model's score within the smoke run's steps.
    dvc(repo, "exp", "run", "-s", "-S", "optimizers.adamw.weight_decay=100.0",
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
    """The grid as docs/scaling.md queues it: `dvc exp run --queue`, then `dvc queue start -j 2`.

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
    adamw = [cell.name for cell in load_params(smoke_repo / "params.yaml").cells
             if cell.optimizer == "adamw"]
    tune, train = ({f"{stage}@{name}" for name in adamw} for stage in ("tune", "train"))
    assert tune <= stale
    # AdamW's train stages follow through their choice.json (re-run where it changes); no other
    # optimizer's stage is touched; the report lists the grids.
    assert stale - tune <= train | {"evaluate", "figures", "report"}


def test_changing_the_fair_setting_outdates_only_fair_runs(smoke_repo: Path) -> None:
    stale = _stale_after(smoke_repo, lambda p: p["settings"]["fair"].update(gamma=0.5))
    params = load_params(smoke_repo / "params.yaml")
    fair = {f"{stage}@{cell.name}" for stage in ("tune", "train") for cell in params.cells
            if cell.setting == "fair"}
    assert fair <= stale
    # The precision ablation runs fair, and each compress stage retrains a fair cell's teacher.
    compress = {f"compress@{task}" for task in params.compress.tasks}
    assert stale - fair <= {"evaluate", "figures", "precision"} | compress


def test_changing_the_model_outdates_the_fine_tuning_stages_only(smoke_repo: Path,
                                                                 tmp_path: Path) -> None:
    """The fine-tuned model comes with each pretrained task's prepared data: once prepare has
    re-run, every stage of those tasks is stale, and none of the language model's."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke_repo, repo, symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"]["attn_implementation"] = "sdpa"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro", "prepare")
    stale = set(json.loads(dvc(repo, "status", "--json").stdout))
    loaded = load_params(repo / "params.yaml")
    cells = {(cell.task, f"{stage}@{cell.name}") for stage in ("tune", "train")
             for cell in loaded.cells}
    assert {stage for task, stage in cells if task != "lm_pretrain"} <= stale
    assert not {stage for task, stage in cells if task == "lm_pretrain"} & stale


def test_the_controller_cuts_and_changes_a_run(smoke_repo: Path) -> None:
    """Issue #24: AdaptiveAdam's controller acts in the smoke profile. Some fair run cut its
    learning rate, and its selected weights differ from AdamW's on the same seed (its dev
    predictions differ, where the same weights would give the same bytes); the summary and
    the report show the cuts per run, and the verdict is not "identical" everywhere."""
    params = load_params(smoke_repo / "params.yaml")
    changed = []
    for task in params.sweep.tasks:
        for seed in params.seeds_for(task, "adaptive_adam", "fair"):
            run = smoke_repo / "runs" / task / "adaptive_adam" / "fair" / f"seed{seed}"
            reference = smoke_repo / "runs" / task / "adamw" / "fair" / f"seed{seed}"
            cuts = json.loads((run / "metrics.json").read_text())["cuts"]
            assert all(set(cut) == {"step", "lr"} for cut in cuts)
            same = ((run / "predictions.json").read_bytes()
                    == (reference / "predictions.json").read_bytes())
            if cuts and not same:
                changed.append((task, seed))
    assert changed, "no AdaptiveAdam run both cut and ended with weights other than AdamW's"
    summary = pd.read_csv(smoke_repo / "results" / "summary.csv")
    controlled = summary[summary.optimizer == "adaptive_adam"]
    assert controlled.cuts.notna().all() and (controlled.cuts != "not recorded").all()
    report = (smoke_repo / "REPORT.md").read_text()
    assert "cuts per run" in report
    assert "](figures/controller.png)" in report and "kept step" in report
    runs = load_runs(smoke_repo / "runs", sweep_cells(params))
    drawn = [story_seed(runs, task) for task in params.sweep.tasks]  # what the figure draws
    assert any(runs[(runs.task == task) & (runs.optimizer == "adaptive_adam")
                    & (runs.setting == "fair") & (runs.seed == seed)].cuts.iloc[0] > 0
               for task, seed in zip(params.sweep.tasks, drawn, strict=True)), \
        "the controller figure draws no run that cut"
    assert (smoke_repo / "figures" / "controller.png").stat().st_size > 0
    paired = pd.read_csv(smoke_repo / "results" / "paired.csv")
    fair = paired[(paired.optimizer == "adaptive_adam") & (paired.reference == "adamw")
                  & (paired.setting == "fair")]
    assert (fair.verdict != "identical").any()


def test_the_overview_notebook_shows_the_answer_and_renders_anywhere(smoke_repo: Path) -> None:
    """The report stage executes notebooks/00_overview.ipynb on the run's outputs: the verdict
    and the tables as Markdown, the four figures as static images, no error and no widget."""
    notebook = json.loads((smoke_repo / "results" / "notebooks" / "00_overview.ipynb")
                          .read_text())
    outputs = [out for cell in notebook["cells"] for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out["output_type"] == "error"]
    assert sum("image/png" in out.get("data", {}) for out in outputs) == 4
    markdown = "".join("".join(out["data"]["text/markdown"]) for out in outputs
                       if "text/markdown" in out.get("data", {}))
    assert "**Primary**" in markdown and "kept step" in markdown  # the verdict; the cuts
    assert "widget" not in json.dumps(notebook)
