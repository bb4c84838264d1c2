"""LAMB: layer-wise adaptive moments (You et al., 2019, arXiv 1904.00962).

Written in the style of ``torch/optim/adamw.py``: a validated constructor, lazily created state
(``step``, ``exp_avg``, ``exp_avg_sq``), a plain per-tensor reference path (``foreach=False``), a
multi-tensor path built from ``torch._foreach_*`` ops (``foreach=True``) and a fused CPU path
(``fused=True``) that runs torch's fused Adam kernel over cache-sized blocks. Unset, the fastest
available path is used: fused on CPU, else foreach. All paths keep the same state, so a checkpoint
written by one loads into the others. Parameters whose ``grad`` is ``None`` are skipped and get no
state.

Per tensor ``p`` with gradient ``g`` at step ``t``::

    m = beta1 * m + (1 - beta1) * g          v = beta2 * v + (1 - beta2) * g * g
    u = (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p
    trust = ||p|| / ||u||   (1.0 if either norm is 0; no clamp)
    p = p - lr * trust * u
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from adaopt.hparams import validate_hparams

from ._impl import (
    BLOCK_NUMEL,
    FusedScratch,
    Workspace,
    cache_blocks,
    split_fusable,
    supports_foreach,
    use_fused,
)

__all__ = ["Lamb", "lamb"]

# Tensors smaller than this run elementwise ops on one thread (torch's grain size).
_SMALL = 32768


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class Lamb(FusedScratch, Optimizer):
    """LAMB optimizer; see the module docstring for the update and ``docs/method.md`` for choices.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate (the relative step size per tensor: ``||delta p|| = lr * ||p||``).
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator, inside the bias correction as in Adam.
        weight_decay: decoupled weight decay, added to the update *before* the trust ratio.
        foreach: multi-tensor path.
        fused: fused CPU path (tensors it cannot take, e.g. on another device or in half
            precision, go through the multi-tensor path). With neither set, the fastest path for
            the parameters: fused on CPU, else foreach when all parameters share a device.
    """

    #: Devices of the fused path, read by :func:`~adaopt.optim.fastest_impl_kwargs`.
    fused_devices = ("cpu",)

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        validate_hparams(
            {
                "lr": lr,
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "foreach": foreach,
                "fused": fused,
            }
        )
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self._workspace = Workspace()

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        state_steps: list[Tensor],
    ) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Lamb does not support sparse gradients")
            if torch.is_complex(p):
                raise RuntimeError("Lamb does not support complex parameters")
            state = self.state[p]
            if len(state) == 0:  # lazy state initialization
                # ``step`` lives on the parameter's device so the foreach path never syncs.
                state["step"] = torch.zeros((), dtype=_scalar_dtype(), device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            state_steps.append(state["step"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            state_steps: list[Tensor] = []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, state_steps)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            lamb(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                state_steps,
                foreach=group["foreach"],
                fused=use_fused(Lamb, group),
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                workspace=self._workspace,
            )
        return loss


def lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    foreach: bool | None,
    fused: bool = False,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    workspace: Workspace | None = None,
) -> None:
    """Functional LAMB step over lists of tensors (the state tensors are updated in place).

    ``fused`` takes precedence over ``foreach``; ``workspace`` keeps the fused path's scratch
    memory from one call to the next (a fresh one is allocated if it is not given).
    """
    tensors = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    hparams = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
    if fused:
        fast, tensors = split_fusable(*tensors)
        for rows in fast.values():
            _fused_lamb(*rows, **hparams, workspace=workspace or Workspace())
        foreach = True  # for what the fused path cannot take
    elif foreach is None:
        foreach = supports_foreach(params)
    if tensors[0]:
        func = _multi_tensor_lamb if foreach else _single_tensor_lamb
        func(*tensors, **hparams)


def _single_tensor_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Reference path: the textbook update, one tensor at a time."""
    for param, grad, exp_avg, exp_avg_sq, step_t in zip(
        params, grads, exp_avgs, exp_avg_sqs, state_steps, strict=True
    ):
        step_t += 1
        step = step_t.item()
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        m_hat = exp_avg / (1 - beta1**step)
        v_hat = exp_avg_sq / (1 - beta2**step)
        update = m_hat / (v_hat.sqrt() + eps)
        if weight_decay != 0:
            update.add_(param, alpha=weight_decay)

        w_norm = torch.linalg.vector_norm(param).item()
        u_norm = torch.linalg.vector_norm(update).item()
        trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        param.add_(update, alpha=-lr * trust)


def _group_by_device_and_dtype(
    *tensorlists: list[Tensor],
) -> dict[tuple[torch.device, torch.dtype], list[list[Tensor]]]:
    groups: dict[tuple[torch.device, torch.dtype], list[list[Tensor]]] = {}
    for row in zip(*tensorlists, strict=True):
        key = (row[0].device, row[0].dtype)
        lists = groups.setdefault(key, [[] for _ in tensorlists])
        for lst, t in zip(lists, row, strict=True):
            lst.append(t)
    return groups


def _multi_tensor_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Multi-tensor path: the same update with ``torch._foreach_*`` ops and no host syncs.

    Algebra that saves full-size passes (exact in real arithmetic): with ``b1 = 1 - beta1**t``,
    ``b2 = 1 - beta2**t`` and ``c = sqrt(b2) / b1``, the Adam direction is
    ``m_hat / (sqrt(v_hat) + eps) = c * m / (sqrt(v) + eps * sqrt(b2))``. We build
    ``w = m / (sqrt(v) + eps * sqrt(b2)) + (weight_decay / c) * p = u / c``; the trust ratio is
    scale-invariant, so ``trust * u = (||p|| / ||w||) * w``, and ``c * w`` when a norm is zero.
    Per-tensor scalars (bias corrections, norms, trust ratios) stay tensors on the device.
    """
    grouped = _group_by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, state_steps)
    for (_, dtype), (p, g, m, v, steps) in grouped.items():
        torch._foreach_add_(steps, 1.0)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1 - beta2)

        scalar_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        step = torch.stack(steps).to(scalar_dtype)
        bc1 = 1 - torch.pow(beta1, step)
        bc2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
        c = bc2_sqrt / bc1

        # One full-size temporary (a fresh allocation costs page faults on CPU): sqrt, then turn
        # it into w in place with reciprocal and mul rather than allocating m / denom.
        w = torch._foreach_sqrt(v)
        torch._foreach_add_(w, (eps * bc2_sqrt).unbind())
        torch._foreach_reciprocal_(w)
        torch._foreach_mul_(w, m)
        if weight_decay != 0:
            torch._foreach_addcmul_(w, p, (weight_decay / c).unbind())

        p_norm = torch.stack(torch._foreach_norm(p)).to(scalar_dtype)
        w_norm = torch.stack(torch._foreach_norm(w)).to(scalar_dtype)
        scale = torch.where((p_norm > 0) & (w_norm > 0), p_norm / w_norm, c)
        torch._foreach_addcmul_(p, w, scale.unbind(), value=-lr)


def _fused_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    workspace: Workspace,
) -> None:
    """Fused CPU path (contiguous CPU tensors of one dtype): the elementwise work in torch's fused
    AdamW kernel, block by block (:func:`~adaopt.optim._impl.cache_blocks`).

    LAMB's moments and its update ``u = a + weight_decay * p``, with the Adam direction
    ``a = m_hat / (sqrt(v_hat) + eps)``, are what that kernel computes when it runs on a copy
    ``w`` of the parameter with ``lr = 1`` and weight decay ``1 + weight_decay``: it updates ``m``
    and ``v`` and leaves ``w = (1 - (1 + weight_decay)) * p - a = -u``. What remains are four
    light passes: the copy and two squared norms per block, and once a tensor's blocks are done,
    ``p += lr * trust * w``. A tensor larger than a block keeps its ``w`` in the scratch buffer
    until then. The per-tensor scalars are Python floats (reading a CPU tensor costs no sync).
    """
    torch._foreach_add_(state_steps, 1.0)
    flat = [[t.view(-1) for t in tensors] for tensors in (params, grads, exp_avgs, exp_avg_sqs)]
    args = _KernelArgs(beta1, beta2, eps, weight_decay)
    for group in cache_blocks(tuple(p.numel() for p in flat[0])):
        p, g, m, v = ([t[i] for i in group] for t in flat)
        steps = [state_steps[i] for i in group]
        scratch = workspace.get(sum(t.numel() for t in p), p[0])
        if scratch.numel() > BLOCK_NUMEL:  # one tensor, block by block
            w = [scratch]
            p_sq, u_sq = _lamb_big_tensor(scratch, p[0], g[0], m[0], v[0], steps, args)
        else:  # whole tensors, one block
            w = list(scratch.split_with_sizes([t.numel() for t in p]))
            p_sq, u_sq = _lamb_block(w, p, g, m, v, steps, args)
        scales = [
            lr * math.sqrt(a) / math.sqrt(b) if a > 0 and b > 0 else lr
            for a, b in zip(p_sq, u_sq, strict=True)
        ]
        torch._foreach_addcmul_(p, w, torch.tensor(scales, dtype=scratch.dtype).unbind())


class _KernelArgs(NamedTuple):
    beta1: float
    beta2: float
    eps: float
    weight_decay: float


def _lamb_big_tensor(
    w: Tensor, p: Tensor, g: Tensor, m: Tensor, v: Tensor, steps: list[Tensor], args: _KernelArgs
) -> tuple[list[float], list[float]]:
    """:func:`_lamb_block` for a tensor larger than a block, block by block."""
    p_sq = u_sq = 0.0
    for wb, pb, gb, mb, vb in zip(*(t.split(BLOCK_NUMEL) for t in (w, p, g, m, v)), strict=True):
        block_p_sq, block_u_sq = _lamb_block([wb], [pb], [gb], [mb], [vb], steps, args)
        p_sq += block_p_sq[0]
        u_sq += block_u_sq[0]
    return [p_sq], [u_sq]


def _lamb_block(
    w: list[Tensor],
    p: list[Tensor],
    g: list[Tensor],
    m: list[Tensor],
    v: list[Tensor],
    steps: list[Tensor],
    args: _KernelArgs,
) -> tuple[list[float], list[float]]:
    """``w = -u`` for one block of 1-D tensors; returns their ``||p||^2`` and ``||u||^2``."""
    torch._foreach_copy_(w, p)
    p_sq = _squared_norms(w)  # the copy of p, while it is in cache
    torch._fused_adamw_(
        w,
        g,
        m,
        v,
        [],
        steps,
        lr=1.0,
        beta1=args.beta1,
        beta2=args.beta2,
        weight_decay=1.0 + args.weight_decay,
        eps=args.eps,
        amsgrad=False,
        maximize=False,
    )
    return p_sq, _squared_norms(w)


def _squared_norms(tensors: list[Tensor]) -> list[float]:
    """``||t||^2`` of each 1-D tensor: a dot product each (multi-threaded), or, when there are
    several, all too small to be split between threads, one ``foreach`` call."""
    if len(tensors) > 1 and max(t.numel() for t in tensors) < _SMALL:
        return [norm * norm for norm in torch.stack(torch._foreach_norm(tensors)).tolist()]
    return [torch.dot(t, t).item() for t in tensors]
