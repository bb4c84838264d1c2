"""Learning curves past the profile's budget, for the tasks it leaves at their trivial baseline.

Usage::

    python benchmarks/learning_curves.py --task rte --steps 300 --every 50 --lr 3e-5
                                         [--optimizer adamw] [--setting fair] [--seed 0]
                                         [--params params.yaml] [--prepared data/prepared]
                                         [--out benchmarks/results/learning_curves.csv]

One run of ``--optimizer`` in ``--setting`` at a fixed learning rate, on the prepared data of the
pipeline (``dvc repro prepare`` first) with the profile's batch size and token limits, for
``--steps`` steps, the **dev set** scored every ``--every`` steps. It measures how many steps a
task needs before it leaves its trivial baseline and what a step costs here: it is not a tuned or
selected result (it reads dev at every point, which the pipeline never does) and the report
says so. Rows replace the task's earlier rows in ``--out``; the report stage reads that file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from adaopt import io
from adaopt.config import load_params
from adaopt.experiment import Workload
from adaopt.modeling import new_model
from adaopt.protocol.settings import build_optimization
from adaopt.protocol.splits import TRAIN
from adaopt.training import device, make_loader, seed_everything, train

COLUMNS = ["task", "optimizer", "setting", "lr", "batch_size", "seed", "metric", "step", "value",
           "baseline", "s_per_step", "dev_examples"]


def curve(args: argparse.Namespace) -> pd.DataFrame:
    params = load_params(args.params)
    work = Workload(params, args.task, args.prepared,
                    overrides={"max_steps": args.steps, "eval_every": args.every})
    cfg = work.train_config
    seed_everything(args.seed)
    model = new_model(params, work.task, work.prepared).to(device())
    section = {**params.optimizers[args.optimizer], "lr": args.lr}
    optimization = build_optimization(model, args.optimizer, section, args.setting,
                                      params.settings[args.setting], args.steps,
                                      work.task.greater_is_better)
    loader = make_loader(work.splits[TRAIN], work.tokenizer, cfg.batch_size, train=True,
                         group_by_length=cfg.group_by_length, seed=args.seed)
    result = train(model, optimization.optimizer, optimization.scheduler, loader, work.dev, cfg,
                   metric=work.task.metric, greater_is_better=work.task.greater_is_better,
                   max_grad_norm=optimization.max_grad_norm, progress=False)
    report = json.loads((Path(args.prepared).parent / "prepare_report.json").read_text())
    metric = work.task.metric
    return pd.DataFrame([{
        "task": work.task.name, "optimizer": args.optimizer, "setting": args.setting,
        "lr": args.lr, "batch_size": cfg.batch_size, "seed": args.seed, "metric": metric,
        "step": int(row["step"]), "value": row[metric],
        "baseline": report[work.task.name]["baseline"]["value"],
        "s_per_step": result.wall_time_s / result.steps, "dev_examples": work.dev.examples,
    } for row in result.eval_log], columns=COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--every", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--setting", default="fair", choices=["traditional", "fair"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_curves.csv"))
    args = parser.parse_args()
    rows = curve(args)
    print(rows.to_string(index=False))
    if args.out.is_file():
        earlier = pd.read_csv(args.out)
        rows = pd.concat([earlier[earlier.task != rows.task.iloc[0]], rows], ignore_index=True)
    io.write_with(args.out, lambda path: rows.to_csv(path, index=False, float_format="%.6g"))


if __name__ == "__main__":
    main()
