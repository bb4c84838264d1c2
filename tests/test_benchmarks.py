"""The benchmarks run and print well-formed numbers (tiny configurations; their targets are
checked by running them, not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"


@pytest.mark.slow
def test_pipeline_overhead_splits_a_real_stage_into_parts_that_add_up() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/pipeline_overhead.py", "--profile", "smoke",
         "--mirror", str(FIXTURE_MIRROR)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    wall = float(re.search(r"wall time ([\d.]+) s", result.stdout).group(1))
    parts = dict(re.findall(r"^\| ([a-z ]+) \| (-?[\d.]+) \|", result.stdout, re.MULTILINE))
    assert set(parts) == {"stage setup", "training steps", "scoring", "rest of the runs"}
    assert sum(map(float, parts.values())) == pytest.approx(wall, abs=0.3)
    # The smoke stage scores a few examples in well under 0.05 s: printed as 0.0.
    assert float(parts["training steps"]) > 0 and float(parts["scoring"]) >= 0
    assert re.search(r"rest \(setup \+ rest of the runs\) = [\d.]+ s = [\d.]+% ", result.stdout)
