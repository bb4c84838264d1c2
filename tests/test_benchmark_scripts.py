"""The loop-vs-Trainer and torch.compile benchmarks run in their tiny configurations and print
well-formed numbers (their targets are checked by running them at size, not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"
NUMBER = r"(\d+\.\d+)"


def run_script(script: str, *args: str) -> str:
    """The script's stdout; it must exit 0 (no ``--check``: a missed target is not an error)."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_loop_vs_trainer_prints_rates_and_consistent_ratios() -> None:
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    out = run_script("loop_vs_trainer.py", "--steps", "2", "--rounds", "1",
                     "--mirror", str(FIXTURE_MIRROR))
    row = (rf"^\| ([^|]+?) +\| +{NUMBER} \| +{NUMBER} - +{NUMBER} \| +{NUMBER} \| +{NUMBER} "
           rf"\| +{NUMBER} \|$")
    rows = {name: [float(v) for v in values] for name, *values in re.findall(row, out, re.M)}
    assert list(rows) == ["ours: dynamic padding, length-grouped",
                          "HF Trainer: dynamic padding, group_by_length",
                          "HF Trainer with our length-grouped sampler",
                          "ours: padded to max_length"]
    assert all(value > 0 for values in rows.values() for value in values)
    assert rows["ours: padded to max_length"][4] == 64.0  # padded tokens per example
    rate = {name: values[0] for name, values in rows.items()}
    verdicts = re.findall(rf"^(PASS|FAIL): (.+?) = {NUMBER}x (.+?) \({NUMBER} vs {NUMBER} "
                          rf"samples/s; target >= {NUMBER}x\)$", out, re.M)
    assert [what for _, what, *_ in verdicts] == ["our loop",
                                                  "dynamic padding + length grouping"]
    for word, _, ratio, reference, ours, ref, target in verdicts:
        assert float(ours) == rate["ours: dynamic padding, length-grouped"]
        assert float(ref) == rate[reference]
        assert float(ratio) == pytest.approx(float(ours) / float(ref), rel=0.05)
        if abs(float(ratio) - float(target)) > 0.01:  # printed rounded: no verdict at the line
            assert (word == "PASS") == (float(ratio) > float(target))


@pytest.mark.slow
@pytest.mark.benchmark  # a cold inductor compile: about a minute; `make bench` runs it
def test_compile_step_prints_a_table_and_a_verdict() -> None:
    out = run_script("compile_step.py", "--tiny", "--steps", "3", "--passes", "1",
                     "--variants", "default")
    assert re.search(r"tiny BERT \([\d.]+M parameters\)", out)
    steps = r"(\d+|never)"
    row = (rf"^\| default \| (cold|warm) \((\d+)/(\d+)\) \| {NUMBER} \| {NUMBER} \| "
           rf"(-?\d+\.\d+) \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {steps} \| "
           rf"{steps} \| {NUMBER} \| {NUMBER} \|$")
    rows = re.findall(row, out, re.M)
    assert [cache for cache, *_ in rows] == ["cold", "warm"]
    (_, cold_hits, cold_misses, *_), (_, warm_hits, *_) = rows
    assert int(cold_hits) == 0 and int(cold_misses) > 0 and int(warm_hits) > 0
    for _, _, _, _, run, overhead, _, _, compiled_ms, *_ in rows:
        assert float(overhead) == pytest.approx(float(run) - 3e-3 * float(compiled_ms), abs=0.02)
    assert re.search(r"^(ADOPT|DO NOT ADOPT): the best compiled variant \(default, (cold|warm) "
                     rf"cache\) makes a 3-step run {NUMBER}x as fast as eager", out, re.M)
