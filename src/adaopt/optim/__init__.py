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
* :func:`validate_hparams` - the shared hyperparameter checks (``_validation.py``).
"""

from ._impl import fastest_impl_kwargs
from ._validation import validate_hparams
from .adaptive import CONTROLLER_DEFAULTS, AdaptiveLR, split_controller_kwargs
from .lamb import Lamb
from .registry import (
    CONTROLLED,
    DEFAULTS,
    OPTIMIZERS,
    build_adaptive_adam,
    build_method,
    build_optimizer,
    param_groups,
    resolve_hparams,
)
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
