"""The stage functions keep the protocol: tuning picks the best selection score, and the dev set
is scored once per run, after training, with the selected weights."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from adaopt import experiment
from adaopt.config import load_params
from adaopt.experiment import run_setting, tune
from adaopt.protocol.splits import DEV, SELECTION

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "profiles" / "smoke.yaml")
TASK, OPTIMIZER, SETTING = "sst2", "adamw", "fair"


class Spy:
    """Records, per split, when the evaluators were called: inside ``train`` or after it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch,
                 planted: Callable[[float], float] | None = None) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.training = False
        self.lr = 0.0
        real_train, real_evaluator = experiment.train, experiment.Workload._evaluator
        real_build = experiment.build_optimization

        def train(*args: Any, **kwargs: Any) -> Any:
            self.training = True
            try:
                return real_train(*args, **kwargs)
            finally:
                self.training = False

        def build(model: Any, name: str, section: dict[str, Any], *args: Any) -> Any:
            self.lr = section["lr"]
            return real_build(model, name, section, *args)

        def evaluator(work: Any, split: str) -> Callable:
            real = real_evaluator(work, split)

            def call(model: torch.nn.Module) -> tuple[dict[str, float], dict[str, Any]]:
                self.calls.append((split, self.training))
                scores, predictions = real(model)
                if planted is not None and split == SELECTION:
                    scores = {**scores, work.task.metric: planted(self.lr)}
                return scores, predictions

            call.examples = real.examples  # type: ignore[attr-defined]
            return call

        monkeypatch.setattr(experiment, "train", train)
        monkeypatch.setattr(experiment, "build_optimization", build)
        monkeypatch.setattr(experiment.Workload, "_evaluator", evaluator)


@pytest.fixture(autouse=True)
def restored_determinism(one_thread: None) -> Iterator[None]:
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


def test_tuning_picks_the_point_a_planted_objective_makes_best(
    prepared_sst2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    space = PARAMS.tuning.spaces[OPTIMIZER]["lr"]
    best = space[-1]  # planted: the larger learning rate scores higher
    spy = Spy(monkeypatch, planted=lambda lr: 1.0 - abs(lr - best))
    choice = tune(PARAMS, TASK, OPTIMIZER, SETTING, prepared_sst2, tmp_path, progress=False)
    assert choice.hparams == {"lr": best} and choice.edges == {"lr": "upper"}
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials.lr) == list(space) and len(trials) == PARAMS.tuning.trials
    written = json.loads((tmp_path / "choice.json").read_text())
    assert written["hparams"] == {"lr": best} and written["seed"] == PARAMS.tuning.seed
    assert {split for split, _ in spy.calls} == {SELECTION}, "tuning never reads dev"


def test_dev_is_scored_once_per_run_after_training_with_the_tuned_values(
    prepared_sst2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = Spy(monkeypatch)
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"task": TASK, "optimizer": OPTIMIZER, "setting": SETTING,
                                  "hparams": {"lr": 3e-4}}))
    metrics = run_setting(PARAMS, TASK, OPTIMIZER, SETTING, prepared_sst2, tmp_path / "out", choice,
                          progress=False)
    dev_calls = [inside for split, inside in spy.calls if split == DEV]
    assert dev_calls == [False] * len(PARAMS.sweep.seeds), "dev once per run, after training"
    assert all(inside for split, inside in spy.calls if split == SELECTION)
    for seed, run in metrics.items():
        assert run["hparams"]["lr"] == 3e-4 and run["setting"] == SETTING
        assert run["dev"] and run["selection"] and run["dev_examples"] > 0
        folder = tmp_path / "out" / f"seed{seed}"
        assert set(pd.read_csv(folder / "eval.csv").columns) >= {"step", "accuracy"}
        assert "grad_norm" in pd.read_csv(folder / "train.csv").columns


def test_a_choice_for_another_cell_is_refused(prepared_sst2: Path, tmp_path: Path) -> None:
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"task": TASK, "optimizer": "sgd", "setting": SETTING,
                                  "hparams": {"lr": 0.1}}))
    with pytest.raises(ValueError, match="not for"):
        run_setting(PARAMS, TASK, OPTIMIZER, SETTING, prepared_sst2, tmp_path / "out", choice,
                    progress=False)


def test_data_tokenized_for_another_model_is_refused(prepared_sst2: Path) -> None:
    """The prepare stage records the model it tokenized for (the tune and train stages depend
    on the model through it); a run with another tokenizer stops in one line before any
    training, while one that changes only the model's other settings goes on."""
    recorded = json.loads((prepared_sst2 / TASK / "model.json").read_text())
    assert recorded == PARAMS.model.model_dump()

    def changed(**values: Any) -> Any:
        return PARAMS.model_copy(update={"model": PARAMS.model.model_copy(update=values)})

    experiment.Workload(changed(attn_implementation="sdpa"), TASK, prepared_sst2)
    with pytest.raises(ValueError, match=r"model.json: the data was tokenized for model "
                                         r"'packaged', not for params.yaml's 'bert-base-cased'"):
        experiment.Workload(changed(name_or_path="bert-base-cased"), TASK, prepared_sst2)
