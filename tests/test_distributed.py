"""Data-parallel training: N torchrun processes follow the one-process run, and resume.

Runs the pipeline's stage function (``adaopt.experiment.run_setting``) on the smoke profile's
tiny BERT and the fixture mirror, in 2 gloo processes of one thread each.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_resume import OPTIMIZER, SETTING, TASK, write_choice

from adaopt import distributed
from adaopt.checkpoint import DataPosition, global_rng_states, load_checkpoint, save_checkpoint
from adaopt.config import ConfigError, load_params, parse_params
from adaopt.experiment import run_setting, tune
from adaopt.training import ShardedBatches, balanced_cuts

ROOT = Path(__file__).resolve().parents[1]


#: Long enough to be stopped after its first checkpoint; saved every other step.
RUN = {"dropout": 0.0, "max_steps": 24, "eval_every": 8, "checkpoint_every": 2,
       "checkpoint_interval_s": 0}


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


def _padded(lengths: list[int], shard: list[int]) -> int:
    return len(shard) * max(lengths[i] for i in shard)


def _largest(lengths: list[int], cuts: Sequence[int]) -> int:
    """The largest padded size of the runs that ``cuts`` makes of ``lengths``."""
    bounds = [0, *cuts, len(lengths)]
    return max(_padded(lengths, list(range(a, b))) for a, b in itertools.pairwise(bounds))


def test_balanced_cuts_make_the_largest_padded_shard_as_small_as_any_split() -> None:
    """Against every way of cutting small sorted batches into consecutive runs."""
    rng = random.Random(0)
    for _ in range(400):
        lengths = sorted((rng.randint(1, 60) for _ in range(rng.randint(1, 10))), reverse=True)
        parts = rng.randint(1, min(4, len(lengths)))
        cuts = balanced_cuts(lengths, parts)
        bounds = [0, *cuts, len(lengths)]
        assert len(cuts) == parts - 1 and all(a < b for a, b in itertools.pairwise(bounds))
        best = min(_largest(lengths, split) for split in itertools.combinations(
            range(1, len(lengths)), parts - 1))
        assert _largest(lengths, cuts) == best, (lengths, parts, cuts)


def test_shards_balanced_by_length_are_still_the_one_process_batch() -> None:
    """The longest examples go to a smaller shard; the step's shards are the batch's examples."""
    lengths = [int(n) for n in torch.randint(8, 128, (40,), generator=torch.manual_seed(1))]
    whole = list(seeded_batches(40, 16))
    shards = [list(ShardedBatches(seeded_batches(40, 16), rank, 2, lengths))
              for rank in range(2)]
    by_position = [list(ShardedBatches(seeded_batches(40, 16), rank, 2)) for rank in range(2)]
    for batch, first, second, *positional in zip(whole, *shards, *by_position, strict=True):
        assert sorted(first + second) == sorted(batch) and first and second
        assert min(lengths[i] for i in first) >= max(lengths[i] for i in second)
        assert max(_padded(lengths, first), _padded(lengths, second)) <= max(
            _padded(lengths, shard) for shard in positional)
    assert [len(shard) for shard in shards[0]] != [len(shard) for shard in by_position[0]]


def test_each_rank_resumes_from_its_own_random_generators(tmp_path: Path) -> None:
    """Ranks draw their own dropout masks; a checkpoint of another process count gives every
    rank rank 0's generators."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    states = []
    for seed in (10, 11):
        torch.manual_seed(seed)
        states.append(global_rng_states())
    position = DataPosition(epoch=0, batches=0, batches_per_epoch=1, generator_state=None)
    torch.manual_seed(10)  # rank 0 saves: its own generators are the checkpoint's
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                    generator=None, step=1, data_position=position, loop_state={},
                    rank_rngs=states)
    for rank, world_size, seed in ((0, 2, 10), (1, 2, 11), (1, 3, 10)):
        torch.manual_seed(0)
        load_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer,
                        scheduler=scheduler, generator=None, rank=rank, world_size=world_size)
        drawn = torch.rand(3)
        torch.manual_seed(seed)
        assert torch.equal(drawn, torch.rand(3)), (rank, world_size)


# --------------------------------------------------------------------------- under torchrun


UNEVEN = """
import json, sys
from types import SimpleNamespace
import torch
from datasets import Dataset
from adaopt import distributed
from adaopt.config import TrainConfig
from adaopt.training import make_loader, train

class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, input_ids, labels):
        prediction = self.linear(input_ids.float()).squeeze(-1)
        return SimpleNamespace(loss=torch.nn.functional.mse_loss(prediction, labels))

torch.manual_seed(0)
data = Dataset.from_dict({"input_ids": torch.randint(0, 9, (7, 4)).tolist(),
                          "labels": torch.randn(7).tolist()})
model = Regression()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
with distributed.joined(60):
    loader = make_loader(data, None, 4, train=True, seed=0, rank=distributed.rank(),
                         world_size=distributed.world_size())
    result = train(model, optimizer, scheduler, loader, lambda m: ({"score": 0.0}, {}),
                   TrainConfig(batch_size=4, max_steps=6, eval_every=3), metric="score",
                   max_grad_norm=None, progress=False)
    if distributed.is_main():
        with open(sys.argv[1], "w") as file:
            json.dump({"log": result.train_log, "samples": result.train_samples_per_s
                       * result.wall_time_s}, file)
"""


@pytest.mark.slow
def test_an_uneven_last_batch_still_gives_the_global_mean(tmp_path: Path) -> None:
    """7 examples in batches of 4: every other step's 3 examples split 1 + 2 over 2 processes;
    the loss weighting keeps the update the global batch's."""
    script = tmp_path / "uneven.py"
    script.write_text(UNEVEN)
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.json")], check=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node=2", str(script), str(tmp_path / "two.json")], check=True)
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose([row[key] for row in two["log"]],
                                   [row[key] for row in one["log"]], rtol=1e-6)
    assert round(two["samples"]) == round(one["samples"]) == 3 * 4 + 3 * 3


@pytest.fixture(scope="module")
def two_processes(prepared_sst2: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, Path, Path]:
    """One uninterrupted run in 2 processes: ``(params, choice, out)``. Dropout is off, so that
    it can be compared with one process, which draws other masks."""
    folder = tmp_path_factory.mktemp("ddp")
    params_path = ddp_params(folder, 2, **RUN)
    choice = write_choice(folder / "choice.json")
    out = folder / "two"
    run_setting(load_params(params_path), TASK, OPTIMIZER, SETTING, prepared_sst2, out, choice,
                progress=False)
    return params_path, choice, out


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(
    prepared_sst2: Path, tmp_path: Path, two_processes: tuple[Path, Path, Path]
) -> None:
    """Same global batch and seed: every step's loss within rtol 1e-4, the same evaluations."""
    _, choice, two_out = two_processes
    one_out = tmp_path / "one"
    one = run_setting(load_params(ddp_params(tmp_path, 1, **RUN)), TASK, OPTIMIZER, SETTING,
                      prepared_sst2, one_out, choice, progress=False)[0]
    two = json.loads((two_out / "seed0" / "metrics.json").read_text())
    one_train, two_train = (pd.read_csv(out / "seed0" / "train.csv") for out in (one_out, two_out))
    one_eval, two_eval = (pd.read_csv(out / "seed0" / "eval.csv") for out in (one_out, two_out))
    assert len(one_train) == RUN["max_steps"] and list(two_train.step) == list(one_train.step)
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
    prepared_sst2: Path, tmp_path: Path, two_processes: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Stopped by SIGTERM to torchrun (as a scheduler preempts) after its first checkpoint."""
    params_path, choice, reference = two_processes
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
    assert sorted(os.listdir(folder)) == sorted(os.listdir(uninterrupted))


@pytest.mark.slow
def test_tuning_in_two_processes_chooses_as_one(prepared_sst2: Path, tmp_path: Path) -> None:
    """The tune stage's launch: the same trials and the same choice, returned and written."""
    choices, tables = [], []
    for nproc in (1, 2):
        params = load_params(ddp_params(tmp_path, nproc, dropout=0.0))
        out = tmp_path / f"tune{nproc}"
        choices.append(tune(params, TASK, OPTIMIZER, SETTING, prepared_sst2, out,
                            checkpoint_dir=tmp_path / f"checkpoints{nproc}", progress=False))
        tables.append(pd.read_csv(out / "trials.csv"))
    assert choices[1].hparams == choices[0].hparams and choices[1].trial == choices[0].trial
    assert choices[1].score == pytest.approx(choices[0].score, rel=1e-6)
    pd.testing.assert_frame_equal(tables[1], tables[0], rtol=1e-6)
    assert not (tmp_path / "checkpoints2").exists()


def test_each_rank_draws_its_own_dropout_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank seeded the same generators; rank 0 keeps that stream (a one-process run is
    unchanged), rank 1 gets its own, the same for the same seed."""
    draws = {}
    for rank in (0, 1, 1):
        torch.manual_seed(7)
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        distributed.seed_dropout(7)
        draws.setdefault(rank, []).append(torch.rand(4))
    torch.manual_seed(7)
    assert torch.equal(draws[0][0], torch.rand(4))
    assert not torch.equal(draws[0][0], draws[1][0])
    assert torch.equal(draws[1][0], draws[1][1])
