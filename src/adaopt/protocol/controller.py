"""Whether a metric-driven controller can act in a profile.

AdaptiveAdam's controller cuts the learning rate after ``patience`` evaluations on the
selection split without improvement; the first evaluation only sets the best. With too few
evaluations the earliest cut falls on the last one, after the last optimizer step, and the method
is its base optimizer bit for bit. :func:`controller_problems` finds every run and tuning trial
of a controlled optimizer that evaluates too rarely for a cut to change the run; ``python -m
adaopt check`` refuses such a profile before any compute.
"""

from __future__ import annotations

from adaopt.config import Params, optimizer_hparams
from adaopt.hparams import CONTROLLED, resolve_hparams

#: Evaluations a controlled run must have after its earliest possible cut: enough for a cut to
#: change the steps that follow it and for the selection split to see the effect.
EVALS_AFTER_CUT = 3


def evaluations(max_steps: int, eval_every: int) -> int:
    """How often the loop evaluates a run: every ``eval_every`` steps, and at the last step."""
    return max_steps // eval_every + (max_steps % eval_every != 0)


def earliest_cut(patience: int) -> int:
    """The evaluation (1-based) at which a controller can first cut: the first sets the best."""
    return patience + 1


def _problem(where: str, optimizer: str, kind: str, steps: int, every: int, patience: int
             ) -> str | None:
    count = evaluations(steps, every)
    first = earliest_cut(patience)
    if count - first >= EVALS_AFTER_CUT:
        return None
    needed = first + EVALS_AFTER_CUT
    advice = (f"set eval_every to at most {steps // needed}" if steps >= needed else
              f"{steps} steps cannot give them: raise the steps to at least {needed}")
    return (f"{where}: {optimizer}'s {kind} evaluate {count} times ({steps} steps, every "
            f"{every}), but its controller (patience {patience}) can first cut at evaluation "
            f"{first}; it needs {needed} evaluations: {advice}")


def _patience(params: Params, optimizer: str) -> int:
    return resolve_hparams(optimizer, optimizer_hparams(params.optimizers[optimizer]))["patience"]


def controller_problems(params: Params) -> list[str]:
    """One line per (task, controlled optimizer, kind of run) whose evaluations are too few."""
    problems = []
    for optimizer in [name for name in params.sweep.optimizers if name in CONTROLLED]:
        patience = _patience(params, optimizer)
        for task in params.sweep.tasks:
            train = params.train_for(task)
            where = f"workloads.{task}"
            problems.append(_problem(where, optimizer, "runs", train.max_steps,
                                     train.eval_every, patience))
            problems.append(_problem(where, optimizer, "tuning trials", params.tuning_steps(task),
                                     params.tuning_eval_every(task), patience))
    ablation = params.precision_ablation
    for optimizer in [name for name in ablation.optimizers if name in CONTROLLED]:
        patience = _patience(params, optimizer)
        problems.append(_problem("precision_ablation", optimizer, "runs", ablation.max_steps,
                                 params.train_for(ablation.task).eval_every, patience))
    return [problem for problem in problems if problem is not None]
