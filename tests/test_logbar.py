"""The progress lines a long stage writes to its log (:mod:`adaopt.runner.logbar`)."""

from __future__ import annotations

import re

import pytest

from adaopt.runner import logbar
from adaopt.runner.logbar import EVERY_S_ENV, LogBar

LINE = re.compile(r"^run: +(\d+)%\|[# ]{20}\| (\d+)/10 \[")


def _lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    out, err = capfd.readouterr()
    assert out == "" and "\r" not in err
    return err.splitlines()


def test_a_line_per_interval_and_one_at_the_end(capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(logbar.time, "monotonic", lambda: next(clock))
    monkeypatch.setenv(EVERY_S_ENV, "3")
    bar = LogBar("run", 10)  # starts at t=0
    for step in range(1, 10):  # t = 1..9: lines at 3, 6, 9
        bar.update(step, loss="0.5")
    bar.close(10)
    lines = _lines(capfd)
    assert [LINE.match(line).group(2) for line in lines] == ["3", "6", "9", "10"]
    assert all(line.endswith("loss=0.5]") for line in lines)


def test_the_last_line_says_how_the_run_ended_and_is_not_repeated(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVERY_S_ENV, "1e-9")
    bar = LogBar("run", 10, initial=4)  # resumed at step 4
    bar.update(6, **{"selection accuracy": "0.8"})
    bar.close(6)
    bar = LogBar("run", 10)
    bar.update(7)
    bar.close(7, "(stopped early)")
    lines = _lines(capfd)
    assert len(lines) == 3
    assert LINE.match(lines[0]).group(1, 2) == ("60", "6")
    assert lines[0].endswith("selection accuracy=0.8]")
    assert lines[2].endswith("] (stopped early)") and LINE.match(lines[2]).group(2) == "7"


def test_disabled_it_writes_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    bar = LogBar("run", 10, enabled=False)
    bar.update(5, loss="1")
    bar.close(10, "(diverged)")
    assert _lines(capfd) == []


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan"])
def test_a_bad_interval_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                               value: str) -> None:
    monkeypatch.setenv(EVERY_S_ENV, value)
    with pytest.raises(ValueError, match=rf"^{EVERY_S_ENV}='{value}': .* positive number$"):
        LogBar("run", 10)
