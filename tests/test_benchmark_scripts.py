"""The benchmarks run in their tiny configurations and print or write well-formed numbers (their
targets are checked by running them at size, not here)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
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


def test_learning_curves_score_the_selection_split_and_replace_the_tasks_rows(
        prepared_sst2: Path, tmp_path: Path) -> None:
    """One curve per --lr, a row per selection-split evaluation beside the trivial baseline on
    that split (the training split's majority class), never dev; other tasks' rows stay."""
    from datasets import load_from_disk

    out = tmp_path / "curves.csv"
    pd.DataFrame({"task": ["mrpc", "sst2"], "step": [25, 99], "value": [0.7, 0.1]}).to_csv(
        out, index=False)
    run_script("learning_curves.py", "--task", "sst2", "--steps", "4", "--every", "2",
               "--lr", "1e-3", "--lr", "1e-4", "--params", str(ROOT / "profiles" / "smoke.yaml"),
               "--prepared", str(prepared_sst2), "--out", str(out))
    rows = pd.read_csv(out)
    assert rows[rows.task == "mrpc"].value.tolist() == [0.7]
    sst2 = rows[rows.task == "sst2"]
    assert sst2.lr.tolist() == [1e-3, 1e-3, 1e-4, 1e-4] and sst2.step.tolist() == [2, 4, 2, 4]
    assert sst2.value.between(0, 1).all() and (sst2.s_per_step > 0).all()
    assert (sst2.split == "selection").all() and (sst2.metric == "accuracy").all()
    splits = load_from_disk(str(prepared_sst2 / "sst2"))
    majority = pd.Series(splits["train"]["labels"]).mode().iloc[0]
    selection = pd.Series(splits["selection"]["labels"])
    assert (sst2.examples == len(selection)).all()
    assert sst2.baseline.iloc[0] == pytest.approx((selection == majority).mean())


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


GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"


def test_shard_balance_never_gives_a_larger_slowest_shard(prepared_sst2: Path,
                                                          tmp_path: Path) -> None:
    run_script("shard_balance.py", "--params", str(ROOT / "profiles" / "smoke.yaml"),
               "--prepared", str(prepared_sst2), "--task", "sst2",
               "--out-dir", str(tmp_path))
    rows = pd.DataFrame(json.loads((tmp_path / "shard_balance.json").read_text())["rows"])
    assert set(rows["nproc"]) == {2, 4, 8} and set(rows["group_by_length"]) == {True, False}
    assert (rows["balanced"] <= rows["by_position"]).all()
    assert (tmp_path / "shard_balance.md").read_text().count("\n| sst2 ") == len(rows)


def test_gpu_check_parses_and_refuses_an_unknown_argument_in_one_line() -> None:
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)
    result = subprocess.run(["bash", str(GPU_CHECK), "--gpus", "2"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("gpu_check.sh: unknown argument '--gpus'; allowed: --wheels DIR, "
                             "--bundle DIR, --mirror DIR, -- ARGS\n")
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_bundle.sh")], check=True)


def _bundle(folder: Path) -> Path:
    """What ``gpu_bundle.sh`` makes, small: a tar of one hand-made wheel and the fixture's
    SST-2, split in two parts, with their checksums."""
    stage = folder / "stage"
    (stage / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(stage / "wheels" / "bundle_probe-0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("bundle_probe.py", "FOUND = True\n")
        info = "bundle_probe-0.1.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: bundle-probe\n"
                                            "Version: 0.1\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    shutil.copytree(FIXTURE_MIRROR / "glue" / "SST-2", stage / "mirror" / "glue" / "SST-2")
    bundle = folder / "bundle"
    bundle.mkdir()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(stage, arcname=".")
    whole = data.getvalue()
    sums = []
    for index, part in enumerate((whole[:len(whole) // 2], whole[len(whole) // 2:])):
        (bundle / f"part.{index:02d}").write_bytes(part)
        sums.append(f"{hashlib.sha256(part).hexdigest()}  part.{index:02d}")
    (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return bundle


def _gpu_check(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``gpu_check.sh`` run with this Python and little else in its environment."""
    return subprocess.run(["bash", str(GPU_CHECK), *args], cwd=home, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(home),
                                          "PYTHON": sys.executable, **env})


def test_gpu_check_installs_a_bundle_for_the_machines_python(tmp_path: Path) -> None:
    """The parts are checked and joined, their wheels installed beside the machine's own
    packages, and the check starts on the bundle's SST-2 (here it only prints its usage)."""
    bundle = _bundle(tmp_path)
    result = _gpu_check("--bundle", str(bundle), "--", "--help", home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (bundle / "site" / "bundle_probe.py").is_file()
    assert (bundle / "unpacked" / "mirror" / "glue" / "SST-2" / "train.tsv").is_file()
    assert "cuda False transformers " in result.stdout and "--mirror" in result.stdout
    (bundle / "part.01").write_bytes((bundle / "part.01").read_bytes()[:-1])
    cut = _gpu_check("--bundle", str(bundle), home=tmp_path)
    assert cut.returncode == 2 and cut.stderr.endswith(
        "the parts do not match SHA256SUMS (one missing or cut?)\n")


@pytest.mark.slow
def test_gpu_check_runs_its_cpu_fallback_offline(tmp_path: Path) -> None:
    """Where torch sees no GPU: the script installs from an (empty) wheel folder without the
    index, keeps the environment's torch, and runs every part at toy size."""
    if sys.platform != "linux":
        pytest.skip("the device check is a bash script for Linux GPU machines")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run benchmarks/gpu_check.sh itself")
    venv = Path(sys.executable).parent.parent  # already holds every requirement
    (tmp_path / "wheels").mkdir()
    result = _gpu_check("--wheels", str(tmp_path / "wheels"), "--mirror", str(FIXTURE_MIRROR),
                        home=tmp_path, GPU_CHECK_VENV=str(venv))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"torch {torch.__version__} cuda False" in out
    assert "device: CPU (no CUDA GPU: toy-size fallback)" in out
    for part in ("## 1. smoke cell", "## 2. full cell", "## 2b. host reads",
                 "## 3. optimizer step"):
        assert part in out
    rows = re.findall(rf"^\| (adamw|adaptive_adam) \| (fp32|bf16) \| (\d+) \| \d+ \| "
                      rf"{NUMBER} \| \d+ \| {NUMBER} \|$", out, re.M)
    assert [(name, precision, every) for name, precision, every, *_ in rows] == [
        ("adamw", "bf16", "1"), ("adamw", "fp32", "1"), ("adamw", "bf16", "1"),
        ("adaptive_adam", "fp32", "1"), ("adaptive_adam", "bf16", "1"),
        ("adamw", "bf16", "1"), ("adamw", "bf16", "1")]  # toy size: a window of 1 step
    for name in ("adamw", "adaptive_adam"):
        assert re.search(rf"^{name}: bf16 / fp32 throughput = {NUMBER}x$", out, re.M)
    assert re.search(rf"^read back every 1 / every step throughput = {NUMBER}x$", out, re.M)
    assert re.search(r"^(PASS|FAIL): adaptive_adam step = ", out, re.M)
    assert re.search(r"^gpu_check finished in \d+ s$", out, re.M)
