"""Whether a metric-driven controller can act in a profile.

AdaptiveAdam's controller cuts the learning rate after ``patience`` evaluations on the
selection split without an improvement of ``min_delta``; it ignores evaluations made during
warmup, and the first one it reads only sets the best. With too few evaluations after warmup the
earliest cut falls on the last one, after the last optimizer step, and the method is its base
optimizer bit for bit. :func:`controller_problems` finds every run and tuning trial
of a controlled optimizer that evaluates too rarely for a cut to change the run; ``python -m
adaopt check`` refuses such a profile before any compute.
"""

from __future__ import annotations

from adaopt.config import Params, optimizer_hparams
from adaopt.hparams import CONTROLLED, resolve_hparams

#: Evaluations a controlled run must have after its earliest possible cut: enough for a cut to
#: change the steps that follow it and for the selection split to see the effect.
EVALS_AFTER_CUT = 3

def evaluation_steps(max_steps: int, eval_every: int) -> list[int]:
    """The steps after which the loop evaluates a run: every ``eval_every``, and the last."""
    steps = list(range(eval_every, max_steps + 1, eval_every))
    return steps if max_steps % eval_every == 0 else [*steps, max_steps]


def evaluations(max_steps: int, eval_every: int) -> int:
    """How often the loop evaluates a run: every ``eval_every`` steps, and at the last step."""
    return len(evaluation_steps(max_steps, eval_every))


def evaluations_after_warmup(max_steps: int, eval_every: int, warmup_steps: int) -> int:
    """The evaluations a controller reads: those made once warmup's steps are taken
    (:meth:`adaopt.optim.AdaptiveLR.report` ignores the others)."""
    return sum(step >= warmup_steps for step in evaluation_steps(max_steps, eval_every))


def earliest_cut(patience: int) -> int:
    """The read evaluation (1-based) at which a controller can first cut: the first sets the
    best."""
    return patience + 1


def _problem(where: str, optimizer: str, kind: str, steps: int, every: int, warmup: int,
             patience: int) -> str | None:
    count = evaluations_after_warmup(steps, every, warmup)
    first = earliest_cut(patience)
    if count - first >= EVALS_AFTER_CUT:
        return None
    needed = first + EVALS_AFTER_CUT
    fits = [e for e in range(steps, 0, -1)
            if evaluations_after_warmup(steps, e, warmup) >= needed]
    advice = (f"set eval_every to at most {fits[0]}" if fits else
              f"{steps} steps cannot give them: raise the steps to at least "
              f"{needed + max(warmup - 1, 0)}")
    return (f"{where}: {optimizer}'s {kind} evaluate {count} times after a warmup of {warmup} "
            f"steps ({steps} steps, every {every}), but its controller (patience {patience}) "
            f"can first cut at evaluation {first} of those; it needs {needed} evaluations: "
            f"{advice}")


def _patience(params: Params, optimizer: str) -> int:
    return resolve_hparams(optimizer, optimizer_hparams(params.optimizers[optimizer]))["patience"]


def _warmup(params: Params, optimizer: str, steps: int) -> int:
    """The longer warmup of a controlled optimizer's two settings (its own, the fair one's)."""
    own = params.optimizers[optimizer].get("warmup_ratio", 0.0)
    shared = max(params.settings[name].warmup_ratio for name in params.settings)
    return round(max(own, shared) * steps)


def controller_problems(params: Params) -> list[str]:
    """One line per (task, controlled optimizer, kind of run) whose evaluations after warmup are
    too few for a cut to change the run."""
    problems = []
    for optimizer in [name for name in params.sweep.optimizers if name in CONTROLLED]:
        patience = _patience(params, optimizer)
        for task in dict.fromkeys(c.task for c in params.cells if c.optimizer == optimizer):
            train = params.train_for(task)
            where = f"workloads.{task}"
            tuning_steps = params.tuning_steps(task)
            problems.append(_problem(where, optimizer, "runs", train.max_steps, train.eval_every,
                                     _warmup(params, optimizer, train.max_steps), patience))
            problems.append(_problem(where, optimizer, "tuning trials", tuning_steps,
                                     params.tuning_eval_every(task),
                                     _warmup(params, optimizer, tuning_steps), patience))
    ablation = params.precision_ablation
    for optimizer in [name for name in ablation.optimizers if name in CONTROLLED]:
        patience = _patience(params, optimizer)
        problems.append(_problem("precision_ablation", optimizer, "runs", ablation.max_steps,
                                 params.train_for(ablation.task).eval_every,
                                 _warmup(params, optimizer, ablation.max_steps), patience))
    return [problem for problem in problems if problem is not None]
