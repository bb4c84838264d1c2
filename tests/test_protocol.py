"""The comparison policy: what each setting does to an optimizer, and the tuning ruleset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from adaopt import io
from adaopt.config import LogGrid, SettingConfig, load_params
from adaopt.data.lm import unigram_block_losses
from adaopt.optim import OPTIMIZERS, AdaptiveLR
from adaopt.protocol.settings import (
    build_optimization,
    controller_kwargs,
    has_controller,
    lr_plan,
    selection_standard_error,
)
from adaopt.protocol.tuning import Choice, Trial, choose, edges, off_centre, search_grid
from adaopt.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
CONSTANT = SettingConfig(schedule="constant")
CLIPPED = SettingConfig(schedule="constant", max_grad_norm=2.0)
FAIR = SettingConfig(schedule="exponential", warmup_ratio=0.2, decay_start_ratio=0.6,
                     gamma=0.3, max_grad_norm=0.5)
AA_SECTION = {"lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.1, "decay_start_ratio": 0.5,
              "gamma": 0.1, "patience": 2, "factor": 0.5}
LR = 0.01


def baseline_names() -> list[str]:
    return [name for name in OPTIMIZERS if not has_controller(name)]


def section(name: str) -> dict[str, Any]:
    """The committed section with a learning rate, as the final runs see it after tuning."""
    return {**load_params(ROOT / "params.yaml").optimizers[name], "lr": LR}


def _lrs(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[float]:
    """The learning rate each of ``steps`` optimizer steps uses."""
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


# ----------------------------------------------------------------------------- settings


def test_only_adaptive_adam_brings_its_own_controller() -> None:
    assert [name for name in OPTIMIZERS if has_controller(name)] == ["adaptive_adam"]


@pytest.mark.parametrize("name", baseline_names())
def test_traditional_baseline_gets_a_constant_lr_and_the_settings_clipping(name: str) -> None:
    opt = build_optimization(torch.nn.Linear(4, 2), name, section(name), "traditional",
                             CONSTANT, 20)
    assert opt.max_grad_norm is None
    assert not isinstance(opt.scheduler, AdaptiveLR)
    assert _lrs(opt.optimizer, opt.scheduler, 20) == [LR] * 20
    clipped = build_optimization(torch.nn.Linear(4, 2), name, section(name), "traditional",
                                 CLIPPED, 20)
    assert clipped.max_grad_norm == 2.0


@pytest.mark.parametrize("name", baseline_names())
def test_fair_baseline_gets_the_shared_exponential_plan_and_clipping(name: str) -> None:
    opt = build_optimization(torch.nn.Linear(4, 2), name, section(name), "fair", FAIR, 20)
    scheduler = opt.scheduler
    assert opt.max_grad_norm == FAIR.max_grad_norm
    assert isinstance(scheduler, AdaptiveLR) and not scheduler.adapt
    assert (scheduler.warmup_steps, scheduler.decay_start, scheduler.gamma) == (4, 12, 0.3)
    lrs = _lrs(opt.optimizer, scheduler, 20)
    assert lrs[0] == pytest.approx(LR / 4)  # warmup: (t + 1) / warmup_steps
    assert lrs[3:13] == pytest.approx([LR] * 10)
    assert lrs[13] < LR
    assert lrs[-1] == pytest.approx(LR * 0.3, rel=1e-12)  # the last step used runs at lr0 * gamma


def test_adaptive_adam_traditional_uses_its_own_section_and_the_settings_clipping() -> None:
    opt = build_optimization(torch.nn.Linear(4, 2), "adaptive_adam", AA_SECTION, "traditional",
                             CLIPPED, 20)
    scheduler = opt.scheduler
    assert isinstance(opt.optimizer, torch.optim.AdamW)
    assert isinstance(scheduler, AdaptiveLR) and scheduler.optimizer is opt.optimizer
    assert opt.max_grad_norm == 2.0  # clipping comes from the setting, for every optimizer
    assert scheduler.adapt and scheduler.patience == 2 and scheduler.factor == 0.5
    assert (scheduler.warmup_steps, scheduler.decay_start, scheduler.decay_steps,
            scheduler.gamma) == (2, 10, 9, 0.1)


def test_adaptive_adam_fair_uses_the_shared_plan_but_keeps_adapting() -> None:
    opt = build_optimization(torch.nn.Linear(4, 2), "adaptive_adam", AA_SECTION, "fair", FAIR, 20)
    scheduler = opt.scheduler
    assert opt.max_grad_norm == FAIR.max_grad_norm
    assert scheduler.adapt and scheduler.patience == 2
    assert (scheduler.warmup_steps, scheduler.decay_start, scheduler.decay_steps,
            scheduler.gamma) == (4, 12, 7, 0.3)


def test_adaptive_adam_section_ratio_keys_never_reach_the_optimizer() -> None:
    opt = build_optimization(torch.nn.Linear(4, 2), "adaptive_adam", AA_SECTION, "traditional",
                             CONSTANT, 20)
    assert "warmup_ratio" not in opt.optimizer.defaults
    assert opt.optimizer.defaults["lr"] == AA_SECTION["lr"]


def test_min_delta_se_is_the_selection_scores_standard_error_times_the_section_value() -> None:
    section = {**AA_SECTION, "min_delta_se": 1.5}
    opt = build_optimization(torch.nn.Linear(4, 2), "adaptive_adam", section, "fair", FAIR, 20,
                             selection_se=0.02)
    assert opt.scheduler.min_delta == pytest.approx(0.03)
    assert "min_delta_se" not in opt.optimizer.defaults
    with pytest.raises(ValueError, match="standard error"):
        build_optimization(torch.nn.Linear(4, 2), "adaptive_adam", section, "fair", FAIR, 20)


@pytest.mark.parametrize(("task", "examples", "expected"), [
    ("sst2", 1000, 0.5 / math.sqrt(1000)),  # accuracy: a 0/1 mean's spread is at most 0.5
    ("rte", 500, 0.5 / math.sqrt(500)),
    ("cola", 400, 1 / 20),  # a correlation near zero: about 1 / sqrt(n)
    ("stsb", 100, 1 / 10),
])
def test_the_selection_standard_error_bounds_the_metric_on_the_splits_size(
        task: str, examples: int, expected: float) -> None:
    splits = {"selection": list(range(examples))}
    assert selection_standard_error(get_task(task), splits) == pytest.approx(expected)


def test_a_language_models_selection_standard_error_is_its_unigram_block_losses_spread() -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 5, size=(40, 16))
    selection = np.concatenate([rng.integers(0, 5, size=(10, 16)), np.zeros((10, 16), int)])
    splits = {"train": {"input_ids": train}, "selection": {"input_ids": selection}}
    losses = unigram_block_losses(train, selection, 5)
    expected = losses.std(ddof=1) / math.sqrt(20)
    assert selection_standard_error(get_task("lm_pretrain"), splits, 5) == pytest.approx(expected)
    assert expected > 0  # the blocks of one token are cheaper than the random ones
    with pytest.raises(ValueError, match="vocabulary size"):
        selection_standard_error(get_task("lm_pretrain"), splits)


@pytest.mark.parametrize(("warmup", "decay_start", "gamma", "max_steps"), [
    (0.0, 0.0, 0.1, 10),
    (0.1, 0.5, 0.1, 20),
    (0.3, 0.1, 0.5, 20),  # decay may not start before warmup ends
    (0.0, 0.9, 0.01, 7),  # nor so late that no step is left to decay
    (0.1, 0.5, 0.1, 16),  # the cpu profile's shape
])
def test_the_last_step_used_runs_at_gamma_times_the_base_lr(
    warmup: float, decay_start: float, gamma: float, max_steps: int,
) -> None:
    setting = SettingConfig(schedule="exponential", warmup_ratio=warmup,
                            decay_start_ratio=decay_start, gamma=gamma)
    kwargs = controller_kwargs(lr_plan(setting, max_steps), max_steps)
    assert kwargs["decay_start"] >= kwargs["warmup_steps"]
    assert kwargs["decay_start"] + kwargs["decay_steps"] == max_steps - 1
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    lrs = _lrs(optimizer, AdaptiveLR(optimizer, adapt=False, **kwargs), max_steps)
    assert abs(lrs[-1] - 0.3 * gamma) <= 1e-12
    assert min(lrs[kwargs["warmup_steps"]:]) == lrs[-1]  # the end is the lowest point


def test_lr_plan_rounds_ratios_to_steps() -> None:
    plan = lr_plan(SettingConfig(schedule="linear", warmup_ratio=0.06, decay_start_ratio=0.5,
                                 max_grad_norm=2.0), 50)
    assert (plan.schedule, plan.warmup_steps, plan.decay_start) == ("linear", 3, 25)


# ----------------------------------------------------------------------------- tuning


def test_the_grid_is_the_product_of_the_hyperparameter_grids() -> None:
    points = search_grid({"lr": LogGrid(min=1e-4, max=1e-2, num=3), "momentum": [0.9, 0.99]})
    assert points == [{"lr": 1e-4, "momentum": 0.9}, {"lr": 1e-4, "momentum": 0.99},
                      {"lr": 1e-3, "momentum": 0.9}, {"lr": 1e-3, "momentum": 0.99},
                      {"lr": 1e-2, "momentum": 0.9}, {"lr": 1e-2, "momentum": 0.99}]


def test_every_committed_profile_gives_every_optimizer_the_same_number_of_trials() -> None:
    for profile in ("cpu", "full", "smoke"):
        params = load_params(ROOT / "profiles" / f"{profile}.yaml")
        counts = {len(search_grid(params.tuning.spaces[name])) for name in params.sweep.optimizers}
        assert counts == {params.tuning.trials}, profile


def trials(scores: list[float], statuses: list[str] | None = None) -> list[Trial]:
    statuses = statuses or ["ok"] * len(scores)
    return [Trial(i, {"lr": 10.0**-(i + 1)}, status, score, 1, 2)
            for i, (score, status) in enumerate(zip(scores, statuses, strict=True))]


SPACE = {"lr": [0.1, 0.01, 0.001, 0.0001]}


def test_the_best_selection_score_wins() -> None:
    assert choose(trials([0.5, 0.8, 0.7, 0.6]), SPACE).hparams == {"lr": 0.01}
    assert choose(trials([0.5, 0.8, 0.7, 0.6]), SPACE, greater_is_better=False).trial == 0
    assert choose(trials([0.9, 0.89, 0.89, 0.5]), SPACE).trial == 0  # a strict best: any place


def grid_trials(space: dict[str, Any], scores: list[float]) -> list[Trial]:
    """One finished trial per grid point of ``space``, in the grid's order."""
    return [Trial(i, point, "ok", score, 1, 2)
            for i, (point, score) in enumerate(zip(search_grid(space), scores, strict=True))]


FIVE = {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]}


def test_ties_go_to_the_tied_point_nearest_the_grids_centre() -> None:
    """Every trial that predicts one class scores the same: the tie goes to the middle of the
    grid, not to its smallest learning rate."""
    assert choose(grid_trials(FIVE, [0.5] * 5), FIVE).trial == 2
    assert choose(grid_trials(FIVE, [0.7, 0.5, 0.5, 0.7, 0.5]), FIVE).trial == 3
    assert choose(grid_trials(FIVE, [0.2, 0.5, 0.5, 0.7, 0.7]), FIVE,
                  greater_is_better=False).trial == 0  # one best: no tie
    assert choose(grid_trials(FIVE, [0.2, 0.5, 0.5, 0.2, 0.7]), FIVE,
                  greater_is_better=False).trial == 3  # tied lowest: the inner one


def test_ties_of_two_points_equally_near_the_centre_go_to_the_earlier() -> None:
    assert choose(trials([0.8, 0.8, 0.8, 0.8]), SPACE).trial == 1  # 1 and 2: half a step off
    assert choose(trials([0.8, 0.5, 0.5, 0.8]), SPACE).trial == 0  # both edges
    assert choose(grid_trials(FIVE, [0.5, 0.7, 0.5, 0.7, 0.5]), FIVE).trial == 1


def test_a_tie_never_goes_to_an_edge_when_an_inner_point_ties() -> None:
    """Every set of tied points of a five-point grid."""
    for mask in range(1, 2**5):
        tied = [i for i in range(5) if mask >> i & 1]
        scores = [0.9 if i in tied else 0.1 for i in range(5)]
        chosen = choose(grid_trials(FIVE, scores), FIVE)
        assert chosen.trial in tied
        if set(tied) & {1, 2, 3}:
            assert chosen.trial not in (0, 4) and not chosen.edges, tied


def test_the_centre_of_a_grid_of_several_hyperparameters_sums_their_distances() -> None:
    """lr x weight decay, all tied: lr's middle value; weight decay's two values are equally
    near its centre, so the earlier."""
    space = {"lr": [1e-5, 1e-4, 1e-3], "weight_decay": [0.0, 0.01]}
    chosen = choose(grid_trials(space, [0.5] * 6), space)
    assert chosen.hparams == {"lr": 1e-4, "weight_decay": 0.0}
    assert off_centre(space, {"lr": 1e-3, "weight_decay": 0.01}) == 1.5
    assert off_centre(space, chosen.hparams) == 0.5


def test_diverged_and_nan_trials_never_win() -> None:
    choice = choose(trials([math.nan, 0.1, math.nan, 0.2]), SPACE)
    assert choice.trial == 3 and choice.score == 0.2


def test_a_space_where_no_trial_finished_is_flagged() -> None:
    choice = choose(trials([math.nan] * 4), SPACE)
    assert choice.no_finished_trial and choice.trial == 0 and math.isnan(choice.score)


def test_a_choice_without_a_score_reads_back_from_its_json(tmp_path: Path) -> None:
    """choice.json writes the NaN score of a space where no trial finished as null; reading it
    back (a distributed tune stage's parent does) gives NaN again."""
    path = tmp_path / "choice.json"
    for choice in (choose(trials([math.nan] * 4), SPACE), choose(trials([0.5] * 4), SPACE)):
        io.write_json(path, {"task": "sst2", **choice.to_dict()})
        back = Choice.from_dict(json.loads(path.read_text()))
        assert back.hparams == choice.hparams and back.trial == choice.trial
        assert back.no_finished_trial == choice.no_finished_trial
        assert back.score == pytest.approx(choice.score, nan_ok=True)


def test_a_choice_on_the_edge_of_its_grid_is_flagged() -> None:
    assert choose(trials([0.9, 0.8, 0.7, 0.6]), SPACE).edges == {"lr": "lower"}
    assert choose(trials([0.1, 0.8, 0.7, 0.9]), SPACE).edges == {"lr": "upper"}
    assert choose(trials([0.1, 0.8, 0.7, 0.6]), SPACE).edges == {}
    assert edges({"lr": [0.1], "momentum": [0.9, 0.99]}, {"lr": 0.1, "momentum": 0.99}) == \
        {"momentum": "upper"}
