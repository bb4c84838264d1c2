"""Tests of adaopt.report: the rules behind the report's sentences, on hand-made and synthetic
tables."""

from __future__ import annotations

import dataclasses
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
    Outputs,
    beats_baseline,
    best_constant,
    load_outputs,
    method_against_references,
    overall_verdict,
    performance_profile,
    render,
    schedule_effect,
    verdict,
)
from adaopt.summary import (
    load_baselines,
    load_choices,
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
    assert none.endswith("Its dev scores equal adamw's seed for seed on 2 of them (sst2, squad).")
    assert "seed for seed" not in sentence  # lamb's differences are planted


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


def test_a_constant_minority_class_does_not_beat_a_two_class_baseline(tables) -> None:
    """RTE's training majority class is dev's minority: a model that always answers the other
    class beats the majority-class baseline with a zero-width interval, and must not count."""
    check = beats_baseline(tables["summary"]).set_index("task")
    mean = check.loc["sst2", "mean"]
    constant = tables["summary"].assign(baseline=1 - mean)  # sst2's best mean = the other class
    row = beats_baseline(constant).set_index("task").loc["sst2"]
    assert row.baseline < row.ci_low and row.bar == pytest.approx(mean)
    assert not row.beats_baseline
    assert best_constant("sst2", 0.3) == 0.7 and best_constant("squad", 18.5) == 18.5
    assert best_constant("stsb", 0.0) == 0.0


def test_the_schedule_effect_pairs_fair_with_traditional_by_seed(tables) -> None:
    effect = schedule_effect(tables["runs"], LEVEL).set_index(["task", "optimizer"])
    assert effect.loc[("sst2", "adamw"), "difference"] == 0.0  # same runs in both settings
    assert effect.loc[("sst2", "sgd"), "pairs"] == 0  # every fair sgd run diverged
    assert np.isnan(effect.loc[("sst2", "sgd"), "difference"])
    assert list(dict.fromkeys(effect.index.get_level_values("task"))) == list(synthetic.TASKS)


def _write_results(project: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The evaluate and precision stages' tables, written as those stages write them."""
    results = project / "results"
    results.mkdir(exist_ok=True)
    csv = {"index": False, "float_format": "%.6g"}
    for name in ("summary", "paired", "runs"):
        tables[name].to_csv(results / f"{name}.csv", **csv)
    load_choices(project / "tuning", synthetic.params()).to_csv(results / "tuning.csv", **csv)
    pd.DataFrame({
        "task": "sst2", "optimizer": ["adamw", "adamw"], "precision": ["fp32", "bf16"],
        "device": "cpu (AVX512, 2 threads)", "metric": "accuracy", "dev": [0.81, 0.80],
        "status": "ok", "steps": 30, "train_samples_per_s": [60.0, 45.0],
        "train_tokens_per_s": [900.0, 700.0], "throughput_vs_fp32": [1.0, 0.75],
        "peak_memory_mb": [900.0, 950.0], "wall_time_s": [16.0, 21.3]}).to_csv(
        results / "precision.csv", **csv)
    (results / "compression").mkdir(exist_ok=True)
    pd.DataFrame({
        "variant": ["fp32", "int8", "pruned 50%"], "metric": "accuracy",
        "score": [0.81, 0.80, 0.70], "size_mb": [90.9, 58.6, 90.9],
        "latency_b1_ms": [8.0, 4.0, 8.1], "latency_b1_iqr_ms": [0.1, 0.1, 0.2],
        "pareto_size": [True, True, False], "pareto_latency": [True, True, False]}).to_csv(
        results / "compression" / "sst2.csv", **csv)


@pytest.fixture(scope="module")
def outputs(tables, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    project = synthetic.write_project(tmp_path_factory.mktemp("reported"))
    _write_results(project, tables)
    params = synthetic.params()
    compress = params.compress.model_copy(update={"tasks": ["sst2"]})
    return load_outputs(project, params.model_copy(update={"compress": compress}))


def test_the_report_renders_every_section_from_the_written_tables(outputs) -> None:
    params = synthetic.params()
    text = render(outputs, params)
    for heading in ("## Verdict", "## The paper's table", "## AdaptiveAdam against Adam",
                    "## Does each task beat its trivial baseline?", "## Traditional against fair",
                    "## Efficiency", "## The tuning record", "## Mixed precision",
                    "## Compression: the Pareto fronts", "## Published numbers"):
        assert heading in text
    assert "* Signal: every trained task's best cell beats its trivial baseline." in text
    assert "SQuAD exact match" in text
    assert "| int8 " in text and "pruned 50%" not in text  # only the Pareto fronts
    assert render(outputs, params) == text  # the same outputs give the same report


def test_a_task_without_signal_shows_its_learning_curve_and_the_budget_it_needs(
        outputs) -> None:
    params = synthetic.params()
    summary = outputs.summary.assign(baseline=outputs.summary.baseline.where(
        outputs.summary.task != "sst2", 0.99))  # no sst2 cell beats this
    curves = pd.DataFrame({
        "task": "sst2", "optimizer": "adamw", "setting": "fair", "lr": 1e-4, "batch_size": 32,
        "seed": 0, "metric": "accuracy", "step": [100, 200, 300], "value": [0.95, 0.992, 0.998],
        "baseline": 0.99, "s_per_step": 0.5, "dev_examples": 872})
    text = render(dataclasses.replace(outputs, summary=summary, curves=curves), params)
    assert "no signal above the trivial baseline on sst2" in text
    assert "0.950 at 100, 0.992 at 200, 0.998 at 300" in text
    # two binomial standard errors at 0.99 on 872 examples: 0.0067, so 0.992 is not clear of it
    # cells x (trials x tuning fraction + 3 seeds) x 200 steps x 0.5 s
    fraction = params.tuning_steps("sst2") / params.train_for("sst2").max_steps
    cells = len(params.sweep.optimizers) * 2
    hours = cells * (params.tuning.trials * fraction + 3) * 300 * 0.5 / 3600
    assert "first clears the baseline by two standard errors of its dev score (0.00674) at 300 " \
        "steps" in text
    assert f"{hours:.1f} hours" in text
    never = curves.assign(value=0.5)
    text = render(dataclasses.replace(outputs, summary=summary, curves=never), params)
    assert "does not clear the baseline by two standard errors" in text
    assert "within 300 steps" in text


def test_a_prepared_task_the_profile_does_not_train_is_reported_with_its_curve(outputs) -> None:
    """SQuAD prepared but left out of ``sweep.tasks``: named in the verdict, its baseline from
    the prepare report, its learning curve and the budget a signal would need."""
    params = synthetic.params()
    params = params.model_copy(update={"sweep": params.sweep.model_copy(
        update={"tasks": ["sst2"]})})
    trained = dataclasses.replace(outputs, summary=outputs.summary[outputs.summary.task == "sst2"])
    curves = pd.DataFrame({
        "task": "squad", "optimizer": "adamw", "setting": "fair", "lr": 1e-4, "batch_size": 32,
        "seed": 0, "metric": "f1", "step": [50, 100], "value": [10.0, 40.0],
        "baseline": 20.0, "s_per_step": 2.0, "dev_examples": 1000})
    text = render(dataclasses.replace(trained, curves=curves), params)
    baseline = outputs.prepared["squad"]["baseline"]
    assert "prepared but not trained at this budget: squad (below)" in text
    assert (f"* **squad**: prepared but not trained in this profile (`sweep.tasks`); its "
            f"baseline is {baseline['value']:.3f} ({baseline['rule']}).") in text
    assert "10.000 at 50, 40.000 at 100" in text
    # F1's two standard errors on 1,000 questions: 3.16; 40 clears 20 + 3.16 at 100 steps
    fraction = params.tuning_steps("squad") / params.train_for("squad").max_steps
    cells = len(params.sweep.optimizers) * 2
    hours = cells * (params.tuning.trials * fraction + 3) * 100 * 2.0 / 3600
    assert "at 100 steps: the protocol" in text and f"{hours:.1f} hours" in text
    assert "| squad " not in text.split("## Does each task")[0]  # not in the paper's table
