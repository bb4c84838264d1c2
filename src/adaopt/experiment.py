"""The runs of one pipeline stage: the tuning trials, or the final seeds, of a
(task, optimizer, setting).

* :func:`tune` trains every grid point of the optimizer's search space with the tuning seed and
  writes the trials and the choice (:mod:`adaopt.protocol.tuning`).
* :func:`run_setting` trains each evaluation seed with the chosen values, then scores the
  selected weights once on the dev set: the reported numbers.

Both read only the training and selection splits while training; the dev evaluator is called in
one place, :func:`_final_run`, after :func:`adaopt.training.train` has returned.

With ``train.nproc > 1`` both run their runs as that many data-parallel processes: called in an
ordinary process (a notebook), they start ``python -m adaopt train|tune`` under torchrun and
read back the files its rank 0 wrote; in the torchrun processes every rank trains and only rank
0 scores on dev and writes (:mod:`adaopt.distributed`).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch
import yaml
from datasets import load_from_disk

from adaopt import distributed, io
from adaopt.config import ModelConfig, Params, grid_values
from adaopt.data.lm import Vocabulary
from adaopt.data.prepare import MODEL_FILE
from adaopt.evaluation import Evaluator
from adaopt.hooks import runner
from adaopt.modeling import new_model, task_tokenizer
from adaopt.protocol.settings import (
    build_optimization,
    has_controller,
    selection_standard_error,
)
from adaopt.protocol.splits import DEV, SELECTION, TRAIN
from adaopt.protocol.tuning import Choice, Trial, choose, search_grid
from adaopt.tasks import get_task
from adaopt.training import (
    RunResult,
    device,
    machine,
    make_loader,
    own_gpu,
    seed_everything,
    train,
)

LOG_COLUMNS = {"train": ["step", "loss", "lr", "grad_norm", "elapsed_s"],
               "eval": ["step", "elapsed_s", "samples", "tokens"]}


def check_prepared_model(prepared_task_dir: Path, model: ModelConfig) -> None:
    """Refuse, in one line, to fine-tune a model whose tokenizer the data was not tokenized
    with. The prepare stage records the whole ``model`` section, so that the pipeline's tune and
    train stages re-run on any change of it; a run called directly may still vary the rest
    (its attention kernel, a tiny model's dropout) on the same data."""
    path = prepared_task_dir / MODEL_FILE
    if not path.is_file():
        return
    recorded = ModelConfig.model_validate_json(path.read_text()).name_or_path
    if recorded != model.name_or_path:
        raise ValueError(f"{path}: the data was tokenized for model {recorded!r}, not for "
                         f"params.yaml's {model.name_or_path!r}; run the prepare stage again")


class Workload:
    """A task's prepared splits, tokenizer, evaluators and training budget (``train`` with the
    task's ``workloads`` overrides, then ``overrides``), loaded once per stage process."""

    def __init__(self, params: Params, task_name: str, prepared_dir: str | Path,
                 overrides: dict[str, Any] | None = None) -> None:
        self.params = params
        self.task = get_task(task_name)
        self.train_config = params.train_for(self.task.name).model_copy(update=overrides)
        batch, processes = self.train_config.batch_size, distributed.world_size()
        if batch % processes:  # train.nproc is checked with the config; this is torchrun's count
            raise ValueError(f"train.batch_size={batch} must be a multiple of the {processes} "
                             "data-parallel processes")
        if self.train_config.threads:
            torch.set_num_threads(self.train_config.threads)
        self.prepared = Path(prepared_dir) / self.task.name
        check_prepared_model(self.prepared, params.model)
        self.tokenizer = task_tokenizer(params.model, self.task)
        self.splits = load_from_disk(str(self.prepared))
        self.selection = self._evaluator(SELECTION)
        self.dev = self._evaluator(DEV)
        vocab_size = (Vocabulary.load(self.prepared).size
                      if self.task.kind == "language_modeling" else None)
        self.selection_se = selection_standard_error(self.task, self.splits, vocab_size)

    def _evaluator(self, split: str) -> Evaluator:
        cfg, decoding = self.train_config, self.params.workload(self.task.name).decoding
        return Evaluator(self.splits, self.task, self.tokenizer, cfg.eval_batch_size, cfg.precision,
                         split=split, n_best=decoding.n_best,
                         max_answer_length=decoding.max_answer_length)

    def sizes(self) -> dict[str, int]:
        return {"train_examples": len(self.splits[TRAIN]),
                "selection_examples": self.selection.examples,
                "dev_examples": self.dev.examples}

    def train_run(self, optimizer: str, section: dict[str, Any], setting: str, seed: int,
                  max_steps: int, checkpoint: Path | None, progress: bool,
                  eval_every: int | None = None, label: str = "train"
                  ) -> tuple[RunResult, torch.nn.Module]:
        """Train from the starting weights (pretrained, or a fresh initialization for a language
        model); the model comes back holding the selected weights. ``label`` names the run in
        its progress lines."""
        cfg = self.train_config.model_copy(update={
            "max_steps": max_steps, "eval_every": eval_every or self.train_config.eval_every})
        seed_everything(seed)  # same seed: same initialization and data order for everyone
        # On the device before the optimizer is built: it picks that device's fastest path.
        model = new_model(self.params, self.task, self.prepared).to(device())
        distributed.seed_dropout(seed)  # after the initialization, which every rank shares
        optimization = build_optimization(model, optimizer, section, setting,
                                          self.params.settings[setting], max_steps,
                                          self.task.greater_is_better, self.selection_se)
        loader = make_loader(self.splits[TRAIN], self.tokenizer, cfg.batch_size, train=True,
                             group_by_length=cfg.group_by_length, seed=seed,
                             rank=distributed.rank(), world_size=distributed.world_size())
        result = train(model, optimization.optimizer, optimization.scheduler, loader,
                       self.selection, cfg, metric=self.task.metric,
                       greater_is_better=self.task.greater_is_better,
                       max_grad_norm=optimization.max_grad_norm, checkpoint=checkpoint,
                       progress=progress, label=label)
        return result, model


Stage = TypeVar("Stage", bound=Callable[..., Any])


def _stage(stage: Stage) -> Stage:
    """A stage's runs, all on one GPU of their own (:func:`adaopt.training.own_gpu`), once the
    progress lines' interval from the environment is known to be valid."""
    @functools.wraps(stage)
    def run(params: Params, task_name: str, *args: Any, **kwargs: Any) -> Any:
        runner().check_progress_interval()
        with own_gpu(params.train_for(task_name)):
            return stage(params, task_name, *args, **kwargs)
    return run  # type: ignore[return-value]


@_stage
def tune(
    params: Params, task_name: str, optimizer: str, setting: str, prepared_dir: str | Path,
    out_dir: str | Path, *, checkpoint_dir: str | Path | None = None, progress: bool = True,
) -> Choice:
    """Run every trial of ``optimizer``'s search space; write ``trials.csv`` and ``choice.json``.

    Trials already finished by an interrupted stage are read back from ``checkpoint_dir``.
    """
    nproc = params.train_for(task_name).nproc
    if nproc > 1 and not distributed.launched():
        _launch(params, nproc, "tune", task=task_name, optimizer=optimizer, setting=setting,
                prepared=prepared_dir, out=out_dir, checkpoint_dir=checkpoint_dir,
                progress=progress)
        return Choice.from_dict(json.loads((Path(out_dir) / "choice.json").read_text()))
    work = Workload(params, task_name, prepared_dir)
    space = params.space_for(work.task.name, optimizer)
    store = _CheckpointStore(checkpoint_dir, params, "tune", work.task.name, optimizer, setting)
    trials, points = [], search_grid(space)
    for index, point in enumerate(points):
        key = f"trial{index}"
        result = store.finished(key)
        if result is None:
            section = {**params.optimizers[optimizer], **point}
            label = (f"{runner().stage_name('tune', work.task.name, optimizer, setting)}, "
                     f"trial {index + 1} of {len(points)}")
            result, model = work.train_run(optimizer, section, setting, params.tuning.seed,
                                           params.tuning_steps(work.task.name),
                                           store.checkpoint(key), progress,
                                           params.tuning_eval_every(work.task.name), label)
            del model  # free the run before the next one measures its peak memory
            gc.collect()
            store.finish(key, result)
        score = result.best.get(work.task.metric, float("nan"))
        trials.append(Trial(index, point, result.status,
                            float("nan") if result.status == "diverged" else score,
                            result.best_step, result.steps, len(result.cuts)))
    choice = choose(trials, space, work.task.greater_is_better)
    if distributed.is_main():
        _write_tuning(params, work, optimizer, setting, space, trials, choice, Path(out_dir))
    store.clear()
    return choice


def _write_tuning(params: Params, work: Workload, optimizer: str, setting: str,
                  space: dict[str, Any], trials: list[Trial], choice: Choice, out_dir: Path
                  ) -> None:
    table = pd.DataFrame([{"trial": t.index, **t.hparams, "status": t.status, "score": t.score,
                           "best_step": t.best_step, "steps": t.steps, "cuts": t.cuts}
                          for t in trials])
    io.write_with(out_dir / "trials.csv", lambda p: table.to_csv(p, index=False))
    io.write_json(out_dir / "choice.json", {
        "task": work.task.name, "optimizer": optimizer, "setting": setting,
        "metric": work.task.metric, "split": SELECTION, "seed": params.tuning.seed,
        "max_steps": params.tuning_steps(work.task.name), "trials": len(trials),
        "space": {name: grid_values(grid) for name, grid in space.items()},
        **choice.to_dict(), "machine": machine(),
    })


def read_choice(path: str | Path, task: str, optimizer: str, setting: str) -> dict[str, Any]:
    """The tuned values of ``choice.json``, checked to belong to this (task, optimizer, setting)."""
    choice = json.loads(Path(path).read_text())
    found = (choice["task"], choice["optimizer"], choice["setting"])
    if found != (get_task(task).name, optimizer, setting):
        raise ValueError(f"{path}: a choice for {found}, not for {(task, optimizer, setting)}")
    return choice["hparams"]


def tuned_section(params: Params, choice_path: str | Path, task: str, optimizer: str,
                  setting: str) -> dict[str, Any]:
    """The optimizer's section of ``params`` with the values its tune stage chose."""
    return {**params.optimizers[optimizer], **read_choice(choice_path, task, optimizer, setting)}


@_stage
def run_setting(
    params: Params, task_name: str, optimizer: str, setting: str, prepared_dir: str | Path,
    out_dir: str | Path, choice_path: str | Path, *, checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    """Train every seed of the cell (``sweep.cells``) with the tuned values; write ``seed<k>/``
    per seed.

    Each seed folder gets ``metrics.json`` (what the run reached, byte-identical for the same
    seed on the same machine: the selection scores of the chosen evaluation and the dev scores
    of its weights), ``efficiency.json`` (time, throughput, peak memory), ``train.csv`` (loss,
    learning rate, gradient norm per step), ``eval.csv`` (selection-split scores per evaluation)
    and ``predictions.json`` (dev predictions of the selected weights; SQuAD: the official
    id -> answer format). Returns each seed's metrics.
    """
    nproc = params.train_for(task_name).nproc
    if nproc > 1 and not distributed.launched():
        _launch(params, nproc, "train", task=task_name, optimizer=optimizer, setting=setting,
                prepared=prepared_dir, out=out_dir, choice=choice_path,
                checkpoint_dir=checkpoint_dir, progress=progress)
        return {seed: json.loads((Path(out_dir) / f"seed{seed}" / "metrics.json").read_text())
                for seed in params.seeds_for(task_name, optimizer, setting)}
    work = Workload(params, task_name, prepared_dir)
    tuned = read_choice(choice_path, task_name, optimizer, setting)
    section = {**params.optimizers[optimizer], **tuned}
    store = _CheckpointStore(checkpoint_dir, params, "final", work.task.name, optimizer, setting,
                             tuned)
    out_dir = Path(out_dir)
    metrics, seeds = {}, params.seeds_for(work.task.name, optimizer, setting)
    for number, seed in enumerate(seeds, 1):
        key, folder = f"seed{seed}", out_dir / f"seed{seed}"
        if store.finished(key) is None:
            name = runner().stage_name("train", work.task.name, optimizer, setting)
            label = f"{name}, seed {seed} ({number} of {len(seeds)})"
            _final_run(work, optimizer, section, setting, seed, folder, store, progress, label)
        metrics[seed] = json.loads((folder / "metrics.json").read_text())
    store.clear()
    return metrics


def _final_run(work: Workload, optimizer: str, section: dict[str, Any], setting: str, seed: int,
               folder: Path, store: _CheckpointStore, progress: bool, label: str) -> None:
    """One evaluation seed: train, then score the selected weights on dev and write it out
    (rank 0 alone, when data-parallel; the others wait for its files)."""
    started = time.perf_counter()
    result, model = work.train_run(optimizer, section, setting, seed,
                                   work.train_config.max_steps, store.checkpoint(f"seed{seed}"),
                                   progress, label=label)
    if distributed.is_main():
        _score_and_write(work, optimizer, section, setting, seed, folder, store, result, model,
                         started)
    del model  # free the run before the next seed measures its peak memory
    gc.collect()
    distributed.barrier()


def _score_and_write(work: Workload, optimizer: str, section: dict[str, Any], setting: str,
                     seed: int, folder: Path, store: _CheckpointStore, result: RunResult,
                     model: torch.nn.Module, started: float) -> None:
    """Score the selected weights on dev; write the seed's folder and its finished record."""
    scoring_started = time.perf_counter()
    scores, predictions = ({}, {}) if result.status == "diverged" else work.dev(model)
    dev_seconds = time.perf_counter() - scoring_started
    outcome = result.outcome()
    metrics = {
        "task": work.task.name, "optimizer": optimizer, "setting": setting, "seed": seed,
        "metric": work.task.metric, "greater_is_better": work.task.greater_is_better,
        "hparams": dict(section), **work.sizes(),
        "status": outcome["status"], "diverged_on": outcome["diverged_on"],
        "steps": outcome["steps"], "best_step": outcome["best_step"],
        "controlled": has_controller(optimizer), "cuts": outcome["cuts"],
        "selection": outcome["best"], "dev": scores,
        "last_finite_loss": outcome["last_finite_loss"], "machine": machine(),
    }
    for kind, rows in (("train", result.train_log), ("eval", result.eval_log)):
        frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else LOG_COLUMNS[kind])
        io.write_with(folder / f"{kind}.csv", lambda p, f=frame: f.to_csv(p, index=False))
    io.write_json(folder / "predictions.json", predictions)
    efficiency = result.efficiency()
    io.write_json(folder / "efficiency.json", {
        **efficiency, "scoring_time_s": efficiency["scoring_time_s"] + dev_seconds,
        "run_time_s": time.perf_counter() - started,  # model load, checkpoints, writing included
    })
    io.write_json(folder / "metrics.json", metrics)
    store.finish(f"seed{seed}", result)


class _CheckpointStore:
    """Where a stage's checkpoints and finished-run records live while it runs.

    File names carry a hash of everything that shapes the runs (the stage and its ``params``
    sections), so a checkpoint left by a different configuration is never resumed. The process
    count is left out: a checkpoint resumes under any ``train.nproc``. In a data-parallel run
    every rank reads the store and rank 0 alone changes it.
    """

    def __init__(self, root: str | Path | None, params: Params, kind: str, task: str,
                 optimizer: str, setting: str, tuned: dict[str, Any] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is None:
            return
        shaping = {
            "stage": [kind, task, optimizer, setting], "tuned": tuned,
            "data": params.data.model_dump(), "model": params.model.model_dump(),
            "train": params.train_for(task).model_dump(exclude={"nproc"}),
            "workload": params.workload(task).model_dump(),
            "setting": params.settings[setting].model_dump(),
            "optimizer": params.optimizers[optimizer],
            "tuning": params.tuning.model_dump(mode="json") if kind == "tune" else None,
            "versions": [torch.__version__],
        }
        self.key = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
        if not distributed.is_main():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.iterdir():
            if self.key not in stale.name:
                stale.unlink()

    def checkpoint(self, run: str) -> Path | None:
        return None if self.root is None else self.root / f"{run}-{self.key}.pt"

    def _record(self, run: str) -> Path:
        assert self.root is not None
        return self.root / f"{run}-{self.key}.result.pt"

    def finished(self, run: str) -> RunResult | None:
        if self.root is None or not self._record(run).exists():
            return None
        return RunResult(**torch.load(self._record(run), weights_only=True))

    def finish(self, run: str, result: RunResult) -> None:
        if self.root is None or not distributed.is_main():
            return
        with io.atomic_path(self._record(run)) as tmp:
            torch.save(asdict(result), tmp)
        self.checkpoint(run).unlink(missing_ok=True)

    def clear(self) -> None:
        if self.root is not None and distributed.is_main():
            shutil.rmtree(self.root, ignore_errors=True)


def _launch(params: Params, nproc: int, command: str, **options: Any) -> None:
    """Run a stage's runs as ``python -m adaopt <command>`` in ``nproc`` torchrun processes.

    ``params`` travel as a YAML file (the caller may have built them in memory); an option
    that is ``None`` is left out, ``progress`` becomes ``--progress`` or ``--no-progress``.
    """
    progress = options.pop("progress")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        path.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        args = [command, "--params", str(path), "--progress" if progress else "--no-progress"]
        for name, value in options.items():
            if value is not None:
                args += [f"--{name.replace('_', '-')}", str(value)]
        distributed.launch(nproc, args)
