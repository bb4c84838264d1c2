"""One GPU per run: runs that share a machine (queued experiments, ``dvc repro`` started several
times) each take a visible GPU of their own, and give it back when they end.

A run holds an exclusive ``flock`` on one lock file per GPU. The kernel drops the lock when the
process exits, however it exits, so a killed run frees its GPU without any clean-up. Lock files
are named by the GPU's physical identity, its UUID as CUDA reports it for the device it opened
(:func:`physical_gpus`), not by what ``CUDA_VISIBLE_DEVICES`` calls it: under a scheduler's
device cgroups (SLURM) every job sees its own GPU as ``0``, and one GPU may be named by its index
in one run and its UUID in another. Runs that see the GPUs in different orders, by other names,
or each its own as ``0`` thus agree on which one is taken, and a MIG instance is one GPU of its
own. Where CUDA cannot say (no CUDA build, a torch without UUIDs), the entries of
``CUDA_VISIBLE_DEVICES`` name them, as the best left. When every GPU is held, a run waits for
one, saying so in the stage's log, or trains on the CPU (``train.busy_gpus``).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from adaopt.hooks import BusyPolicy
from adaopt.runner.logbar import in_kernel, write_log

LOCK_DIR_ENV = "ADAOPT_DEVICE_LOCKS"


def lock_dir() -> Path:
    """Where the locks live: ``$ADAOPT_DEVICE_LOCKS``, else one folder per user in the
    system's temporary directory (every run of this user on this machine sees it)."""
    default = Path(tempfile.gettempdir()) / f"adaopt-devices-{os.getuid()}"
    return Path(os.environ.get(LOCK_DIR_ENV, default))


def visible_gpus(count: int) -> list[str]:
    """The names of the ``count`` GPUs this process sees, in CUDA's order: the entries of
    ``CUDA_VISIBLE_DEVICES`` where it is set, else their indices."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in listed.split(",") if name.strip()] if listed else []
    return names[:count] if names else [str(index) for index in range(count)]


def physical_gpus(count: int) -> list[str]:
    """The physical identities of the ``count`` GPUs this process sees, in CUDA's order: each
    device's UUID as CUDA reports it (``GPU-<uuid>``; a MIG instance has its own), so that every
    name of one GPU, and each cgroup's ``0``, come to the same identity; the names of
    :func:`visible_gpus` where CUDA cannot say."""
    try:
        import torch

        found = [str(torch.cuda.get_device_properties(index).uuid) for index in range(count)]
    except Exception:  # no CUDA build or driver, a torch without uuid: many kinds of error
        return visible_gpus(count)
    if not all(found):
        return visible_gpus(count)
    return [uuid if uuid.upper().startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            for uuid in found]


def lock_name(gpu: str) -> str:
    """A GPU's lock file name: its identity with every character but letters, digits, ``.``,
    ``_`` and ``-`` made ``_`` (a MIG name ``MIG-GPU-<uuid>/1/0`` holds slashes)."""
    return f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', gpu)}.lock"


def announce(line: str) -> None:
    """Say ``line`` in the stage's log (:func:`adaopt.runner.logbar.write_log`), and in the notebook
    when in one: a stage waiting for a GPU must not look hung in ``dvc queue logs``."""
    write_log(f"{line}\n")
    if in_kernel():
        print(line)


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``path``'s exclusive lock, or None if another process has it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())  # who holds it, for a curious reader
    return descriptor


@contextmanager
def claim_gpu(count: int, busy: BusyPolicy = "wait", poll_s: float = 2.0,
              log: Callable[[str], None] = announce) -> Iterator[str]:
    """Hold a free GPU of the ``count`` visible ones while the block runs; yields its device
    string (``cuda:<index>``), or ``cpu`` when ``count`` is 0 or every GPU is held and
    ``busy`` is ``cpu``. ``busy="wait"`` polls every ``poll_s`` seconds until one is free.
    GPUs are locked by :func:`physical_gpus`; ``log`` gets the line saying a run waits."""
    if count == 0:
        yield "cpu"
        return
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    names, waited = physical_gpus(count), False
    while True:
        for index, name in enumerate(names):
            descriptor = _try_lock(folder / lock_name(name))
            if descriptor is not None:
                try:
                    yield f"cuda:{index}"
                finally:
                    os.close(descriptor)  # releases the lock
                return
        if busy == "cpu":
            log(f"all {count} GPUs are held by other runs: training on the CPU (train.busy_gpus)")
            yield "cpu"
            return
        if not waited:
            log(f"all {count} GPUs are held by other runs: waiting for one (train.busy_gpus)")
            waited = True
        time.sleep(poll_s)


__all__ = ["LOCK_DIR_ENV", "BusyPolicy", "announce", "claim_gpu", "lock_dir", "lock_name",
           "physical_gpus", "visible_gpus"]
