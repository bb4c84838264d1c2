"""Optimizers compared in the paper, behind one registry.

* :func:`build_method` / :func:`build_optimizer` / :data:`OPTIMIZERS` / :data:`DEFAULTS` - the
  registry (``registry.py``).
* :class:`Lamb` - LAMB with a per-tensor reference path, a multi-tensor path and a fused CPU path
  (``lamb.py``).
* :class:`RMSprop` - ``torch.optim.RMSprop`` plus a fused CPU path (``rmsprop.py``).
* :class:`AdaptiveLR` - the controller of the paper's method, ``adaptive_adam`` = AdamW plus this
  warmup / decay / plateau learning-rate controller (``adaptive.py``); :func:`build_adaptive_adam`
  builds the pair.
* :func:`fastest_impl_kwargs` - fused, else foreach, for torch's optimizers and ours (``_impl.py``).
* :data:`OPTIMIZERS`, :data:`DEFAULTS`, :func:`resolve_hparams`, :func:`validate_hparams` - names,
  defaults and checks, from the torch-free :mod:`adaopt.hparams`.
"""

from adaopt.hparams import (
    CONTROLLED,
    CONTROLLER_DEFAULTS,
    DEFAULTS,
    OPTIMIZERS,
    resolve_hparams,
    split_controller_kwargs,
    validate_hparams,
)

from ._impl import fastest_impl_kwargs
from .adaptive import AdaptiveLR
from .lamb import Lamb
from .registry import build_adaptive_adam, build_method, build_optimizer, param_groups
from .rmsprop import RMSprop

__all__ = [
    "CONTROLLED",
    "CONTROLLER_DEFAULTS",
    "DEFAULTS",
    "OPTIMIZERS",
    "AdaptiveLR",
    "Lamb",
    "RMSprop",
    "build_adaptive_adam",
    "build_method",
    "build_optimizer",
    "fastest_impl_kwargs",
    "param_groups",
    "resolve_hparams",
    "split_controller_kwargs",
    "validate_hparams",
]
