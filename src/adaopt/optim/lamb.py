"""LAMB: layer-wise adaptive moments (You et al., 2019, arXiv 1904.00962).

Written in the style of ``torch/optim/adamw.py``: a validated constructor, lazily created state
(``step``, ``exp_avg``, ``exp_avg_sq``), a plain per-tensor reference path (``foreach=False``) and a
multi-tensor path built from ``torch._foreach_*`` ops (``foreach=True``, the default when all
parameters live on one device). Both paths keep the same state, so a checkpoint written by one loads
into the other. Parameters whose ``grad`` is ``None`` are skipped and get no state.

Per tensor ``p`` with gradient ``g`` at step ``t``::

    m = beta1 * m + (1 - beta1) * g          v = beta2 * v + (1 - beta2) * g * g
    u = (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p
    trust = ||p|| / ||u||   (1.0 if either norm is 0; no clamp)
    p = p - lr * trust * u
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from ._impl import fastest_impl_kwargs
from ._validation import RULES, validate_hparams

__all__ = ["Lamb", "lamb"]


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class Lamb(Optimizer):
    """LAMB optimizer; see the module docstring for the update and ``docs/method.md`` for choices.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate (the relative step size per tensor: ``||delta p|| = lr * ||p||``).
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator, inside the bias correction as in Adam.
        weight_decay: decoupled weight decay, added to the update *before* the trust ratio.
        foreach: multi-tensor path; ``None`` picks it when all parameters share a device.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        *,
        foreach: bool | None = None,
    ) -> None:
        validate_hparams(
            {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "foreach": foreach}
        )
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        validate_hparams({k: v for k, v in param_group.items() if k in RULES})
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)

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
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
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
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Functional LAMB step over lists of tensors (the state tensors are updated in place)."""
    if foreach is None:
        foreach = fastest_impl_kwargs(Lamb, params).get("foreach", False)
    func = _multi_tensor_lamb if foreach else _single_tensor_lamb
    func(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        state_steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
    )


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
