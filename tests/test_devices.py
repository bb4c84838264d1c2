"""One GPU per run, on the CPU: processes that claim from a simulated GPU count get distinct
devices, a killed one frees its device, and a run finding every GPU held waits or takes the CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adaopt.devices import LOCK_DIR_ENV, claim_gpu, visible_gpus

HOLDER = """
import sys, time
from pathlib import Path
from adaopt.devices import claim_gpu
count, busy, release = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with claim_gpu(count, busy=busy, poll_s=0.05, log=lambda line: None) as device:
    print(device, flush=True)
    while not release.exists():
        time.sleep(0.02)
"""


class Holders:
    """Processes that each claim a device, print it and hold it until released."""

    def __init__(self, tmp: Path) -> None:
        self.release, self.processes = tmp / "release", []
        self.env = {**os.environ, LOCK_DIR_ENV: str(tmp / "locks")}

    def start(self, count: int, busy: str = "wait", **env: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(count), busy,
                                    str(self.release)], env={**self.env, **env},
                                   stdout=subprocess.PIPE, text=True)
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
    """Locks are named by CUDA_VISIBLE_DEVICES' entries: GPU 5 taken as cuda:0 by one run is
    the cuda:1 the other run must not take."""
    first = holders.start(2, CUDA_VISIBLE_DEVICES="5,3")
    assert holders.device(first) == "cuda:0"  # physical GPU 5
    assert holders.device(holders.start(2, CUDA_VISIBLE_DEVICES="3,5")) == "cuda:0"  # GPU 3
    assert holders.device(holders.start(2, "cpu", CUDA_VISIBLE_DEVICES="3,5")) == "cpu"


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
