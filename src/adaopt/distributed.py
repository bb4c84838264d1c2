"""Data-parallel runs: the process group, who writes, and the sums the loop shares.

``train.nproc > 1`` runs a stage's training under ``torchrun`` (:func:`launch`): one process per
device (gloo on CPUs, NCCL on CUDA with ``cuda:LOCAL_RANK``), each taking its contiguous shard
of every global batch (:class:`adaopt.training.ShardedBatches`), gradients averaged by
``DistributedDataParallel``. Outside a process group every helper here is the identity or a
no-op, so a single-process run takes exactly the path it always took.
"""

from __future__ import annotations

import codecs
import datetime
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from adaopt.hooks import runner


def launched() -> bool:
    """Whether this process was started by torchrun (or any launcher setting its variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group is up: collectives are needed and only rank 0 writes."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, the one process that writes outputs and checkpoints."""
    return rank() == 0


def init(timeout_s: int) -> None:
    """Join the group torchrun set up; on CUDA each process owns ``cuda:LOCAL_RANK``.

    A collective that waits longer than ``timeout_s`` (``train.dist_timeout_s``) fails the run:
    long enough for rank 0 to score the selection split while the others wait for its scores.
    """
    timeout = datetime.timedelta(seconds=timeout_s)
    if torch.cuda.is_available():
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but this node has "
                             f"{torch.cuda.device_count()} GPUs: lower train.nproc")
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local), timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def seed_dropout(seed: int) -> None:
    """Give each process its own dropout stream: every rank seeded the same generators (the
    same initialization and data order), so without this all ranks draw the same masks.
    Rank 0 keeps the single-process stream; the others' seeds are derived from ``seed``."""
    if rank() > 0:
        torch.manual_seed(1_000_003 * (seed + 1) + rank())


def destroy() -> None:
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until rank 0 has written what the other ranks read next."""
    if active():
        dist.barrier()


def wrap(model: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """``model`` under DDP in a process group (its parameters then start as rank 0's), else
    ``model`` itself. Checkpoints and evaluations keep using the unwrapped module."""
    if not active():
        return model
    ids = [torch.cuda.current_device()] if dev.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def syncing(net: torch.nn.Module, last: bool) -> Any:
    """Gradient accumulation: all-reduce the gradients on the last micro-batch only."""
    if isinstance(net, DistributedDataParallel) and not last:
        return net.no_sync()
    return nullcontext()


def all_sum(values: list[float]) -> list[float]:
    """The sums over ranks (in float64: counts stay exact); ``values`` when not distributed."""
    if not active():
        return values
    on_gpu = dist.get_backend() == "nccl"  # NCCL reduces GPU tensors only
    dev = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sum_in_place(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place and on its device (no host read); itself when
    not distributed."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank: one decision where the ranks' clocks differ."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (picklable objects)."""
    if not active():
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


@contextmanager
def joined(timeout_s: int) -> Iterator[None]:
    """Started by torchrun: be in its process group for the block; otherwise nothing."""
    if not launched():
        yield
        return
    init(timeout_s)
    try:
        yield
    finally:
        destroy()


def launch(nproc: int, args: list[str]) -> None:
    """Run ``python -m adaopt <args>`` as ``nproc`` processes on this node; raise if it fails
    (``CalledProcessError``; the workers' tracebacks are in the output above it).

    Its output is copied to ``sys.stdout`` as it comes, so that a notebook cell shows it, and
    from a notebook also to the stage's log (:mod:`adaopt.hooks`), where rank 0's
    progress lines belong; the results are the files rank 0 wrote, which the caller reads back.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "adaopt", *args]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None
        try:
            while chunk := child.stdout.read1():
                text = decoder.decode(chunk)
                sys.stdout.write(text)
                sys.stdout.flush()
                runner().log(text)
        except BaseException:  # an interrupted cell: torchrun stops its workers on SIGTERM
            child.terminate()
            raise
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
