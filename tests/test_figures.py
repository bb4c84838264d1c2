"""Tests of adaopt.figures: every figure is drawn from a synthetic sweep, identically twice."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import synthetic_runs as synthetic
from matplotlib.figure import Figure

from adaopt import figures
from adaopt.summary import PAIRED_COLUMNS, load_logs, load_runs, paired_comparisons, sweep_cells

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["training_loss.png", "dev_metric.png", "final_metric.png", "learning_rate.png",
         "paired_difference.png", "lm_validation_loss.png", "controller.png"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    project = synthetic.write_project(tmp_path_factory.mktemp("project"))
    runs_dir = project / "runs"
    cells = sweep_cells(synthetic.params())
    runs = load_runs(runs_dir, cells)
    return {"runs": runs, "train_log": load_logs(runs_dir, "train", cells),
            "evals": load_logs(runs_dir, "eval", cells),
            "paired": paired_comparisons(runs, runs_dir, project / "data" / "prepared",
                                         synthetic.registration(samples=200), {})}


def draw(inputs: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    return figures.draw_all(inputs["runs"], inputs["train_log"], inputs["evals"],
                            inputs["paired"], out, 0.95)


def test_every_figure_is_written_and_redraws_identically(inputs, tmp_path: Path) -> None:
    first, second = draw(inputs, tmp_path / "a"), draw(inputs, tmp_path / "b")
    assert [path.name for path in first] == NAMES
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes()[:8] == PNG
        assert one.read_bytes() == two.read_bytes(), one.name


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures as drawn, kept open instead of saved."""
    drawn: list[Figure] = []

    def keep(figure: Figure, path: Path) -> Path:
        drawn.append(figure)
        return path

    monkeypatch.setattr(figures, "_save", keep)
    yield drawn
    for figure in drawn:
        plt.close(figure)


def texts(figure: Figure) -> dict[str, list[str]]:
    return {ax.get_title(): [text.get_text() for text in ax.texts] for ax in figure.axes}


def test_final_metric_marks_finished_seeds_on_every_bar(inputs, kept, tmp_path: Path) -> None:
    figures.final_metric(inputs["runs"], tmp_path / "final_metric.png")
    panels = texts(kept[0])
    assert sorted(panels) == ["squad · exact_match", "squad · f1", "sst2 · accuracy"]
    labels = panels["sst2 · accuracy"]
    assert len(labels) == len(synthetic.OPTIMIZERS) * 2  # one per bar, diverged ones too
    assert labels.count("3/3") == 8 and "2/3" in labels and "diverged 0/3" in labels


def test_bar_labels_sit_on_seaborns_bars(inputs, kept, tmp_path: Path) -> None:
    figures.final_metric(inputs["runs"], tmp_path / "final_metric.png")
    ax = kept[0].axes[0]
    bars = sorted(round(bar.get_x() + bar.get_width() / 2, 6) for bar in ax.patches
                  if bar.get_height() == bar.get_height() and bar.get_width() > 0)
    labelled = {round(text.get_position()[0], 6) for text in ax.texts
                if text.get_text() != "diverged 0/3"}
    assert set(bars) == labelled


def test_paired_difference_has_a_panel_per_task_and_setting(inputs, kept,
                                                            tmp_path: Path) -> None:
    figures.paired_difference(inputs["paired"], tmp_path / "paired_difference.png")
    axes = kept[0].axes
    assert len(axes) == len(synthetic.TASKS) * 2
    assert [tick.get_text() for tick in axes[-1].get_xticklabels()] == [
        "sgd", "adam", "lamb", "adaptive_adam"]
    assert "n=3" in [text.get_text() for text in axes[0].texts]


def test_paired_difference_without_a_reference_still_writes_a_figure(tmp_path: Path) -> None:
    empty = pd.DataFrame(columns=PAIRED_COLUMNS)
    path = figures.paired_difference(empty, tmp_path / "paired_difference.png")
    assert path.read_bytes()[:8] == PNG


def test_language_model_curves_by_tokens_and_by_time_with_a_band_per_optimizer(
        kept, tmp_path: Path) -> None:
    rows = [{"task": "lm_pretrain", "optimizer": optimizer, "setting": setting, "seed": seed,
             "step": step, "tokens": 1000 * step, "elapsed_s": 0.1 * step + 0.01 * seed,
             "loss": 3.0 - 0.1 * step + offset + 0.01 * seed}
            for optimizer, offset in (("sgd", 0.5), ("adamw", 0.0))
            for setting in ("fair", "traditional") for seed in range(3) for step in (1, 2, 3)]
    figures.language_model(pd.DataFrame(rows), tmp_path / "lm_validation_loss.png")
    axes = kept[0].axes
    assert [ax.get_title() for ax in axes] == ["traditional · lm_pretrain"] * 2 + [
        "fair · lm_pretrain"] * 2
    assert [ax.get_xlabel() for ax in axes[:2]] == ["tokens seen",
                                                    "training time (s, evaluation excluded)"]
    assert len(axes[0].lines) == 2 and len(axes[0].collections) == 2  # a line and band each
    assert list(axes[0].lines[1].get_xdata()) == [1000, 2000, 3000]  # adamw, by tokens


def test_no_language_model_in_the_sweep_still_writes_its_figure(inputs, tmp_path: Path) -> None:
    path = figures.language_model(inputs["evals"], tmp_path / "lm_validation_loss.png")
    assert path.read_bytes()[:8] == PNG


def test_a_sparse_design_draws_every_figure(tmp_path: Path) -> None:
    """The cpu profile's kind of design: one task in the traditional setting only, cells with
    fewer seeds than others."""
    project = synthetic.write_project(tmp_path / "project")
    raw = synthetic.params().model_dump(mode="json")
    cells = raw["sweep"]["cells"]
    for key in [key for key, cell in cells.items()
                if cell["task"] == "squad" and cell["setting"] == "fair"]:
        del cells[key]
    cells["sst2-lamb-traditional"]["seeds"] = [0, 1]
    cells.pop("sst2-sgd-fair")
    raw["compress"]["tasks"] = ["sst2"]
    design = sweep_cells(synthetic.parse_params(raw))
    runs_dir = project / "runs"
    runs = load_runs(runs_dir, design)
    paired = paired_comparisons(runs, runs_dir, project / "data" / "prepared",
                                synthetic.registration(samples=200), {})
    drawn = figures.draw_all(runs, load_logs(runs_dir, "train", design),
                             load_logs(runs_dir, "eval", design), paired, tmp_path / "out", 0.95)
    assert [path.name for path in drawn] == NAMES


def test_the_controller_figure_draws_the_seed_that_cut_most_with_its_cuts(
    inputs, kept, tmp_path: Path,
) -> None:
    """The synthetic sweep's AdaptiveAdam cuts in the traditional setting: seed 1 twice."""
    figures.controller(inputs["runs"], inputs["train_log"], inputs["evals"],
                       tmp_path / "controller.png", setting="traditional")
    [figure] = kept
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[:2] == ["sst2, seed 1: 2 cuts", "squad, seed 1: 2 cuts"]
    lr_ax = figure.axes[0]
    assert sorted(line.get_xdata()[0] for line in lr_ax.lines
                  if line.get_linestyle() == ":") == [20, 30]  # the cuts, dotted
    assert [line.get_label() for line in lr_ax.lines[:2]] == ["adaptive_adam", "adamw"]


def test_the_seed_that_cut_most_is_the_story(inputs) -> None:
    assert figures.story_seed(inputs["runs"], "sst2", "traditional") == 1
    assert figures.story_seed(inputs["runs"], "sst2", "fair") == 0  # no cut: the lowest seed
