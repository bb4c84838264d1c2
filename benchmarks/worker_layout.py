"""Which worker layout finishes a sweep soonest on this machine: one worker with every core's
thread, or one one-thread worker per core side by side.

Usage::

    python benchmarks/worker_layout.py [--tasks sst2 lm_pretrain] [--steps 60]
                                       [--params params.yaml] [--prepared data/prepared]

Per task, the same work (two AdamW runs of ``--steps`` steps, evaluated on the selection split
at their last step, seeds 0 and 1) is done twice: by one process with two threads, the runs one
after the other (``one worker``), and by two one-thread processes at once, a run each (``two
workers``). The wall time of each layout, from the first process's start to the last one's end,
includes what a stage pays besides its steps (loading the model and data, scoring). Run it alone
on the machine: another process on a core is what it measures. Writes
``benchmarks/results/worker_layout.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from adaopt import io
from adaopt.config import load_params

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "worker_layout"


def one_run(params_path: str, prepared: str, task: str, steps: int, seeds: list[int],
            threads: int) -> None:
    """The runs of one worker (in this process)."""
    from adaopt.experiment import Workload

    params = load_params(params_path)
    work = Workload(params, task, prepared,
                    overrides={"max_steps": steps, "eval_every": steps, "threads": threads})
    section = {**params.optimizers["adamw"], "lr": 1e-4}
    for seed in seeds:
        work.train_run("adamw", section, "fair", seed, steps, None, progress=False)


def layout(args: argparse.Namespace, task: str, workers: int) -> float:
    """Wall seconds of the two runs done by ``workers`` processes of ``2 // workers`` threads."""
    seeds = [[0, 1]] if workers == 1 else [[0], [1]]
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, __file__, "--worker", task,
                                   ",".join(map(str, mine)), str(2 // workers),
                                   "--steps", str(args.steps), "--params", args.params,
                                   "--prepared", args.prepared]) for mine in seeds]
    if any(process.wait() for process in processes):
        raise SystemExit(f"a {task} worker failed")
    return time.perf_counter() - started


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "an unnamed CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "lm_pretrain"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "SEEDS", "THREADS"))
    args = parser.parse_args()
    if args.worker:
        task, seeds, threads = args.worker
        one_run(args.params, args.prepared, task, args.steps,
                [int(seed) for seed in seeds.split(",")], int(threads))
        return
    from adaopt.training import machine

    rows = []
    for task in args.tasks:
        one, two = layout(args, task, 1), layout(args, task, 2)
        rows.append({"task": task, "steps per run": args.steps, "one worker, 2 threads (s)":
                     round(one, 1), "two workers, 1 thread each (s)": round(two, 1),
                     "two workers' speed-up": round(one / two, 2)})
    frame = pd.DataFrame(rows)
    here = {**machine(), "cpu_model": cpu_model()}
    io.write_json(OUT.with_suffix(".json"), {"machine": here, "rows": rows})
    io.write_text(OUT.with_suffix(".md"), (
        "# Worker layout: one two-thread worker against two one-thread workers\n\n"
        f"`python benchmarks/worker_layout.py --steps {args.steps}` on {here['cpu_model']} "
        f"({here['cpu_capability']}), torch {here['torch']}, alone on the machine. "
        "Two AdamW runs per task (seeds 0 and 1), each evaluated on the selection split at its "
        "last step; wall time from the first start to the last end.\n\n"
        + frame.to_markdown(index=False) + "\n"))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
