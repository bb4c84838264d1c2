"""One pipeline training stage: a (task, optimizer, seed) cell run in every comparison setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from datasets import load_from_disk

from adaopt import io
from adaopt.config import SETTINGS, Params
from adaopt.modeling import load_model, load_tokenizer
from adaopt.tasks import get_task
from adaopt.training import (
    RunResult,
    build_optimization,
    evaluate,
    make_loader,
    seed_everything,
    train,
)


def run_cell(
    params: Params,
    task_name: str,
    optimizer_name: str,
    seed: int,
    prepared_dir: str | Path,
    out_dir: str | Path,
    *,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``optimizer_name`` on ``task_name`` with ``seed`` in each configured setting.

    Writes into ``out_dir``: ``<setting>_train.csv`` (loss and learning rate per step),
    ``<setting>_eval.csv`` (dev metrics per evaluation), ``metrics.json`` (what each run
    reached: byte-identical for the same seed on the same machine) and ``efficiency.json``
    (wall time, throughput, peak memory). Returns both.
    """
    task = get_task(task_name)
    out_dir = Path(out_dir)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    tokenizer = load_tokenizer(params.model)
    splits = load_from_disk(str(Path(prepared_dir) / task.name))
    cfg = params.train
    eval_loader = make_loader(splits["validation"], tokenizer, cfg.eval_batch_size, train=False)
    metrics: dict[str, Any] = {
        "task": task.name,
        "optimizer": optimizer_name,
        "seed": seed,
        "metric": task.metric,
        "train_examples": len(splits["train"]),
        "eval_examples": len(splits["validation"]),
    }
    efficiency: dict[str, Any] = {}
    for setting_name in SETTINGS:
        seed_everything(seed)
        model = load_model(params.model, task)
        optimizer, scheduler, max_grad_norm = build_optimization(
            model,
            optimizer_name,
            params.optimizers[optimizer_name],
            setting_name,
            params.settings[setting_name],
            cfg.max_steps,
        )
        train_loader = make_loader(
            splits["train"], tokenizer, cfg.batch_size,
            train=True, group_by_length=cfg.group_by_length, seed=seed,
        )
        result = train(
            model, optimizer, scheduler, train_loader,
            lambda m: evaluate(m, eval_loader, task, cfg.bf16),
            cfg,
            metric=task.metric,
            max_grad_norm=max_grad_norm,
            progress=progress,
        )
        _write_logs(out_dir, setting_name, result)
        metrics[setting_name] = result.outcome()
        efficiency[setting_name] = result.efficiency()
        del model, optimizer, scheduler  # free them before the next setting measures its peak
    io.write_json(out_dir / "metrics.json", metrics)
    io.write_json(out_dir / "efficiency.json", efficiency)
    return metrics, efficiency


def _write_logs(out_dir: Path, setting: str, result: RunResult) -> None:
    for kind, rows in (("train", result.train_log), ("eval", result.eval_log)):
        frame = pd.DataFrame(rows)
        path = out_dir / f"{setting}_{kind}.csv"
        io.write_with(path, lambda p, f=frame: f.to_csv(p, index=False))
