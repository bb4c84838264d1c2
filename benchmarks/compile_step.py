"""Does ``torch.compile`` pay for the cpu profile's training step on the CPU, compile included?

Usage::

    python benchmarks/compile_step.py [--steps 16] [--passes 5] [--threads 2] [--mirror DIR]
        [--variants default dynamic] [--tiny]

A step is what ``adaopt.training.train`` does per step without clipping: forward and loss,
backward, the gradient norm, a fused AdamW step, ``zero_grad``; on the packaged MiniLM (eager
attention), on the batches the cpu profile trains on: SST-2 prepared as the profile does (200
examples carved out for selection, then 1000 drawn, max_length 64; ``--mirror``, else
``$ADAOPT_DATA_MIRROR``, else ``../shared/data``), 16 per batch, dynamic padding,
length-grouped, so the sequence length changes from step to step.

Each variant, ``torch.compile(model)`` (``default``: it recompiles with dynamic shapes once it
sees a second length) and ``torch.compile(model, dynamic=True)`` (``dynamic``), is measured in
a fresh process, as a pipeline stage (a process of its own) would compile it: an eager run of
``--steps`` steps (which pays the process's warm-up), a compiled run over the same batches
(which pays the compilation), then ``--passes`` passes over those batches that alternate an
eager and a compiled step on each batch (side by side, under the same machine noise): the
steady-state step times, medians over the passes. Every variant runs twice: first with an
empty inductor cache (``cold``), then with the one that run left (``warm``: what a later stage
finds on the same machine).

Reported per run: both runs' times; the compile overhead (the compiled run less its steps at
the steady rate); the speedup of a compiled run of ``--steps`` steps, compile included, and of
100 and 1000 steps (extrapolated with the steady rates); the break-even run length and the one
that reaches 1.2x. The verdict adopts ``torch.compile`` (behind a ``train.compile`` switch) only
if its best variant makes a run of the cpu profile's length (``--steps``, 16) at least 1.2x as
fast as eager, compile time included. ``--tiny`` runs a small BERT on the test fixture's data.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from datasets import load_from_disk
from loop_vs_trainer import ROOT, TASK, default_mirror, quiet, sst2_train
from torch import nn

from adaopt.config import ModelConfig, TinyModelConfig
from adaopt.modeling import load_model, load_tokenizer
from adaopt.optim import build_optimizer
from adaopt.tasks import get_task
from adaopt.training import make_loader, seed_everything

BATCH_SIZE, MAX_LENGTH, TRAIN_SAMPLES, SELECTION_SAMPLES = 16, 64, 1000, 200  # profiles/cpu.yaml
TARGET = 1.2
RUN_LENGTHS = (100, 1000)
COMPILE_KWARGS: dict[str, dict[str, Any]] = {"default": {}, "dynamic": {"dynamic": True}}
EAGER = "eager"


# --------------------------------------------------------------------------- the worker process


def model_config(tiny: bool) -> ModelConfig:
    return ModelConfig(tiny=TinyModelConfig() if tiny else None)


def run_batches(data_dir: Path, tiny: bool, steps: int) -> list[dict[str, torch.Tensor]]:
    """The first ``steps`` batches a run of the cpu profile trains on (seed 0), epoch after
    epoch."""
    data = load_from_disk(str(data_dir))["train"]
    loader = make_loader(data, load_tokenizer(model_config(tiny)), BATCH_SIZE, train=True,
                         group_by_length=True, seed=0)

    def forever() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield from loader

    return list(islice(forever(), steps))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               batch: dict[str, torch.Tensor]) -> float:
    """One step as ``adaopt.training.train`` takes it (no clipping: the loss and the gradient
    norm are read, not used); its duration in seconds."""
    started = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    loss.item()
    float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()
                                         if p.grad is not None]))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    """The registry's AdamW (fused on the CPU), as ``build_optimization`` builds it."""
    return build_optimizer("adamw", model, lr=1e-4, weight_decay=0.01)


def cache_counts() -> dict[str, int]:
    """What the compilation found in the inductor cache: FX graph hits and misses."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {"hits": inductor["fxgraph_cache_hit"], "misses": inductor["fxgraph_cache_miss"]}


def worker(variant: str, data_dir: Path, tiny: bool, steps: int, passes: int) -> dict[str, Any]:
    """From a fresh process: an eager run, a compiled run, then the steady state of both."""
    quiet()
    batches = run_batches(data_dir, tiny, steps)
    seed_everything(0)
    model = load_model(model_config(tiny), get_task(TASK))
    base = copy.deepcopy(model)
    eager = (model, adamw(model))
    compiled = (torch.compile(base, **COMPILE_KWARGS[variant]), adamw(base))
    runs = {EAGER: sum(train_step(*eager, batch) for batch in batches),
            variant: sum(train_step(*compiled, batch) for batch in batches)}
    steady: dict[str, list[float]] = {EAGER: [], variant: []}
    for _ in range(passes):
        totals = dict.fromkeys(steady, 0.0)
        for i, batch in enumerate(batches):
            pair = ((EAGER, eager), (variant, compiled))
            for name, (module, optimizer) in pair if i % 2 == 0 else pair[::-1]:
                totals[name] += train_step(module, optimizer, batch)
        for name, total in totals.items():
            steady[name].append(total / steps)
    return {"runs": runs, "steady": steady, "cache": cache_counts()}


# --------------------------------------------------------------------------- the parent process


@dataclass(frozen=True)
class Result:
    """One compiled variant against eager, from one worker process.

    The eager run came first, so it paid the process's warm-up (first kernels, allocations);
    a compiled-only run pays it too: a run of ``n`` steps costs ``warmup + n * steady`` eager
    and ``warmup + overhead + n * steady`` compiled, ``overhead`` being the compiled run's time
    beyond its steps at the steady rate (compilation, mostly). ``warmup_s`` is the median over
    all workers of their eager run beyond its steps at the steady rate: one 16-step run is at
    the mercy of the machine's noise, the steady rates (medians over passes) much less.
    """

    variant: str
    cache: str
    counts: dict[str, int]
    steps: int
    eager_run_s: float
    run_s: float
    eager_steady_s: float
    steady_s: float
    warmup_s: float

    def overhead_s(self) -> float:
        return self.run_s - self.steps * self.steady_s

    def speedup(self, steps: int) -> float:
        """How many times as fast as eager a compiled run of ``steps`` steps is."""
        return ((self.warmup_s + steps * self.eager_steady_s)
                / (self.warmup_s + self.overhead_s() + steps * self.steady_s))

    def steps_for(self, ratio: float) -> float:
        """The shortest run that is ``ratio`` x as fast as eager (inf: none is)."""
        gain = self.eager_steady_s - ratio * self.steady_s
        if gain <= 0:
            return float("inf")
        cost = ratio * (self.warmup_s + self.overhead_s()) - self.warmup_s
        return max(1.0, math.ceil(cost / gain))


def spawn(variant: str, args: argparse.Namespace, data_dir: Path, cache: Path) -> dict[str, Any]:
    """Run the worker in a fresh process with ``cache`` as its inductor cache."""
    command = [sys.executable, __file__, "--worker", variant, "--data", str(data_dir),
               "--steps", str(args.steps), "--passes", str(args.passes),
               "--threads", str(args.threads), *(["--tiny"] if args.tiny else [])]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker {variant} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def measure(args: argparse.Namespace, data_dir: Path, tmp: Path) -> list[Result]:
    """Every variant with an empty inductor cache, then every variant again with its cache."""
    outputs = [(variant, cache, spawn(variant, args, data_dir, tmp / f"cache-{variant}"))
               for cache in ("cold", "warm") for variant in args.variants]
    warmup = statistics.median(
        out["runs"][EAGER] - args.steps * statistics.median(out["steady"][EAGER])
        for _, _, out in outputs
    )
    return [
        Result(variant, cache, out["cache"], args.steps, out["runs"][EAGER], out["runs"][variant],
               statistics.median(out["steady"][EAGER]), statistics.median(out["steady"][variant]),
               warmup)
        for variant, cache, out in outputs
    ]


def describe(args: argparse.Namespace, data_dir: Path) -> str:
    model = load_model(model_config(args.tiny), get_task(TASK))
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    lengths = sorted({len(b["input_ids"][0]) for b in run_batches(data_dir, args.tiny,
                                                                  args.steps)})
    return (
        f"torch {torch.__version__}, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}; "
        f"{'tiny BERT' if args.tiny else 'MiniLM'} ({millions:.1f}M parameters), SST-2 batches "
        f"of {BATCH_SIZE} as the cpu profile draws them: {args.steps} steps in "
        f"{len(lengths)} padded lengths ({', '.join(map(str, lengths))}); steady state: median "
        f"of {args.passes} passes"
    )


def run_length(steps: float) -> str:
    return "never" if steps == float("inf") else f"{steps:.0f}"


def report(results: list[Result], steps: int) -> None:
    """The table: one row per (variant, cache)."""
    later = " | ".join(f"x eager, {n} steps" for n in RUN_LENGTHS)
    print(f"| variant | inductor cache (hits/misses) | eager run of {steps} steps s | "
          f"compiled run s | compile overhead s | x eager, {steps} steps | steady ms/step eager |"
          f" steady ms/step compiled | steady x eager | break-even steps | steps for {TARGET}x | "
          f"{later} |")
    print("|---|---|" + "--:|" * (9 + len(RUN_LENGTHS)))
    for r in results:
        later = " | ".join(f"{r.speedup(n):.2f}" for n in RUN_LENGTHS)
        print(f"| {r.variant} | {r.cache} ({r.counts['hits']}/{r.counts['misses']}) | "
              f"{r.eager_run_s:.2f} | {r.run_s:.2f} | {r.overhead_s():.2f} | "
              f"{r.speedup(steps):.2f} | {1e3 * r.eager_steady_s:.1f} | {1e3 * r.steady_s:.1f} |"
              f" {r.eager_steady_s / r.steady_s:.2f} | {run_length(r.steps_for(1.0))} | "
              f"{run_length(r.steps_for(TARGET))} | {later} |")


def verdict(results: list[Result]) -> str:
    """One line: adopt only if the best variant makes a run ``TARGET`` x as fast as eager."""
    best = max(results, key=lambda r: r.speedup(r.steps))
    ratio = best.speedup(best.steps)
    needed = best.steps_for(TARGET)
    longer = (f"{TARGET}x needs runs of {needed:.0f} steps or more" if needed < float("inf")
              else f"no run length reaches {TARGET}x")
    return (
        f"{'ADOPT' if ratio >= TARGET else 'DO NOT ADOPT'}: the best compiled variant "
        f"({best.variant}, {best.cache} cache) makes a {best.steps}-step run {ratio:.2f}x as "
        f"fast as eager (target >= {TARGET}x), compile time included: {best.overhead_s():.1f} s "
        f"of compilation against a steady-state gain of "
        f"{1e3 * (best.eager_steady_s - best.steady_s):.1f} ms per step "
        f"({best.eager_steady_s / best.steady_s:.2f}x); {longer}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="run length (cpu profile: 16)")
    parser.add_argument("--passes", type=int, default=5, help="steady-state passes (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--mirror", type=Path, default=None, help="raw data mirror")
    parser.add_argument("--variants", nargs="+", choices=list(COMPILE_KWARGS),
                        default=list(COMPILE_KWARGS), help="compiled variants to measure")
    parser.add_argument("--tiny", action="store_true", help="tiny BERT on the test fixture")
    parser.add_argument("--worker", choices=list(COMPILE_KWARGS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.passes, args.threads) < 1:
        parser.error("--steps, --passes and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.tiny, args.steps, args.passes)))
        return 0
    quiet()
    mirror = args.mirror or (ROOT / "tests" / "fixtures" / "mirror" if args.tiny
                             else default_mirror())
    with tempfile.TemporaryDirectory() as tmp:
        sst2_train(mirror, Path(tmp), load_tokenizer(model_config(args.tiny)), MAX_LENGTH,
                   TRAIN_SAMPLES, 8 if args.tiny else SELECTION_SAMPLES)
        data_dir = Path(tmp) / get_task(TASK).name
        print(describe(args, data_dir))
        print()
        results = measure(args, data_dir, Path(tmp))
    report(results, args.steps)
    print()
    print(verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
