"""The optimizer registry: each name's class, default hyperparameters and value checks, in one
entry of :data:`REGISTRY`, without torch.

``python -m adaopt check`` validates ``params.yaml`` at the start of every stage from this module
alone, so it does not pay torch's import: an entry names its class by import path, and
:mod:`adaopt.optim` imports it only to build the optimizer. A ``params.yaml`` section may instead
name any installed optimizer class itself (``class: pytorch_optimizer.Lion``, :data:`CLASS_KEY`);
checking that section imports the class, to read the hyperparameters its constructor takes.

Every constructor in :mod:`adaopt.optim` (and :func:`~adaopt.optim.build_method`, before it hands
anything to ``torch.optim``) calls :func:`validate_hparams`, so a bad value is reported the same way
everywhere: ``"lr=-0.1 is invalid: must be >= 0"``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from numbers import Integral, Real
from typing import Any

__all__ = [
    "CLASS_KEY",
    "CONTROLLED",
    "CONTROLLER_DEFAULTS",
    "DEFAULTS",
    "IMPL_FLAGS",
    "OPTIMIZERS",
    "REGISTRY",
    "RULES",
    "Entry",
    "Rule",
    "entry_for",
    "flag",
    "in_table_order",
    "int_at_least",
    "real",
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
class Rule:
    """``check(value)`` is True for a valid value; ``allowed`` is how the message words it."""

    allowed: str
    check: Callable[[Any], bool]
    number: bool = False  # a real number is expected (messages say so when the type is wrong)


def real(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> Rule:
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

    return Rule(allowed, check, number=True)


def int_at_least(lo: int, optional: bool = False) -> Rule:
    allowed = f"an integer >= {lo}" + (" or None" if optional else "")
    return Rule(allowed, lambda v: (optional and v is None) or (_is_int(v) and v >= lo))


def flag(optional: bool = False) -> Rule:
    allowed = "True or False" + (" or None" if optional else "")
    return Rule(allowed, lambda v: isinstance(v, bool) or (optional and v is None))


def _betas(v: Any) -> bool:
    return (
        isinstance(v, tuple | list)
        and len(v) == 2
        and all(_is_real(b) and 0.0 <= b < 1.0 for b in v)
    )


_UNIT = real(0.0, 1.0, lo_open=False, hi_open=True)  # [0, 1)

#: Allowed range of every hyperparameter any registry optimizer or the controller accepts.
RULES: dict[str, Rule] = {
    # optimizer hyperparameters (torch names)
    "lr": real(0.0, None, lo_open=False, hi_open=False),
    "betas": Rule("a pair (beta1, beta2), each in [0, 1)", _betas),
    "eps": real(0.0, None, lo_open=True, hi_open=False),
    "weight_decay": real(0.0, None, lo_open=False, hi_open=False),
    "momentum": _UNIT,
    "dampening": _UNIT,
    "alpha": _UNIT,
    "lr_decay": real(0.0, None, lo_open=False, hi_open=False),
    "initial_accumulator_value": real(0.0, None, lo_open=False, hi_open=False),
    "nesterov": flag(),
    "centered": flag(),
    "amsgrad": flag(),
    "foreach": flag(optional=True),
    "fused": flag(optional=True),
    # learning-rate controller (AdaptiveLR)
    "warmup_steps": int_at_least(0),
    "decay_start": int_at_least(0, optional=True),
    "decay_steps": int_at_least(1),
    "gamma": real(0.0, 1.0, lo_open=True, hi_open=False),
    "min_lr": real(0.0, None, lo_open=False, hi_open=False),
    "patience": int_at_least(1),
    "factor": real(0.0, 1.0, lo_open=True, hi_open=True),
    "min_delta": real(0.0, None, lo_open=False, hi_open=False),
    "mode": Rule("one of 'max', 'min'", lambda v: v in ("max", "min")),
    "adapt": flag(),
}


def validate_hparam(name: str, value: Any, rules: Mapping[str, Rule] = RULES) -> None:
    """Raise ``ValueError("NAME=VALUE is invalid: must be ALLOWED")`` for a disallowed value."""
    rule = rules.get(name)
    if rule is None:
        raise KeyError(f"no validation rule for hyperparameter {name!r}")
    if not rule.check(value):
        allowed = rule.allowed
        if rule.number and not _is_real(value):
            allowed = f"a number {allowed} (got {type(value).__name__})"
        raise ValueError(f"{name}={value!r} is invalid: must be {allowed}")


def validate_hparams(hparams: Mapping[str, Any], rules: Mapping[str, Rule] = RULES) -> None:
    """Validate each entry of ``hparams`` and the combinations torch would reject later."""
    for name, value in hparams.items():
        validate_hparam(name, value, rules)
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


# Implementation switches every registry entry takes; None (the default): the fastest available.
IMPL_FLAGS = ("foreach", "fused")


@dataclass(frozen=True)
class Entry:
    """One optimizer of the registry: everything a new one needs is here, plus its ``params.yaml``
    keys (``optimizers.<name>`` and ``tuning.spaces.<name>``).

    ``cls`` is the class's import path, imported only when the optimizer is built. ``defaults`` are
    also the only hyperparameters the name takes (with ``flags``). ``rules`` give the allowed
    values of hyperparameters :data:`RULES` lacks (or narrow its own). ``controlled``: the method
    is the optimizer plus an :class:`~adaopt.optim.AdaptiveLR` controller, whose arguments it also
    takes (:data:`CONTROLLER_DEFAULTS`).
    """

    cls: str
    defaults: Mapping[str, Any]
    rules: Mapping[str, Rule] = field(default_factory=dict)
    controlled: bool = False
    flags: tuple[str, ...] = IMPL_FLAGS

    @property
    def allowed(self) -> tuple[str, ...]:
        return (*self.defaults, *self.flags)

    @property
    def all_rules(self) -> Mapping[str, Rule]:
        return {**RULES, **self.rules}

    def load(self) -> type:
        """The class itself (imports its module, torch with it)."""
        module, _, name = self.cls.rpartition(".")
        return getattr(importlib.import_module(module), name)


# The learning rates are starting points for fine-tuning a pretrained MiniLM (small steps around
# pretrained weights); the experiment configs sweep them. Adaptive methods share the BERT
# fine-tuning default 2e-5; LAMB's lr is a relative step per tensor (||delta p|| = lr * ||p||),
# hence larger; SGD needs a much larger raw lr.
_ADAM_LIKE: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False}

#: Every registry optimizer, in the order the paper's tables list them.
REGISTRY: dict[str, Entry] = {
    "sgd": Entry("torch.optim.SGD", {"lr": 1e-1, "weight_decay": 0.0}),
    "momentum": Entry("torch.optim.SGD", {
        "lr": 1e-2, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}),
    "adagrad": Entry("torch.optim.Adagrad", {
        "lr": 1e-3, "lr_decay": 0.0, "eps": 1e-10, "initial_accumulator_value": 0.0,
        "weight_decay": 0.0}),
    "rmsprop": Entry("adaopt.optim.rmsprop.RMSprop", {
        "lr": 1e-5, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False,
        "weight_decay": 0.0}),
    "adam": Entry("torch.optim.Adam", {"lr": 2e-5, **_ADAM_LIKE, "weight_decay": 0.0}),
    "adamw": Entry("torch.optim.AdamW", {"lr": 2e-5, **_ADAM_LIKE, "weight_decay": 0.01}),
    "lamb": Entry("adaopt.optim.lamb.Lamb", {
        "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01}),
    "adaptive_adam": Entry("torch.optim.AdamW", {
        "lr": 2e-5, **_ADAM_LIKE, "weight_decay": 0.01, **CONTROLLER_DEFAULTS}, controlled=True),
}

#: The registry's names, in table order.
OPTIMIZERS: tuple[str, ...] = tuple(REGISTRY)
#: Each registry name's default hyperparameters.
DEFAULTS: dict[str, dict[str, Any]] = {name: dict(e.defaults) for name, e in REGISTRY.items()}
#: Names whose method is an optimizer plus an :class:`~adaopt.optim.AdaptiveLR` controller.
CONTROLLED: frozenset[str] = frozenset(name for name, e in REGISTRY.items() if e.controlled)

#: The key of a ``params.yaml`` optimizer section that names an installed optimizer class
#: instead of a registry entry, e.g. ``lion: {class: pytorch_optimizer.Lion, lr: 1e-4}``.
CLASS_KEY = "class"


def in_table_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order every table and figure lists optimizers: the registry's, then those
    ``params.yaml`` names by class, alphabetically."""
    present = set(names)
    return [name for name in REGISTRY if name in present] + sorted(present - set(REGISTRY))


_NOT_HPARAMS = ("self", "params")


@cache
def _class_entry(path: str) -> Entry:
    """An entry for an installed optimizer class: its defaults and switches are its constructor's
    keyword arguments; its values are checked by the class itself when built."""
    from torch.optim import Optimizer

    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name, None) if module else None
    except ImportError as error:
        raise ValueError(f"{CLASS_KEY}={path!r} is invalid: cannot import {module} "
                         f"({str(error).splitlines()[0]})") from None
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise ValueError(f"{CLASS_KEY}={path!r} is invalid: must be MODULE.CLASS of an installed "
                         "torch.optim.Optimizer, e.g. pytorch_optimizer.Lion")
    named = [p for p in inspect.signature(cls.__init__).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _NOT_HPARAMS]
    return Entry(path, {p.name: p.default for p in named if p.default is not p.empty
                        and p.name not in IMPL_FLAGS},
                 rules={p.name: Rule("any value", lambda v: True) for p in named},
                 flags=tuple(p.name for p in named if p.name in IMPL_FLAGS))


def entry_for(name: str, hparams: Mapping[str, Any]) -> Entry:
    """The registry's entry for ``name``, or the one ``hparams[CLASS_KEY]`` names."""
    if CLASS_KEY in hparams:
        if name in REGISTRY:
            raise ValueError(f"{CLASS_KEY}={hparams[CLASS_KEY]!r} is invalid for {name!r}, a "
                             "registry optimizer: give the class another name")
        path = hparams[CLASS_KEY]
        return _class_entry(path if isinstance(path, str) else repr(path))
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(REGISTRY)} "
                         f"(or name a class: `{CLASS_KEY}: MODULE.CLASS`)")
    return REGISTRY[name]


def resolve_hparams(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``hparams`` (less :data:`CLASS_KEY`), checked for unknown names and
    invalid values."""
    entry = entry_for(name, hparams)
    given = {k: v for k, v in hparams.items() if k != CLASS_KEY}
    unknown = [k for k in given if k not in entry.allowed]
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for optimizer {name!r}; "
            f"allowed: {', '.join(entry.allowed)}"
        )
    merged = {**entry.defaults, **given}
    validate_hparams(merged, entry.all_rules)
    return merged
