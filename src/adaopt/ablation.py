"""The mixed-precision ablation: the same runs in fp32 and in bf16 (fp16 too, on a CUDA GPU).

For each optimizer of ``precision_ablation``, every precision trains from the same weights with
the same data order and the optimizer's tuned values (the sweep's ``choice.json`` for the
ablation's setting) for ``max_steps`` steps, and its selected weights are scored once on dev.
Each row puts what a run reached (the dev metric) next to what it cost (throughput, peak
memory); the runs of one optimizer follow each other in one process, so their costs are
measured side by side on the same machine. On a CPU without native bf16 the bf16 runs are
skipped, with one line and a ``skipped`` row, instead of emulating it many times slower.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pandas as pd

from adaopt.config import Params
from adaopt.experiment import Workload, read_choice
from adaopt.precision import native_bf16
from adaopt.tasks import get_task
from adaopt.training import device, machine, own_gpu

COLUMNS = ("task", "optimizer", "precision", "device", "metric", "dev", "status", "steps",
           "train_samples_per_s", "train_tokens_per_s", "throughput_vs_fp32", "peak_memory_mb",
           "wall_time_s")


def device_label() -> str:
    """The device the runs measure: a GPU's name, or the CPU's vector extensions (which decide
    whether bf16 has native kernels) and torch's thread count."""
    found = machine()
    if found["device"] != "cpu":
        return f"cuda ({found['device']})"
    return f"cpu ({found['cpu_capability']}, {found['threads']} threads)"


def precision_ablation(params: Params, prepared_dir: str | Path, tuning_dir: str | Path, *,
                       progress: bool = True) -> pd.DataFrame:
    """Train each (optimizer, precision) of ``params.precision_ablation``; one row per run.

    ``throughput_vs_fp32`` is the run's training samples/s over the fp32 run's of the same
    optimizer (NaN without an fp32 run). On CUDA the runs hold a GPU of their own, waiting for
    one if need be (:func:`adaopt.training.own_gpu`): a GPU shared with another stage would
    measure its throughput and memory too.
    """
    with own_gpu(params.train_for(params.precision_ablation.task), busy="wait"):
        return _ablation(params, prepared_dir, tuning_dir, progress)


def _ablation(params: Params, prepared_dir: str | Path, tuning_dir: str | Path,
              progress: bool) -> pd.DataFrame:
    """:func:`precision_ablation` on the device it holds."""
    ablation = params.precision_ablation
    skipped = [] if native_bf16(device().type) else [p for p in ablation.precisions
                                                      if p == "bf16"]
    where = device_label()
    if skipped:
        print(f"precision_ablation: bf16 skipped, this {where} has no native bf16 "
              "(emulated, a step runs many times slower than fp32)")
    workloads = {precision: Workload(params, ablation.task, prepared_dir,
                                     overrides={"precision": precision})
                 for precision in ablation.precisions if precision not in skipped}
    rows: list[dict[str, Any]] = []
    for optimizer in ablation.optimizers:
        choice = Path(tuning_dir) / ablation.task / optimizer / ablation.setting / "choice.json"
        section = {**params.optimizers[optimizer],
                   **read_choice(choice, ablation.task, optimizer, ablation.setting)}
        for precision in ablation.precisions:
            if precision in skipped:
                rows.append({"task": ablation.task, "optimizer": optimizer,
                             "precision": precision, "device": where,
                             "status": "skipped: no native bf16 on this CPU"})
                continue
            work = workloads[precision]
            result, model = work.train_run(optimizer, section, ablation.setting, ablation.seed,
                                           ablation.max_steps, None, progress,
                                           label=f"precision: {optimizer} in {precision}")
            scores = {} if result.status == "diverged" else work.dev(model)[0]
            del model  # free the run before the next one measures its peak memory
            gc.collect()
            rows.append({
                "task": work.task.name, "optimizer": optimizer, "precision": precision,
                "device": where,
                "metric": work.task.metric, "dev": scores.get(work.task.metric, float("nan")),
                "status": result.status, "steps": result.steps,
                "train_samples_per_s": result.train_samples_per_s,
                "train_tokens_per_s": result.train_tokens_per_s,
                "peak_memory_mb": result.peak_memory_mb, "wall_time_s": result.wall_time_s,
            })
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "throughput_vs_fp32"])
    frame["metric"] = frame.metric.fillna(get_task(ablation.task).metric)
    fp32 = frame[frame.precision == "fp32"].set_index("optimizer").train_samples_per_s
    frame["throughput_vs_fp32"] = frame.train_samples_per_s / frame.optimizer.map(fp32)
    return frame[list(COLUMNS)]


def ablation_markdown(frame: pd.DataFrame) -> str:
    """The ablation's table: one row per run, costs next to the dev metric."""
    task, metric, where = frame.task.iloc[0], frame.metric.iloc[0], frame.device.iloc[0]
    shown = frame.drop(columns=["task", "metric", "device"])
    shown = shown.rename(columns={"dev": f"dev {metric}"})
    return (f"## Mixed precision · {task} on {where}\n\n"
            + shown.to_markdown(index=False, floatfmt=".4g") + "\n")
