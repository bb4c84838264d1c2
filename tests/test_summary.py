"""Tests of adaopt.summary on a synthetic sweep written in the train stage's layout."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic_runs as synthetic
import yaml
from design import full_matrix

from adaopt.config import SETTINGS, parse_params
from adaopt.statistics import (
    EQUIVALENT,
    IDENTICAL,
    INCONCLUSIVE,
    UNTESTED,
    confidence_interval,
    holm,
)
from adaopt.summary import (
    PAIRED_COLUMNS,
    PRIMARY,
    bootstrap_intervals,
    cell_records,
    cuts_label,
    headline_markdown,
    headline_metrics,
    load_baselines,
    load_choices,
    load_logs,
    load_runs,
    paired_comparisons,
    read_choices,
    report_markdown,
    summarize,
    sweep_cells,
    throughput_noise,
    time_to_target,
    to_markdown,
    tuning_markdown,
)

LEVEL = 0.95
SAMPLES = 300
TTT = ["time_to_target_steps", "time_to_target_examples", "time_to_target_tokens",
       "time_to_target_s"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def tables(project: Path) -> dict[str, pd.DataFrame]:
    params = synthetic.params()
    cells = sweep_cells(params)
    runs = load_runs(project / "runs", cells)
    evals = load_logs(project / "runs", "eval", cells)
    ttt = time_to_target(runs, evals, params.evaluate.targets)
    bootstrap = bootstrap_intervals(runs, project / "runs", project / "data" / "prepared",
                                    LEVEL, SAMPLES)
    baselines = load_baselines(project / "data" / "prepare_report.json")
    summary = summarize(runs, ttt, LEVEL, bootstrap, baselines)
    return {"runs": runs, "evals": evals, "ttt": ttt, "summary": summary,
            "paired": compare(project, runs),
            "choices": load_choices(project / "tuning", params)}


def compare(project: Path, runs: pd.DataFrame, margins: dict[str, float] | None = None,
            signal: dict[str, bool] | None = None) -> pd.DataFrame:
    return paired_comparisons(runs, project / "runs", project / "data" / "prepared",
                              synthetic.registration(margins, SAMPLES), signal or {})


def cell(tables: dict[str, pd.DataFrame], task: str, optimizer: str, setting: str) -> pd.Series:
    return tables["summary"].set_index(["task", "optimizer", "setting"]).loc[
        (task, optimizer, setting)]


def dev(correct: list[int]) -> list[float]:
    return [k / synthetic.N_DEV for k in correct]


# ----------------------------------------------------------------------------- the sweep


def test_sweep_cells_are_tasks_optimizers_settings_seeds() -> None:
    params = parse_params(yaml.safe_load((synthetic.ROOT / "profiles" / "smoke.yaml")
                                         .read_text()))
    cells = sweep_cells(params)
    assert len(cells) == (len(params.sweep.tasks) * len(params.sweep.optimizers) * len(SETTINGS)
                          * len(params.sweep.seeds))
    first, seeds = params.sweep.tasks[0], params.sweep.seeds
    assert cells[:len(seeds) + 1] == [
        *[(first, params.sweep.optimizers[0], SETTINGS[0], seed) for seed in seeds],
        (first, params.sweep.optimizers[0], SETTINGS[1], seeds[0])]


def test_a_sparse_design_is_summarized_and_paired_cell_by_cell(project: Path) -> None:
    """A design that leaves cells out and gives one cell fewer seeds: the runs read are exactly
    its cells' seeds, and no comparison is made with a cell the design left out (no "not
    testable" row for it)."""
    raw = synthetic.params().model_dump(mode="json")
    cells = raw["sweep"]["cells"]
    for key in [key for key, cell in cells.items()
                if cell["setting"] == "traditional" and cell["optimizer"] != "adam"]:
        del cells[key]  # the traditional setting: Adam alone
    cells["sst2-lamb-fair"]["seeds"] = [0, 1]
    params = parse_params(raw)
    runs = load_runs(project / "runs", sweep_cells(params))
    assert len(runs) == sum(len(cell.seeds) for cell in params.cells)
    assert sorted(runs[(runs.task == "sst2") & (runs.optimizer == "lamb")].seed) == [0, 1]
    paired = compare(project, runs)
    traditional = paired[paired.setting == "traditional"]
    assert traditional.empty  # Adam has no reference beside it there
    fair = paired[(paired.task == "sst2") & (paired.optimizer == "lamb")
                  & (paired.reference == "adamw")]
    assert fair.pairs.tolist() == [2]


def test_load_runs_reads_the_sweep_and_ignores_other_runs(tables) -> None:
    runs = tables["runs"]
    assert len(runs) == len(synthetic.TASKS) * len(synthetic.OPTIMIZERS) * 2 * 3
    assert "rmsprop" not in set(runs.optimizer) and 3 not in set(runs.seed)
    row = runs.set_index(["task", "optimizer", "setting", "seed"]).loc[
        ("sst2", "lamb", "fair", 1)]
    assert (row.status, row.score, row.metric, row.best_step) == ("early_stopped", 0.9,
                                                                  "accuracy", 30)
    assert (row["dev.accuracy"], row["hparams.lr"], row.wall_time_s) == (0.9, 0.001, 11.0)
    diverged = runs.set_index(["task", "optimizer", "setting", "seed"]).loc[
        ("squad", "sgd", "fair", 0)]
    assert diverged.status == "diverged" and math.isnan(diverged.score)


def test_load_runs_reads_the_controllers_cuts_and_the_machine(tables) -> None:
    runs = tables["runs"].set_index(["task", "optimizer", "setting", "seed"])
    method = runs.loc[("squad", "adaptive_adam", "traditional", 1)]
    assert method.controlled and method.cuts == 2 and method.cut_steps == "20 30"
    untouched = runs.loc[("squad", "adaptive_adam", "fair", 1)]
    assert untouched.controlled and untouched.cuts == 0 and untouched.cut_steps == ""
    assert not runs.loc[("squad", "adamw", "fair", 1)].controlled
    assert set(runs["machine.device"]) == {"cpu"} and set(runs["machine.threads"]) == {2}


def test_a_run_that_predates_the_cuts_record_is_not_recorded(tmp_path: Path) -> None:
    """metrics.json without ``controlled``, ``cuts`` and ``machine``: the cuts are unknown
    (NaN, "not recorded"), never zero; controlled follows the optimizer."""
    cells = [("sst2", "adaptive_adam", "traditional", seed) for seed in synthetic.SEEDS]
    for cell, correct in zip(cells, synthetic.CORRECT["adaptive_adam", "traditional"],
                             strict=True):
        synthetic.write_run(tmp_path, *cell, correct)
    path = tmp_path / "sst2" / "adaptive_adam" / "traditional" / "seed1" / "metrics.json"
    old = {key: value for key, value in json.loads(path.read_text()).items()
           if key not in ("controlled", "cuts", "machine")}
    path.write_text(json.dumps(old))
    runs = load_runs(tmp_path, cells)
    assert runs.controlled.all() and runs.cuts.isna().tolist() == [False, True, False]
    ttt = time_to_target(runs, load_logs(tmp_path, "eval", cells), synthetic.TARGETS)
    assert summarize(runs, ttt, LEVEL).cuts.tolist() == ["not recorded"]
    assert cuts_label(pd.Series([2.0, 0.0, 1.0])) == "2 0 1"


def test_a_missing_run_of_the_sweep_is_named(project: Path) -> None:
    cells = [("sst2", "adamw", "fair", 0), ("sst2", "lamb", "fair", 7),
             ("rte", "adamw", "fair", 0)]
    with pytest.raises(FileNotFoundError, match=r"sst2/lamb/fair/seed7/metrics\.json: missing "
                                                r"\(2 of the sweep's 3 runs\)"):
        load_runs(project / "runs", cells)


def test_load_logs_reads_every_run_in_long_form(tables, project: Path) -> None:
    evals = tables["evals"]
    assert {"step", "elapsed_s", "accuracy", "f1", "task", "optimizer", "setting",
            "seed"} <= set(evals.columns)
    train = load_logs(project / "runs", "train", sweep_cells(synthetic.params()))
    assert {"step", "loss", "lr", "grad_norm", "elapsed_s"} <= set(train.columns)
    at_once = train[(train.optimizer == "sgd") & (train.setting == "fair")]
    assert set(at_once.seed) == {1, 2}  # seed 0 diverged at once: header only
    assert "rmsprop" not in set(train.optimizer)


# ----------------------------------------------------------------------------- time to target


def test_time_to_target_uses_the_fixed_line_from_params(tables) -> None:
    """Counted in optimizer steps and in examples (and tokens) seen, from the eval log; the
    seconds beside them."""
    ttt = tables["ttt"].set_index(["task", "optimizer", "setting", "seed"])
    assert ttt.loc["sst2"].target.unique().tolist() == [0.72]
    assert ttt.loc["squad"].target.unique().tolist() == [72.0]
    adamw = ttt.loc[("sst2", "adamw", "traditional", 0)]  # 0.55, 0.65, 0.75 at steps 10-30
    assert (adamw.time_to_target_steps, adamw.time_to_target_examples,
            adamw.time_to_target_tokens, adamw.time_to_target_s) == (30, 240, 4800, 3.0)
    lamb = ttt.loc[("sst2", "lamb", "fair", 1)]  # 0.8 at step 20
    assert (lamb.time_to_target_steps, lamb.time_to_target_examples) == (20, 160)
    assert lamb.time_to_target_s == pytest.approx(2.2)
    lower = time_to_target(tables["runs"], tables["evals"], {"sst2": 0.5, "squad": 50.0})
    early = lower.set_index(["task", "optimizer", "setting", "seed"]).loc[
        ("sst2", "adamw", "traditional", 0)]  # 0.55 at step 10
    assert (early.time_to_target_steps, early.time_to_target_examples) == (10, 80)


def test_a_task_without_a_target_has_no_time_to_target(tables) -> None:
    ttt = time_to_target(tables["runs"], tables["evals"], {"sst2": 0.72})
    squad = ttt[ttt.task == "squad"]
    assert squad[TTT].isna().all().all() and not squad.reached_target.any()
    assert ttt[ttt.task == "sst2"].reached_target.any()
    summary = summarize(tables["runs"], ttt, LEVEL).set_index(["task", "optimizer", "setting"])
    assert math.isnan(summary.loc[("squad", "adamw", "fair"), "time_to_target_median_steps"])
    assert "no target" in to_markdown(summary.reset_index())


def test_a_run_that_misses_the_target_is_kept_as_not_reached(tables) -> None:
    ttt = tables["ttt"].set_index(["task", "optimizer", "setting", "seed"])
    missed = ttt.loc[("sst2", "adamw", "traditional", 2)]  # ends at 0.70 < 0.72
    assert not missed.reached_target and np.isinf(missed[TTT].to_numpy(float)).all()
    assert len(ttt) == len(tables["runs"])  # no run dropped
    adamw = cell(tables, "sst2", "adamw", "traditional")
    assert (adamw.reached_target, adamw.seeds) == (2, 3)
    # medians of (30, 30, inf) steps, (240, 240, inf) examples, (3.0, 3.3, inf) seconds
    assert (adamw.time_to_target_median_steps, adamw.time_to_target_median_examples) == (30, 240)
    assert adamw.time_to_target_median_s == pytest.approx(3.3)


def test_a_diverged_run_is_not_reached_even_past_the_line(tables) -> None:
    """sgd/traditional seed 2 scored 0.8 on the selection split, then diverged."""
    ttt = tables["ttt"].set_index(["task", "optimizer", "setting", "seed"])
    assert not ttt.loc[("sst2", "sgd", "traditional", 2), "reached_target"]
    sgd = cell(tables, "sst2", "sgd", "traditional")
    assert sgd.reached_target == 0 and math.isinf(sgd.time_to_target_median_steps)
    assert math.isinf(sgd.time_to_target_median_examples)


def test_the_median_is_not_reached_when_under_half_reached() -> None:
    runs = pd.DataFrame({"task": "sst2", "optimizer": "adamw", "setting": "fair",
                         "seed": [0, 1, 2], "metric": "accuracy", "greater_is_better": True,
                         "status": "ok"})
    evals = pd.DataFrame({"task": "sst2", "optimizer": "adamw", "setting": "fair",
                          "seed": [0, 1, 2], "step": 10, "samples": 80,
                          "elapsed_s": [1.0, 2.0, 3.0], "accuracy": [0.9, 0.5, 0.5]})
    ttt = time_to_target(runs, evals, {"sst2": 0.8})
    assert ttt.reached_target.tolist() == [True, False, False]
    assert math.isinf(np.median(ttt.time_to_target_steps))
    assert ttt.time_to_target_examples.tolist() == [80, math.inf, math.inf]


def test_a_log_that_predates_a_unit_has_no_count_in_it() -> None:
    """An eval log without ``samples`` or ``tokens``: the run reached its line (steps), but
    what it saw by then is unknown (NaN), not never (+inf)."""
    runs = pd.DataFrame({"task": ["sst2"], "optimizer": "adamw", "setting": "fair", "seed": 0,
                         "metric": "accuracy", "greater_is_better": True, "status": "ok"})
    evals = pd.DataFrame({"task": "sst2", "optimizer": "adamw", "setting": "fair", "seed": 0,
                          "step": [10, 20], "elapsed_s": [1.0, 2.0], "accuracy": [0.5, 0.9]})
    row = time_to_target(runs, evals, {"sst2": 0.8}).iloc[0]
    assert row.reached_target and row.time_to_target_steps == 20
    assert math.isnan(row.time_to_target_examples) and math.isnan(row.time_to_target_tokens)


def test_lower_is_better_metrics_reach_from_above() -> None:
    runs = pd.DataFrame({"task": ["sst2"], "optimizer": "adamw", "setting": "fair", "seed": 0,
                         "metric": "loss", "greater_is_better": False, "status": "ok"})
    evals = pd.DataFrame({"task": "sst2", "optimizer": "adamw", "setting": "fair", "seed": 0,
                          "step": [10, 20], "samples": [80, 160], "elapsed_s": [1.0, 2.0],
                          "loss": [0.9, 0.4]})
    reached = time_to_target(runs, evals, {"sst2": 0.5})
    assert reached.time_to_target_steps.tolist() == [20]
    assert reached.time_to_target_examples.tolist() == [160]


# ----------------------------------------------------------------------------- the summary


def test_summary_counts_finished_seeds_and_leaves_diverged_ones_out(tables) -> None:
    sgd = cell(tables, "sst2", "sgd", "traditional")
    assert (sgd.seeds, sgd.finished, sgd.diverged) == (3, 2, 1)
    assert sgd["mean"] == pytest.approx(np.mean(dev([20, 22])))
    assert (sgd.ci_low, sgd.ci_high) == pytest.approx(confidence_interval(dev([20, 22])))
    lamb = cell(tables, "sst2", "lamb", "fair")
    assert (lamb.finished, lamb.early_stopped) == (3, 1)  # stopping early is finishing
    never = cell(tables, "squad", "sgd", "fair")
    assert (never.finished, never.diverged) == (0, 3)
    assert math.isnan(never["mean"]) and math.isnan(never.bootstrap_low)


def test_summary_carries_every_dev_metric_and_the_baseline(tables) -> None:
    squad = cell(tables, "squad", "adamw", "fair")
    assert squad["f1.mean"] == squad["mean"] and squad["exact_match.mean"] == pytest.approx(75.0)
    assert (squad.baseline, squad.baseline_rule) == (10.0, "best-overlap sentence")
    assert math.isnan(cell(tables, "sst2", "adamw", "fair")["exact_match.mean"])


def test_summary_shows_each_controlled_cells_cuts_in_seed_order(tables) -> None:
    assert cell(tables, "sst2", "adaptive_adam", "traditional").cuts == "1 2 1"
    assert cell(tables, "sst2", "adaptive_adam", "fair").cuts == "0 0 0"
    assert cell(tables, "sst2", "adamw", "fair").cuts == ""  # no controller to cut


def test_summary_carries_the_selection_mean_and_the_throughput_noise(tables) -> None:
    """The selection-split mean (what picks a best cell) and the relative spread of samples/s
    over the seeds (100, 101, 102: 1/101)."""
    lamb = cell(tables, "sst2", "lamb", "fair")
    assert lamb.selection_mean == pytest.approx(np.mean(dev([34, 36, 33])))
    assert lamb.throughput_noise == pytest.approx(1 / 101)
    assert math.isnan(cell(tables, "sst2", "sgd", "fair").throughput_noise)  # none finished
    assert math.isnan(throughput_noise(pd.Series([100.0])))


def test_bootstrap_interval_of_each_cell_contains_its_mean(tables) -> None:
    finished = tables["summary"][tables["summary"].finished > 0]
    assert (finished.bootstrap_low < finished["mean"]).all()
    assert (finished["mean"] < finished.bootstrap_high).all()


def test_bootstrap_intervals_are_deterministic(tables, project: Path) -> None:
    again = bootstrap_intervals(tables["runs"], project / "runs", project / "data" / "prepared",
                                LEVEL, 300)
    pd.testing.assert_frame_equal(again, tables["summary"][again.columns])


def test_a_missing_report_means_no_baselines(tmp_path: Path) -> None:
    assert load_baselines(tmp_path / "prepare_report.json").empty


def test_summary_rows_follow_the_sweep(tables) -> None:
    summary = tables["summary"]
    assert len(summary) == len(synthetic.TASKS) * len(synthetic.OPTIMIZERS) * 2
    assert list(dict.fromkeys(summary.task)) == list(synthetic.TASKS)


# ----------------------------------------------------------------------------- paired


def paired_row(paired: pd.DataFrame, task: str, setting: str, reference: str, optimizer: str
               ) -> pd.Series:
    return paired.set_index(["task", "setting", "reference", "optimizer"]).loc[
        (task, setting, reference, optimizer)]


def test_a_copy_of_the_reference_is_identical_and_untested(tables) -> None:
    row = paired_row(tables["paired"], "sst2", "fair", "adamw", "adam")
    assert (row.difference, row.pairs) == (0.0, 3) and math.isnan(row.low)
    assert row.identical and row.verdict == IDENTICAL and not row.votes
    assert math.isnan(row.p_adjusted) and math.isnan(row.detectable)


def test_the_method_without_a_cut_is_identical_with_zero_cuts(tables) -> None:
    """In the fair setting AdaptiveAdam is AdamW plus its cuts: no cut, the same runs."""
    row = paired_row(tables["paired"], "squad", "fair", "adamw", "adaptive_adam")
    assert row.identical and row.verdict == IDENTICAL and row.cuts == 0 and not row.votes
    assert row.family == PRIMARY and row.family_size == 4  # two comparisons x two tasks


def test_one_more_example_right_on_every_seed_is_inconclusive(tables) -> None:
    """adaptive_adam/traditional: +1/40 on every seed, a single dev example each (another
    on each seed): seeds that agree this closely are luck, not certainty."""
    row = paired_row(tables["paired"], "sst2", "traditional", "adamw", "adaptive_adam")
    assert row.difference == pytest.approx(1 / synthetic.N_DEV) and row.low < 0 < row.high
    assert not row.identical and row.verdict == INCONCLUSIVE and row.cuts == 4
    assert row.p_value > 0.05 and row.detectable > row.difference and row.votes


def test_the_planted_difference_is_not_certain_on_forty_dev_examples(tables) -> None:
    """lamb gets 4 to 6 more of SQuAD's 40 dev questions right than adamw on each seed, the
    same questions: the seeds agree, but another dev set of 40 could hold few of them, and
    three seeds give the t distribution two degrees of freedom."""
    paired = tables["paired"]
    row = paired_row(paired, "squad", "traditional", "adamw", "lamb")
    assert row.difference > 0 > row.low and row.verdict == INCONCLUSIVE and row.df == 2
    assert row.p_value < row.p_adjusted
    assert row.detectable > row.difference
    assert paired_row(paired, "sst2", "traditional", "adam", "lamb").difference == \
        pytest.approx(np.mean(dev([4, 4, 5])))
    family = paired[(paired.setting == "traditional") & (paired.reference == "adamw")
                    & (paired.optimizer == "lamb")]
    assert list(family.task) == list(synthetic.TASKS)  # a family: one pair over the tasks
    assert family.p_adjusted.tolist() == pytest.approx(
        holm(family.p_value.to_numpy(), 1 - LEVEL).tolist())


def test_a_diverged_seed_counts_as_its_cells_worst(tables) -> None:
    """sgd/traditional diverged on seed 2 (20 and 22 right on seeds 0 and 1): seed 2 counts
    with seed 0's predictions, against adamw's seed 2 (28 right), instead of dropping out."""
    row = paired_row(tables["paired"], "sst2", "traditional", "adamw", "sgd")
    assert (row.pairs, row.diverged, row.reference_diverged) == (3, 1, 0)
    assert row.per_seed == " ".join(f"{d:+.4g}" for d in dev([20 - 30, 22 - 32, 20 - 28]))
    none = paired_row(tables["paired"], "sst2", "fair", "adamw", "sgd")  # every seed diverged
    assert none.pairs == 0 and none.diverged == 3 and math.isnan(none.low)
    assert none.verdict == UNTESTED


def test_a_declared_margin_makes_a_small_difference_equivalent(tables, project: Path) -> None:
    """+1/40 (F1 +1.25) on every seed is within ±0.2 (±20 F1 points); a task without a
    margin gets no equivalence test."""
    paired = compare(project, tables["runs"], {"sst2": 0.2})
    row = paired_row(paired, "sst2", "traditional", "adamw", "adaptive_adam")
    assert (row.margin, row.verdict) == (0.2, EQUIVALENT)
    assert row.p_equivalent_adjusted < 1 - LEVEL
    squad = paired_row(paired, "squad", "traditional", "adamw", "adaptive_adam")
    assert math.isnan(squad.margin) and math.isnan(squad.p_equivalent)
    assert squad.verdict == INCONCLUSIVE
    both = compare(project, tables["runs"], {"sst2": 0.2, "squad": 20.0})
    assert paired_row(both, "squad", "traditional", "adamw", "adaptive_adam").verdict == \
        EQUIVALENT


def test_paired_comparisons_are_deterministic(tables, project: Path) -> None:
    pd.testing.assert_frame_equal(compare(project, tables["runs"]), tables["paired"])
    assert list(tables["paired"].columns) == PAIRED_COLUMNS


def test_a_reference_outside_the_sweep_is_skipped(tables, project: Path) -> None:
    runs = tables["runs"][tables["runs"].optimizer != "adam"]
    paired = compare(project, runs)
    assert set(paired.reference) == {"adamw"}
    assert set(paired.optimizer) == {"sgd", "lamb", "adaptive_adam"}
    none = compare(project, runs[runs.optimizer != "adamw"])
    assert none.empty and list(none.columns) == PAIRED_COLUMNS


# ----------------------------------------------------------------------------- Markdown


def table_rows(text: str) -> dict[str, list[str]]:
    return {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("|")}


def test_headline_shows_partial_divergence(tables) -> None:
    text = headline_markdown(tables["summary"])
    traditional, fair = text.split("### fair")
    assert traditional.startswith("### traditional")
    rows = table_rows(traditional)
    assert rows["optimizer"] == ["sst2 (accuracy)", "squad (f1)"]
    low, high = confidence_interval(dev([20, 22]))
    assert rows["sgd"][0] == f"0.525 ± {(high - low) / 2:.3f} (2/3, 1 diverged)"
    low, high = confidence_interval(dev([30, 32, 28]))
    assert rows["adamw"][0] == f"0.750 ± {(high - low) / 2:.3f} (3/3)"
    assert table_rows(fair)["sgd"] == ["diverged (0/3)", "diverged (0/3)"]


def test_headline_lists_optimizers_in_the_registry_order(tables) -> None:
    from adaopt.optim import OPTIMIZERS

    rows = list(table_rows(headline_markdown(tables["summary"]).split("### fair")[1]))[2:]
    assert rows == [name for name in OPTIMIZERS if name in synthetic.OPTIMIZERS]


def test_detailed_table_shows_k_of_n_both_intervals_and_time_to_target(tables) -> None:
    lines = to_markdown(tables["summary"]).splitlines()
    assert lines[0].startswith("| task")
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line for line in lines[2:]}
    sgd = rows["sst2", "traditional", "sgd"]
    assert "| 2/3, 1 diverged |" in sgd and "not reached (0/3 reached)" in sgd
    adamw = rows["sst2", "traditional", "adamw"]
    summary = cell(tables, "sst2", "adamw", "traditional")
    assert f"[{summary.ci_low:.4f}, {summary.ci_high:.4f}]" in adamw
    assert f"[{summary.bootstrap_low:.4f}, {summary.bootstrap_high:.4f}]" in adamw
    assert "0.5000 (majority class)" in adamw
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    shown = dict(zip(header, (c.strip() for c in adamw.strip("|").split("|")), strict=True))
    assert shown["time to target (median)"] == "30 steps, 240 examples (2/3 reached)"
    assert shown["samples/s spread"] == "1.0%" and shown["cuts per run"] == ""
    assert "exact_match 75.0000 ± 5.0000" in rows["squad", "fair", "adamw"]
    assert "| diverged " in rows["squad", "fair", "sgd"]
    assert "| 1 2 1 " in rows["sst2", "traditional", "adaptive_adam"]


def test_report_opens_with_the_papers_table_then_paired_then_every_cell(tables) -> None:
    report = report_markdown(tables["summary"], tables["paired"], tables["runs"],
                             tables["choices"])
    assert report.startswith("## The paper's table")
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings == ["## The paper's table", "## Paired comparisons", "## Every cell",
                        "## Tuned hyperparameters", "## Runs that did not finish normally"]
    paired = report.split("## Paired comparisons")[1].split("## Every cell")[0]
    rows = table_rows(paired.split("### traditional: minus adamw")[1].split("###")[0])
    assert rows["adam"][0] == "identical (0 cuts)"
    lamb = paired_row(tables["paired"], "sst2", "traditional", "adamw", "lamb")
    assert rows["lamb"][0] == f"+0.108 [{lamb.low:+.3f}, {lamb.high:+.3f}] inconclusive"
    assert rows["adaptive_adam"][0].endswith(" inconclusive")
    assert rows["sgd"][0].endswith(" inconclusive")
    fair = table_rows(paired.split("### fair: minus adamw")[1].split("###")[0])
    assert fair["sgd"][0] == "n/a (0 pairs)"
    assert fair["adaptive_adam"] == ["identical (0 cuts)", "identical (0 cuts)"]
    unfinished = report.split("## Runs that did not finish normally")[1]
    assert "early_stopped" in unfinished and unfinished.count("| diverged ") == 8


# ----------------------------------------------------------------------------- tuning


def test_the_choices_of_the_sweep_are_read_with_their_flags(tables) -> None:
    choices = tables["choices"].set_index(["task", "optimizer", "setting"])
    assert len(choices) == len(synthetic.TASKS) * len(synthetic.OPTIMIZERS) * 2
    assert choices.loc[("sst2", "lamb", "fair"), "hparams.lr"] == 0.01
    assert choices.loc[("sst2", "lamb", "fair"), "edges"] == "lr at the upper edge"
    assert choices.loc[("squad", "sgd", "fair"), "no_finished_trial"]
    assert not choices.loc[("squad", "sgd", "traditional"), "no_finished_trial"]


def test_a_missing_choice_is_named(project: Path) -> None:
    params = synthetic.params()
    raw = params.model_dump(mode="json")
    raw["sweep"]["optimizers"] = [*raw["sweep"]["optimizers"], "rmsprop"]
    full_matrix(raw)
    with pytest.raises(FileNotFoundError, match=r"rmsprop/traditional/choice\.json: missing"):
        load_choices(project / "tuning", parse_params(raw))


def test_the_tuning_table_shows_each_choice_and_its_edge(tables) -> None:
    lines = tuning_markdown(tables["choices"]).splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:5]] == ["task", "setting", "optimizer", "lr"]
    lamb = next(line for line in lines if "| lamb " in line and "| fair " in line)
    assert "| 0.01 " in lamb and "lr at the upper edge" in lamb


def test_the_tuning_table_keeps_the_sweeps_order_when_read_back(tables, tmp_path) -> None:
    path = tmp_path / "tuning.csv"
    choices = tables["choices"]
    choices.assign(edges=choices.edges.where(choices.index > 0, "")).to_csv(path, index=False)
    header, _, *lines = tuning_markdown(read_choices(path)).splitlines()
    names = [cell.strip() for cell in header.split("|")]
    rows = [dict(zip(names, (cell.strip() for cell in line.split("|")), strict=True))
            for line in lines]
    keys = [(row["task"], row["setting"]) for row in rows]
    assert list(dict.fromkeys(keys)) == [
        (task, setting) for task in synthetic.TASKS for setting in SETTINGS]
    edges = {row["edges"] for row in rows}
    assert "" in edges and "nan" not in edges  # a choice inside its grid: a blank cell


def test_headline_metrics_are_the_papers_table_per_task(tables) -> None:
    metrics = headline_metrics(tables["summary"])
    assert set(metrics) == set(synthetic.TASKS)
    assert set(metrics["sst2"]) == set(SETTINGS)
    assert metrics["sst2"]["fair"]["sgd"] is None  # no seed finished
    adamw = cell(tables, "sst2", "adamw", "traditional")["mean"]
    assert metrics["sst2"]["traditional"]["adamw"] == round(adamw, 4)


def test_cell_records_hold_the_choices_and_scores_and_no_timing(project: Path) -> None:
    """What the compress stage reads: exact values from choice.json and metrics.json, the
    sweep's seeds only, nothing that changes between two runs of the same seed."""
    params = synthetic.params()
    records = cell_records(params, project / "runs", project / "tuning")
    assert list(records) == params.sweep.tasks
    sst2 = records["sst2"]["cells"]
    assert [(c["optimizer"], c["setting"]) for c in sst2] == list(
        itertools.product(params.sweep.optimizers, SETTINGS))
    for cell in sst2:
        choice = json.loads((project / "tuning" / "sst2" / cell["optimizer"] / cell["setting"]
                             / "choice.json").read_text())
        assert cell["hparams"] == choice["hparams"]
        assert [run["seed"] for run in cell["runs"]] == params.sweep.seeds  # not seed 3
        for run in cell["runs"]:
            metrics = json.loads((project / "runs" / "sst2" / cell["optimizer"] / cell["setting"]
                                  / f"seed{run['seed']}" / "metrics.json").read_text())
            assert run == {"seed": run["seed"], "status": metrics["status"],
                           "selection": metrics["selection"], "dev": metrics["dev"],
                           "machine": metrics["machine"]}
