"""Tests of adaopt.protocol.controller: a profile whose controlled runs evaluate too rarely for a
cut to change them is refused before any compute (issue #24: with too few evaluations the
method is its base optimizer bit for bit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from smoke_pipeline import restrict_optimizers

from adaopt.config import load_params, parse_params
from adaopt.protocol.controller import (
    EVALS_AFTER_CUT,
    controller_problems,
    earliest_cut,
    evaluations,
    evaluations_after_warmup,
)

ROOT = Path(__file__).resolve().parents[1]


def smoke() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())


def check(raw: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m adaopt check`` on ``raw`` written as a params file."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "adaopt", "check", "--params", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_evaluations_count_every_eval_every_steps_and_the_last_step() -> None:
    assert [evaluations(6, every) for every in (1, 2, 4, 6, 10)] == [6, 3, 2, 1, 1]
    assert earliest_cut(2) == 3  # the first evaluation only sets the best


@pytest.mark.parametrize("profile", ["smoke", "quick", "cpu"])
def test_the_shipped_profiles_pass_the_controller_check(profile: str) -> None:
    assert controller_problems(load_params(ROOT / "profiles" / f"{profile}.yaml")) == []


def test_a_profile_whose_controlled_runs_evaluate_too_rarely_is_refused(tmp_path: Path) -> None:
    """Only squad's runs evaluate every 3 steps: 2 evaluations after warmup, and a cut can
    come at the third at the earliest. The check exits 2 with one line that names the task and
    the fix."""
    raw = smoke()
    raw["workloads"]["squad"] = {"train": {"eval_every": 3}}
    steps = raw["train"]["max_steps"]
    warmup = round(raw["settings"]["fair"]["warmup_ratio"] * steps)
    patience = raw["optimizers"]["adaptive_adam"]["patience"]
    needed = earliest_cut(patience) + EVALS_AFTER_CUT
    result = check(raw, tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"error: {tmp_path / 'params.yaml'}: workloads.squad: adaptive_adam's runs evaluate "
        f"{evaluations_after_warmup(steps, 3, warmup)} times after a warmup of {warmup} steps "
        f"({steps} steps, every 3)")
    assert result.stderr.endswith(f"it needs {needed} evaluations: set eval_every to at most "
                                  "1\n")


@pytest.mark.parametrize(("steps", "every", "warmup", "read"), [
    (240, 20, 24, 11),  # the pilot's SST-2: the evaluation at step 20 falls inside warmup
    (240, 24, 24, 10),  # at the end of warmup: read
    (10, 3, 0, 4),  # steps 3, 6, 9 and the last
    (10, 3, 10, 1),  # only the last
])
def test_the_controller_reads_the_evaluations_made_once_warmup_is_over(
        steps: int, every: int, warmup: int, read: int) -> None:
    assert evaluations_after_warmup(steps, every, warmup) == read


def test_following_the_advice_passes_the_check(tmp_path: Path) -> None:
    raw = smoke()
    raw["workloads"]["squad"] = {"train": {"eval_every": 3}}
    advice = controller_problems(parse_params(raw))[0]
    raw["workloads"]["squad"]["train"]["eval_every"] = int(advice.rsplit(" ", 1)[1])
    assert controller_problems(parse_params(raw)) == []
    assert check(raw, tmp_path).returncode == 0


def test_tuning_trials_are_checked_with_their_own_eval_every() -> None:
    """tuning.eval_every too sparse for every task, then overridden for sst2 alone
    (workloads.sst2.tuning_eval_every): the first problem moves to the next task."""
    raw = smoke()
    raw["tuning"]["eval_every"] = 3
    first = controller_problems(parse_params(raw))[0]
    assert first.startswith("workloads.sst2: adaptive_adam's tuning trials evaluate 2 times")
    raw["workloads"]["sst2"] = {"tuning_eval_every": 1}
    problems = controller_problems(parse_params(raw))
    assert not any(problem.startswith("workloads.sst2:") for problem in problems)
    assert problems[0].startswith("workloads.stsb: adaptive_adam's tuning trials")


def test_runs_too_short_for_any_eval_every_are_told_to_run_longer() -> None:
    """Patience 4 needs 8 evaluations; 6 steps cannot give them, even evaluated every step."""
    raw = smoke()
    raw["optimizers"]["adaptive_adam"]["patience"] = 4
    problems = controller_problems(parse_params(raw))
    steps = raw["train"]["max_steps"]
    assert problems[0] == (
        f"workloads.sst2: adaptive_adam's runs evaluate {steps} times after a warmup of 1 steps "
        f"({steps} steps, every 1), but its controller (patience 4) can first cut at evaluation "
        f"5 of those; it needs 8 evaluations: {steps} steps cannot give them: raise the steps "
        "to at least 8")


def test_the_precision_ablation_is_checked_too() -> None:
    """Its runs are shorter than the sweep's: 3 steps, 3 evaluations, too few."""
    raw = smoke()
    raw["precision_ablation"]["max_steps"] = 3
    [problem] = controller_problems(parse_params(raw))
    assert problem.startswith("precision_ablation: adaptive_adam's runs evaluate 3 times")


def test_a_profile_without_a_controlled_optimizer_has_nothing_to_check() -> None:
    raw = smoke()
    restrict_optimizers(raw, ["adamw"])
    raw["train"]["eval_every"] = raw["train"]["max_steps"]
    assert controller_problems(parse_params(raw)) == []
