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

from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import get_scheduler

from adaopt.config import SettingConfig, optimizer_hparams
from adaopt.optim import CONTROLLED, AdaptiveLR, build_method

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
) -> Optimization:
    """The optimizer, its schedule and the clipping norm of one (optimizer, setting) run.

    ``section`` is the optimizer's ``params.yaml`` section with the tuned values merged in;
    ``greater_is_better`` tells a controller which way the selection metric improves.
    """
    hparams = optimizer_hparams(section)
    if has_controller(name):
        plan = (lr_plan(setting, max_steps) if setting_name == SHARED_SCHEDULE
                else own_plan(section, max_steps))
        mode = "max" if greater_is_better else "min"
        optimizer, controller = build_method(
            name, model, **{**hparams, **controller_kwargs(plan, max_steps), "mode": mode})
        assert controller is not None
        return Optimization(optimizer, controller, setting.max_grad_norm)
    optimizer, _ = build_method(name, model, **hparams)
    schedule = build_schedule(optimizer, lr_plan(setting, max_steps), max_steps)
    return Optimization(optimizer, schedule, setting.max_grad_norm)
