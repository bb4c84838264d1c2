"""Dev is scored once per run, by the final scoring, and read by nothing that chooses (issue
#24): tuning never scores it, each evaluation seed scores it once after its training has
ended, and the compress stage picks its teacher without it.

Every call of an :class:`~adaopt.evaluation.Evaluator` is recorded with its split and the module
that made it, between the starts and ends of the training runs.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from adaopt.compression.stage import best_optimizer
from adaopt.config import load_params
from adaopt.evaluation import Evaluator
from adaopt.experiment import Workload, run_setting, tune
from adaopt.protocol.splits import DEV, SELECTION

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "profiles" / "smoke.yaml")
TASK, OPTIMIZER, SETTING = "sst2", "adamw", "fair"
# Where each split is scored from: the selection split inside the training loop, dev after it.
SELECTION_SCORED = ("score", SELECTION, "adaopt.training")
DEV_SCORED = ("score", DEV, "adaopt.experiment")

Event = tuple[Any, ...]


@pytest.fixture
def restored_determinism(one_thread: None) -> Iterator[None]:
    """Training switches torch's deterministic algorithms on; the other tests get them back."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch, restored_determinism: None) -> list[Event]:
    """``("train", seed)`` and ``("trained", seed)`` around each training run, and ``("score",
    split, caller's module)`` for each evaluation, in the order they happen."""
    recorded: list[Event] = []
    real_call, real_train_run = Evaluator.__call__, Workload.train_run

    def call(self: Evaluator, model: torch.nn.Module) -> Any:
        recorded.append(("score", self.split, sys._getframe(1).f_globals["__name__"]))
        return real_call(self, model)

    def train_run(self: Workload, optimizer: str, section: dict[str, Any], setting: str,
                  seed: int, *args: Any, **kwargs: Any) -> Any:
        recorded.append(("train", seed))
        result = real_train_run(self, optimizer, section, setting, seed, *args, **kwargs)
        recorded.append(("trained", seed))
        return result

    monkeypatch.setattr(Evaluator, "__call__", call)
    monkeypatch.setattr(Workload, "train_run", train_run)
    return recorded


def _runs(events: list[Event]) -> list[Event]:
    """``events`` with each stretch of selection scores of one training run made one."""
    return [event for event, _ in itertools.groupby(events)]


def test_tuning_never_scores_dev(prepared_sst2: Path, tmp_path: Path,
                                 events: list[Event]) -> None:
    tune(PARAMS, TASK, OPTIMIZER, SETTING, prepared_sst2, tmp_path, progress=False)
    trial = [("train", PARAMS.tuning.seed), SELECTION_SCORED, ("trained", PARAMS.tuning.seed)]
    assert _runs(events) == trial * PARAMS.tuning.trials


def test_each_seed_scores_dev_once_after_its_training(prepared_sst2: Path, tmp_path: Path,
                                                      events: list[Event]) -> None:
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"task": TASK, "optimizer": OPTIMIZER, "setting": SETTING,
                                  "hparams": {"lr": 3e-4}}))
    metrics = run_setting(PARAMS, TASK, OPTIMIZER, SETTING, prepared_sst2, tmp_path / "out",
                          choice, progress=False)
    assert all(run["status"] != "diverged" for run in metrics.values())  # each one is scored
    seeds = PARAMS.sweep.seeds
    assert events.count(DEV_SCORED) == len(seeds)
    assert _runs(events) == [event for seed in seeds for event in (
        ("train", seed), SELECTION_SCORED, ("trained", seed), DEV_SCORED)]


def test_the_teacher_is_chosen_without_dev() -> None:
    """Dev scores that would crown AdamW do not; with no dev score at all, the same teacher."""
    selection, dev = {"adamw": 0.80, "lamb": 0.85}, {"adamw": 0.95, "lamb": 0.60}
    for with_dev in (True, False):
        cells = {"task": TASK, "cells": [
            {"optimizer": optimizer, "setting": SETTING, "hparams": {}, "runs": [
                {"seed": seed, "status": "ok", "selection": {"accuracy": selection[optimizer]},
                 **({"dev": {"accuracy": dev[optimizer]}} if with_dev else {})}
                for seed in PARAMS.sweep.seeds]}
            for optimizer in selection]}
        chosen = best_optimizer(cells, SETTING, list(selection), "accuracy",
                                greater_is_better=True)
        assert chosen == "lamb", f"with dev scores: {with_dev}"
