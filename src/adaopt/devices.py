"""One GPU per run: runs that share a machine (queued experiments, ``dvc repro`` started several
times) each take a visible GPU of their own, and give it back when they end.

A run holds an exclusive ``flock`` on one lock file per GPU. The kernel drops the lock when the
process exits, however it exits, so a killed run frees its GPU without any clean-up. Lock files
are named by the GPU's entry in ``CUDA_VISIBLE_DEVICES`` (an index or a UUID), so runs that see
the GPUs in different orders still agree on which one is taken. When every GPU is held, a run
waits for one, or trains on the CPU (``train.busy_gpus``).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

LOCK_DIR_ENV = "ADAOPT_DEVICE_LOCKS"
BusyPolicy = Literal["wait", "cpu"]


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
              log: Callable[[str], None] = print) -> Iterator[str]:
    """Hold a free GPU of the ``count`` visible ones while the block runs; yields its device
    string (``cuda:<index>``), or ``cpu`` when ``count`` is 0 or every GPU is held and
    ``busy`` is ``cpu``. ``busy="wait"`` polls every ``poll_s`` seconds until one is free."""
    if count == 0:
        yield "cpu"
        return
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    names, waited = visible_gpus(count), False
    while True:
        for index, name in enumerate(names):
            descriptor = _try_lock(folder / f"gpu-{name}.lock")
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


__all__ = ["LOCK_DIR_ENV", "BusyPolicy", "claim_gpu", "lock_dir", "visible_gpus"]
