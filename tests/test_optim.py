"""Tests of adaopt.optim: registry, LAMB, adaptive_adam and its controller (CPU, seeded, fast)."""

from __future__ import annotations

import ast
import copy
import gc
import io
import math
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import adaopt.optim
from adaopt.optim import (
    CONTROLLED,
    DEFAULTS,
    OPTIMIZERS,
    AdaptiveLR,
    Lamb,
    RMSprop,
    build_adaptive_adam,
    build_method,
    build_optimizer,
    fastest_impl_kwargs,
    param_groups,
)
from adaopt.optim._impl import BLOCK_NUMEL, cache_blocks

# ----------------------------------------------------------------------------- helpers


def tiny_net(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)


def regression_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(64, 1, generator=g)
    return x, y


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    scheduler: AdaptiveLR | None = None,
    start: int = 0,
    metrics: dict[int, float] | None = None,
) -> None:
    """Full-batch MSE steps; ``metrics[t]`` is reported to ``scheduler`` after global step t."""
    x, y = data
    for t in range(start, start + steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
            if metrics and t in metrics:
                scheduler.report(metrics[t])


def roundtrip(obj: object) -> object:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only=True: checkpoints hold plain data only


# ----------------------------------------------------------------------------- LAMB


def _lamb_params(**impl: bool) -> tuple[list[nn.Parameter], Lamb]:
    g = torch.Generator().manual_seed(0)
    shapes = [(1,), (7,), (5, 3), (2, 3, 4), ()]
    params = [nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in shapes]
    params.append(nn.Parameter(torch.zeros(6, dtype=torch.float64)))  # ||p|| = 0 -> trust 1
    params.append(nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64)))  # grad None
    return params, Lamb(params, lr=1e-2, weight_decay=0.1, **impl)


FAST_PATHS = [{"foreach": True}, {"fused": True}]


@pytest.mark.parametrize("impl", FAST_PATHS, ids=["foreach", "fused"])
def test_fast_paths_match_forloop(impl: dict[str, bool]) -> None:
    ref_params, ref = _lamb_params(foreach=False)
    fe_params, fe = _lamb_params(**impl)
    frozen_before = fe_params[-1].detach().clone()
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        for a, b in zip(ref_params[:-1], fe_params[:-1], strict=True):
            grad = torch.randn(a.shape, generator=g, dtype=torch.float64)
            a.grad, b.grad = grad.clone(), grad.clone()
        ref.step()
        fe.step()
    for a, b in zip(ref_params, fe_params, strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)
    # the parameters moved, so the comparison above was not between two untouched copies
    assert not torch.equal(fe_params[2], _lamb_params(**impl)[0][2])
    # the grad-None parameter is untouched and has no state, in both paths
    assert torch.equal(fe_params[-1], frozen_before)
    assert fe_params[-1] not in fe.state and ref_params[-1] not in ref.state
    for opt, params in ((ref, ref_params), (fe, fe_params)):
        assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_avg_sq"}
        assert opt.state[params[0]]["step"].item() == 50


def _two_group_lamb(**impl: bool) -> tuple[list[nn.Parameter], Lamb]:
    """Decay and no-decay groups with tensors that span several cache blocks or share one."""
    g = torch.Generator().manual_seed(3)
    big = BLOCK_NUMEL + BLOCK_NUMEL // 2 + 3  # two blocks, the second one partial

    def param(*shape: int) -> nn.Parameter:
        return nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))

    decay = [param(big), param(64, 32), param(7), nn.Parameter(torch.zeros(5, 3).double())]
    no_decay = [param(32), param(), param(BLOCK_NUMEL - 10), param(9)]  # the last: zero gradient
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    return [*decay, *no_decay], Lamb(groups, lr=1e-2, **impl)


def _set_grads(runs: list[list[nn.Parameter]], g: torch.Generator) -> None:
    """The same random gradients for each run's parameters; zero for the last parameter."""
    for params in zip(*runs, strict=True):
        grad = torch.randn(params[0].shape, generator=g, dtype=params[0].dtype)
        if params[0] is runs[0][-1]:
            grad.zero_()  # u = 0 in the no-decay group: ||u|| = 0 -> trust 1, no update
        for p in params:
            p.grad = grad.clone()


def test_fused_lamb_matches_forloop_across_blocks_and_groups() -> None:
    ref_params, ref = _two_group_lamb(foreach=False)
    fused_params, fused = _two_group_lamb(fused=True)
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        _set_grads([ref_params, fused_params], g)
        ref.step()
        fused.step()
    for a, b in zip(ref_params, fused_params, strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)
    assert not torch.equal(fused_params[0], _two_group_lamb()[0][0])  # it moved
    assert torch.equal(fused_params[-1], _two_group_lamb()[0][-1])  # u = 0: it did not


def test_fused_lamb_checkpoint_continues_as_if_uninterrupted() -> None:
    """Mid-run ``state_dict`` round trips: fused -> fused is exact, foreach <-> fused agree."""
    g = torch.Generator().manual_seed(5)
    grads = [
        [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in _two_group_lamb()[0]]
        for _ in range(6)
    ]

    def run(params: list[nn.Parameter], opt: Lamb, steps: list[list[torch.Tensor]]) -> None:
        for step_grads in steps:
            for p, grad in zip(params, step_grads, strict=True):
                p.grad = grad.clone()
            opt.step()

    ref_params, ref = _two_group_lamb(fused=True)
    run(ref_params, ref, grads)
    for first, second in (("fused", "fused"), ("foreach", "fused"), ("fused", "foreach")):
        params, opt = _two_group_lamb(**{first: True})
        run(params, opt, grads[:3])
        saved = roundtrip({"params": [p.detach() for p in params], "optim": opt.state_dict()})
        params, opt = _two_group_lamb(**{second: True})
        with torch.no_grad():
            for p, value in zip(params, saved["params"], strict=True):
                p.copy_(value)
        opt.load_state_dict(saved["optim"])
        for group in opt.param_groups:  # loading restores the saved path: switch it explicitly
            group.update({"foreach": None, "fused": None, second: True})
        run(params, opt, grads[3:])
        for a, b in zip(ref_params, params, strict=True):
            if first == second:
                assert torch.equal(a, b)
            else:
                torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


def test_fused_lamb_keeps_a_non_finite_update_in_its_own_tensor() -> None:
    """The fused path reuses one scratch buffer for every tensor; a NaN left there by one tensor
    must not reach the next (the kernel computes ``0 * scratch``), as it cannot in the reference.
    """
    runs = []
    for impl in ({"foreach": False}, {"fused": True}):
        torch.manual_seed(6)
        params = [nn.Parameter(torch.randn(BLOCK_NUMEL + 1)), nn.Parameter(torch.randn(5))]
        opt = Lamb(params, lr=0.1, **impl)
        for t in range(3):
            params[0].grad = torch.full_like(params[0], math.nan if t == 0 else 1.0)
            params[1].grad = torch.ones(5)
            opt.step()
        runs.append(params)
    (ref_nan, ref_ok), (nan, ok) = runs
    assert ref_nan.isnan().all() and nan.isnan().all()
    torch.testing.assert_close(ok, ref_ok)


def test_lamb_first_step_matches_hand_computation() -> None:
    p0 = torch.tensor([3.0, -4.0], dtype=torch.float64)
    grad = torch.tensor([0.5, 2.0], dtype=torch.float64)
    lr, wd, eps = 0.1, 0.2, 1e-6
    for impl in ({"foreach": False}, *FAST_PATHS):
        p = nn.Parameter(p0.clone())
        p.grad = grad.clone()
        Lamb([p], lr=lr, weight_decay=wd, eps=eps, **impl).step()
        # step 1: m_hat = g, v_hat = g^2, so u = g / (|g| + eps) + wd * p
        u = grad / (grad.abs() + eps) + wd * p0
        trust = p0.norm() / u.norm()  # ||p0|| = 5
        torch.testing.assert_close(p.detach(), p0 - lr * trust * u, atol=1e-14, rtol=0)


def _ones_grad_steps(cls: type, values: list[torch.Tensor], steps: int, **hparams: Any
                     ) -> list[nn.Parameter]:
    """``values`` as parameters after ``steps`` steps of ``cls`` with all-ones gradients."""
    params = [nn.Parameter(v.clone()) for v in values]
    opt = cls(params, **hparams)
    for _ in range(steps):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    return params


@pytest.mark.parametrize("impl", FAST_PATHS, ids=["foreach", "fused"])
def test_lamb_fast_paths_handle_mixed_dtypes_and_layouts(impl: dict[str, bool]) -> None:
    """float32 and float64 side by side; half precision and a non-contiguous tensor, which the
    fused path hands to the multi-tensor path."""
    g = torch.Generator().manual_seed(2)
    values = [
        torch.randn(5, generator=g),
        torch.randn(3, 2, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g).to(torch.bfloat16),
        torch.randn(4, 3, generator=g).t(),
    ]
    runs = [_ones_grad_steps(Lamb, values, 5, lr=1e-2, **run_impl)
            for run_impl in ({"foreach": False}, impl)]
    for a, b in zip(*runs, strict=True):
        assert b.dtype == a.dtype
        tol = 1e-2 if a.dtype == torch.bfloat16 else 1e-6
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)


def test_lamb_defaults_to_the_fused_path_on_cpu() -> None:
    params = [nn.Parameter(torch.ones(3))]
    assert fastest_impl_kwargs(Lamb, params) == {"fused": True}
    with pytest.raises(ValueError, match="foreach=True is invalid with fused=True"):
        Lamb(params, foreach=True, fused=True)


def test_cache_blocks_pack_small_tensors_and_isolate_large_ones() -> None:
    numels = (5, BLOCK_NUMEL - 5, 1, 2 * BLOCK_NUMEL + 1, 0, 3, BLOCK_NUMEL, BLOCK_NUMEL + 1)
    groups = cache_blocks(numels)
    assert [i for group in groups for i in group] == list(range(len(numels)))  # each once, in order
    for group in groups:
        total = sum(numels[i] for i in group)
        assert total <= BLOCK_NUMEL or len(group) == 1  # a block, or one tensor cut into blocks
    assert groups == ((0, 1), (2,), (3,), (4, 5), (6,), (7,))


# ----------------------------------------------------------------------------- RMSprop

RMSPROP_OPTIONS = [
    {},
    {"weight_decay": 0.1},
    {"alpha": 0.5, "eps": 1e-3},
    {"maximize": True},
    {"momentum": 0.9},  # torch's implementation: the fused kernel has no momentum
    {"centered": True, "momentum": 0.5, "weight_decay": 0.01},
]


def _rmsprop_run(
    cls: type, dtype: torch.dtype, options: dict, steps: int = 8, **impl: bool
) -> list[nn.Parameter]:
    """Steps with seeded gradients on two groups (one with its own lr), a tensor that spans two
    cache blocks, a scalar, and a parameter without gradient."""
    g = torch.Generator().manual_seed(7)
    shapes = [(BLOCK_NUMEL + 17,), (6, 5), (), (3,), (2,)]
    params = [nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 3e-3}]
    opt = cls(groups, lr=1e-2, **options, **impl)
    for _ in range(steps):
        for p in params[:-1]:
            p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
        opt.step()
    return params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", RMSPROP_OPTIONS, ids=str)
def test_fused_rmsprop_matches_torch(options: dict, dtype: torch.dtype) -> None:
    ref = _rmsprop_run(torch.optim.RMSprop, dtype, options, foreach=False)
    ours = _rmsprop_run(RMSprop, dtype, options, fused=True)
    for a, b in zip(ref, ours, strict=True):
        torch.testing.assert_close(b, a)
    initial = _rmsprop_run(RMSprop, dtype, options, steps=0)
    assert not any(torch.equal(a, b) for a, b in zip(ours[:-1], initial[:-1], strict=True))
    assert torch.equal(ours[-1], initial[-1])  # no gradient, no update


def test_fused_rmsprop_hands_what_it_cannot_take_to_torch() -> None:
    """Half precision and non-contiguous tensors take torch's path, next to fused ones."""
    g = torch.Generator().manual_seed(9)
    values = [
        torch.randn(5, generator=g),
        torch.randn(4, generator=g).to(torch.bfloat16),
        torch.randn(4, 3, generator=g).t(),
    ]
    runs = [_ones_grad_steps(cls, values, 4, lr=1e-2, weight_decay=0.1, **impl)
            for cls, impl in ((torch.optim.RMSprop, {"foreach": False}),
                              (RMSprop, {"fused": True}))]
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(b, a)


def test_fused_rmsprop_checkpoints_load_into_torch_and_back() -> None:
    g = torch.Generator().manual_seed(8)
    grads = [torch.randn(6, 5, generator=g) for _ in range(6)]

    def run(opt: torch.optim.Optimizer, p: nn.Parameter, steps: list[torch.Tensor]) -> None:
        for grad in steps:
            p.grad = grad.clone()
            opt.step()

    ref_p = nn.Parameter(torch.ones(6, 5))
    run(torch.optim.RMSprop([ref_p], lr=1e-2), ref_p, grads)
    for first, second in ((RMSprop, torch.optim.RMSprop), (torch.optim.RMSprop, RMSprop)):
        p = nn.Parameter(torch.ones(6, 5))
        opt = first([p], lr=1e-2)
        run(opt, p, grads[:3])
        saved = roundtrip(opt.state_dict())
        p2 = nn.Parameter(p.detach().clone())
        opt2 = second([p2], lr=1e-2)
        opt2.load_state_dict(saved)
        run(opt2, p2, grads[3:])
        torch.testing.assert_close(p2, ref_p)
        assert opt2.state[p2]["step"].item() == 6


def test_fused_rmsprop_refuses_what_its_kernel_cannot_do() -> None:
    params = [nn.Parameter(torch.ones(2))]
    assert fastest_impl_kwargs(RMSprop, params) == {"fused": True}
    with pytest.raises(ValueError, match="fused=True is invalid with differentiable=True"):
        RMSprop(params, fused=True, differentiable=True)
    with pytest.raises(ValueError, match="foreach=True is invalid with fused=True"):
        RMSprop(params, foreach=True, fused=True)
    with pytest.raises(ValueError, match=r"alpha=1\.0 is invalid"):
        RMSprop(params, alpha=1.0)


# ----------------------------------------------------------------------------- adaptive_adam


def test_adaptive_adam_without_schedule_follows_adamw() -> None:
    data = regression_data()
    hp = {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": 0.05}
    ours_model, ref_model = tiny_net(), tiny_net()
    ours, controller = build_adaptive_adam(
        ours_model.parameters(), warmup_steps=0, decay_start=None, adapt=False, **hp
    )
    assert type(ours) is torch.optim.AdamW and ours.defaults["fused"] is True
    assert controller.optimizer is ours
    ref = torch.optim.AdamW(ref_model.parameters(), **hp)  # torch's default (foreach) AdamW
    metrics = {t: 1.0 - t / 100 for t in range(0, 100, 5)}  # worsening: adapt=False ignores it
    train_steps(ours_model, ours, data, 100, controller, metrics=metrics)
    train_steps(ref_model, ref, data, 100)
    assert controller.get_last_lr() == [1e-2]
    for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert not torch.equal(ours_model[0].weight, tiny_net()[0].weight)


def _expected_lr(t: int, scale: float) -> float:
    # lr0 = 0.1, warmup 4 steps, decay from step 10 halving every 5 steps, floor 0.01
    warm = min(1.0, (t + 1) / 4)
    decay = 0.5 ** ((t - 10) / 5) if t > 10 else 1.0
    return warm * max(0.01, 0.1 * scale * decay)


def test_controller_lr_follows_formula_with_plateau_reduction() -> None:
    model = tiny_net()
    opt, controller = build_adaptive_adam(
        model,
        lr=0.1,
        warmup_steps=4,
        decay_start=10,
        decay_steps=5,
        gamma=0.5,
        min_lr=0.01,
        patience=2,
        factor=0.5,
        mode="max",
    )
    data = regression_data()
    # metric reported after step n: during warmup (ignored, though it is the highest), sets the
    # best, ties it (a tie is no improvement), drops (2nd bad evaluation -> reduction after step
    # 7; the counter restarts), drops again (1st bad evaluation of the new count: no
    # reduction), improves, ties, improves, ties, drops (-> reduction after step 16)
    metrics = {2: 0.9, 4: 0.5, 5: 0.5, 7: 0.4, 8: 0.45, 9: 0.6, 10: 0.6, 12: 0.7, 14: 0.7,
               16: 0.65}
    scale = 1.0
    lrs = []
    for t in range(30):
        expected = _expected_lr(t, scale)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([expected] * 2, rel=1e-12)
        lrs.append(opt.param_groups[0]["lr"])
        train_steps(model, opt, data, 1)
        controller.step()
        if t + 1 in metrics:
            reduced = controller.report(metrics[t + 1])
            assert reduced == (t + 1 in (7, 16))
            if reduced:
                scale *= 0.5
                # applied at once, before the next step
                assert opt.param_groups[0]["lr"] == pytest.approx(_expected_lr(t + 1, scale))
    assert controller.num_reductions == 2 and controller.scale == 0.25
    # spot values worked out by hand: warmup 0.025, 0.05; full lr; halved by the plateau at 7;
    # decayed one half-life after step 10 (x0.5) and floored at 0.01 at the end
    assert lrs[0] == pytest.approx(0.025) and lrs[1] == pytest.approx(0.05)
    assert lrs[6] == pytest.approx(0.1) and lrs[7] == pytest.approx(0.05)
    assert lrs[15] == pytest.approx(0.025) and lrs[29] == pytest.approx(0.01)


def test_controller_mode_min_and_min_delta() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=1.0)
    controller = AdaptiveLR(opt, patience=1, factor=0.1, mode="min", min_delta=0.05)
    assert controller.report(1.0) is False  # first value sets the best
    assert controller.report(0.97) is True  # better, but not by more than min_delta
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert controller.report(0.9) is False and controller.best == 0.9
    assert controller.report(math.nan) is True  # NaN never improves
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_controller_ignores_evaluations_during_warmup() -> None:
    """A noisy high score inside warmup (the pilot's seed whose best was set at step 20 of a
    24-step warmup) does not become the best: later real progress counts as improvement."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=1.0)
    controller = AdaptiveLR(opt, warmup_steps=4, patience=1, factor=0.5, mode="max")
    for _ in range(2):
        controller.step()
    assert controller.in_warmup()
    assert controller.report(0.85) is False and controller.best is None
    for _ in range(2):
        controller.step()
    assert not controller.in_warmup()
    for score in (0.74, 0.78, 0.80, 0.825):  # rising: every one an improvement, no cut
        assert controller.report(score) is False
    assert controller.best == 0.825 and controller.num_reductions == 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_build_method_returns_a_controller_only_where_registered(name: str) -> None:
    optimizer, controller = build_method(name, tiny_net())
    assert isinstance(optimizer, torch.optim.Optimizer)
    if name in CONTROLLED:
        assert isinstance(controller, AdaptiveLR) and controller.optimizer is optimizer
    else:
        assert controller is None


def test_build_optimizer_gives_the_adamw_of_adaptive_adam_and_refuses_controller_keys() -> None:
    optimizer = build_optimizer("adaptive_adam", tiny_net(), lr=1e-3)
    assert type(optimizer) is torch.optim.AdamW
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]
    with pytest.raises(ValueError, match=r"patience, gamma would be ignored; use build_method"):
        build_optimizer("adaptive_adam", tiny_net(), patience=3, gamma=0.9)
    with pytest.raises(ValueError, match=r"unknown hyperparameter.*'bogus'"):
        build_method("adaptive_adam", tiny_net(), bogus=1)


def _module_imports(path: Path) -> set[str]:
    """Sibling modules ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:
                found.update([module] if module else [a.name for a in node.names])
            elif module.startswith("adaopt.optim."):
                found.add(module.removeprefix("adaopt.optim."))
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("adaopt.optim.")
                for a in node.names
                if a.name.startswith("adaopt.optim.")
            )
    return found


def test_optim_modules_import_each_other_without_a_cycle() -> None:
    """adaptive must not import registry (registry imports adaptive), not even in a function."""
    package = Path(adaopt.optim.__file__).parent
    graph = {p.stem: _module_imports(p) for p in package.glob("*.py") if p.stem != "__init__"}
    assert "adaptive" in graph["registry"] and "registry" not in graph["adaptive"]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in done:
            for dependency in graph.get(module, ()):
                visit(dependency, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())


def _train_and_drop_adaptive_adam() -> list[weakref.ref]:
    """Run adaptive_adam for a step, drop every strong reference, return weak ones to it all."""
    model = tiny_net()
    optimizer, controller = build_method("adaptive_adam", model, warmup_steps=2, patience=1)
    assert controller is not None
    assert all(value is not controller for value in vars(optimizer).values())  # one way only
    train_steps(model, optimizer, regression_data(), 2, controller, metrics={0: 1.0, 1: 0.5})
    assert optimizer.state  # the moments exist, so there is state to free
    state = [t for s in optimizer.state.values() for t in s.values()]
    objects = [model, optimizer, controller, *model.parameters(), *state]
    refs = [weakref.ref(obj) for obj in objects]
    del model, optimizer, controller, state, objects
    return refs


def test_finished_run_is_freed_without_the_cyclic_gc() -> None:
    """The old AdamW subclass owned its controller, which pointed back at it: a cycle that kept a
    finished run's model and optimizer state alive until the cyclic GC ran. Reference counting
    alone must free them now (torch's LRScheduler keeps only a weakref from optimizer.step).
    """
    # The first fused step in a process lazily imports torch internals whose frames hold the
    # optimizer in a cycle once; warm up so that the measured run sees the steady state.
    _train_and_drop_adaptive_adam()
    gc.collect()
    gc.disable()
    try:
        refs = _train_and_drop_adaptive_adam()
        alive = [type(ref()).__name__ for ref in refs if ref() is not None]
    finally:
        gc.enable()
    assert alive == []


# ----------------------------------------------------------------------------- state_dict


def _round_trip_hparams(name: str) -> dict:
    if name == "adaptive_adam":
        return {"warmup_steps": 5, "decay_start": 10, "decay_steps": 5, "patience": 1}
    return {}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip(name: str) -> None:
    data = regression_data()
    hp = _round_trip_hparams(name)
    metrics = {t: 1.0 / (1 + (t % 7)) for t in range(0, 40, 3)}  # sometimes worse

    model = tiny_net()
    opt, ctrl = build_method(name, model, **hp)
    train_steps(model, opt, data, 40, ctrl, metrics=metrics)

    first = tiny_net()
    opt1, ctrl1 = build_method(name, first, **hp)
    train_steps(first, opt1, data, 20, ctrl1, metrics=metrics)
    saved = roundtrip(
        {
            "model": first.state_dict(),
            "optim": opt1.state_dict(),
            "controller": None if ctrl1 is None else ctrl1.state_dict(),
        }
    )
    del first, opt1, ctrl1
    second = tiny_net(seed=1)  # fresh objects, different weights until loaded
    second.load_state_dict(saved["model"])
    opt2, ctrl2 = build_method(name, second, **hp)
    opt2.load_state_dict(saved["optim"])
    if ctrl2 is not None:
        ctrl2.load_state_dict(saved["controller"])  # after the optimizer: it writes the lr
    train_steps(second, opt2, data, 20, ctrl2, start=20, metrics=metrics)

    for a, b in zip(model.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups]
    if name in CONTROLLED:
        assert ctrl is not None and ctrl2 is not None
        assert "controller" not in opt2.state_dict()  # each half saves its own state
        assert ctrl2.state_dict()["last_epoch"] == 40
        assert ctrl.num_reductions > 0
        assert ctrl2.scale == ctrl.scale


def test_scheduler_round_trip_on_sgd_momentum() -> None:
    data = regression_data()
    kw = {"warmup_steps": 3, "decay_start": 8, "decay_steps": 4, "gamma": 0.7, "patience": 1}
    metrics = {t: float((t // 5) % 3) for t in range(4, 40, 5)}  # stalls from step 19 on

    def build(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, AdaptiveLR]:
        model = tiny_net(seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, opt, AdaptiveLR(opt, **kw)

    model, opt, sched = build()
    train_steps(model, opt, data, 40, sched, metrics=metrics)

    first, opt1, sched1 = build()
    train_steps(first, opt1, data, 20, sched1, metrics=metrics)
    saved = copy.deepcopy(
        {"model": first.state_dict(), "optim": opt1.state_dict(), "sched": sched1.state_dict()}
    )
    second, opt2, sched2 = build(seed=1)
    second.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optim"])
    sched2.load_state_dict(saved["sched"])
    train_steps(second, opt2, data, 20, sched2, start=20, metrics=metrics)

    assert sched.num_reductions > 0 and sched2.scale == sched.scale
    assert sched2.get_last_lr() == sched.get_last_lr()
    for a, b in zip(model.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "hparams", "arg", "shown"),
    [
        ("sgd", {"lr": -0.1}, "lr", "-0.1"),
        ("adamw", {"lr": math.nan}, "lr", "nan"),
        ("adam", {"betas": (0.9, 1.0)}, "betas", "(0.9, 1.0)"),
        ("lamb", {"betas": (-0.1, 0.999)}, "betas", "(-0.1, 0.999)"),
        ("adamw", {"eps": 0.0}, "eps", "0.0"),
        ("adagrad", {"eps": -1e-10}, "eps", "-1e-10"),
        ("adamw", {"weight_decay": -0.01}, "weight_decay", "-0.01"),
        ("momentum", {"momentum": 1.0}, "momentum", "1.0"),
        ("rmsprop", {"momentum": -0.5}, "momentum", "-0.5"),
        ("rmsprop", {"alpha": 1.5}, "alpha", "1.5"),
        ("adaptive_adam", {"gamma": 0.0}, "gamma", "0.0"),
        ("adaptive_adam", {"gamma": 1.5}, "gamma", "1.5"),
        ("adaptive_adam", {"patience": 0}, "patience", "0"),
        ("adaptive_adam", {"factor": 1.0}, "factor", "1.0"),
        ("adaptive_adam", {"factor": 0.0}, "factor", "0.0"),
        ("adaptive_adam", {"warmup_steps": -1}, "warmup_steps", "-1"),
        ("adaptive_adam", {"decay_steps": 0}, "decay_steps", "0"),
        ("adaptive_adam", {"min_lr": -1e-6}, "min_lr", "-1e-06"),
        ("adaptive_adam", {"mode": "avg"}, "mode", "'avg'"),
        ("adaptive_adam", {"lr": -1.0}, "lr", "-1.0"),
    ],
)
def test_invalid_hyperparameters(name: str, hparams: dict, arg: str, shown: str) -> None:
    with pytest.raises(ValueError, match="is invalid") as info:
        build_method(name, tiny_net(), **hparams)
    assert f"{arg}={shown}" in str(info.value)


def test_invalid_hyperparameters_in_direct_constructors() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"momentum=1\.5 is invalid"):
        build_optimizer("rmsprop", [{"params": params, "momentum": 1.5}])
    with pytest.raises(ValueError, match=r"lr=-1\.0 is invalid: must be >= 0"):
        Lamb(params, lr=-1.0)
    with pytest.raises(ValueError, match=r"gamma=2\.0 is invalid"):
        AdaptiveLR(torch.optim.SGD(params, lr=0.1), gamma=2.0)
    with pytest.raises(ValueError, match=r"patience=0 is invalid"):
        build_adaptive_adam(params, patience=0)
    with pytest.raises(ValueError, match=r"betas=\(0\.9, 1\.0\) is invalid"):
        build_adaptive_adam(params, betas=(0.9, 1.0))


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'") as info:
        build_optimizer("adamax", tiny_net())
    for name in OPTIMIZERS:
        assert name in str(info.value)


def test_unknown_hyperparameter_names_it_and_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'betas'.*'sgd'.*allowed: lr, weight_decay"):
        build_optimizer("sgd", tiny_net(), betas=(0.9, 0.999))
    with pytest.raises(ValueError, match="'patience'"):
        build_optimizer("adamw", tiny_net(), patience=3)


# ----------------------------------------------------------------------------- grouping


class _Scaled(nn.Module):
    """A custom module with a 1-D parameter that is neither a bias nor in a norm module."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_no_weight_decay_for_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), _Scaled(), nn.Linear(4, 2, bias=False))
    model[3].weight.requires_grad_(False)  # frozen: left out
    opt = build_optimizer("adamw", model, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight)}
    expected = [model[0].bias, model[1].weight, model[1].bias, model[2].scale]
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in expected}
    # plain parameter lists pass through as one group with the optimizer's weight decay
    flat = build_optimizer("adamw", model.parameters(), weight_decay=0.1)
    assert len(flat.param_groups) == 1 and flat.param_groups[0]["weight_decay"] == 0.1
    assert len(param_groups(nn.Linear(3, 3, bias=False), 0.1)) == 1  # empty group omitted


# ----------------------------------------------------------------------------- behaviour


def finetune_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A fine-tuning analogue the defaults are meant for: start near the solution.

    Targets come from a "pretrained" network; the student is that network plus a small
    perturbation (1e-2 per weight), as fine-tuning moves pretrained weights by little.
    """
    g = torch.Generator().manual_seed(seed)
    teacher = tiny_net(seed)
    x = torch.randn(64, 8, generator=g)
    with torch.no_grad():
        y = teacher(x)
        for p in teacher.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=g))
    return teacher, x, y


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_default_learning_rate_lowers_the_loss(name: str) -> None:
    model, x, y = finetune_problem()
    opt, controller = build_method(name, model)  # defaults only
    assert opt.param_groups[0]["lr"] == DEFAULTS[name]["lr"]
    with torch.no_grad():
        initial = nn.functional.mse_loss(model(x), y).item()
    train_steps(model, opt, (x, y), 200, controller)
    with torch.no_grad():
        final = nn.functional.mse_loss(model(x), y).item()
    assert final < 0.5 * initial, (name, initial, final)


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("sgd", "fused"),
        ("momentum", "fused"),
        ("adagrad", "fused"),
        ("adam", "fused"),
        ("adamw", "fused"),
        ("adaptive_adam", "fused"),
        ("rmsprop", "fused"),  # ours: torch has no fused RMSprop
        ("lamb", "fused"),
    ],
)
def test_fastest_implementation_is_selected(name: str, flag: str) -> None:
    opt = build_optimizer(name, tiny_net())
    assert opt.defaults[flag] is True
    assert all(group[flag] is True for group in opt.param_groups)
    assert opt.defaults.get("foreach" if flag == "fused" else "fused") is not True


def test_implementation_override_and_fallback() -> None:
    opt = build_optimizer("adamw", tiny_net(), fused=False)
    assert not opt.defaults["fused"]
    assert not build_optimizer("lamb", tiny_net(), foreach=False).defaults["foreach"]
    assert type(build_optimizer("rmsprop", tiny_net(), foreach=True)) is RMSprop
    complex_params = [nn.Parameter(torch.zeros(3, dtype=torch.complex64))]
    assert fastest_impl_kwargs(torch.optim.AdamW, complex_params) == {"foreach": True}
    assert fastest_impl_kwargs(torch.optim.RMSprop, [nn.Parameter(torch.zeros(1))]) == {
        "foreach": True
    }
    with pytest.raises(ValueError, match="foreach=True is invalid with fused=True"):
        build_optimizer("adam", tiny_net(), foreach=True, fused=True)
