"""The real-data pilot that sizes the next reference run (issue #24).

Usage::

    python benchmarks/pilot.py pairs --task sst2 --steps 300 --every 20 [--seeds 0 1 2 3 4]
    python benchmarks/pilot.py curves --task rte --steps 150 --every 15 --lr 3e-5 --lr 1e-4
    python benchmarks/pilot.py summary

``pairs``: AdamW and AdaptiveAdam in the fair setting, each with the values its tune stage
chose in the committed reference run (``tuning/<task>/<optimizer>/fair/choice.json``), trained
with every seed for ``--steps`` steps, the selection split scored every ``--every`` steps, the
selected weights scored once on dev: the pipeline's own train stage (``run_setting``), written
in its layout under ``benchmarks/results/pilot/runs``. ``curves``: selection-split learning
curves (``benchmarks/learning_curves.py``) into ``benchmarks/results/learning_curves.csv``.
``summary``: ``benchmarks/results/pilot.md`` from those files: the controller's cuts, the
paired verdict, and per task the steps at which the best learning rate clears its trivial
baseline. Every part adds its measured wall time to ``benchmarks/results/pilot/timing.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import yaml

from adaopt import io
from adaopt.config import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "pilot"
CURVES = ROOT / "benchmarks" / "results" / "learning_curves.csv"
PAIR = ("adamw", "adaptive_adam")
SETTING = "fair"


def pilot_params(params: Params, task: str, steps: int, every: int, seeds: list[int]) -> Params:
    """``params`` with the pilot's seeds and ``task``'s budget; checked like any profile."""
    raw = params.model_dump(mode="json")
    raw["sweep"].update(optimizers=list(PAIR), seeds=seeds)
    raw["workloads"][task]["train"] = {**raw["workloads"][task]["train"], "max_steps": steps,
                                       "eval_every": every}
    return parse_params(raw, "pilot")


def pairs(args: argparse.Namespace) -> None:
    from adaopt.experiment import run_setting
    from adaopt.protocol.controller import controller_problems

    params = pilot_params(load_params(args.params), args.task, args.steps, args.every, args.seeds)
    problems = [p for p in controller_problems(params) if "tuning" not in p]
    if problems:
        raise SystemExit(f"error: {problems[0]}")
    io.write_text(OUT / "params" / f"{args.task}.yaml",
                  yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    for optimizer in PAIR:
        started = time.perf_counter()
        choice = ROOT / "tuning" / args.task / optimizer / SETTING / "choice.json"
        run_setting(params, args.task, optimizer, SETTING, args.prepared,
                    OUT / "runs" / args.task / optimizer / SETTING, choice, progress=False)
        record(f"pairs {args.task} {optimizer}", len(args.seeds), args.steps,
               time.perf_counter() - started)


def curves(args: argparse.Namespace) -> None:
    from learning_curves import curve, replace_task_rows  # benchmarks/ is this script's folder

    params = load_params(args.params)
    started = time.perf_counter()
    rows = pd.concat([curve(params, args.prepared, args.task, args.steps, args.every, lr)
                      for lr in args.lr], ignore_index=True)
    replace_task_rows(rows, CURVES)
    record(f"curves {args.task}", len(args.lr), args.steps, time.perf_counter() - started)


def record(part: str, runs: int, steps: int, seconds: float) -> None:
    """Append one part's measured wall time to ``timing.csv``."""
    path = OUT / "timing.csv"
    earlier = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    row = pd.DataFrame([{"part": part, "runs": runs, "steps": steps, "seconds": round(seconds, 1)}])
    table = pd.concat([earlier[earlier.get("part", pd.Series(dtype=str)) != part], row],
                      ignore_index=True)
    io.write_with(path, lambda p: table.to_csv(p, index=False))
    print(f"{part}: {runs} runs of {steps} steps in {seconds:.0f} s", flush=True)


def summary(args: argparse.Namespace) -> None:
    from adaopt.pilot import pilot_markdown

    io.write_text(ROOT / "benchmarks" / "results" / "pilot.md",
                  pilot_markdown(OUT, CURVES, load_params(args.params), args.prepared))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parts = parser.add_subparsers(dest="part", required=True)
    pair = parts.add_parser("pairs")
    pair.add_argument("--task", required=True)
    pair.add_argument("--steps", type=int, required=True)
    pair.add_argument("--every", type=int, required=True)
    pair.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    pair.set_defaults(run=pairs)
    curve_parser = parts.add_parser("curves")
    curve_parser.add_argument("--task", required=True)
    curve_parser.add_argument("--steps", type=int, required=True)
    curve_parser.add_argument("--every", type=int, required=True)
    curve_parser.add_argument("--lr", type=float, action="append", required=True)
    curve_parser.set_defaults(run=curves)
    parts.add_parser("summary").set_defaults(run=summary)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
