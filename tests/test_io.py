"""Tests of adaopt.io: deterministic JSON and writes that are all or nothing."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from adaopt import io


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_equal_dicts_give_byte_identical_json_whatever_the_key_order(tmp_path: Path) -> None:
    one = {"b": 1, "a": {"y": [1, 2.5], "x": "s"}, "c": None}
    other = {"c": None, "a": {"x": "s", "y": [1, 2.5]}, "b": 1}
    io.write_json(tmp_path / "one.json", one)
    io.write_json(tmp_path / "other.json", other)
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "other.json").read_bytes()
    assert json.loads((tmp_path / "one.json").read_text()) == one


def test_different_dicts_give_different_json(tmp_path: Path) -> None:
    io.write_json(tmp_path / "one.json", {"a": 1.0})
    io.write_json(tmp_path / "two.json", {"a": 1.0000001})
    assert (tmp_path / "one.json").read_bytes() != (tmp_path / "two.json").read_bytes()


def test_json_is_sorted_indented_and_ends_with_a_newline(tmp_path: Path) -> None:
    io.write_json(tmp_path / "out.json", {"b": 1, "a": 2})
    assert (tmp_path / "out.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_non_finite_numbers_become_null_at_any_depth(tmp_path: Path) -> None:
    data = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 0.5,
            "nested": {"list": [1.0, math.nan, (math.inf, 2)]}}
    path = tmp_path / "out.json"
    io.write_json(path, data)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert loaded == {"nan": None, "inf": None, "ninf": None, "ok": 0.5,
                      "nested": {"list": [1.0, None, [None, 2]]}}


def test_write_json_does_not_change_the_callers_data(tmp_path: Path) -> None:
    data = {"x": math.nan}
    io.write_json(tmp_path / "out.json", data)
    assert math.isnan(data["x"])


def test_failure_inside_atomic_path_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="interrupted"), io.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_failure_before_the_first_write_creates_no_target(tmp_path: Path) -> None:
    target = tmp_path / "new" / "out.csv"
    with pytest.raises(KeyError), io.atomic_path(target):
        raise KeyError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_replaces_the_file_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with io.atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # readers see the old file until the end
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_write_with_uses_the_writer_callback(tmp_path: Path) -> None:
    frame = pd.DataFrame({"step": [1, 2], "loss": [0.5, 0.25]})
    target = tmp_path / "deep" / "log.csv"
    io.write_with(target, lambda path: frame.to_csv(path, index=False))
    assert target.read_text() == "step,loss\n1,0.5\n2,0.25\n"
    pd.testing.assert_frame_equal(pd.read_csv(target), frame)
    assert leftovers(target.parent) == []


def test_write_with_a_failing_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "log.csv"
    target.write_text("step\n1\n")

    def writer(path: Path) -> None:
        path.write_text("step\n")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.write_with(target, writer)
    assert target.read_text() == "step\n1\n"
    assert leftovers(tmp_path) == []


def test_atomic_writes_keep_the_usual_file_mode(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "out.json"
    io.write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
