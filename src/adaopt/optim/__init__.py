"""Optimizers compared in the paper, behind one registry.

* :func:`build_optimizer` / :data:`OPTIMIZERS` / :data:`DEFAULTS` - the registry (``registry.py``).
* :class:`Lamb` - LAMB with a per-tensor reference path and a multi-tensor path (``lamb.py``).
* :class:`AdaptiveLR`, :class:`AdaptiveAdam`, :func:`build_adaptive_adam` - the paper's method:
  AdamW plus a warmup / decay / plateau learning-rate controller (``adaptive.py``).
* :func:`fastest_impl_kwargs` - fused, else foreach, for torch's own optimizers (``_impl.py``).
* :func:`validate_hparams` - the shared hyperparameter checks (``_validation.py``).
"""

from ._impl import fastest_impl_kwargs
from ._validation import validate_hparams
from .adaptive import CONTROLLER_DEFAULTS, AdaptiveAdam, AdaptiveLR, build_adaptive_adam
from .lamb import Lamb
from .registry import DEFAULTS, OPTIMIZERS, build_optimizer, param_groups

__all__ = [
    "CONTROLLER_DEFAULTS",
    "DEFAULTS",
    "OPTIMIZERS",
    "AdaptiveAdam",
    "AdaptiveLR",
    "Lamb",
    "build_adaptive_adam",
    "build_optimizer",
    "fastest_impl_kwargs",
    "param_groups",
    "validate_hparams",
]
