"""Pick the fastest implementation of an optimizer, and the cache blocking our fused paths share.

``fused=True`` (one kernel per tensor that does the whole update) where the optimizer class has a
fused kernel for every parameter's device and dtype, else ``foreach=True`` (multi-tensor ops), else
nothing (torch's per-tensor loop). PyTorch itself defaults to foreach, never to fused, which is why
this helper exists: on CPU, fused AdamW is several times faster than foreach AdamW.

Our own optimizers (``Lamb``, ``RMSprop``) have a fused CPU path too. It does its elementwise work
in torch's fused Adam kernel, and goes through the tensors in blocks of a few MB
(:func:`cache_blocks`), so that the passes over a block follow one another while its data is still
in cache; its scratch memory comes from a :class:`Workspace` that lives as long as the optimizer.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

import torch

from adaopt.hparams import RULES, validate_hparams

__all__ = [
    "BLOCK_NUMEL",
    "Workspace",
    "cache_blocks",
    "fastest_impl_kwargs",
    "flat_params",
    "split_fusable",
    "supports_foreach",
    "use_fused",
]

# Device types with fused kernels, per optimizer class (torch 2.13). Classes not listed have none,
# unless they declare their own ``fused_devices`` (our optimizers do).
# Adagrad's fused kernel exists on CPU only; the others follow torch's generic list.
_GENERIC_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu", "mtia")
_FUSED_DEVICES: dict[type[torch.optim.Optimizer], tuple[str, ...]] = {
    torch.optim.Adam: _GENERIC_FUSED_DEVICES,
    torch.optim.AdamW: _GENERIC_FUSED_DEVICES,
    torch.optim.SGD: _GENERIC_FUSED_DEVICES,
    torch.optim.Adagrad: ("cpu",),
}
_FOREACH_TYPES = (torch.Tensor, torch.nn.Parameter)
# What our fused paths take (torch's fused Adam kernel reads raw memory): contiguous CPU tensors of
# these dtypes.
_FUSED_DTYPES = (torch.float32, torch.float64)

#: Elements per block of the fused CPU paths: 9 * 2**16 = 384 * 1536, so that each of MiniLM's
#: feed-forward matrices is one block and 4 of its 384 x 384 attention matrices share one. The
#: tensors one block touches (parameter, gradient, two moments and a scratch block) stay within a
#: server CPU's L3 cache. How other sizes compared: docs/method.md (LAMB).
BLOCK_NUMEL = 9 << 16


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
        if "fused_devices" in vars(klass):
            return vars(klass)["fused_devices"]
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
    if _accepts(cls, "foreach") and supports_foreach(tensors):
        return {"foreach": True}
    return {}


def supports_foreach(params: Iterable[Any]) -> bool:
    """Whether torch's multi-tensor ops take these parameters: plain tensors on one device."""
    tensors = flat_params(params)
    return (
        bool(tensors)
        and all(type(t) in _FOREACH_TYPES for t in tensors)
        and len({t.device for t in tensors}) == 1
    )


def use_fused(cls: type, group: dict[str, Any]) -> bool:
    """Whether a param group of ``cls`` takes the fused path: as set, or the fastest if unset."""
    if group["fused"] is not None or group["foreach"] is not None:
        return bool(group["fused"])
    return fastest_impl_kwargs(cls, group["params"]).get("fused", False)


def split_fusable(
    *tensorlists: list[torch.Tensor],
) -> tuple[dict[torch.dtype, list[list[torch.Tensor]]], list[list[torch.Tensor]]]:
    """The rows (parameter, gradient, state..., step counter) a fused path takes, by dtype, and
    the rest.

    A row is fusable when its tensors, all but the last (the step counter), are contiguous and
    the parameter is a CPU float32/float64 tensor.
    """
    fast: dict[torch.dtype, list[list[torch.Tensor]]] = {}
    rest: list[list[torch.Tensor]] = [[] for _ in tensorlists]
    for row in zip(*tensorlists, strict=True):
        param = row[0]
        if (
            param.device.type == "cpu"
            and param.dtype in _FUSED_DTYPES
            and all(t.is_contiguous() for t in row[:-1])
        ):
            target = fast.setdefault(param.dtype, [[] for _ in tensorlists])
        else:
            target = rest
        for lst, t in zip(target, row, strict=True):
            lst.append(t)
    return fast, rest


@lru_cache(maxsize=64)
def cache_blocks(numels: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Indices of tensors of these sizes, in order, grouped into blocks of at most
    :data:`BLOCK_NUMEL` elements: consecutive small tensors share a block; a larger tensor is a
    group of its own, which its user cuts into blocks."""
    groups: list[tuple[int, ...]] = []
    packed: list[int] = []
    packed_numel = 0
    for i, numel in enumerate(numels):
        if packed and (numel > BLOCK_NUMEL or packed_numel + numel > BLOCK_NUMEL):
            groups.append(tuple(packed))
            packed, packed_numel = [], 0
        if numel > BLOCK_NUMEL:
            groups.append((i,))
        else:
            packed.append(i)
            packed_numel += numel
    if packed:
        groups.append(tuple(packed))
    return tuple(groups)


class Workspace:
    """Scratch memory reused across steps, one buffer per device and dtype.

    A fused step needs scratch memory as large as the largest tensor; allocating tens of MB afresh
    every step costs page faults that would take a good part of the step.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def get(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A 1-D buffer of ``numel`` elements of ``like``'s device and dtype, uninitialized."""
        key = (like.device, like.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._buffers[key] = buffer
        return buffer[:numel]


class FusedScratch:
    """What our optimizers with a fused CPU path share (mixed in before their torch base class):
    every param group added later gets the same checks as the constructor's, and a fused step's
    scratch memory (``_workspace``) comes back after unpickling, as do the ``foreach`` /
    ``fused`` switches of groups saved before they existed."""

    param_groups: list[dict[str, Any]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        validate_hparams({k: v for k, v in param_group.items() if k in RULES})
        super().add_param_group(param_group)  # type: ignore[misc]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self.__dict__.setdefault("_workspace", Workspace())
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
