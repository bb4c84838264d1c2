"""Tests of adaopt.report: the rules behind the report's sentences, on hand-made and synthetic
tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic_runs as synthetic

from adaopt.report import (
    BETTER,
    UNCLEAR,
    UNTESTED,
    WORSE,
    beats_baseline,
    method_against_references,
    overall_verdict,
    performance_profile,
    render,
    schedule_effect,
    verdict,
)
from adaopt.summary import (
    load_baselines,
    load_logs,
    load_runs,
    paired_differences,
    summarize,
    sweep_cells,
    time_to_target,
)

LEVEL = 0.95


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    project = synthetic.write_project(tmp_path_factory.mktemp("project"))
    params = synthetic.params()
    cells = sweep_cells(params)
    runs = load_runs(project / "runs", cells)
    ttt = time_to_target(runs, load_logs(project / "runs", "eval", cells),
                         params.evaluate.targets)
    summary = summarize(runs, ttt, LEVEL, None,
                        load_baselines(project / "data" / "prepare_report.json"))
    return {"runs": runs, "summary": summary, "paired": paired_differences(runs, LEVEL)}


@pytest.mark.parametrize(("low", "high", "greater", "expected"), [
    (0.01, 0.03, True, BETTER), (-0.03, -0.01, True, WORSE), (-0.01, 0.02, True, UNCLEAR),
    (0.0, 0.0, True, UNCLEAR),  # identical runs: no evidence either way
    (-0.3, -0.1, False, BETTER),  # a loss that went down
    (0.1, 0.3, False, WORSE), (math.nan, math.nan, True, UNTESTED),
])
def test_a_verdict_needs_an_interval_that_excludes_zero(low: float, high: float, greater: bool,
                                                        expected: str) -> None:
    assert verdict(low, high, greater) == expected


def test_the_planted_difference_is_better_and_a_copy_is_no_difference(tables) -> None:
    lamb = method_against_references(tables["paired"], method="lamb")
    against = lamb.set_index(["setting", "reference", "task"]).verdict
    assert against[("traditional", "adamw", "sst2")] == BETTER  # 4, 4, 5 more right
    assert against[("fair", "adamw", "squad")] == BETTER
    adam = method_against_references(tables["paired"], method="adam")
    assert set(adam[adam.reference == "adamw"].verdict) == {UNCLEAR}
    sentence = overall_verdict(lamb, "fair", "adamw")
    assert sentence == ("fair setting, against adamw: better on 2 of 2 tasks, worse on 0, no "
                        "detectable difference on 0; the claim is supported on every task.")
    none = overall_verdict(adam, "fair", "adamw")
    assert "better on 0 of 2" in none and "no task separates them" in none


def test_the_performance_profile_counts_tasks_within_tau_of_the_fastest() -> None:
    summary = pd.DataFrame({
        "setting": "fair", "task": ["a", "a", "a", "b", "b", "b"],
        "optimizer": ["sgd", "adam", "adamw"] * 2,
        "time_to_target_median_s": [10.0, 20.0, math.inf, 30.0, 10.0, 25.0]})
    profile = performance_profile(summary, "fair", taus=(1, 2, 3))
    assert list(profile.index) == ["sgd", "adam", "adamw"]  # registry order
    assert profile.loc["sgd"].tolist() == [0.5, 0.5, 1.0]    # fastest on a; 3x on b
    assert profile.loc["adam"].tolist() == [0.5, 1.0, 1.0]
    assert profile.loc["adamw"].tolist() == [0.0, 0.0, 0.5]  # never on a: never within tau
    nobody = summary.assign(time_to_target_median_s=[math.inf, math.inf, math.inf, 1, 2, 3])
    assert performance_profile(nobody, "fair", taus=(4,))["tau 4"].tolist() == [0.5] * 3


def test_a_task_beats_its_baseline_only_with_an_interval_that_excludes_it(tables) -> None:
    check = beats_baseline(tables["summary"]).set_index("task")
    assert check.loc["sst2", "optimizer"] == "lamb" and check.loc["sst2", "beats_baseline"]
    assert check.loc["sst2", "ci_low"] > check.loc["sst2", "baseline"] == 0.5
    high_bar = tables["summary"].assign(baseline=0.86)  # within lamb's interval on sst2
    assert not beats_baseline(high_bar).set_index("task").loc["sst2", "beats_baseline"]


def test_the_schedule_effect_pairs_fair_with_traditional_by_seed(tables) -> None:
    effect = schedule_effect(tables["runs"], LEVEL).set_index(["task", "optimizer"])
    assert effect.loc[("sst2", "adamw"), "difference"] == 0.0  # same runs in both settings
    assert effect.loc[("sst2", "sgd"), "pairs"] == 0  # every fair sgd run diverged
    assert np.isnan(effect.loc[("sst2", "sgd"), "difference"])


def test_the_report_renders_every_section(tables, tmp_path: Path) -> None:
    text = render(tables["summary"], tables["paired"], tables["runs"], LEVEL)
    for heading in ("## Verdict", "## The paper's table", "## AdaptiveAdam against Adam",
                    "## Does each task beat its trivial baseline?", "## Traditional against fair",
                    "## Efficiency"):
        assert heading in text
    assert "* Signal: every task's best cell beats its trivial baseline." in text
