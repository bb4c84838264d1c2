"""Slicing a sweep over machines and gathering the slices' locks (adaopt.slices)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adaopt.config import load_params
from adaopt.slices import gather_locks, slice_stages, sweep_stages

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "profiles" / "cpu.yaml")


@pytest.mark.parametrize("count", [1, 3, 7, 200])
def test_the_slices_cover_every_stage_once_each_cell_tuned_before_trained(count: int) -> None:
    slices = [slice_stages(PARAMS, count, index) for index in range(count)]
    everything = [stage for stages in slices for stage in stages]
    assert sorted(everything) == sorted(sweep_stages(PARAMS))
    assert len(set(everything)) == len(everything) == 2 * 6 * 8 * 2  # tasks x optimizers x 2
    for stages in slices:
        for tune, train in zip(stages[::2], stages[1::2], strict=True):
            assert (tune.split("@")[0], train) == ("tune", tune.replace("tune@", "train@"))
    sizes = [len(stages) for stages in slices]
    assert max(sizes) - min(sizes) <= 2  # one cell at most between two slices


def test_a_slice_outside_the_count_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^slice 3 of 3: the index must be in 0\.\.2$"):
        slice_stages(PARAMS, 3, 3)


def _lock(path: Path, stages: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return path


def test_gathering_copies_each_slices_own_entries_and_keeps_the_rest(tmp_path: Path) -> None:
    target = _lock(tmp_path / "dvc.lock", {"prepare": {"cmd": "mine"}})
    first = _lock(tmp_path / "a.lock", {"prepare": {"cmd": "theirs"}, "tune@x": {"md5": 1}})
    second = _lock(tmp_path / "b.lock", {"tune@x": {"md5": 1}, "train@x": {"md5": 2}})
    gathered = gather_locks(target, [first, second], ["tune@x", "train@x", "tune@y"])
    assert gathered == ["tune@x", "train@x"]
    assert yaml.safe_load(target.read_text())["stages"] == {
        "prepare": {"cmd": "mine"}, "tune@x": {"md5": 1}, "train@x": {"md5": 2}}


def test_one_stage_recorded_differently_by_two_slices_is_refused(tmp_path: Path) -> None:
    first = _lock(tmp_path / "a.lock", {"tune@x": {"md5": 1}})
    second = _lock(tmp_path / "b.lock", {"tune@x": {"md5": 9}})
    target = _lock(tmp_path / "dvc.lock", {})
    with pytest.raises(ValueError, match=r"tune@x: .*a\.lock and .*b\.lock hold different"):
        gather_locks(target, [first, second], ["tune@x"])
    assert yaml.safe_load(target.read_text())["stages"] == {}  # nothing written
