"""The line a tune or train stage ends with (adaopt.progress)."""

from __future__ import annotations

from pathlib import Path

from adaopt import io
from adaopt.config import load_params
from adaopt.progress import stage_line, standing, train_found, tune_found

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "profiles" / "smoke.yaml")


def _choice(path: Path, **changes: object) -> Path:
    io.write_json(path, {"hparams": {"lr": 0.000316}, "edges": {}, "metric": "accuracy",
                         "score": 0.79, "trial": 2, "trials": 4, "no_finished_trial": False,
                         **changes})
    return path


def test_a_tune_stage_says_its_choice_and_score(tmp_path: Path) -> None:
    assert tune_found(_choice(tmp_path / "a.json")) == (
        "lr 0.000316: selection accuracy 0.79, trial 3 of 4")
    assert tune_found(_choice(tmp_path / "b.json", edges={"lr": "upper"})) == (
        "lr 0.000316 (lr at the upper edge of the grid): selection accuracy 0.79, trial 3 of 4")
    assert tune_found(_choice(tmp_path / "c.json", no_finished_trial=True, score=None)) == (
        "every trial diverged")


def _run(dev: float, status: str = "ok", cuts: int = 0, controlled: bool = True) -> dict:
    return {"metric": "pearson", "dev": {} if status == "diverged" else {"pearson": dev},
            "status": status, "cuts": [{"step": 4, "lr": 1e-4}] * cuts,
            "controlled": controlled}


def test_a_train_stage_says_each_seeds_dev_score_and_cuts() -> None:
    runs = {0: _run(0.51234, cuts=2), 1: _run(0.0, "diverged"), 2: _run(0.5, cuts=0)}
    assert train_found(runs) == "dev pearson 0.5123 diverged 0.5 (seeds 0 1 2), cuts per seed 2 0 0"
    plain = {0: _run(0.5, controlled=False)}
    assert train_found(plain) == "dev pearson 0.5 (seeds 0)"


def test_the_standing_counts_the_stages_whose_outputs_exist(tmp_path: Path) -> None:
    total = 2 * len(PARAMS.sweep.tasks) * len(PARAMS.sweep.optimizers) * 2
    assert standing(PARAMS, tmp_path) == f"0 of {total} tune and train stages have outputs"
    cell = Path("sst2") / "adamw" / "fair"
    _choice(tmp_path / "tuning" / cell / "choice.json")
    io.write_json(tmp_path / "runs" / cell / "seed0" / "metrics.json", {})
    assert standing(PARAMS, tmp_path).startswith("1 of")  # seed 1's run is missing
    io.write_json(tmp_path / "runs" / cell / "seed1" / "metrics.json", {})
    line = stage_line("train", PARAMS, "SST-2", "adamw", "fair", "dev accuracy 0.5", tmp_path)
    assert line == (f"train@sst2-adamw-fair: dev accuracy 0.5; 2 of {total} tune and train "
                    "stages have outputs")
