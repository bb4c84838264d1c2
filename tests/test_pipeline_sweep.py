"""A sweep split over machines (docs/scaling.md): two clones of the repository as committed
each run a slice of the tune and train stages, a third gathers them, and its ``dvc repro``
trains nothing again; and why the gather goes through git, not through DVC's run cache. Its own
file, so that it runs beside the other end-to-end files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from smoke_pipeline import IDENTITY, dvc, restrict_optimizers, restrict_tasks, smoke_copy

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
    """On the repository as committed: its ``dvc.lock`` and outputs hold every cell of the
    committed profile, stale for the smoke profile, and each slice's branch inherits them. The
    gather takes from each slice only the cells it ran, so neither slice's inherited copy of
    the other's cell clashes with it or overwrites it."""
    gatherer = smoke_copy(tmp_path / "gatherer", as_committed=True)
    params = yaml.safe_load((gatherer / "params.yaml").read_text())
    restrict_tasks(params, ["sst2"])  # two cells: AdamW, traditional and fair
    restrict_optimizers(params, ["adamw"])
    (gatherer / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    committed = yaml.safe_load((gatherer / "dvc.lock").read_text())["stages"]
    assert sum(stage.startswith(("tune@", "train@")) for stage in committed) > 4
    dvc(gatherer, "repro", "prepare")  # once, before the fan-out: the data every slice reads
    git(gatherer, "add", "-A")
    git(gatherer, "commit", "-q", "-m", "prepared")
    cache = gatherer / ".dvc" / "cache"  # a file system the machines share

    dealt = []
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
        dealt.append(stages)
    locks = [yaml.safe_load(git(gatherer, "show", f"slice{index}:dvc.lock"))["stages"]
             for index in range(2)]
    assert all(locks[0][stage] != locks[1][stage] for stages in dealt for stage in stages)

    said = adaopt(gatherer, "gather", "--of", "2", "slice0", "slice1")
    assert said.strip() == "gathered 4 of the 4 tune and train stages into dvc.lock"
    folders = [f"{kind}/sst2/adamw/{setting}"
               for kind in ("tuning", "runs") for setting in ("traditional", "fair")]
    for index, stages in enumerate(dealt):  # each cell as its own slice ran it
        setting = stages[0].rsplit("-", 1)[1]
        git(gatherer, "diff", "--quiet", f"slice{index}", "--",
            *(folder for folder in folders if folder.endswith(setting)))
    changed = {line[3:] for line in git(gatherer, "status", "--porcelain", "--", "runs",
                                        "tuning").splitlines()}
    assert changed and all(path.startswith(tuple(folders)) for path in changed), changed
    stale = set(json.loads(dvc(gatherer, "status", "--json").stdout))
    assert not {stage for stage in stale if stage.startswith(("tune@", "train@"))}, stale
    ran = dvc(gatherer, "repro", "evaluate").stdout
    assert "Running stage 'evaluate'" in ran
    assert not [line for line in ran.splitlines()
                if line.startswith("Running stage") and "evaluate" not in line], ran
    summary = pd.read_csv(gatherer / "results" / "summary.csv")
    assert sorted(summary.setting) == ["fair", "traditional"]


RUN_CACHE_YAML = """
stages:
""" + "".join(f"""  {name}:
    cmd: (cat in; echo {name}) > {name}.out && echo ran >> {name}.log
    deps: [in]
    {kind}: [{{{name}.out: {{cache: {str(cache).lower()}, persist: {str(persist).lower()}}}}}]
""" for name, kind, cache, persist in [
    ("cached", "outs", True, False), ("uncached", "outs", False, False),
    ("persisted", "outs", True, True), ("both", "outs", False, True),
    ("plotted", "plots", False, False)])


def test_dvcs_run_cache_restores_on_another_machine_only_outputs_git_does_not_hold(
    tmp_path: Path,
) -> None:
    """Why the sweep gathers through git (docs/scaling.md). A slice's machine runs five stages
    and commits nothing. A gathering machine restores from DVC's run cache no stage with a
    persisted output or an uncached one (``outs``); it restores the stage whose output is
    cached, through a DVC remote (``dvc push --run-cache``) or a shared cache, and the one whose
    output is an uncached plot through a shared cache alone (the remote gets no copy of it).
    The cached output is gitignored by DVC and refused once git tracks it, so a clone that
    reads the results without ``dvc pull`` would not have it; only the plot, which git may
    hold, is both."""
    def run(repo: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo,
                              capture_output=True, text=True)

    origin, remote = tmp_path / "origin", tmp_path / "remote"
    origin.mkdir()
    git(origin, "init", "-q")
    assert run(origin, "init", "-q").returncode == 0
    (origin / "dvc.yaml").write_text(RUN_CACHE_YAML)
    (origin / "in").write_text("1")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "a pipeline")

    def machine(name: str, *setup: list[str]) -> Path:
        repo = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(repo))
        for args in setup:
            done = run(repo, *args)
            assert done.returncode == 0, (args, done.stderr)
        return repo

    names = ("cached", "uncached", "persisted", "both", "plotted")
    runner = machine("slice", ["remote", "add", "--local", "-d", "shared", str(remote)],
                     ["repro"], ["push", "--run-cache"])
    assert all((runner / f"{name}.log").is_file() for name in names)
    # `dvc pull --run-cache` fetches the run cache's entries, then fails to check out outputs
    # that this machine's dvc.lock does not record; `dvc repro --pull` fetches their files.
    pulled = machine("gatherer-remote", ["remote", "add", "--local", "-d", "shared", str(remote)],
                     ["fetch", "--run-cache"], ["repro", "--pull"])
    shared = machine("gatherer-shared", ["cache", "dir", "--local", str(runner / ".dvc" / "cache")],
                     ["repro"])
    for gatherer, restored in ((pulled, {"cached"}), (shared, {"cached", "plotted"})):
        ran = {name for name in names if (gatherer / f"{name}.log").is_file()}
        assert ran == set(names) - restored, gatherer.name
        for name in restored:
            assert (gatherer / f"{name}.out").read_text() == f"1{name}\n"

    git(shared, "add", "plotted.out")  # git may hold it: DVC does not ignore it
    git(shared, "check-ignore", "-q", "cached.out")  # DVC keeps it out of git
    git(shared, "add", "-f", "cached.out")
    git(shared, "commit", "-q", "-m", "the results, in git")
    refused = run(shared, "repro", "--force", "cached")
    assert refused.returncode != 0
    assert "'cached.out' is already tracked by SCM" in refused.stderr
