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

from adaopt.preregistration import Record
from adaopt.report import (
    Outputs,
    cuts_markdown,
    efficiency_markdown,
    load_outputs,
    machine_drift,
    machines_sentence,
    method_against_references,
    overall_verdict,
    performance_profile,
    render,
    schedule_effect,
    schedule_markdown,
    selected_steps_markdown,
    time_to_target_markdown,
    verdict_sentences,
)
from adaopt.statistics import (
    BETTER,
    EQUIVALENT,
    IDENTICAL,
    INCONCLUSIVE,
    NO_SIGNAL,
    UNTESTED,
    WORSE,
    votes,
)
from adaopt.summary import (
    PRIMARY,
    beats_baseline,
    best_constant,
    bootstrap_intervals,
    load_baselines,
    load_choices,
    load_logs,
    load_runs,
    paired_comparisons,
    summarize,
    sweep_cells,
    time_to_target,
)

LEVEL = 0.95
SAMPLES = 300
METHOD = "adaptive_adam"


REGISTRATION = synthetic.registration(samples=SAMPLES)
RECORD = Record(sha256="0" * 64, commit="a" * 40, date="2026-12-07", uncommitted=False,
                runs_before=0, runs=60)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    project = synthetic.write_project(tmp_path_factory.mktemp("project"))
    params = synthetic.params()
    cells = sweep_cells(params)
    runs_dir, prepared = project / "runs", project / "data" / "prepared"
    runs = load_runs(runs_dir, cells)
    ttt = time_to_target(runs, load_logs(runs_dir, "eval", cells), params.evaluate.targets)
    summary = summarize(runs, ttt, LEVEL,
                        bootstrap_intervals(runs, runs_dir, prepared, LEVEL, SAMPLES),
                        load_baselines(project / "data" / "prepare_report.json"))
    signal = beats_baseline(summary).set_index("task").beats_baseline.to_dict()
    paired = paired_comparisons(runs, runs_dir, prepared, REGISTRATION, signal)
    return {"runs": runs.merge(ttt, how="left"), "summary": summary, "paired": paired}


def verdicts(*names: str, cuts: float = 0.0) -> pd.DataFrame:
    """The method's comparisons with adamw in the fair setting, one task per verdict, voting
    as the rule says."""
    return pd.DataFrame({"setting": "fair", "reference": "adamw", "optimizer": METHOD,
                         "family": PRIMARY, "task": [f"task{i}" for i in range(len(names))],
                         "verdict": names, "cuts": cuts,
                         "votes": [votes(name, cuts) for name in names]})


LABEL = "Primary, fair setting, against adamw"


@pytest.mark.parametrize(("names", "claim"), [
    ((BETTER, BETTER), "supported on every task that votes"),
    ((BETTER, INCONCLUSIVE), "supported on some tasks only, and worse on none"),
    ((BETTER, EQUIVALENT, IDENTICAL), "supported on some tasks only, and worse on none"),
    ((BETTER, NO_SIGNAL), "supported on every task that votes"),
    ((WORSE, INCONCLUSIVE), "not supported: it is worse on some tasks and better on none"),
    ((BETTER, WORSE), "mixed: better on some tasks, worse on others"),
    ((INCONCLUSIVE, EQUIVALENT), "undecided at this budget: no task that votes separates them"),
    ((EQUIVALENT, IDENTICAL),
     "not supported: equivalent within the declared margins on every task that votes"),
])
def test_the_claim_follows_the_counts_of_voting_verdicts(names: tuple[str, ...], claim: str
                                                        ) -> None:
    """Only a Holm-corrected "better" supports the claim; identical runs without a cut and
    tasks without signal never decide it."""
    sentence = overall_verdict(verdicts(*names), LABEL)
    voting = sum(votes(name, 0.0) for name in names)
    assert sentence.startswith(f"{LABEL}, over {len(names)} tasks ({voting} vote): ")
    assert f"the claim is {claim}." in sentence
    for name in set(names):
        assert f"{name} on {names.count(name)}" in sentence


@pytest.mark.parametrize("names", [(IDENTICAL, IDENTICAL), (IDENTICAL, NO_SIGNAL),
                                   (NO_SIGNAL, UNTESTED), (IDENTICAL, NO_SIGNAL, UNTESTED)])
def test_a_family_of_identical_and_no_signal_tasks_leaves_the_claim_untested(
        names: tuple[str, ...]) -> None:
    """The committed report's old error: two models that never learned, or the same runs,
    were read as a refutation."""
    sentence = overall_verdict(verdicts(*names), LABEL)
    assert "(0 vote)" in sentence and "the claim is not tested here" in sentence
    assert "refuted" not in sentence and "not supported" not in sentence


def test_identical_tasks_vote_only_where_the_controller_cut() -> None:
    uncut = overall_verdict(verdicts(IDENTICAL, INCONCLUSIVE, cuts=0.0), LABEL)
    assert "(1 vote)" in uncut and "no cut: no evidence about the controller" in uncut
    unrecorded = overall_verdict(verdicts(IDENTICAL, cuts=math.nan), LABEL)
    assert "predate the controller's record" in unrecorded and "(0 vote)" in unrecorded
    cut = overall_verdict(verdicts(IDENTICAL, cuts=3.0), LABEL)
    assert "(1 vote)" in cut and "which vote as equivalent" in cut
    assert "equivalent within the declared margins" in cut
    assert "Identical" not in overall_verdict(verdicts(BETTER), LABEL)
    assert overall_verdict(verdicts(BETTER).iloc[:0], LABEL) == \
        f"{LABEL}: no paired comparison in this sweep."


def test_the_method_rows_carry_the_summarys_verdicts(tables) -> None:
    """AdaptiveAdam without a cut (fair) is identical to AdamW and to Adam (AdamW's copy):
    the claim is not tested there; with a few cuts and one more example right per seed
    (traditional) the budget cannot tell. The primary family comes first."""
    paired = tables["paired"]
    method = method_against_references(paired, REGISTRATION)
    assert set(method.optimizer) == {METHOD}
    assert method.family.tolist()[:4] == [PRIMARY] * 4
    fair = overall_verdict(method[(method.setting == "fair") & (method.reference == "adamw")],
                           LABEL)
    assert "identical on 2" in fair and "(0 vote)" in fair
    assert "the claim is not tested here" in fair
    traditional = method[(method.setting == "traditional") & (method.reference == "adam")]
    sentence = overall_verdict(traditional, "Primary, traditional setting, against adam")
    assert "inconclusive on 2" in sentence and "no task that votes separates them" in sentence
    lines = verdict_sentences(method, REGISTRATION)
    assert [line.split(",")[0] for line in lines] == ["**Primary**"] * 2 + ["Exploratory"] * 2


def test_the_performance_profile_counts_tasks_within_tau_of_the_fastest() -> None:
    """In optimizer steps, the same for a seed on any machine."""
    summary = pd.DataFrame({
        "setting": "fair", "task": ["a", "a", "a", "b", "b", "b"],
        "optimizer": ["sgd", "adam", "adamw"] * 2,
        "time_to_target_median_steps": [10.0, 20.0, math.inf, 30.0, 10.0, 25.0],
        "time_to_target_median_s": [99.0, 1.0, 1.0, 99.0, 1.0, 1.0]})  # noise: never read
    profile = performance_profile(summary, "fair", taus=(1, 2, 3))
    assert list(profile.index) == ["sgd", "adam", "adamw"]  # registry order
    assert profile.loc["sgd"].tolist() == [0.5, 0.5, 1.0]    # fastest on a; 3x on b
    assert profile.loc["adam"].tolist() == [0.5, 1.0, 1.0]
    assert profile.loc["adamw"].tolist() == [0.0, 0.0, 0.5]  # never on a: never within tau
    nobody = summary.assign(time_to_target_median_steps=[math.inf, math.inf, math.inf, 1, 2, 3])
    assert performance_profile(nobody, "fair", taus=(4,))["tau 4"].tolist() == [0.5] * 3
    untargeted = summary.assign(time_to_target_median_steps=math.nan)
    assert performance_profile(untargeted, "fair").empty  # no target: left out


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


def test_the_best_cell_is_chosen_on_the_selection_split_not_on_dev(tables) -> None:
    """Dev chooses nothing: a cell with a worse dev mean but the best selection mean is the
    one held against the baseline, with its own bootstrap interval."""
    summary = tables["summary"]
    adamw = (summary.task == "sst2") & (summary.optimizer == "adamw") & (
        summary.setting == "fair")
    chosen = beats_baseline(summary.assign(selection_mean=summary.selection_mean.where(
        ~adamw, 0.99))).set_index("task").loc["sst2"]
    assert (chosen.optimizer, chosen.setting) == ("adamw", "fair")
    assert (chosen.ci_low, chosen.ci_high) == tuple(
        summary.loc[adamw, ["bootstrap_low", "bootstrap_high"]].iloc[0])


def test_the_cuts_table_lists_each_controlled_cell(tables) -> None:
    text = cuts_markdown(tables["summary"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("|")}
    assert rows["cuts per run"] == ["sst2", "squad"]
    assert rows["adaptive_adam · traditional"] == ["1 2 1", "1 2 1"]
    assert rows["adaptive_adam · fair"] == ["0 0 0", "0 0 0"]
    assert len(rows) == 4  # the header, its rule and the two controlled cells
    uncontrolled = tables["summary"][tables["summary"].optimizer != "adaptive_adam"]
    assert cuts_markdown(uncontrolled) == \
        "No optimizer with a metric-driven controller in the sweep.\n"


def test_the_machines_the_runs_were_made_on_are_named(tables) -> None:
    assert machines_sentence(tables["runs"]) == (
        "The runs were made on: cpu (AVX2), torch 2.5.1, 2 threads.")
    two = tables["runs"].assign(**{"machine.device": np.where(
        tables["runs"].task == "squad", "NVIDIA H200", "cpu")})
    assert "cpu (AVX2), torch 2.5.1, 2 threads; NVIDIA H200 (AVX2)" in machines_sentence(two)
    old = tables["runs"].drop(columns=[c for c in tables["runs"] if c.startswith("machine.")])
    assert "not recorded" in machines_sentence(old)


def test_time_to_target_is_shown_in_steps_and_examples(tables) -> None:
    text = time_to_target_markdown(tables["summary"], "fair")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("|")}
    assert rows["adamw"] == ["30 steps · 240 ex (2/3)", "30 steps · 240 ex (2/3)"]
    assert rows["lamb"][0] == "20 steps · 160 ex (3/3)"
    assert rows["sgd"] == ["never", "never"]


def _efficiency_rows(summary: pd.DataFrame) -> dict[str, list[str]]:
    text = efficiency_markdown(summary, "fair")
    return {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("|")}


def _throughputs(fair: list[float], traditional: dict[tuple[str, str], float] | None = None
                 ) -> pd.DataFrame:
    """AdamW and AdaptiveAdam on SST-2 and SQuAD (fair, in that order), each seed spread 1%;
    ``traditional`` adds cells of the other setting."""
    cells = [("sst2", "adamw"), ("squad", "adamw"), ("sst2", "adaptive_adam"),
             ("squad", "adaptive_adam")]
    rows = [("fair", *cell, value) for cell, value in zip(cells, fair, strict=True)]
    rows += [("traditional", *cell, value) for cell, value in (traditional or {}).items()]
    return pd.DataFrame(rows, columns=["setting", "task", "optimizer", "train_samples_per_s"]
                        ).assign(throughput_noise=0.01, peak_memory_mb=500.0,
                                 optimizer_state_mb=2.0)


def test_throughput_differences_count_only_beyond_the_machines_noise() -> None:
    """1.5 times AdamW's samples/s is beyond a 1% spread, 1.01 times is not (within two
    combined spreads: 2.8%); with no cell in both settings the drift is said unmeasured."""
    summary = _throughputs([100.0, 100.0, 150.0, 101.0])
    rows = _efficiency_rows(summary)
    assert rows[""][:2] == ["throughput vs adamw", "beyond noise and drift"]
    assert rows["adaptive_adam"][:2] == [f"{math.sqrt(1.5 * 1.01):.2f}", "1 of 2 tasks"]
    assert rows["adamw"][:2] == ["1.00", "0 of 2 tasks"]
    assert "drift between stages is unmeasured" in efficiency_markdown(summary, "fair")


def test_throughput_differences_count_only_beyond_the_drift_between_stages() -> None:
    """AdamW's fair cell ran 10% faster than its traditional one (the same computation): so
    0.93 times AdamW's samples/s, far beyond the seeds' 2.8%, ranks nothing, while 0.8 does."""
    summary = _throughputs([100.0, 100.0, 93.0, 80.0], traditional={("sst2", "adamw"): 90.91})
    assert machine_drift(summary) == pytest.approx(math.log(1.1), rel=1e-3)
    rows = _efficiency_rows(summary)
    assert rows["adaptive_adam"][1] == "1 of 2 tasks"
    assert "up to 10% between one optimizer's fair and traditional" in efficiency_markdown(
        summary, "fair")
    assert math.isnan(machine_drift(summary[summary.setting == "fair"]))


def test_the_schedule_effect_pairs_fair_with_traditional_by_seed(tables) -> None:
    effect = schedule_effect(tables["runs"], LEVEL).set_index(["task", "optimizer"])
    assert effect.loc[("sst2", "adamw"), "difference"] == 0.0  # same runs in both settings
    assert effect.loc[("sst2", "sgd"), "pairs"] == 0  # every fair sgd run diverged
    assert np.isnan(effect.loc[("sst2", "sgd"), "difference"])
    assert list(dict.fromkeys(effect.index.get_level_values("task"))) == list(synthetic.TASKS)


def test_a_design_in_one_setting_has_no_schedule_effect_to_show(tables) -> None:
    """Every cell fair (a narrowed smoke run): no pairs, and the report says so in a line."""
    fair = tables["runs"][tables["runs"].setting == "fair"]
    effect = schedule_effect(fair, LEVEL)
    assert len(effect) and (effect.pairs == 0).all()
    assert schedule_markdown(effect).startswith("No optimizer ran a task in both settings")
    assert "| " in schedule_markdown(schedule_effect(tables["runs"], LEVEL))


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
    text = render(outputs, params, REGISTRATION, RECORD)
    for heading in ("## Verdict", "### The rule, fixed before the runs", "## The paper's table",
                    "## AdaptiveAdam against each baseline",
                    "## Does each task beat its trivial baseline?", "## Traditional against fair",
                    "## Efficiency", "## The tuning record", "## Mixed precision",
                    "## Compression: the Pareto fronts", "## Published numbers"):
        assert heading in text
    assert "* Signal: every trained task's best cell beats its trivial baseline." in text
    assert "* The runs were made on: cpu (AVX2), torch 2.5.1, 2 threads.\n" in text
    verdict = text.split("## Verdict")[1].split("## The paper's table")[0]
    assert verdict.count("**Primary**") == 2 and verdict.count("Exploratory") == 2
    assert "**Primary**, fair setting, against adamw, over 2 tasks (0 vote): identical on 2" \
        in verdict
    assert "Exploratory, traditional setting, against adamw, over 2 tasks (2 vote): " \
        "inconclusive on 2; the claim is undecided at this budget" in verdict
    assert f"set at commit `{'a' * 12}` (2026-12-07)" in verdict
    assert "Primary family (4 members, Holm-corrected over all of them)" in verdict
    assert "were made** (their records" not in verdict
    comparisons = text.split("## AdaptiveAdam against each")[1].split("## Does each task")[0]
    assert "| p (Holm)" in comparisons and "| detectable" in comparisons
    assert "| equivalence reachable within" in comparisons
    assert "| adaptive_adam · traditional | 1 2 1 " in comparisons  # the cuts per run
    assert "SQuAD exact match" in text
    assert "| int8 " in text and "pruned 50%" not in text  # only the Pareto fronts
    # the same outputs give the same report
    assert render(outputs, params, REGISTRATION, RECORD) == text


def test_a_task_without_signal_shows_its_learning_curve_and_the_budget_it_needs(
        outputs) -> None:
    """The selection-split curves of two learning rates, beside the split's own baseline: the
    budget is priced at the first step where any of them clears it."""
    params = synthetic.params()
    summary = outputs.summary.assign(baseline=outputs.summary.baseline.where(
        outputs.summary.task != "sst2", 0.99))  # no sst2 cell beats this
    curves = pd.DataFrame({
        "task": "sst2", "optimizer": "adamw", "setting": "fair",
        "lr": [1e-4] * 3 + [1e-3] * 3, "batch_size": 32, "seed": 0, "metric": "accuracy",
        "step": [100, 200, 300] * 2, "value": [0.95, 0.992, 0.998, 0.97, 0.999, 0.999],
        "split": "selection", "baseline": 0.99, "s_per_step": 0.5, "examples": 872,
        "cpu_capability": "AVX2"})
    text = render(dataclasses.replace(outputs, summary=summary, curves=curves), params,
                  REGISTRATION, RECORD)
    assert "no signal above the trivial baseline on sst2" in text
    assert "lr 0.0001, 0.001, batch 32, seed 0, accuracy on 872 selection examples, best " \
        "constant prediction there 0.99, 0.50 s a step)." in text
    # two binomial standard errors at 0.99 on 872 examples: 0.0067, so 0.992 is not clear of
    # it and lr 1e-4 clears it only at 300 steps; lr 1e-3 clears it at 200
    # cells x (trials x tuning fraction + 3 seeds) x 200 steps x 0.5 s
    fraction = params.tuning_steps("sst2") / params.train_for("sst2").max_steps
    cells = len(params.sweep.optimizers) * 2
    hours = cells * (params.tuning.trials * fraction + 3) * 200 * 0.5 / 3600
    assert "lr 0.001 first clears that baseline by two standard errors of the split (0.00674) " \
        "at 200 steps" in text
    assert f"{hours:.1f} hours" in text
    never = curves.assign(value=0.5)
    text = render(dataclasses.replace(outputs, summary=summary, curves=never), params,
                  REGISTRATION, RECORD)
    assert "No learning rate clears that baseline by two standard errors" in text
    assert "within 300 steps" in text


def test_a_prepared_task_the_profile_does_not_train_is_reported_with_its_curve(outputs) -> None:
    """SQuAD prepared but not trained (no workload): named in the verdict, its baseline from
    the prepare report, its learning curve and the budget a signal would need."""
    params = synthetic.params()
    params = params.model_copy(update={
        "sweep": params.sweep.model_copy(update={"tasks": ["sst2"], "cells": {
            key: cell for key, cell in params.sweep.cells.items() if cell.task == "sst2"}}),
        "data": params.data.model_copy(update={"tasks": ["squad"]})})
    trained = dataclasses.replace(outputs, **{  # the evaluate stage's tables of that sweep
        name: table[table.task == "sst2"] for name, table in (
            ("summary", outputs.summary), ("paired", outputs.paired), ("runs", outputs.runs))})
    curves = pd.DataFrame({
        "task": "squad", "optimizer": "adamw", "setting": "fair", "lr": 1e-4, "batch_size": 32,
        "seed": 0, "metric": "f1", "step": [50, 100], "value": [10.0, 40.0],
        "split": "selection", "baseline": 20.0, "s_per_step": 2.0, "examples": 1000,
        "cpu_capability": "AVX2"})
    text = render(dataclasses.replace(trained, curves=curves), params,
                  REGISTRATION, RECORD)
    baseline = outputs.prepared["squad"]["baseline"]
    assert "prepared but not trained at this budget: squad (below)" in text
    assert (f"* **squad**: prepared but not trained in this profile (no `workloads` entry); its "
            f"baseline is {baseline['value']:.3f} ({baseline['rule']}).") in text
    assert "f1 on 1000 selection examples, best constant prediction there 20" in text
    # F1's two standard errors on 1,000 questions: 3.16; 40 clears 20 + 3.16 at 100 steps
    # Tuning at the trained tasks' median fraction of the steps (here sst2's alone): squad,
    # untrained, has no tuning length of its own.
    fraction = params.tuning_steps("sst2") / params.train_for("sst2").max_steps
    cells = len(params.sweep.optimizers) * 2
    hours = cells * (params.tuning.trials * fraction + 3) * 100 * 2.0 / 3600
    assert "at 100 steps: the protocol" in text and f"{hours:.1f} hours" in text
    assert "| squad " not in text.split("## Does each task")[0]  # not in the paper's table


def test_a_sparse_design_renders(outputs) -> None:
    """A task trained in one setting only (the cpu profile's SQuAD): the report renders, and
    the performance profile counts each optimizer over the tasks it ran."""
    raw = synthetic.params().model_dump(mode="json")
    raw["sweep"]["cells"] = {key: cell for key, cell in raw["sweep"]["cells"].items()
                             if not (cell["task"] == "squad" and cell["setting"] == "fair")}
    raw["compress"]["tasks"] = ["sst2"]
    params = synthetic.parse_params(raw)

    def kept(table: pd.DataFrame) -> pd.DataFrame:
        return table[~((table.task == "squad") & (table.setting == "fair"))]

    sparse = dataclasses.replace(outputs, summary=kept(outputs.summary),
                                 paired=kept(outputs.paired), runs=kept(outputs.runs))
    text = render(sparse, params, REGISTRATION, RECORD)
    assert "## Verdict" in text and "| squad" in text
    profile = performance_profile(sparse.summary, "fair")
    assert profile.notna().all().all()


def test_each_controlled_run_shows_its_cuts_and_the_step_it_kept() -> None:
    runs = pd.DataFrame({
        "task": "sst2", "optimizer": ["adaptive_adam"] * 3 + ["adamw"], "setting": "fair",
        "seed": [0, 1, 2, 0], "controlled": [True, True, True, False],
        "status": ["ok", "ok", "diverged", "ok"], "cut_steps": ["60 120", float("nan"), "20", ""],
        "best_step": [40, 100, None, 80]})
    text = selected_steps_markdown(runs)
    assert text.startswith("1 of 2 finished controlled runs cut at least once; in 1 of them "
                           "the kept weights came before the first cut.")
    assert ("| sst2 · adaptive_adam · fair |      0 | 60 120          "
            "| 40 (before the first cut) |") in text
    assert "| sst2 · adaptive_adam · fair |      1 | none" in text
    assert "adamw" not in text


def test_the_report_shows_the_controller_figure(outputs) -> None:
    text = render(outputs, synthetic.params(), REGISTRATION, RECORD)
    assert "](figures/controller.png)" in text
