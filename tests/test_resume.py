"""A stage's runs are deterministic, and a stage killed mid-run resumes to the same numbers.

Runs the pipeline's own stage function (``adaopt.experiment.run_setting``) on the smoke
profile's tiny BERT and the fixture mirror: seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from adaopt.config import load_params, parse_params
from adaopt.experiment import run_setting

ROOT = Path(__file__).resolve().parents[1]
TASK, OPTIMIZER, SETTING = "sst2", "adaptive_adam", "traditional"

CHILD = f"""
import sys
from adaopt.config import load_params
from adaopt.experiment import run_setting
params_path, prepared, out, choice, checkpoints = sys.argv[1:6]
run_setting(load_params(params_path), "{TASK}", "{OPTIMIZER}", "{SETTING}", prepared, out, choice,
            checkpoint_dir=checkpoints, progress=False)
"""


def write_choice(path: Path, lr: float = 1e-3) -> Path:
    """What the tune stage would have chosen, written by hand: these tests are about training."""
    path.write_text(json.dumps({"task": TASK, "optimizer": OPTIMIZER, "setting": SETTING,
                                "hparams": {"lr": lr}}))
    return path


def long_smoke_params(tmp_path: Path) -> Path:
    """The smoke profile, trained long enough (and checkpointed often enough) to be killed."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["train"].update(max_steps=300, eval_every=50, checkpoint_every=10,
                        checkpoint_interval_s=0, threads=1)
    parse_params(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_same_seed_gives_byte_identical_metrics(prepared_sst2: Path, tmp_path: Path) -> None:
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    choice = write_choice(tmp_path / "choice.json")
    for name in ("a", "b"):
        run_setting(params, TASK, OPTIMIZER, SETTING, prepared_sst2, tmp_path / name, choice,
                    progress=False)
    for seed in params.sweep.seeds:
        for name in ("metrics.json", "predictions.json"):
            first = (tmp_path / "a" / f"seed{seed}" / name).read_bytes()
            assert first == (tmp_path / "b" / f"seed{seed}" / name).read_bytes(), (seed, name)
    losses = [pd.read_csv(tmp_path / "a" / f"seed{s}" / "train.csv").loss.tolist()
              for s in params.sweep.seeds]
    assert losses[0] != losses[1], "another seed is another run"


def test_killed_stage_resumes_to_the_uninterrupted_numbers(prepared_sst2: Path, tmp_path: Path
                                                           ) -> None:
    params_path = long_smoke_params(tmp_path)
    choice = write_choice(tmp_path / "choice.json")
    reference = tmp_path / "reference"
    run_setting(load_params(params_path), TASK, OPTIMIZER, SETTING, prepared_sst2, reference,
                choice, progress=False)

    checkpoints, out = tmp_path / "checkpoints", tmp_path / "resumed"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = [str(params_path), str(prepared_sst2), str(out), str(choice), str(checkpoints)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("seed1-*.pt")) and child.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint of the second seed appeared"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    assert (out / "seed0" / "metrics.json").exists() and not (out / "seed1").exists()
    left = sorted(path.name for path in checkpoints.iterdir())
    assert any(name.startswith("seed0-") and name.endswith(".result.pt") for name in left), left

    run_setting(load_params(params_path), TASK, OPTIMIZER, SETTING, prepared_sst2, out, choice,
                checkpoint_dir=checkpoints, progress=False)
    assert not checkpoints.exists(), "a finished stage removes its checkpoints"
    for seed in (0, 1):
        folder, uninterrupted = out / f"seed{seed}", reference / f"seed{seed}"
        assert (folder / "metrics.json").read_bytes() == \
            (uninterrupted / "metrics.json").read_bytes()
        resumed = (folder / "train.csv").read_text().splitlines()
        clean = (uninterrupted / "train.csv").read_text().splitlines()
        strip = [line.rsplit(",", 1)[0] for line in resumed]  # elapsed_s is a timing
        assert strip == [line.rsplit(",", 1)[0] for line in clean]
