"""The optimizers' names, default hyperparameters and value checks, without torch.

``python -m adaopt check`` validates ``params.yaml`` at the start of every stage from this module
alone, so it does not pay torch's import (measured: the check took 1.7 s with it, 0.17 s
without). :mod:`adaopt.optim` builds the optimizers from the same tables.

Every constructor in :mod:`adaopt.optim` (and :func:`~adaopt.optim.build_method`, before it hands
anything to ``torch.optim``) calls :func:`validate_hparams`, so a bad value is reported the same way
everywhere: ``"lr=-0.1 is invalid: must be >= 0"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

__all__ = [
    "CONTROLLED",
    "CONTROLLER_DEFAULTS",
    "DEFAULTS",
    "IMPL_FLAGS",
    "OPTIMIZERS",
    "RULES",
    "in_table_order",
    "resolve_hparams",
    "split_controller_kwargs",
    "validate_hparam",
    "validate_hparams",
]


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Rule:
    """``check(value)`` is True for a valid value; ``allowed`` is how the message words it."""

    allowed: str
    check: Callable[[Any], bool]
    number: bool = False  # a real number is expected (messages say so when the type is wrong)


def _real(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> _Rule:
    if lo is not None and hi is not None:
        allowed = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        allowed = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        raise AssertionError("every real-valued rule has a lower bound")

    def check(v: Any) -> bool:
        if not _is_real(v) or math.isnan(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))

    return _Rule(allowed, check, number=True)


def _int_at_least(lo: int, optional: bool = False) -> _Rule:
    allowed = f"an integer >= {lo}" + (" or None" if optional else "")
    return _Rule(allowed, lambda v: (optional and v is None) or (_is_int(v) and v >= lo))


def _flag(optional: bool = False) -> _Rule:
    allowed = "True or False" + (" or None" if optional else "")
    return _Rule(allowed, lambda v: isinstance(v, bool) or (optional and v is None))


def _betas(v: Any) -> bool:
    return (
        isinstance(v, tuple | list)
        and len(v) == 2
        and all(_is_real(b) and 0.0 <= b < 1.0 for b in v)
    )


_UNIT = _real(0.0, 1.0, lo_open=False, hi_open=True)  # [0, 1)

#: Allowed range of every hyperparameter any registry optimizer or the controller accepts.
RULES: dict[str, _Rule] = {
    # optimizer hyperparameters (torch names)
    "lr": _real(0.0, None, lo_open=False, hi_open=False),
    "betas": _Rule("a pair (beta1, beta2), each in [0, 1)", _betas),
    "eps": _real(0.0, None, lo_open=True, hi_open=False),
    "weight_decay": _real(0.0, None, lo_open=False, hi_open=False),
    "momentum": _UNIT,
    "dampening": _UNIT,
    "alpha": _UNIT,
    "lr_decay": _real(0.0, None, lo_open=False, hi_open=False),
    "initial_accumulator_value": _real(0.0, None, lo_open=False, hi_open=False),
    "nesterov": _flag(),
    "centered": _flag(),
    "amsgrad": _flag(),
    "foreach": _flag(optional=True),
    "fused": _flag(optional=True),
    # learning-rate controller (AdaptiveLR)
    "warmup_steps": _int_at_least(0),
    "decay_start": _int_at_least(0, optional=True),
    "decay_steps": _int_at_least(1),
    "gamma": _real(0.0, 1.0, lo_open=True, hi_open=False),
    "min_lr": _real(0.0, None, lo_open=False, hi_open=False),
    "patience": _int_at_least(1),
    "factor": _real(0.0, 1.0, lo_open=True, hi_open=True),
    "min_delta": _real(0.0, None, lo_open=False, hi_open=False),
    "mode": _Rule("one of 'max', 'min'", lambda v: v in ("max", "min")),
    "adapt": _flag(),
}


def validate_hparam(name: str, value: Any) -> None:
    """Raise ``ValueError("NAME=VALUE is invalid: must be ALLOWED")`` for a disallowed value."""
    rule = RULES.get(name)
    if rule is None:
        raise KeyError(f"no validation rule for hyperparameter {name!r}")
    if not rule.check(value):
        allowed = rule.allowed
        if rule.number and not _is_real(value):
            allowed = f"a number {allowed} (got {type(value).__name__})"
        raise ValueError(f"{name}={value!r} is invalid: must be {allowed}")


def validate_hparams(hparams: Mapping[str, Any]) -> None:
    """Validate each entry of ``hparams`` and the combinations torch would reject later."""
    for name, value in hparams.items():
        validate_hparam(name, value)
    if hparams.get("nesterov"):
        momentum = hparams.get("momentum", 0.0)
        dampening = hparams.get("dampening", 0.0)
        if momentum <= 0.0 or dampening != 0.0:
            raise ValueError(
                f"nesterov=True is invalid with momentum={momentum!r}, dampening={dampening!r}: "
                "nesterov needs momentum > 0 and dampening == 0"
            )
    if hparams.get("foreach") and hparams.get("fused"):
        raise ValueError("foreach=True is invalid with fused=True: choose at most one")


#: Keyword arguments of :class:`~adaopt.optim.AdaptiveLR` and their defaults.
CONTROLLER_DEFAULTS: dict[str, Any] = {
    "warmup_steps": 0,
    "decay_start": None,  # None: no exponential decay
    "decay_steps": 1000,  # the lr is multiplied by gamma every decay_steps steps once decaying
    "gamma": 0.5,
    "min_lr": 0.0,
    "patience": 3,  # evaluations without improvement before a reduction
    "factor": 0.5,  # multiplier applied by a reduction
    "min_delta": 0.0,
    "mode": "max",  # the reported metric is maximized (accuracy, F1, ...); "min" for losses
    "adapt": True,  # False: report() only records the metric, never reduces the lr
}


def split_controller_kwargs(hparams: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(optimizer kwargs, AdaptiveLR kwargs)``: one flat config drives both halves of a method."""
    optimizer = {k: v for k, v in hparams.items() if k not in CONTROLLER_DEFAULTS}
    controller = {k: v for k, v in hparams.items() if k in CONTROLLER_DEFAULTS}
    return optimizer, controller


#: Registry names, in the order the paper's tables list them.
OPTIMIZERS: tuple[str, ...] = (
    "sgd",
    "momentum",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "lamb",
    "adaptive_adam",
)

def in_table_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order every table and figure lists optimizers (:data:`OPTIMIZERS`)."""
    present = set(names)
    return [name for name in OPTIMIZERS if name in present]


# Default hyperparameters per optimizer. The keys are also the only hyperparameters each name
# accepts (plus the implementation switches in IMPL_FLAGS). The learning rates are starting
# points for fine-tuning a pretrained MiniLM (small steps around pretrained weights); the
# experiment configs sweep them. Adaptive methods share the BERT fine-tuning default 2e-5;
# LAMB's lr is a relative step per tensor (||delta p|| = lr * ||p||), hence larger; SGD needs a
# much larger raw lr.
_ADAM_LIKE: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False}
DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 1e-1, "weight_decay": 0.0},
    "momentum": {
        "lr": 1e-2,
        "momentum": 0.9,
        "dampening": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
    },
    "adagrad": {
        "lr": 1e-3,
        "lr_decay": 0.0,
        "eps": 1e-10,
        "initial_accumulator_value": 0.0,
        "weight_decay": 0.0,
    },
    "rmsprop": {
        "lr": 1e-5,
        "alpha": 0.99,
        "eps": 1e-8,
        "momentum": 0.0,
        "centered": False,
        "weight_decay": 0.0,
    },
    "adam": {"lr": 2e-5, **_ADAM_LIKE, "weight_decay": 0.0},
    "adamw": {"lr": 2e-5, **_ADAM_LIKE, "weight_decay": 0.01},
    "lamb": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01},
    "adaptive_adam": {"lr": 2e-5, **_ADAM_LIKE, "weight_decay": 0.01, **CONTROLLER_DEFAULTS},
}

# Implementation switches every name accepts; None (the default) means "fastest available".
IMPL_FLAGS = ("foreach", "fused")

#: Names whose method is an optimizer plus an :class:`~adaopt.optim.AdaptiveLR` controller; they
#: also accept the controller's keyword arguments (:data:`~adaopt.optim.CONTROLLER_DEFAULTS`).
CONTROLLED: frozenset[str] = frozenset({"adaptive_adam"})


def _allowed(name: str) -> tuple[str, ...]:
    return (*DEFAULTS[name], *IMPL_FLAGS)


def resolve_hparams(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``hparams``, checked for unknown names and invalid values."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}")
    allowed = _allowed(name)
    unknown = [k for k in hparams if k not in allowed]
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for optimizer {name!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    merged = {**DEFAULTS[name], **hparams}
    validate_hparams(merged)
    return merged
