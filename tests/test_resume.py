"""A training cell is deterministic, and one killed mid-run resumes to the same numbers.

Runs the pipeline's own cell function (``adaopt.experiment.run_cell``) on the smoke profile's
tiny BERT and the fixture mirror: seconds, not minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from adaopt.config import load_params, parse_params
from adaopt.data import prepare_task
from adaopt.experiment import run_cell
from adaopt.modeling import resolve_model_path

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT / "tests" / "fixtures" / "mirror"
TASK, OPTIMIZER, SEED = "sst2", "adaptive_adam", 0

CHILD = f"""
import sys
from adaopt.config import load_params
from adaopt.experiment import run_cell
params_path, prepared, out, checkpoints = sys.argv[1:5]
run_cell(load_params(params_path), "{TASK}", "{OPTIMIZER}", {SEED}, prepared, out,
         checkpoint_dir=checkpoints, progress=False)
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    out = tmp_path_factory.mktemp("prepared")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(params.model.name_or_path))
    prepare_task(TASK, MIRROR, out, tokenizer, max_train_samples=None, max_eval_samples=None,
                 max_length=params.data.max_length, seed=params.data.seed)
    return out


def long_smoke_params(tmp_path: Path) -> Path:
    """The smoke profile, trained long enough (and checkpointed often enough) to be killed."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["train"].update(max_steps=300, eval_every=50, checkpoint_every=10, threads=1)
    parse_params(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_same_seed_gives_byte_identical_metrics(prepared: Path, tmp_path: Path) -> None:
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    for name in ("a", "b"):
        run_cell(params, TASK, OPTIMIZER, SEED, prepared, tmp_path / name, progress=False)
    first = (tmp_path / "a" / "metrics.json").read_bytes()
    assert first == (tmp_path / "b" / "metrics.json").read_bytes()
    for setting in ("traditional", "fair"):
        name = f"{setting}_predictions.json"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_killed_cell_resumes_to_the_uninterrupted_numbers(prepared: Path, tmp_path: Path) -> None:
    params_path = long_smoke_params(tmp_path)
    reference = tmp_path / "reference"
    run_cell(load_params(params_path), TASK, OPTIMIZER, SEED, prepared, reference,
             progress=False)

    checkpoints, out = tmp_path / "checkpoints", tmp_path / "resumed"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = [str(params_path), str(prepared), str(out), str(checkpoints)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("traditional-*.pt")) and child.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    assert not (out / "metrics.json").exists()
    left = sorted(path.name for path in checkpoints.iterdir())
    assert any(name.startswith("traditional-") for name in left), left

    run_cell(load_params(params_path), TASK, OPTIMIZER, SEED, prepared, out,
             checkpoint_dir=checkpoints, progress=False)
    assert (out / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
    assert not checkpoints.exists(), "a finished cell removes its checkpoints"
    for setting in ("traditional", "fair"):
        resumed = (out / f"{setting}_train.csv").read_text().splitlines()
        uninterrupted = (reference / f"{setting}_train.csv").read_text().splitlines()
        strip = [line.rsplit(",", 1)[0] for line in resumed]  # elapsed_s is a timing
        assert strip == [line.rsplit(",", 1)[0] for line in uninterrupted]
