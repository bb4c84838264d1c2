"""Build a registry optimizer: one name -> one configured method (an optimizer, and for the paper's
method its learning-rate controller).

``build_method(name, model_or_params, **hparams)`` looks the name up in the torch-free
:data:`adaopt.hparams.REGISTRY` (or takes the class ``hparams["class"]`` names), merges ``hparams``
over its defaults and validates every value, groups a module's parameters for weight decay, picks
the fastest implementation (fused, else foreach) and returns ``(optimizer, controller)``; the
controller is ``None`` except for the entries marked ``controlled``.
:func:`build_optimizer` returns the optimizer alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from adaopt.hparams import (
    CONTROLLER_DEFAULTS,
    Entry,
    entry_for,
    resolve_hparams,
    split_controller_kwargs,
    validate_hparams,
)

from ._impl import fastest_impl_kwargs
from .adaptive import AdaptiveLR

__all__ = [
    "NO_DECAY_MODULES",
    "build_adaptive_adam",
    "build_method",
    "build_optimizer",
    "param_groups",
]

#: Modules whose parameters never get weight decay (normalization layers).
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def _no_decay(module: nn.Module, param_name: str, param: torch.Tensor) -> bool:
    """Biases, normalization weights and any parameter with fewer than 2 dimensions."""
    return (
        param_name == "bias"
        or param.ndim < 2
        or isinstance(module, NO_DECAY_MODULES)
        or type(module).__name__.endswith("Norm")  # custom norms: T5LayerNorm, LlamaRMSNorm
    )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decay group and a no-decay group.

    The no-decay group (``weight_decay=0.0``) holds biases, parameters of normalization modules and
    every parameter with ``ndim < 2``; everything else (linear and embedding weights) decays.
    Frozen parameters (``requires_grad=False``) are left out; an empty group is omitted. Shared
    parameters appear once.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if _no_decay(module, name, param) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _build(entry: Entry, model_or_params: nn.Module | Iterable[Any], hp: dict[str, Any]
           ) -> Optimizer:
    """The optimizer of ``entry`` from resolved hyperparameters without controller keys."""
    if isinstance(model_or_params, nn.Module):
        params: list[Any] = param_groups(model_or_params, hp.get("weight_decay", 0.0))
    else:
        params = list(model_or_params)
        rules = entry.all_rules
        for group in params:  # per-group overrides get the same checks as the defaults
            if isinstance(group, dict):
                validate_hparams({k: v for k, v in group.items() if k in rules}, rules)
    cls = entry.load()
    if hp.get("foreach") is None and hp.get("fused") is None:
        hp = {**hp, **fastest_impl_kwargs(cls, params)}
    return cls(params, **hp)


def build_method(
    name: str, model_or_params: nn.Module | Iterable[Any], **hparams: Any
) -> tuple[Optimizer, AdaptiveLR | None]:
    """Build the method registered as ``name`` (one of :data:`OPTIMIZERS`).

    Args:
        name: registry name, or any name when ``hparams["class"]`` names an installed optimizer
            class (``MODULE.CLASS``, e.g. ``pytorch_optimizer.Lion``).
        model_or_params: an ``nn.Module`` (its trainable parameters are split into a decay and a
            no-decay group, see :func:`param_groups`) or an iterable of parameters / param-group
            dicts, passed to the optimizer unchanged.
        **hparams: torch-named hyperparameters overriding :data:`DEFAULTS`; the names in
            :data:`CONTROLLED` also take the :class:`~adaopt.optim.AdaptiveLR` arguments.
            ``foreach``/``fused`` override the automatic choice of the fastest implementation.

    Returns:
        ``(optimizer, controller)``; ``controller`` is ``None`` outside :data:`CONTROLLED`. The
        controller references the optimizer, not the reverse (no reference cycle).

    Raises:
        ValueError: unknown name, unknown hyperparameter or invalid value.
    """
    entry = entry_for(name, hparams)
    optimizer_hp, controller_hp = split_controller_kwargs(resolve_hparams(name, hparams))
    optimizer = _build(entry, model_or_params, optimizer_hp)
    controller = AdaptiveLR(optimizer, **controller_hp) if entry.controlled else None
    return optimizer, controller


def build_optimizer(
    name: str, model_or_params: nn.Module | Iterable[Any], **hparams: Any
) -> Optimizer:
    """The optimizer of :func:`build_method` alone; for ``adaptive_adam`` its AdamW, no controller.

    Raises:
        ValueError: as :func:`build_method`, and for controller arguments, which would otherwise be
            dropped silently.
    """
    entry = entry_for(name, hparams)
    controller_keys = [k for k in hparams if k in CONTROLLER_DEFAULTS]
    if entry.controlled and controller_keys:
        raise ValueError(
            f"build_optimizer({name!r}) returns no controller, so {', '.join(controller_keys)} "
            f"would be ignored; use build_method({name!r}, ...) to get (optimizer, controller)"
        )
    optimizer_hp, _ = split_controller_kwargs(resolve_hparams(name, hparams))
    return _build(entry, model_or_params, optimizer_hp)


def build_adaptive_adam(
    model_or_params: nn.Module | Iterable[Any], **hparams: Any
) -> tuple[Optimizer, AdaptiveLR]:
    """``build_method("adaptive_adam", ...)``, typed as always having a controller."""
    optimizer, controller = build_method("adaptive_adam", model_or_params, **hparams)
    assert controller is not None  # adaptive_adam is in CONTROLLED
    return optimizer, controller
