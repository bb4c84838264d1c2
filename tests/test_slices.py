"""Slicing a sweep over machines and gathering the slices (adaopt.runner.slices)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from adaopt import io
from adaopt.config import load_params
from adaopt.runner import plan
from adaopt.runner.cli import main
from adaopt.runner.slices import deal, gather, slice_stages, sweep_stages

ROOT = Path(__file__).resolve().parents[1]
CPU = ROOT / "profiles" / "cpu.yaml"
PARAMS = load_params(CPU)
CELLS = len(PARAMS.cells)
#: One cell's seconds per task: the language model's cells far the longest.
COSTS = {task: 100.0 * (task == "lm_pretrain") + index + 1.0
         for index, task in enumerate(PARAMS.sweep.tasks)}
#: The same, by cell: what slice_stages deals by.
CELL_COSTS = {cell.name: COSTS[cell.task] for cell in PARAMS.cells}


@pytest.mark.parametrize("costs", [None, CELL_COSTS])
@pytest.mark.parametrize("count", [1, 3, 7, CELLS])
def test_the_slices_cover_every_stage_once_each_cell_tuned_before_trained(
    count: int, costs: dict[str, float] | None,
) -> None:
    slices = [slice_stages(PARAMS, count, index, costs=costs) for index in range(count)]
    everything = [stage for stages in slices for stage in stages]
    assert sorted(everything) == sorted(sweep_stages(PARAMS))
    assert len(set(everything)) == len(everything) == 2 * CELLS
    for stages in slices:
        for tune, train in zip(stages[::2], stages[1::2], strict=True):
            assert (tune.split("@")[0], train) == ("tune", tune.replace("tune@", "train@"))
    if costs is None:
        sizes = [len(stages) for stages in slices]
        assert max(sizes) - min(sizes) <= 2  # one cell at most between two slices


def test_without_estimates_the_cells_are_dealt_round_robin_in_the_pipelines_order() -> None:
    assert slice_stages(PARAMS, CELLS // 2, 1)[::2] == [
        sweep_stages(PARAMS)[2], sweep_stages(PARAMS)[2 + 2 * (CELLS // 2)]]
    assert deal([1.0] * 7, 3) == [[0, 3, 6], [1, 4], [2, 5]]


def test_the_longest_cells_are_dealt_first_each_to_the_least_loaded_slice() -> None:
    assert deal([5.0, 1.0, 4.0, 2.0, 3.0, 3.0], 2) == [[0, 5, 1], [2, 4, 3]]  # equal totals
    assert deal([2.0, 2.0, 0.0, 0.0], 3) == [[0], [1], [2, 3]]  # no slice left empty


def test_slices_dealt_by_the_estimates_end_together_where_round_robin_would_not() -> None:
    def totals(costs: dict[str, float] | None) -> list[float]:
        return [sum(COSTS[stage.split("@")[1].split("-")[0]]
                    for stage in slice_stages(PARAMS, 7, index, costs=costs)[::2])
                for index in range(7)]

    dealt, round_robin = totals(CELL_COSTS), totals(None)
    assert max(dealt) - min(dealt) <= max(COSTS.values())  # the greedy deal's bound
    assert max(dealt) < max(round_robin)
    assert [slice_stages(PARAMS, 7, 3, costs=CELL_COSTS)] * 2 == [
        slice_stages(PARAMS, 7, 3, costs=dict(CELL_COSTS)) for _ in range(2)]  # deterministic


def test_slurms_one_based_array_ids_name_the_same_slices() -> None:
    for index in range(3):
        assert slice_stages(PARAMS, 3, index + 1, base=1) == slice_stages(PARAMS, 3, index)
    with pytest.raises(ValueError, match=r"^slice 0 of 3: the index must be in 1\.\.3$"):
        slice_stages(PARAMS, 3, 0, base=1)


def test_a_slice_outside_the_count_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^slice 3 of 3: the index must be in 0\.\.2$"):
        slice_stages(PARAMS, 3, 3)
    with pytest.raises(ValueError, match=r"^--of 0: the number of slices must be at least 1$"):
        slice_stages(PARAMS, 0, 0)
    with pytest.raises(ValueError, match=r"^the calibration has no estimate for sst2: "):
        slice_stages(PARAMS, 3, 0, costs={k: v for k, v in CELL_COSTS.items()
                                          if not k.startswith("sst2-")})


def test_an_empty_slice_exits_non_zero_with_one_line_before_anything_runs(capsys) -> None:
    """More slices than cells (a SLURM array too large): the slice past the cells would give
    ``dvc repro`` no stage, i.e. the whole pipeline."""
    assert main(["slice", "--params", str(CPU), "--of", "500", "--index", "499"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: slice 499 of 500 is empty: the profile has {CELLS} cells, so --of "
                   f"can be at most {CELLS}\n")
    assert main(["slice", "--params", str(CPU), "--of", "500", "--index", "500"]) == 2
    assert capsys.readouterr().err == "error: slice 500 of 500: the index must be in 0..499\n"


def _calibration(path: Path) -> Path:
    """A calibration of another machine in which each task's steps cost as COSTS says."""
    rates = {"workload_s": 0.0, "run_setup_s": 0.0, "warmup_s": 0.0, "selection_s": 0.0,
             "dev_s": 0.0, "tokens_per_example": 1.0, "selection_tokens": 1, "dev_tokens": 1}
    calibration = plan.Calibration(
        machine={"device": "elsewhere"}, startup=plan.Startup(0.0, 0.0, 0.0),
        tasks={task: plan.TaskRates(shape={}, step_s=cost, **rates)
               for task, cost in COSTS.items()})
    io.write_json(path, calibration.to_dict())
    return path


def test_the_command_deals_by_a_calibration_file_and_refuses_an_unreadable_one(
    tmp_path: Path, capsys,
) -> None:
    calibration = _calibration(tmp_path / "calibration.json")
    costs = plan.cell_seconds(PARAMS, calibration)
    assert costs == pytest.approx({  # its steps are all a stage costs in this calibration
        cell.name: sum(stages.runs * stages.steps * COSTS[cell.task]
                       for stages in plan.stage_kinds(PARAMS)
                       if f"{stages.kind}@{cell.name}" in stages.names())
        for cell in PARAMS.cells})
    assert main(["slice", "--params", str(CPU), "--of", "4", "--index", "2", "--base", "1",
                 "--calibration", str(calibration)]) == 0
    assert capsys.readouterr().out.split() == slice_stages(PARAMS, 4, 1, costs=costs)
    (tmp_path / "bad.json").write_text("{")
    assert main(["slice", "--params", str(CPU), "--of", "4", "--index", "0",
                 "--calibration", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'bad.json'}: not a calibration written by ")
    assert err.count("\n") == 1


def _git(repo: Path, *args: str) -> str:
    who = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    return subprocess.run(["git", *who, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def _cell(repo: Path, cell: str, run: str, lock: dict[str, object]) -> None:
    """Cell ``cell``'s tune and train outputs as run ``run`` wrote them, with their entries."""
    tuned, trained = repo / "tuning" / cell, repo / "runs" / cell
    shutil.rmtree(trained, ignore_errors=True)
    for folder, name in ((tuned, "choice.json"), (trained / "seed0", "metrics.json")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(run)
    lock[f"tune@{cell}"] = {"cmd": "tune", "outs": [{"path": f"tuning/{cell}/choice.json",
                                                      "md5": run}]}
    lock[f"train@{cell}"] = {"cmd": "train", "outs": [{"path": f"runs/{cell}", "md5": run}]}


def _committed(repo: Path, message: str, lock: dict[str, object]) -> None:
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


def test_gathering_takes_each_slices_own_stages_and_folders_not_what_it_inherited(
    tmp_path: Path,
) -> None:
    """As on this repository as committed: every slice's branch holds the earlier run's lock
    entries and outputs of every cell, stale ones included. The gather takes from each slice
    only the cells it was dealt, so no slice's inherited copy undoes another's."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    committed: dict[str, object] = {"prepare": {"cmd": "prepare"}}
    for cell in ("a", "b", "c"):
        _cell(repo, cell, "old", committed)
    (repo / "runs" / "a" / "seed9").mkdir()
    (repo / "runs" / "a" / "seed9" / "metrics.json").write_text("old")  # a seed since dropped
    _committed(repo, "committed", committed)
    base = _git(repo, "rev-parse", "HEAD").strip()
    for index, cell in enumerate(("a", "b")):  # slice k was dealt cell k; c is no one's
        _git(repo, "checkout", "-q", "-b", f"slice{index}", base)
        lock = dict(committed)
        _cell(repo, cell, f"slice{index}", lock)
        _committed(repo, f"slice {index}", lock)
    _git(repo, "checkout", "-q", "-b", "gatherer", base)

    dealt = [("slice0", ["tune@a", "train@a"]), ("slice1", ["tune@b", "train@b", "tune@d"])]
    assert gather(repo, dealt) == ["tune@a", "train@a", "tune@b", "train@b"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {stage: entry["outs"][0]["md5"] for stage, entry in lock.items() if "@" in stage} == {
        "tune@a": "slice0", "train@a": "slice0", "tune@b": "slice1", "train@b": "slice1",
        "tune@c": "old", "train@c": "old"}
    assert lock["prepare"] == {"cmd": "prepare"}  # the gathering machine's own
    for cell, run in (("a", "slice0"), ("b", "slice1"), ("c", "old")):
        assert (repo / "tuning" / cell / "choice.json").read_text() == run
        assert sorted(path.relative_to(repo / "runs" / cell).as_posix()
                      for path in (repo / "runs" / cell).rglob("*.json")) == ["seed0/metrics.json"]
        assert (repo / "runs" / cell / "seed0" / "metrics.json").read_text() == run


def test_a_slice_or_an_output_git_lacks_changes_nothing_and_is_one_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    lock: dict[str, object] = {}
    _cell(repo, "a", "old", lock)
    _committed(repo, "committed", lock)
    before = (repo / "dvc.lock").read_text()
    _git(repo, "checkout", "-q", "-b", "forgot")
    _cell(repo, "b", "forgot", lock)  # its entries committed, its outputs not
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}))
    _git(repo, "commit", "-q", "-m", "the lock alone", "dvc.lock")
    _git(repo, "checkout", "-q", "-")
    with pytest.raises(ValueError, match=r"^git show nowhere:\./dvc\.lock: fatal: "):
        gather(repo, [("HEAD", ["tune@a", "train@a"]), ("nowhere", ["tune@b"])])
    with pytest.raises(ValueError, match=r"^tune@b: forgot has no tuning/b/choice\.json; "
                                         r"commit the slice's outputs with its dvc\.lock$"):
        gather(repo, [("HEAD", ["tune@a", "train@a"]), ("forgot", ["tune@b", "train@b"])])
    assert (repo / "dvc.lock").read_text() == before
    assert (repo / "runs" / "a" / "seed0" / "metrics.json").read_text() == "old"


def test_the_gather_command_names_one_revision_per_slice(capsys) -> None:
    assert main(["gather", "--params", str(CPU), "--of", "3", "HEAD", "HEAD"]) == 2
    assert capsys.readouterr().err == ("error: --of 3 but 2 revisions: name one per slice, in "
                                       "the slices' order\n")
