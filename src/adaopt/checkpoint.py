"""Checkpoints from which an interrupted training run resumes as if it had never stopped.

A resumed run must reproduce the uninterrupted one bit for bit (metrics.json is compared byte for
byte), so a checkpoint holds more than weights: the optimizer and scheduler states, every random
number generator the loop draws from (Python, NumPy, torch CPU and CUDA for dropout, the data
generator for the order of the examples), the position in the data and the loop's bookkeeping.

* :func:`save_checkpoint` writes atomically: a crash while saving leaves the previous checkpoint.
* :func:`load_checkpoint` restores everything in place and returns what the loop needs to go on.
* :class:`ResumableBatches` replaces ``endless(loader)``: it yields exactly the same batches, and
  its :meth:`~ResumableBatches.position` can be saved and restored.

Files are loaded with ``torch.load(weights_only=True)``: a checkpoint holds only tensors and plain
Python data, so loading one never runs code from the file.
"""

from __future__ import annotations

import glob
import os
import random
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, IterableDataset, SequentialSampler
from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

from adaopt.io import atomic_path

__all__ = [
    "FORMAT",
    "CheckpointError",
    "DataPosition",
    "ResumableBatches",
    "global_rng_states",
    "load_checkpoint",
    "save_checkpoint",
]

#: Version of the checkpoint layout; a file of another version is refused rather than misread.
FORMAT = 2
_KEYS = ("format", "step", "model", "optimizer", "scheduler", "rng", "data_position", "loop_state")
_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, of another format, or of other data."""


class DataPosition(TypedDict):
    """Where a :class:`ResumableBatches` stands; a plain dict, so it is saved as is.

    ``generator_state`` is the data generator's state from which epoch ``epoch``'s iterator is
    (or, when ``batches`` is 0, will be) created: the sampler draws the epoch's order from it.
    """

    epoch: int
    batches: int  # batches already taken from epoch ``epoch``
    batches_per_epoch: int  # len(loader), to refuse a checkpoint of other data or batch size
    generator_state: torch.Tensor | None


# --------------------------------------------------------------------------- random generators


def global_rng_states() -> dict[str, Any]:
    """The process-wide generators, in plain types (``weights_only`` loading refuses ndarrays).

    NumPy's is the legacy global one on purpose: it is what ``set_seed`` seeds and code draws from.
    """
    _, key, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": {"key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_global_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy = states["numpy"]
    key = np.array(numpy["key"], dtype=np.uint32)
    legacy = ("MT19937", key, numpy["pos"], numpy["has_gauss"], numpy["gauss"])
    np.random.set_state(legacy)  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    # A checkpoint written without CUDA has no CUDA state; one resumed without CUDA needs none.
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """Leave the process-wide generators as they were, whatever the block draws from them."""
    states = global_rng_states()
    try:
        yield
    finally:
        _set_global_rng_states(states)


# --------------------------------------------------------------------------- checkpoint files


def _check_plain(value: Any, where: str) -> None:
    """Fail when saving, not hours later when resuming: ``weights_only`` loading refuses
    anything but tensors and plain Python data. Types are checked exactly, since subclasses
    (``numpy.float64`` is a float, ``defaultdict`` a dict) are pickled as their own class."""
    kind = type(value)
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, not str or int")
            _check_plain(item, f"{where}[{key!r}]")
    elif kind in (list, tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif kind not in _SCALARS and not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}; a checkpoint holds only "
            "tensors and plain Python data (convert NumPy scalars with float() or int())"
        )


def _remove_stale_temps(path: Path) -> None:
    """A save killed mid-write (SIGKILL runs no ``finally``) leaves atomic_path's temp file."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    generator: torch.Generator | None,
    step: int,
    data_position: DataPosition,
    loop_state: dict[str, Any],
    rank_rngs: list[dict[str, Any]] | None = None,
) -> None:
    """Write everything a run needs to go on after ``step`` optimizer steps.

    Atomic (temp file in the same folder, fsynced, then renamed over ``path``), so a crash at
    any point leaves either the previous checkpoint or this one, never a truncated file.
    ``generator`` is the data loader's generator (``ResumableBatches.generator``);
    ``loop_state`` is the loop's own bookkeeping, in plain Python data; anything else (in it,
    or in the optimizer's or the scheduler's state) raises ``TypeError`` before writing.
    ``rank_rngs`` are a data-parallel run's :func:`global_rng_states` of every process, in rank
    order: each process draws its own dropout masks, so each resumes from its own generators.
    """
    rng = global_rng_states()
    rng["data"] = generator.get_state() if generator is not None else None
    if rank_rngs is not None:
        rng["ranks"] = rank_rngs
    state = {
        "format": FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "data_position": dict(data_position),
        "loop_state": loop_state,
    }
    for part in ("optimizer", "scheduler", "loop_state"):  # the model's state is all tensors
        _check_plain(state[part], part)
    path = Path(path)
    _remove_stale_temps(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())  # else a power cut after the rename can leave an empty file


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _read(path: Path) -> dict[str, Any]:
    # Opened here so that a missing or unreadable file keeps the OS's own error, which names it.
    with open(path, "rb") as file:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged file raises anything from EOFError to OSError
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_one_line(error)})"
                                  ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not an adaopt checkpoint of format {FORMAT} ({found!r})")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return state


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    generator: torch.Generator | None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[int, DataPosition, dict[str, Any]]:
    """Restore a checkpoint into freshly built objects; return ``(step, data_position,
    loop_state)``.

    Move the model to its device first: the optimizer puts its state on its parameters' device.
    Then hand ``data_position`` to :meth:`ResumableBatches.restore`, whose loader draws from
    ``generator``. Raises :class:`CheckpointError` (naming the file) for an unusable file.
    Process ``rank`` of a data-parallel run of ``world_size`` processes gets back its own
    generators when the checkpoint holds that many; otherwise (a run of another process count)
    every process takes rank 0's, which keeps the data order and all but the dropout draws.
    """
    path = Path(path)
    state = _read(path)
    rng = state["rng"]
    if (rng["data"] is None) != (generator is None):
        raise CheckpointError(f"{path}: the checkpoint and the loader disagree on having a data "
                              "generator: not the loader of the interrupted run")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])  # after the optimizer: AdaptiveLR sets its lr
    if generator is not None:
        generator.set_state(rng["data"])
    ranks = rng.get("ranks")
    _set_global_rng_states(ranks[rank] if ranks and len(ranks) == world_size else rng)
    return state["step"], state["data_position"], state["loop_state"]


# --------------------------------------------------------------------------- the data stream


def _data_generator(loader: DataLoader) -> torch.Generator | None:
    """The one generator the loader's order comes from (None for a fixed order).

    A random sampler without a generator draws from the global torch RNG when each epoch
    starts; that draw cannot be replayed on its own, so such loaders are refused.
    """
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError("ResumableBatches needs a map-style dataset: an iterable one has "
                         "its own order, which cannot be replayed from indices")
    if loader.persistent_workers:
        raise ValueError("persistent_workers draws the workers' seed only in the first epoch; "
                         "a resumed iterator would draw it again and shift the order")
    sampler = getattr(loader.batch_sampler, "sampler", loader.sampler)
    if isinstance(sampler, SequentialSampler):
        return loader.generator
    own = getattr(sampler, "generator", None)
    if own is None:
        raise ValueError(f"{type(sampler).__name__} has no torch.Generator, so its order comes "
                         "from the global RNG and cannot be replayed: give it a seeded one")
    if loader.generator is not None and loader.generator is not own:
        raise ValueError("the DataLoader and its sampler draw from two generators; give both "
                         "the same one (as adaopt.training.make_loader does)")
    return own


class ResumableBatches(Iterator[Any]):
    """Batches from ``loader`` epoch after epoch, exactly as ``while True: yield from loader``.

    The sampler draws an epoch's order from the generator when the epoch's iterator starts, so
    the position records the generator state from before that draw plus the number of batches
    taken. :meth:`restore` sets that state, starts the epoch again and skips the batches taken
    by drawing their indices only (no loading or collating, with ``num_workers=0``).
    """

    def __init__(self, loader: DataLoader) -> None:
        self.generator = _data_generator(loader)
        if len(loader) == 0:
            raise ValueError("the loader yields no batch")
        self.loader = loader
        self.epoch = 0
        self.batches = 0
        self._iterator: Iterator[Any] | None = None
        self._epoch_state: torch.Tensor | None = None

    def _start_epoch(self) -> Iterator[Any]:
        self._epoch_state = self.generator.get_state() if self.generator is not None else None
        self._iterator = iter(self.loader)
        self.batches = 0
        return self._iterator

    def __next__(self) -> Any:
        iterator = self._iterator if self._iterator is not None else self._start_epoch()
        try:
            batch = next(iterator)
        except StopIteration:
            self.epoch += 1
            batch = next(self._start_epoch())
        self.batches += 1
        return batch

    def position(self) -> DataPosition:
        """Where the stream stands; the next batch is the first one a restored stream yields."""
        started = self._iterator is not None
        if started:
            state = self._epoch_state
        else:
            state = self.generator.get_state() if self.generator is not None else None
        return DataPosition(epoch=self.epoch, batches=self.batches,
                            batches_per_epoch=len(self.loader), generator_state=state)

    def restore(self, position: DataPosition) -> None:
        """Go back to ``position``; call it after :func:`load_checkpoint`.

        The replay draws from the process-wide generators exactly as the interrupted run did,
        and their checkpointed states already include those draws, so they are put back as they
        were. Landing on the data generator state that :func:`load_checkpoint` restored proves
        the replay retraced the interrupted run; anything else raises :class:`CheckpointError`.
        """
        per_epoch = len(self.loader)
        if position["batches_per_epoch"] != per_epoch or not 0 <= position["batches"] <= per_epoch:
            raise CheckpointError(
                f"the checkpoint stands at batch {position['batches']} of "
                f"{position['batches_per_epoch']} per epoch; this loader has {per_epoch} "
                "batches per epoch: other data or another batch size"
            )
        if (position["generator_state"] is None) != (self.generator is None):
            raise CheckpointError("the checkpoint and this loader disagree on having a generator")
        expected = self.generator.get_state() if self.generator is not None else None
        with _global_rngs_kept():
            if self.generator is not None:
                self.generator.set_state(position["generator_state"])
            self.epoch, self.batches, self._iterator = position["epoch"], 0, None
            if position["batches"] > 0:  # an epoch not started yet starts when asked, as before
                iterator = self._start_epoch()
                for _ in range(position["batches"]):
                    _skip(iterator)
                self.batches = position["batches"]
        if self.generator is not None and not torch.equal(self.generator.get_state(), expected):
            raise CheckpointError(
                "replaying the data position did not reach the checkpoint's data generator "
                "state: restore after load_checkpoint, with the data, batch size and sampler "
                "of the interrupted run"
            )


def _skip(iterator: Iterator[Any]) -> None:
    """Advance one batch; a single-process iterator only draws the batch's indices."""
    if isinstance(iterator, _SingleProcessDataLoaderIter):
        # Private but long-stable torch API: the sampler's step without fetching and collating.
        iterator._next_index()
    else:  # worker processes prefetch indices on their own: take whole batches
        next(iterator)
