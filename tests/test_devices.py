"""One GPU per run, on the CPU: processes that claim from a simulated GPU count get distinct
devices, a killed one frees its device, a run finding every GPU held waits (saying so in its
log) or takes the CPU, and locks follow the GPUs' simulated UUIDs, not their names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from adaopt.runner import hooks as runner_hooks
from adaopt.runner.devices import LOCK_DIR_ENV, claim_gpu, lock_name, physical_gpus, visible_gpus

HOLDER = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from adaopt.runner.devices import announce, claim_gpu
count, busy, release, uuids = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
if uuids:  # what CUDA would report for the devices this process sees
    import torch
    torch.cuda.get_device_properties = lambda index: SimpleNamespace(uuid=uuids.split()[index])
log = announce if sys.argv[5] == "log" else lambda line: None
with claim_gpu(count, busy=busy, poll_s=0.05, log=log) as device:
    print(device, flush=True)
    while not release.exists():
        time.sleep(0.02)
"""


class Holders:
    """Processes that each claim a device, print it and hold it until released."""

    def __init__(self, tmp: Path) -> None:
        self.release, self.processes = tmp / "release", []
        self.env = {**os.environ, LOCK_DIR_ENV: str(tmp / "locks")}

    def start(self, count: int, busy: str = "wait", uuids: str = "", log: bool = False,
              **env: str) -> subprocess.Popen:
        """A holder seeing ``count`` GPUs, whose CUDA reports ``uuids`` (space-separated; none:
        CUDA cannot say), and whose waiting line goes to its standard error if ``log``."""
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(count), busy,
                                    str(self.release), uuids, "log" if log else ""],
                                   env={**self.env, **env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE if log else None, text=True)
        self.processes.append(process)
        return process

    def device(self, process: subprocess.Popen) -> str:
        return process.stdout.readline().strip()

    def stop(self) -> None:
        self.release.touch()
        for process in self.processes:
            process.wait(timeout=30)


@pytest.fixture
def holders(tmp_path: Path):
    holders = Holders(tmp_path)
    yield holders
    holders.stop()


def test_concurrent_runs_get_distinct_devices(holders: Holders) -> None:
    processes = [holders.start(4) for _ in range(4)]
    devices = [holders.device(process) for process in processes]
    assert sorted(devices) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_a_run_finding_every_gpu_held_takes_the_cpu_when_so_configured(holders: Holders) -> None:
    first, second = holders.start(2), holders.start(2)
    assert {holders.device(first), holders.device(second)} == {"cuda:0", "cuda:1"}
    assert holders.device(holders.start(2, busy="cpu")) == "cpu"


def test_a_killed_run_frees_its_device_for_a_waiting_one(holders: Holders) -> None:
    first, second = holders.start(2), holders.start(2)
    taken = {holders.device(first): first, holders.device(second): second}
    waiting = holders.start(2, busy="wait")
    time.sleep(0.5)
    assert waiting.poll() is None  # still waiting: both GPUs are held
    taken["cuda:1"].send_signal(signal.SIGKILL)
    assert holders.device(waiting) == "cuda:1"


def test_runs_agree_on_a_gpu_whatever_order_they_see_them_in(holders: Holders) -> None:
    """Where CUDA cannot say which GPU is which, locks are named by CUDA_VISIBLE_DEVICES'
    entries: GPU 5 taken as cuda:0 by one run is the cuda:1 the other run must not take."""
    first = holders.start(2, CUDA_VISIBLE_DEVICES="5,3")
    assert holders.device(first) == "cuda:0"  # physical GPU 5
    assert holders.device(holders.start(2, CUDA_VISIBLE_DEVICES="3,5")) == "cuda:0"  # GPU 3
    assert holders.device(holders.start(2, "cpu", CUDA_VISIBLE_DEVICES="3,5")) == "cpu"


def test_cgroup_isolated_jobs_that_each_see_their_gpu_as_0_do_not_wait_on_each_other(
    holders: Holders,
) -> None:
    """Two SLURM jobs on one node with a shared /tmp: each sees its own GPU as
    CUDA_VISIBLE_DEVICES=0, which CUDA reports by its own UUID; both take it at once. A third
    job given the first one's GPU (by a cgroup's index 0, or by its UUID) finds it held."""
    first = holders.start(1, uuids="GPU-aaaa-1111", CUDA_VISIBLE_DEVICES="0")
    second = holders.start(1, uuids="GPU-bbbb-2222", CUDA_VISIBLE_DEVICES="0")
    assert (holders.device(first), holders.device(second)) == ("cuda:0", "cuda:0")
    for name in ("0", "GPU-aaaa-1111"):
        again = holders.start(1, "cpu", uuids="GPU-aaaa-1111", CUDA_VISIBLE_DEVICES=name)
        assert holders.device(again) == "cpu"


def test_an_index_and_a_uuid_of_one_gpu_are_one_lock(holders: Holders) -> None:
    """GPU 3 named by its index in one run and by its UUID in another; CUDA's bare UUID (no
    ``GPU-``) is the same GPU as the prefixed one."""
    by_index = holders.start(1, uuids="0c1d-3333", CUDA_VISIBLE_DEVICES="3")
    assert holders.device(by_index) == "cuda:0"
    by_uuid = holders.start(1, "cpu", uuids="GPU-0c1d-3333", CUDA_VISIBLE_DEVICES="GPU-0c1d-3333")
    assert holders.device(by_uuid) == "cpu"


def test_a_mig_instance_makes_a_valid_lock_of_its_own(holders: Holders) -> None:
    """A MIG name holds slashes (``MIG-GPU-<uuid>/1/0``): its lock file is still one file, and
    two instances of one GPU are two devices."""
    mig = "MIG-GPU-5b3b-4444/1/0"
    assert lock_name(mig) == "gpu-MIG-GPU-5b3b-4444_1_0.lock"
    first = holders.start(1, CUDA_VISIBLE_DEVICES=mig)  # CUDA cannot say: the name is used
    assert holders.device(first) == "cuda:0"
    assert holders.device(holders.start(1, "cpu", CUDA_VISIBLE_DEVICES=mig)) == "cpu"
    other = holders.start(1, uuids="MIG-7e8f-5555", CUDA_VISIBLE_DEVICES="MIG-GPU-5b3b-4444/2/0")
    assert holders.device(other) == "cuda:0"
    assert sorted(path.name for path in (holders.release.parent / "locks").iterdir()) == [
        "gpu-MIG-7e8f-5555.lock", "gpu-MIG-GPU-5b3b-4444_1_0.lock"]


def test_a_run_waiting_for_a_gpu_says_so_in_its_log(holders: Holders) -> None:
    """The line goes to the process's standard error, which in a stage's kernel is the log
    ``dvc repro`` writes (:func:`adaopt.runner.logbar.write_log`), not to the notebook alone."""
    holders.device(holders.start(1, uuids="GPU-cccc"))
    waiting = holders.start(1, uuids="GPU-cccc", log=True)
    assert waiting.stderr.readline() == (
        "all 1 GPUs are held by other runs: waiting for one (train.busy_gpus)\n")
    assert waiting.poll() is None


def test_no_gpu_is_the_cpu_and_the_lock_is_released_on_exit(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with claim_gpu(0) as device:
        assert device == "cpu"
    for _ in range(2):  # the same process claims it again: the first claim let it go
        with claim_gpu(1, busy="cpu") as device:
            assert device == "cuda:0"
    assert visible_gpus(3) == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ab12, GPU-cd34")
    assert visible_gpus(2) == ["GPU-ab12", "GPU-cd34"]


def test_a_gpu_is_named_by_the_uuid_cuda_reports_else_by_its_visible_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,MIG-GPU-ab/1/0")
    assert physical_gpus(2) == ["2", "MIG-GPU-ab/1/0"]  # a CPU build of torch cannot say
    uuids = ["5b3b-0001", "MIG-77aa-0002"]
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(uuid=uuids[index]))
    assert physical_gpus(2) == ["GPU-5b3b-0001", "MIG-77aa-0002"]


@pytest.fixture
def one_simulated_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """torch sees one CUDA device (simulated on the CPU); ``set_device`` calls are recorded."""
    import torch

    chosen: list[int] = []
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda name: chosen.append(name))
    return chosen


def test_a_stage_trains_on_the_gpu_it_claimed(one_simulated_gpu: list[int]) -> None:
    from adaopt.config import TrainConfig
    from adaopt.training import device, own_gpu

    with own_gpu(TrainConfig()):
        assert str(device()) == "cuda:0" and one_simulated_gpu == ["cuda:0"]
    with own_gpu(TrainConfig(nproc=2, batch_size=32)):  # torchrun's ranks own their GPUs
        assert one_simulated_gpu == ["cuda:0"]


def test_a_stage_finding_the_gpu_held_trains_on_the_cpu_when_so_configured(
    one_simulated_gpu: list[int],
) -> None:
    from adaopt.config import TrainConfig
    from adaopt.training import device, machine, own_gpu

    with claim_gpu(1) as held, own_gpu(TrainConfig(busy_gpus="cpu")):  # held by "another run"
        assert held == "cuda:0"
        assert str(device()) == "cpu" and machine()["device"] == "cpu"
    assert one_simulated_gpu == []
    assert str(device()) == "cuda"  # no claim held: CUDA's current device, as before


@pytest.mark.parametrize("stage", ["precision", "compress"])
def test_the_stages_that_time_or_retrain_on_a_gpu_hold_one_and_wait_for_it(
    one_simulated_gpu: list[int], monkeypatch: pytest.MonkeyPatch, stage: str,
) -> None:
    """The precision ablation (what it measures is the GPU's throughput and memory) and
    compress (which retrains the train stage's weights) run on a GPU they hold, and wait for
    one rather than take the CPU, whatever ``train.busy_gpus`` says."""
    from adaopt import ablation, training
    from adaopt.compression import stage as compress
    from adaopt.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml")
    params = params.model_copy(update={"train": params.train.model_copy(
        update={"busy_gpus": "cpu"})})
    assert params.train_for("sst2").busy_gpus == "cpu"
    policies: list[str] = []
    seen: list[str] = []

    def claim(count: int, busy: str) -> Any:
        policies.append(busy)
        return claim_gpu(count, busy)

    def body(*args: object) -> None:
        seen.append(str(training.device()))
        with claim_gpu(1, busy="cpu", log=lambda line: None) as other:  # another stage
            seen.append(other)

    monkeypatch.setattr(runner_hooks, "claim_gpu", claim)
    monkeypatch.setattr(ablation, "_ablation", body)
    monkeypatch.setattr(compress, "_compress", body)
    if stage == "precision":
        ablation.precision_ablation(params, "data/prepared", "tuning")
    else:
        compress.compress_task(params, "sst2", "data/prepared", "cells.json", "tables", "figures")
    assert seen == ["cuda:0", "cpu"] and one_simulated_gpu == ["cuda:0"]
    assert policies == ["wait"]
