"""One pipeline training stage: a (task, optimizer, seed) cell run in every comparison setting."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from datasets import load_from_disk

from adaopt import io
from adaopt.config import SETTINGS, Params
from adaopt.evaluation import Evaluator
from adaopt.modeling import load_model, load_tokenizer
from adaopt.tasks import get_task
from adaopt.training import RunResult, build_optimization, make_loader, seed_everything, train

LOG_COLUMNS = {"train": ["step", "loss", "lr", "elapsed_s"], "eval": ["step", "elapsed_s"]}


def run_cell(
    params: Params,
    task_name: str,
    optimizer_name: str,
    seed: int,
    prepared_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``optimizer_name`` on ``task_name`` with ``seed`` in each comparison setting.

    Writes into ``out_dir``: ``<setting>_train.csv`` (loss and learning rate per step),
    ``<setting>_eval.csv`` (dev metrics per evaluation), ``<setting>_predictions.json`` (the
    best evaluation's dev predictions; for SQuAD the official id -> answer format),
    ``metrics.json`` (what each run reached: byte-identical for the same seed on the same
    machine) and ``efficiency.json`` (wall time, throughput, peak memory). Returns the last two.

    With ``checkpoint_dir``, an interrupted cell resumes where it stopped: each setting
    checkpoints as it trains and leaves a record once finished; the folder is removed at the end.
    """
    task = get_task(task_name)
    out_dir = Path(out_dir)
    cfg = params.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tokenizer = load_tokenizer(params.model)
    splits = load_from_disk(str(Path(prepared_dir) / task.name))
    evaluator = Evaluator(splits, task, tokenizer, cfg.eval_batch_size, cfg.bf16,
                          n_best=params.data.n_best,
                          max_answer_length=params.data.max_answer_length)
    metrics: dict[str, Any] = {
        "task": task.name,
        "optimizer": optimizer_name,
        "seed": seed,
        "metric": task.metric,
        "train_examples": len(splits["train"]),
        "eval_examples": len(splits.get("validation_examples", splits["validation"])),
    }
    efficiency: dict[str, Any] = {}
    store = _CheckpointStore(checkpoint_dir, params, task.name, optimizer_name, seed)
    for setting in SETTINGS:
        result = store.finished(setting)
        if result is None:
            seed_everything(seed)
            model = load_model(params.model, task)
            optimizer, scheduler, max_grad_norm = build_optimization(
                model, optimizer_name, params.optimizers[optimizer_name],
                setting, params.settings[setting], cfg.max_steps,
            )
            loader = make_loader(splits["train"], tokenizer, cfg.batch_size, train=True,
                                 group_by_length=cfg.group_by_length, seed=seed)
            result = train(model, optimizer, scheduler, loader, evaluator, cfg,
                           metric=task.metric, max_grad_norm=max_grad_norm,
                           checkpoint=store.checkpoint(setting), progress=progress)
            store.finish(setting, result)
            del model, optimizer, scheduler  # free them before the next setting measures its peak
        _write_run(out_dir, setting, result)
        metrics[setting] = result.outcome()
        efficiency[setting] = result.efficiency()
    io.write_json(out_dir / "metrics.json", metrics)
    io.write_json(out_dir / "efficiency.json", efficiency)
    store.clear()
    return metrics, efficiency


def _write_run(out_dir: Path, setting: str, result: RunResult) -> None:
    for kind, rows in (("train", result.train_log), ("eval", result.eval_log)):
        frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else LOG_COLUMNS[kind])
        path = out_dir / f"{setting}_{kind}.csv"
        io.write_with(path, lambda p, f=frame: f.to_csv(p, index=False))
    io.write_json(out_dir / f"{setting}_predictions.json", result.best_predictions)


class _CheckpointStore:
    """Where a cell's checkpoints and finished-setting records live while it runs.

    File names carry a hash of everything that shapes the run (the cell and its ``params``
    sections), so a checkpoint left by a different configuration is never resumed.
    """

    def __init__(self, root: str | Path | None, params: Params, task: str, optimizer: str,
                 seed: int) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is None:
            return
        shaping = {
            "cell": [task, optimizer, seed],
            "data": params.data.model_dump(), "model": params.model.model_dump(),
            "train": params.train.model_dump(),
            "settings": {k: v.model_dump() for k, v in params.settings.items()},
            "optimizer": params.optimizers[optimizer],
            "versions": [torch.__version__],
        }
        self.key = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.iterdir():
            if self.key not in stale.name:
                stale.unlink()

    def checkpoint(self, setting: str) -> Path | None:
        return None if self.root is None else self.root / f"{setting}-{self.key}.pt"

    def _record(self, setting: str) -> Path:
        assert self.root is not None
        return self.root / f"{setting}-{self.key}.result.pt"

    def finished(self, setting: str) -> RunResult | None:
        if self.root is None or not self._record(setting).exists():
            return None
        return RunResult(**torch.load(self._record(setting), weights_only=True))

    def finish(self, setting: str, result: RunResult) -> None:
        if self.root is None:
            return
        with io.atomic_path(self._record(setting)) as tmp:
            torch.save(asdict(result), tmp)
        self.checkpoint(setting).unlink(missing_ok=True)

    def clear(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
