"""What each comparison setting does to an optimizer: its schedule, its clipping, its controller.

* ``traditional``: every baseline as usually run (the schedule of ``settings.traditional``,
  a constant learning rate by default) and AdaptiveAdam with its own controller (warmup,
  exponential decay late in training, cuts when the selection metric stalls).
* ``fair``: every optimizer gets the same warmup, exponential decay (``settings.fair``);
  AdaptiveAdam adds only its metric-driven cuts on top.

In both, gradient clipping comes from the setting (``max_grad_norm``) for every optimizer
alike. The training loop sees only an optimizer, a scheduler and a clipping norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import get_scheduler

from adaopt.config import MIN_DELTA_SE, SettingConfig, optimizer_hparams
from adaopt.data.lm import unigram_block_losses
from adaopt.optim import CONTROLLED, AdaptiveLR, build_method
from adaopt.protocol.splits import SELECTION, TRAIN, examples_split
from adaopt.tasks import TaskSpec

# The setting in which every optimizer gets the shared schedule; in the other one, a method with
# its own controller (AdaptiveAdam) keeps its own schedule.
SHARED_SCHEDULE = "fair"


@dataclass(frozen=True)
class LRPlan:
    """Warmup, then constant until ``decay_start``, then the chosen decay to the end."""

    schedule: str
    warmup_steps: int
    decay_start: int
    gamma: float


@dataclass(frozen=True)
class Optimization:
    """What one run trains with; ``scheduler.report`` exists where the method adapts."""

    optimizer: Optimizer
    scheduler: LRScheduler
    max_grad_norm: float | None


def lr_plan(setting: SettingConfig, max_steps: int) -> LRPlan:
    return LRPlan(
        schedule=setting.schedule,
        warmup_steps=round(setting.warmup_ratio * max_steps),
        decay_start=round(setting.decay_start_ratio * max_steps),
        gamma=setting.gamma,
    )


def own_plan(section: dict[str, Any], max_steps: int) -> LRPlan:
    """AdaptiveAdam's own schedule, from the ratio keys of its ``optimizers`` section."""
    return LRPlan(
        "exponential",
        round(section.get("warmup_ratio", 0.0) * max_steps),
        round(section.get("decay_start_ratio", 0.0) * max_steps),
        section.get("gamma", 1.0),
    )


def controller_kwargs(plan: LRPlan, max_steps: int) -> dict[str, Any]:
    """Map a plan onto :class:`AdaptiveLR` so that the last step *used* runs at ``lr0 * gamma``.

    The optimizer step ``k`` (1-based) uses the rate after ``k - 1`` scheduler steps, so the
    last step uses ``t = max_steps - 1``: the decay spans ``max_steps - 1 - decay_start`` steps.
    Decay starts after warmup, and at least one step before the end, so that it happens.
    """
    decay_start = min(max(plan.decay_start, plan.warmup_steps), max(0, max_steps - 2))
    return {
        "warmup_steps": plan.warmup_steps,
        "decay_start": decay_start,
        "decay_steps": max(1, max_steps - 1 - decay_start),
        "gamma": plan.gamma,
    }


def build_schedule(optimizer: Optimizer, plan: LRPlan, max_steps: int) -> LRScheduler:
    """Hugging Face's schedules where they exist; :class:`AdaptiveLR` for exponential decay."""
    if plan.schedule == "exponential":
        return AdaptiveLR(optimizer, adapt=False, **controller_kwargs(plan, max_steps))
    return get_scheduler(
        plan.schedule if plan.schedule != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=max_steps,
    )


#: The largest standard deviation of one example's share of a selection score, by metric: a
#: mean of 0/1 outcomes (accuracy) at most 0.5; a correlation's standard error is
#: (1 - r^2) / sqrt(n - 1), at most about 1 / sqrt(n); SQuAD's F1 is a mean of per-question
#: scores in [0, 100], at most 50. The language model's loss has no such bound: its spread is
#: measured (:func:`selection_standard_error`).
SPREAD_BOUND = {"accuracy": 0.5, "matthews_correlation": 1.0, "pearson": 1.0, "f1": 50.0}


def selection_standard_error(task: TaskSpec, splits: Any, vocab_size: int | None = None
                             ) -> float:
    """The standard error of ``task``'s selection score, the unit of the controller's
    ``min_delta_se``: an improvement smaller than it may be one example's luck.

    Bounded where the metric allows (:data:`SPREAD_BOUND` over the square root of the split's
    examples, SQuAD: questions), so that it needs no model and holds at any score; for a
    language model, the spread over selection blocks of a unigram model's loss
    (:func:`adaopt.data.lm.unigram_block_losses`, ``vocab_size`` tokens).
    """
    if task.kind == "language_modeling":
        if vocab_size is None:
            raise ValueError(f"{task.name}: the selection score's standard error of a language "
                             "model needs its vocabulary size")
        losses = unigram_block_losses(np.asarray(splits[TRAIN]["input_ids"]),
                                      np.asarray(splits[SELECTION]["input_ids"]), vocab_size)
        return float(losses.std(ddof=1) / math.sqrt(len(losses)))
    split = examples_split(SELECTION) if task.kind == "extractive_qa" else SELECTION
    return SPREAD_BOUND[task.metric] / math.sqrt(len(splits[split]))


def has_controller(name: str) -> bool:
    """Whether the method brings its own learning-rate controller (AdaptiveAdam)."""
    return name in CONTROLLED


def build_optimization(
    model: torch.nn.Module,
    name: str,
    section: dict[str, Any],
    setting_name: str,
    setting: SettingConfig,
    max_steps: int,
    greater_is_better: bool = True,
    selection_se: float | None = None,
) -> Optimization:
    """The optimizer, its schedule and the clipping norm of one (optimizer, setting) run.

    ``section`` is the optimizer's ``params.yaml`` section with the tuned values merged in;
    ``greater_is_better`` tells a controller which way the selection metric improves, and
    ``selection_se`` (the selection score's standard error) turns the section's
    ``min_delta_se`` into the controller's ``min_delta`` on the metric's own scale.
    """
    hparams = optimizer_hparams(section)
    if has_controller(name):
        plan = (lr_plan(setting, max_steps) if setting_name == SHARED_SCHEDULE
                else own_plan(section, max_steps))
        mode = "max" if greater_is_better else "min"
        if MIN_DELTA_SE in section:
            if selection_se is None:
                raise ValueError(f"optimizers.{name}.{MIN_DELTA_SE} needs the selection "
                                 "score's standard error, which this run was not given")
            hparams["min_delta"] = section[MIN_DELTA_SE] * selection_se
        optimizer, controller = build_method(
            name, model, **{**hparams, **controller_kwargs(plan, max_steps), "mode": mode})
        assert controller is not None
        return Optimization(optimizer, controller, setting.max_grad_norm)
    optimizer, _ = build_method(name, model, **hparams)
    schedule = build_schedule(optimizer, lr_plan(setting, max_steps), max_steps)
    return Optimization(optimizer, schedule, setting.max_grad_norm)
