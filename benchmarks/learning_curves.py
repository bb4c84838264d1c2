"""Learning curves on the selection split, for sizing a profile's budgets.

Usage::

    python benchmarks/learning_curves.py --task rte --steps 300 --every 50 --lr 3e-5 [--lr 1e-4]
                                         [--optimizer adamw] [--setting fair] [--seed 0]
                                         [--params params.yaml] [--prepared data/prepared]
                                         [--out benchmarks/results/learning_curves.csv]

One run per ``--lr`` of ``--optimizer`` in ``--setting``, on the prepared data of the pipeline
(``dvc repro prepare`` first) with the profile's batch size and token limits, for ``--steps``
steps, the **selection split** scored every ``--every`` steps, beside the task's trivial baseline
on that split. It measures how many steps a task needs before it leaves its baseline and what a
step costs here. It reads the selection split, as tuning does, never dev: budgets sized from it
leave the dev set unused until the final scoring. Rows replace the task's earlier rows in
``--out``; the report stage reads that file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from adaopt import io
from adaopt.config import Params, load_params
from adaopt.data.prepare import trivial_baseline
from adaopt.experiment import Workload
from adaopt.protocol.splits import SELECTION, TRAIN
from adaopt.training import machine

COLUMNS = ["task", "optimizer", "setting", "lr", "batch_size", "seed", "metric", "step", "value",
           "split", "baseline", "s_per_step", "examples", "cpu_capability"]


def selection_baseline(work: Workload) -> float:
    """The task's trivial baseline scored on the selection split (as prepare scores it on dev).

    Extractive QA's rule (the context sentence sharing most words with the question) needs the
    questions, which the prepared selection split does not keep: its value on dev, from the
    prepare report, stands in for it.
    """
    if work.task.kind == "extractive_qa":
        report = json.loads((work.prepared.parent.parent / "prepare_report.json").read_text())
        return float(report[work.task.name]["baseline"]["value"])
    if work.task.kind == "language_modeling":
        return float("nan")  # its unigram baseline is measured on dev by prepare
    frames = [pd.DataFrame({"label": work.splits[split]["labels"]}) for split in (TRAIN, SELECTION)]
    return float(trivial_baseline(work.task, *frames)["value"])


def curve(params: Params, prepared: str | Path, task: str, steps: int, every: int, lr: float,
          optimizer: str = "adamw", setting: str = "fair", seed: int = 0) -> pd.DataFrame:
    """One run's selection-split curve: a row per evaluation."""
    work = Workload(params, task, prepared, overrides={"max_steps": steps, "eval_every": every})
    section = {**params.optimizers[optimizer], "lr": lr}
    result, _ = work.train_run(optimizer, section, setting, seed, steps, None, progress=False)
    baseline = selection_baseline(work)
    metric = work.task.metric
    return pd.DataFrame([{
        "task": work.task.name, "optimizer": optimizer, "setting": setting, "lr": lr,
        "batch_size": work.train_config.batch_size, "seed": seed, "metric": metric,
        "step": int(row["step"]), "value": row[metric], "split": SELECTION, "baseline": baseline,
        "s_per_step": result.wall_time_s / result.steps, "examples": work.selection.examples,
        "cpu_capability": machine()["cpu_capability"],
    } for row in result.eval_log], columns=COLUMNS)


def replace_task_rows(rows: pd.DataFrame, out: Path) -> None:
    """Write ``rows`` to ``out`` in place of that task's earlier rows."""
    if out.is_file():
        earlier = pd.read_csv(out)
        rows = pd.concat([earlier[earlier.task != rows.task.iloc[0]], rows], ignore_index=True)
    io.write_with(out, lambda path: rows.to_csv(path, index=False, float_format="%.6g"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--every", type=int, required=True)
    parser.add_argument("--lr", type=float, action="append", required=True)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--setting", default="fair", choices=["traditional", "fair"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_curves.csv"))
    args = parser.parse_args()
    params = load_params(args.params)
    rows = pd.concat([curve(params, args.prepared, args.task, args.steps, args.every, lr,
                            args.optimizer, args.setting, args.seed) for lr in args.lr],
                     ignore_index=True)
    print(rows.to_string(index=False))
    replace_task_rows(rows, args.out)


if __name__ == "__main__":
    main()
