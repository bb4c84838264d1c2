"""The paper's method: AdamW's update plus a learning-rate controller.

* :class:`AdaptiveLR` is the controller, an ``LRScheduler`` that works on any torch optimizer (the
  pipeline gives every baseline the same schedule in the "fair" setting). Per param group with base
  learning rate ``lr0``, after ``t`` calls of :meth:`AdaptiveLR.step`::

      warm(t)  = min(1, (t + 1) / warmup_steps)             (1 when warmup_steps == 0)
      decay(t) = gamma ** ((t - decay_start) / decay_steps)  (1 when t < decay_start or no decay)
      lr_t     = warm(t) * max(min(min_lr, lr0), lr0 * scale * decay(t))

  ``scale`` starts at 1 and is multiplied by ``factor`` each time :meth:`AdaptiveLR.report` sees
  ``patience`` evaluations in a row without an improvement larger than ``min_delta``. Evaluations
  made during warmup (fewer than ``warmup_steps`` steps taken) are ignored: a score taken while
  the rate is still rising says little about the run, and a lucky one set as the best would
  make every later real gain look like a plateau. ``lr_t`` is a closed form of ``t`` and
  ``scale``, so nothing drifts and a checkpoint restores it exactly.
* The method is ``torch.optim.AdamW`` (fused where supported) plus an :class:`AdaptiveLR` on it,
  built by :func:`adaopt.optim.build_method` from one flat set of hyperparameters that
  :func:`split_controller_kwargs` divides between the two. The controller references the
  optimizer, never the reverse: a finished run's model and optimizer state are freed by reference
  counting alone, without waiting for the cyclic garbage collector.

Choices the paper leaves open are listed in ``docs/method.md``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from adaopt.hparams import validate_hparams

__all__ = ["AdaptiveLR"]

class AdaptiveLR(LRScheduler):
    """Warmup, optional exponential decay and plateau reduction, for any torch optimizer.

    Call :meth:`step` once after every ``optimizer.step()`` and :meth:`report` after every
    validation evaluation. See the module docstring for the formula.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        warmup_steps: int = 0,
        decay_start: int | None = None,
        decay_steps: int = 1000,
        gamma: float = 0.5,
        min_lr: float = 0.0,
        patience: int = 3,
        factor: float = 0.5,
        min_delta: float = 0.0,
        mode: str = "max",
        adapt: bool = True,
        last_epoch: int = -1,
    ) -> None:
        validate_hparams(
            {
                "warmup_steps": warmup_steps,
                "decay_start": decay_start,
                "decay_steps": decay_steps,
                "gamma": gamma,
                "min_lr": min_lr,
                "patience": patience,
                "factor": factor,
                "min_delta": min_delta,
                "mode": mode,
                "adapt": adapt,
            }
        )
        self.warmup_steps = warmup_steps
        self.decay_start = decay_start
        self.decay_steps = decay_steps
        self.gamma = gamma
        self.min_lr = min_lr
        self.patience = patience
        self.factor = factor
        self.min_delta = min_delta
        self.mode = mode
        self.adapt = adapt
        # adaptation state
        self.scale = 1.0
        self.best: float | None = None
        self.num_bad_evals = 0
        self.num_reductions = 0
        super().__init__(optimizer, last_epoch)

    # -- the schedule -------------------------------------------------------------------------

    def lr_at(self, step: int, base_lr: float, scale: float | None = None) -> float:
        """The learning rate of a group with base ``base_lr`` after ``step`` scheduler steps."""
        scale = self.scale if scale is None else scale
        warm = 1.0 if self.warmup_steps == 0 else min(1.0, (step + 1) / self.warmup_steps)
        decay = 1.0
        if self.decay_start is not None and step > self.decay_start:
            decay = self.gamma ** ((step - self.decay_start) / self.decay_steps)
        floor = min(self.min_lr, base_lr)  # never lift a group above its own base lr
        return warm * max(floor, base_lr * scale * decay)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.lr_at(self.last_epoch, float(base)) for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def _apply_lr(self) -> None:
        """Write the current closed-form lr into the optimizer without advancing the step."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [
            g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]
            for g in self.optimizer.param_groups
        ]

    # -- metric-driven adaptation ---------------------------------------------------------------

    def in_warmup(self) -> bool:
        """Whether fewer than ``warmup_steps`` steps have been taken (the rate still rising)."""
        return self.last_epoch < self.warmup_steps

    def is_improvement(self, metric: float) -> bool:
        """Whether ``metric`` beats the best so far by more than ``min_delta`` (NaN never does)."""
        if math.isnan(metric):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return metric > self.best + self.min_delta
        return metric < self.best - self.min_delta

    def report(self, metric: float | torch.Tensor) -> bool:
        """Record a validation metric; return True when it triggered an lr reduction.

        After ``patience`` reports in a row without improvement, ``scale *= factor`` (applied to
        the optimizer at once) and the counter restarts. The best value is kept across reductions.
        A report made during warmup is ignored (:meth:`in_warmup`).
        """
        metric = float(metric)
        if self.in_warmup():
            return False
        if self.is_improvement(metric):
            self.best = metric
            self.num_bad_evals = 0
            return False
        self.num_bad_evals += 1
        if not self.adapt or self.num_bad_evals < self.patience:
            return False
        self.scale *= self.factor
        self.num_reductions += 1
        self.num_bad_evals = 0
        self._apply_lr()
        return True

    # -- checkpoints ----------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state and write the restored lr into the optimizer's param groups."""
        super().load_state_dict(state_dict)
        self._apply_lr()
