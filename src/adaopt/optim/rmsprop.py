"""RMSprop: ``torch.optim.RMSprop`` with a fused CPU path (``fused=True``).

torch has no fused RMSprop kernel, and its multi-tensor RMSprop makes several full passes over
memory per step. Plain RMSprop (no momentum, not centered) is Adam without the first moment and
without bias correction::

    v = alpha * v + (1 - alpha) * g * g          p = p - lr * g / (sqrt(v) + eps)

so the fused path runs torch's fused Adam kernel with ``beta1 = 0`` (its first moment is then the
gradient itself, kept in a scratch block), ``beta2 = alpha`` and a step count of ``2**62``, at which
both bias corrections are exactly 1 (``beta ** 2**62`` is 0 in double precision for every
``beta < 1``). Weight decay (added to the gradient) and ``maximize`` are the kernel's own, in
torch's order. It runs block by block (``adaopt.optim._impl.cache_blocks``), so that the scratch
first moment is one block and stays in cache.

Everything else is ``torch.optim.RMSprop``: arguments, state (``step``, ``square_avg``, and
``momentum_buffer`` / ``grad_avg`` where used), checkpoints in both directions. A step in which
some param group uses momentum or ``centered=True`` (the kernel computes neither) runs torch's own
implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT
from torch.optim.rmsprop import rmsprop

from adaopt.hparams import validate_hparams

from ._impl import (
    BLOCK_NUMEL,
    FusedScratch,
    Workspace,
    cache_blocks,
    split_fusable,
    use_fused,
)

__all__ = ["RMSprop"]

# A step count at which Adam's bias corrections 1 - beta**step are exactly 1 for any beta < 1.
_NO_BIAS_CORRECTION_STEP = 2.0**62


class RMSprop(FusedScratch, torch.optim.RMSprop):
    """``torch.optim.RMSprop`` plus ``fused``; see the module docstring.

    Args:
        fused: fused CPU path for plain RMSprop (tensors it cannot take, e.g. on another device or
            in half precision, go through torch's implementation). With neither ``fused`` nor
            ``foreach`` set, the fastest path for the parameters: fused on CPU, else torch's
            default. ``fused=True`` excludes ``foreach=True``, ``differentiable`` and
            ``capturable``.

    The other arguments are ``torch.optim.RMSprop``'s, validated as the registry validates them.
    """

    #: Devices of the fused path, read by :func:`~adaopt.optim.fastest_impl_kwargs`.
    fused_devices = ("cpu",)

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        fused: bool | None = None,
    ) -> None:
        hparams = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "foreach": foreach,
            "fused": fused,
        }
        validate_hparams(hparams)
        if fused and (differentiable or capturable):
            raise ValueError("fused=True is invalid with differentiable=True or capturable=True")
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        # torch's constructor knows no ``fused``: add it to the defaults and the groups made so far
        self.defaults["fused"] = fused
        for group in self.param_groups:
            group.setdefault("fused", fused)
        self._workspace = Workspace()

    def _fuses(self, group: dict[str, Any]) -> bool:
        """Whether ``group`` takes the fused path: asked for (or unset, on CPU) and plain."""
        return (
            use_fused(RMSprop, group)
            and group["momentum"] == 0
            and not group["centered"]
            and not group["differentiable"]
            and not group["capturable"]
        )

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one step; ``closure`` re-evaluates the model and returns the loss."""
        if not all(self._fuses(group) for group in self.param_groups):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._fused_group_step(group)
        return loss

    def _fused_group_step(self, group: dict[str, Any]) -> None:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        square_avgs: list[Tensor] = []
        state_steps: list[Tensor] = []
        # no momentum buffers or gradient averages: a fused group has neither
        has_complex = self._init_group(group, params, grads, square_avgs, [], [], state_steps)
        hparams = {k: group[k] for k in ("lr", "alpha", "eps", "weight_decay", "maximize")}
        fast, rest = split_fusable(params, grads, square_avgs, state_steps)
        for rows in fast.values():
            _fused_rmsprop(*rows, **hparams, workspace=self._workspace)
        if rest[0]:
            params, grads, square_avgs, state_steps = rest
            rmsprop(
                params,
                grads,
                square_avgs,
                [],
                [],
                state_steps,
                **hparams,
                momentum=0.0,
                centered=False,
                foreach=None,
                differentiable=False,
                capturable=False,
                has_complex=has_complex,
            )


def _fused_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    workspace: Workspace,
) -> None:
    """Plain RMSprop on contiguous CPU tensors of one dtype, block by block."""
    torch._foreach_add_(state_steps, 1.0)
    hparams = {"lr": lr, "beta2": alpha, "eps": eps, "weight_decay": weight_decay}
    no_bias_correction = torch.tensor(_NO_BIAS_CORRECTION_STEP)
    flat = [[t.view(-1) for t in tensors] for tensors in (params, grads, square_avgs)]
    for group in cache_blocks(tuple(p.numel() for p in flat[0])):
        p, g, v = ([t[i] for i in group] for t in flat)
        if sum(t.numel() for t in p) > BLOCK_NUMEL:  # one tensor, block by block
            pieces = zip(*(t[0].split(BLOCK_NUMEL) for t in (p, g, v)), strict=True)
            blocks = [([pb], [gb], [vb]) for pb, gb, vb in pieces]
        else:
            blocks = [(p, g, v)]
        for block_p, block_g, block_v in blocks:
            lengths = [t.numel() for t in block_p]
            # the kernel's first moment, which becomes the gradient: it must start finite
            first_moment = workspace.get(sum(lengths), block_p[0]).zero_()
            torch._fused_adam_(
                block_p,
                block_g,
                list(first_moment.split_with_sizes(lengths)),
                block_v,
                [],
                [no_bias_correction] * len(block_p),
                beta1=0.0,
                amsgrad=False,
                maximize=maximize,
                **hparams,
            )
