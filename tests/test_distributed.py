"""Data-parallel training: N torchrun processes follow the one-process run, and resume.

Runs the pipeline's stage function (``adaopt.experiment.run_setting``) on the smoke profile's
tiny BERT and the fixture mirror, in 2 gloo processes of one thread each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_resume import OPTIMIZER, SETTING, TASK, write_choice

from adaopt.config import ConfigError, load_params, parse_params
from adaopt.experiment import run_setting
from adaopt.training import ShardedBatches

ROOT = Path(__file__).resolve().parents[1]


def ddp_params(tmp_path: Path, nproc: int, dropout: float, **train: Any) -> Path:
    """The smoke profile with one seed, in ``nproc`` one-thread processes."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["model"]["tiny"]["dropout"] = dropout
    raw["sweep"]["seeds"] = [0]
    raw["train"].update(threads=1, nproc=nproc, **train)
    parse_params(raw)
    path = tmp_path / f"params-{nproc}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# --------------------------------------------------------------------------- without processes


def test_nproc_is_validated_in_one_line(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["train"]["nproc"] = 0
    with pytest.raises(ConfigError, match=r"^params.yaml: train.nproc: .*greater than or equal "
                                          r"to 1 \(got 0\)$"):
        parse_params(raw)
    raw["train"]["nproc"] = 3  # batch_size 16
    with pytest.raises(ConfigError) as error:
        parse_params(raw)
    assert "\n" not in str(error.value)
    assert "batch_size=16 must be a multiple of nproc=3" in str(error.value)
    raw["train"]["nproc"] = 2
    raw["workloads"]["lm_pretrain"]["train"]["batch_size"] = 9
    with pytest.raises(ConfigError, match=r"workloads.lm_pretrain.train.*batch_size=9 must be a "
                                          "multiple of nproc=2"):
        parse_params(raw)


def test_the_check_command_refuses_before_any_compute(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["train"]["nproc"] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "adaopt", "check", "--params", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nproc=3" in done.stderr, done.stderr


def seeded_batches(size: int, batch_size: int) -> torch.utils.data.BatchSampler:
    generator = torch.Generator().manual_seed(0)
    sampler = torch.utils.data.RandomSampler(range(size), generator=generator)
    return torch.utils.data.BatchSampler(sampler, batch_size, drop_last=False)


def test_shards_of_a_step_are_the_one_process_batch() -> None:
    whole = list(seeded_batches(23, 6))
    shards = [list(ShardedBatches(seeded_batches(23, 6), rank, 2)) for rank in range(2)]
    assert [a + b for a, b in zip(*shards, strict=True)] == whole
    assert [len(s) for s in shards[0]] == [3, 3, 3, 2] and [len(s) for s in shards[1]] == [3] * 4
    with pytest.raises(ValueError, match="holds 1 examples, fewer than the 2 processes"):
        ShardedBatches(seeded_batches(7, 6), 0, 2)


# --------------------------------------------------------------------------- under torchrun


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(prepared_sst2: Path, tmp_path: Path
                                                         ) -> None:
    """Same global batch and seed: every step's loss within rtol 1e-4 (dropout off: two
    processes draw other masks than one), and the same evaluations."""
    choice = write_choice(tmp_path / "choice.json")
    runs = {}
    for nproc in (1, 2):
        params = load_params(ddp_params(tmp_path, nproc, dropout=0.0, max_steps=12,
                                        eval_every=4))
        out = tmp_path / f"nproc{nproc}"
        metrics = run_setting(params, TASK, OPTIMIZER, SETTING, prepared_sst2, out, choice,
                              progress=False)
        runs[nproc] = (metrics[0], pd.read_csv(out / "seed0" / "train.csv"),
                       pd.read_csv(out / "seed0" / "eval.csv"))
    (one, one_train, one_eval), (two, two_train, two_eval) = runs[1], runs[2]
    assert len(one_train) == 12 and list(two_train.step) == list(one_train.step)
    np.testing.assert_allclose(two_train.loss, one_train.loss, rtol=1e-4, atol=0)
    np.testing.assert_allclose(two_train.grad_norm, one_train.grad_norm, rtol=1e-3)
    np.testing.assert_array_equal(two_train.lr, one_train.lr)
    assert list(two_eval.tokens) == list(one_eval.tokens), "token counts are global"
    np.testing.assert_allclose(two_eval.accuracy, one_eval.accuracy, atol=1e-9)
    assert (two["status"], two["best_step"]) == (one["status"], one["best_step"])
    print("max relative loss difference:",
          float(((two_train.loss - one_train.loss).abs() / one_train.loss).max()))


@pytest.mark.slow
def test_killed_ddp_run_resumes_to_the_uninterrupted_numbers(
    prepared_sst2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dropout on: each process resumes from its own random generators."""
    params_path = ddp_params(tmp_path, 2, dropout=0.1, max_steps=60, eval_every=20,
                             checkpoint_every=4, checkpoint_interval_s=0)
    choice = write_choice(tmp_path / "choice.json")
    reference = tmp_path / "reference"
    run_setting(load_params(params_path), TASK, OPTIMIZER, SETTING, prepared_sst2, reference,
                choice, progress=False)

    checkpoints, out = tmp_path / "checkpoints", tmp_path / "resumed"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "adaopt", "train", "--params", str(params_path),
               "--task", TASK, "--optimizer", OPTIMIZER, "--setting", SETTING,
               "--prepared", str(prepared_sst2), "--out", str(out), "--choice", str(choice),
               "--checkpoint-dir", str(checkpoints), "--no-progress"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("seed0-*.pt")) and child.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)  # torchrun passes it on to its workers, and waits
    child.wait()
    assert child.returncode != 0, "the run finished before it could be stopped"
    assert not (out / "seed0" / "metrics.json").exists()

    capsys.readouterr()
    run_setting(load_params(params_path), TASK, OPTIMIZER, SETTING, prepared_sst2, out, choice,
                checkpoint_dir=checkpoints, progress=False)
    assert "resumed from" in capsys.readouterr().out
    assert not checkpoints.exists(), "a finished stage removes its checkpoints"
    folder, uninterrupted = out / "seed0", reference / "seed0"
    assert (folder / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    strip = [line.rsplit(",", 1)[0] for line in (folder / "train.csv").read_text().splitlines()]
    clean = (uninterrupted / "train.csv").read_text().splitlines()
    assert strip == [line.rsplit(",", 1)[0] for line in clean]  # elapsed_s is a timing
    assert os.listdir(folder) == os.listdir(uninterrupted)
