"""Tests of adaopt.checkpoint on a tiny MLP and synthetic data (CPU, one thread, seconds)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import get_scheduler

from adaopt.checkpoint import (
    CheckpointError,
    ResumableBatches,
    load_checkpoint,
    save_checkpoint,
)
from adaopt.optim import OPTIMIZERS, build_method
from adaopt.training import LengthGroupedBatches

BATCH = 4
EXAMPLES = 22  # 6 batches per epoch, the last one short
PER_EPOCH = 6
STEPS = 20  # a bit over three epochs
SAMPLERS = ("shuffle", "length_grouped")


def endless(loader: DataLoader) -> Iterator[Any]:
    """The plain stream the training loop used before it could resume: epoch after epoch."""
    while True:
        yield from loader


pytestmark = pytest.mark.usefixtures("one_thread")


class Counted(Dataset):
    """Synthetic features and labels that count how often examples are fetched."""

    def __init__(self, size: int) -> None:
        rng = torch.Generator().manual_seed(1)
        self.x = torch.randn(size, 4, generator=rng)
        self.y = (self.x.sum(1) > 0).long()
        self.lengths = torch.randint(3, 30, (size,), generator=rng).tolist()
        self.fetched = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.fetched += 1
        return self.x[index], self.y[index]


def make_loader(sampler: str, size: int = EXAMPLES, batch_size: int = BATCH) -> DataLoader:
    """Both kinds as adaopt.training.make_loader builds them: one seeded generator shared."""
    data = Counted(size)
    generator = torch.Generator().manual_seed(7)
    if sampler == "shuffle":
        return DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator)
    grouped = LengthGroupedBatches(data.lengths, batch_size, generator, mega_batches=2)
    return DataLoader(data, batch_size=batch_size, sampler=grouped, generator=generator)


def take(batches: Iterator[Any], count: int) -> list[torch.Tensor]:
    return [x for x, _ in itertools.islice(batches, count)]


# --------------------------------------------------------------------------- the data stream


@pytest.mark.parametrize("size", [EXAMPLES, 24])  # 24: the sampler ends exactly on a batch
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_stream_yields_what_endless_yields(sampler: str, size: int) -> None:
    """A drop-in replacement: introducing it changes no batch of an uninterrupted run."""
    expected = take(endless(make_loader(sampler, size)), 20)
    got = take(ResumableBatches(make_loader(sampler, size)), 20)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert not torch.equal(got[0], got[6])  # epochs differ: the test can see a wrong order


@pytest.mark.parametrize("size", [EXAMPLES, 24])
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("taken", [0, 3, 6, 7, 12, 13])  # start, mid-epoch, epoch boundaries
def test_restored_stream_goes_on_with_the_same_batches(sampler: str, size: int,
                                                       taken: int) -> None:
    original = ResumableBatches(make_loader(sampler, size))
    take(original, taken)
    position = original.position()
    data_state = original.generator.get_state()
    expected = take(original, 14)

    resumed = ResumableBatches(make_loader(sampler, size))
    resumed.generator.set_state(data_state)  # what load_checkpoint does
    resumed.restore(position)
    assert resumed.loader.dataset.fetched == 0  # skipped batches were neither fetched nor collated
    assert (resumed.epoch, resumed.batches) == (position["epoch"], position["batches"])
    got = take(resumed, 14)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_restore_refuses_other_data() -> None:
    original = ResumableBatches(make_loader("shuffle"))
    take(original, 3)
    position, data_state = original.position(), original.generator.get_state()

    other_batch_size = ResumableBatches(make_loader("shuffle", batch_size=5))
    with pytest.raises(CheckpointError, match="batches per epoch"):
        other_batch_size.restore(position)

    more_data = ResumableBatches(make_loader("shuffle", size=EXAMPLES + 1))  # still 6 batches
    more_data.generator.set_state(data_state)
    with pytest.raises(CheckpointError, match="generator state"):
        more_data.restore(position)


def test_restore_leaves_the_global_rngs_alone() -> None:
    """A loader without a generator of its own draws its workers' seed from the global torch RNG
    at every epoch start; the replay repeats that draw, which the checkpoint already holds."""
    def loader() -> DataLoader:
        data = Counted(EXAMPLES)
        sampler = LengthGroupedBatches(data.lengths, BATCH, torch.Generator().manual_seed(7))
        return DataLoader(data, batch_size=BATCH, sampler=sampler)

    original = ResumableBatches(loader())
    take(original, 8)
    position, data_state = original.position(), original.generator.get_state()
    expected = take(original, 8)
    resumed = ResumableBatches(loader())
    resumed.generator.set_state(data_state)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    resumed.restore(position)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(expected, take(resumed, 8), strict=True))


def test_loaders_whose_order_cannot_be_replayed_are_refused() -> None:
    with pytest.raises(ValueError, match="global RNG"):
        ResumableBatches(DataLoader(Counted(8), batch_size=BATCH, shuffle=True))
    two = LengthGroupedBatches([1] * 8, BATCH, torch.Generator())
    with pytest.raises(ValueError, match="two generators"):
        ResumableBatches(DataLoader(Counted(8), BATCH, sampler=two, generator=torch.Generator()))


# --------------------------------------------------------------------------- training round trip


class Run:
    """A tiny MLP with dropout (so the torch RNG matters), AdamW, warmup + linear decay."""

    def __init__(self, sampler: str) -> None:
        torch.manual_seed(0)  # the same initial weights in every run, as seed_everything gives
        self.model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.05, weight_decay=0.01)
        self.scheduler = get_scheduler("linear", self.optimizer, num_warmup_steps=3,
                                       num_training_steps=STEPS)
        self.batches = ResumableBatches(make_loader(sampler))
        self.losses: list[float] = []

    def train_to(self, steps: int) -> None:
        while len(self.losses) < steps:
            x, y = next(self.batches)
            loss = nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.losses.append(loss.item())

    def save(self, path: Path) -> None:
        save_checkpoint(path, model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, generator=self.batches.generator,
                        step=len(self.losses), data_position=self.batches.position(),
                        loop_state={"losses": self.losses})

    def load(self, path: Path) -> int:
        step, position, loop_state = load_checkpoint(
            path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            generator=self.batches.generator)
        self.batches.restore(position)
        self.losses = loop_state["losses"]
        return step


def assert_same_run(a: Run, b: Run) -> None:
    assert a.losses == b.losses
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]  # lr, initial_lr, ... exactly equal
    assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]
    for index, state in sa["state"].items():
        for key, value in state.items():
            assert torch.equal(value, sb["state"][index][key]), (index, key)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("at", [8, 2 * PER_EPOCH])  # mid-epoch, epoch boundary
def test_resumed_run_equals_uninterrupted_run(sampler: str, at: int, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    uninterrupted = Run(sampler)
    torch.manual_seed(123)
    uninterrupted.train_to(STEPS)

    interrupted = Run(sampler)
    torch.manual_seed(123)
    interrupted.train_to(at)
    interrupted.save(path)

    torch.manual_seed(999)  # a new process: other global random state, fresh objects
    resumed = Run(sampler)
    assert resumed.load(path) == at
    resumed.train_to(STEPS)
    assert_same_run(resumed, uninterrupted)


def test_random_generators_round_trip(tmp_path: Path) -> None:
    run = Run("shuffle")
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002 (the global NumPy generator is the one checkpointed)
    np.random.standard_normal()  # noqa: NPY002 (leaves a cached Gaussian in the state)
    run.save(tmp_path / "run.pt")

    def draws() -> tuple[Any, ...]:
        return (random.random(), np.random.standard_normal(3).tolist(),  # noqa: NPY002
                torch.rand(3).tolist(), torch.rand(3, generator=run.batches.generator).tolist())

    expected = draws()
    run.load(tmp_path / "run.pt")
    assert draws() == expected


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_state_loads_as_weights_only(name: str, tmp_path: Path) -> None:
    """Every registered optimizer's state is plain data (AdaptiveAdam's controller included)."""
    def build() -> Run:
        run = Run("shuffle")
        run.optimizer, controller = build_method(name, run.model, lr=1e-3)
        run.scheduler = controller or get_scheduler("cosine", run.optimizer, num_warmup_steps=2,
                                                    num_training_steps=STEPS)
        return run

    original = build()
    original.train_to(3)
    if name == "adaptive_adam":
        original.scheduler.report(0.5)
        original.scheduler.report(0.4)  # patience 3 not reached: the counter must be restored
    original.save(tmp_path / "run.pt")
    original.train_to(5)
    resumed = build()
    resumed.load(tmp_path / "run.pt")
    resumed.train_to(5)
    assert_same_run(resumed, original)


class Fraction:
    def __call__(self, step: int) -> float:
        return 1.0


def test_loop_state_must_be_plain_data(tmp_path: Path) -> None:
    run = Run("shuffle")
    with pytest.raises(TypeError, match=r"loop_state\['best'\]\['accuracy'\] is a numpy"):
        save_checkpoint(tmp_path / "run.pt", model=run.model, optimizer=run.optimizer,
                        scheduler=run.scheduler, generator=run.batches.generator, step=0,
                        data_position=run.batches.position(),
                        loop_state={"best": {"accuracy": np.float64(0.5)}})
    run.scheduler.lr_lambdas[0] = Fraction()  # a callable object: its __dict__ is saved
    run.scheduler.lr_lambdas[0].__dict__["base"] = np.float64(1.0)
    with pytest.raises(TypeError, match=r"scheduler\['lr_lambdas'\]\[0\]\['base'\] is a numpy"):
        run.save(tmp_path / "run.pt")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the file


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.pt"
    run = Run("shuffle")
    run.train_to(2)
    run.save(path)
    before = path.read_bytes()

    def torch_save_dies_midway(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    run.train_to(4)
    monkeypatch.setattr(torch, "save", torch_save_dies_midway)
    with pytest.raises(OSError, match="No space left"):
        run.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temp file left
    assert Run("shuffle").load(path) == 2


def test_save_removes_the_temp_file_of_a_killed_save(tmp_path: Path) -> None:
    stale = tmp_path / ".run.pt.k1ll3d.tmp"  # atomic_path's name for run.pt's temp file
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.pt.abc.tmp"
    other.write_bytes(b"another file's")
    Run("shuffle").save(tmp_path / "run.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "run.pt"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_unreadable_checkpoint_is_one_clear_error(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    run = Run("shuffle")
    run.save(path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                      "garbage": b"not a checkpoint\n" * 8}[damage])
    with pytest.raises(CheckpointError) as error:
        run.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: corrupt or truncated checkpoint")
    assert "\n" not in message


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match=f"{path}: not an adaopt checkpoint"):
        Run("shuffle").load(path)
