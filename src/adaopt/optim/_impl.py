"""Pick the fastest implementation ``torch.optim`` offers for a set of parameters.

``fused=True`` (one kernel per tensor that does the whole update) where the optimizer class has a
fused kernel for every parameter's device and dtype, else ``foreach=True`` (multi-tensor ops), else
nothing (torch's per-tensor loop). PyTorch itself defaults to foreach, never to fused, which is why
this helper exists: on CPU, fused AdamW is several times faster than foreach AdamW.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from functools import cache
from typing import Any

import torch

__all__ = ["fastest_impl_kwargs", "flat_params"]

# Device types with fused kernels, per optimizer class (torch 2.13). Classes not listed have none.
# Adagrad's fused kernel exists on CPU only; the others follow torch's generic list.
_GENERIC_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu", "mtia")
_FUSED_DEVICES: dict[type[torch.optim.Optimizer], tuple[str, ...]] = {
    torch.optim.Adam: _GENERIC_FUSED_DEVICES,
    torch.optim.AdamW: _GENERIC_FUSED_DEVICES,
    torch.optim.SGD: _GENERIC_FUSED_DEVICES,
    torch.optim.Adagrad: ("cpu",),
}
_FOREACH_TYPES = (torch.Tensor, torch.nn.Parameter)


def flat_params(params: Iterable[Any]) -> list[torch.Tensor]:
    """All tensors in a list of tensors, ``(name, tensor)`` pairs or param-group dicts."""
    out: list[torch.Tensor] = []
    for item in params:
        if isinstance(item, dict):
            out.extend(flat_params(item["params"]))
        elif isinstance(item, tuple):
            out.append(item[1])
        else:
            out.append(item)
    return out


@cache
def _accepts(cls: type, kwarg: str) -> bool:
    return kwarg in inspect.signature(cls.__init__).parameters


def _fused_devices(cls: type) -> tuple[str, ...]:
    for klass in cls.__mro__:  # a subclass of AdamW (say) inherits its base's kernel
        if klass in _FUSED_DEVICES:
            return _FUSED_DEVICES[klass]
    return ()


def fastest_impl_kwargs(cls: type, params: Iterable[Any]) -> dict[str, bool]:
    """``{"fused": True}``, ``{"foreach": True}`` or ``{}`` for ``cls`` on these parameters.

    ``params`` must be re-iterable (a list): it is only inspected.
    """
    tensors = flat_params(params)
    devices = _fused_devices(cls)
    if (
        tensors
        and _accepts(cls, "fused")
        and all(t.device.type in devices and torch.is_floating_point(t) for t in tensors)
    ):
        return {"fused": True}
    if (
        tensors
        and _accepts(cls, "foreach")
        and all(type(t) in _FOREACH_TYPES for t in tensors)
        and len({t.device for t in tensors}) == 1
    ):
        return {"foreach": True}
    return {}
