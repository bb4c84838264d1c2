"""One task's compress stage: the teacher and the AdamW model, their compressed variants, each
scored on dev and timed on the CPU side by side, as a table (``results/compression/<task>.{csv,
md}``) and a figure (``figures/compression_<task>.png``).

The teacher is the best optimizer of ``compress.setting`` by its runs' mean selection-split
score, among ``compress.optimizers``; quantization and pruning without recovery are applied to
the AdamW model too, so that the two optimizers' weights compare as compressed. Both are
retrained here, seed 0 from the tuned values as the train stage ran them (on the training
device; the same machine gives the same weights, and the stage says whether the dev score
matches the train stage's): no weights are stored between stages, so a clean clone holds every
input of this stage.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from adaopt import io
from adaopt.compression.measure import latencies, nonzero_parameters, pareto_front, size_on_disk
from adaopt.compression.methods import (
    TARGETS,
    distill_objective,
    finalize_pruning,
    fine_tune,
    prune_ffn_neurons,
    prune_global,
    quantize_int8,
    sparsity_of,
    student_of,
    task_loss,
)
from adaopt.config import Params
from adaopt.evaluation import DECODERS
from adaopt.experiment import Workload
from adaopt.figures import compression_front
from adaopt.protocol.splits import DEV, TRAIN
from adaopt.training import machine, make_loader, own_gpu


@dataclass
class Variant:
    """One model of the table: what it was made from and how."""

    source: str  # the optimizer whose weights it starts from
    method: str  # fp32, int8, pruned, pruned+recovery, ffn+recovery, student, student+kd
    model: nn.Module
    sparsity: float | None = None  # measured over the pruned tensors
    layers: int | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        detail = (f" {self.sparsity:.0%}" if self.sparsity is not None
                  else f" {self.layers}L" if self.layers is not None else "")
        return f"{self.source}: {self.method}{detail}"


def _cell(cells: dict[str, Any], optimizer: str, setting: str) -> dict[str, Any]:
    """One cell of the evaluate stage's ``results/cells/<task>.json``."""
    for cell in cells["cells"]:
        if (cell["optimizer"], cell["setting"]) == (optimizer, setting):
            return cell
    raise ValueError(f"results/cells/{cells['task']}.json has no cell ({optimizer}, {setting}); "
                     "run the evaluate stage with this sweep")


def retrain(params: Params, work: Workload, optimizer: str, cells: dict[str, Any]
            ) -> tuple[nn.Module, str]:
    """The first seed's run of (task, optimizer, ``compress.setting``) trained again with its tuned
    values and the task's own training settings (``work``), its selected weights on the CPU,
    and a line comparing its dev score with the train stage's."""
    setting = params.compress.setting
    seed = params.seeds_for(work.task.name, optimizer, setting)[0]
    cell = _cell(cells, optimizer, setting)
    section = {**params.optimizers[optimizer], **cell["hparams"]}
    result, model = work.train_run(optimizer, section, setting, seed,
                                   work.train_config.max_steps, checkpoint=None, progress=True,
                                   label=f"compress@{work.task.name}: the {optimizer} teacher")
    where = f"{work.task.name}/{optimizer}/{setting}"
    if result.status == "diverged":
        raise ValueError(f"{where}: seed {seed} diverged; nothing to compress")
    metric = work.task.metric
    score = work.dev(model)[0][metric]
    run = next(run for run in cell["runs"] if run["seed"] == seed)
    recorded = run["dev"].get(metric)
    same = "the same as" if score == recorded else "NOT the same as"
    why = "" if score == recorded else (f" (trained on {_machine(run.get('machine'))}, "
                                        f"retrained on {_machine(machine())})")
    return model.cpu().eval(), (f"{optimizer} retrained (seed {seed}): dev {metric} {score:.6g}, "
                                f"{same} the train stage's {recorded}{why}")


def _machine(record: dict[str, Any] | None) -> str:
    """A run's machine record in a few words: bit-exact reruns need the same one."""
    if not record:
        return "a machine its run did not record"
    return (f"{record.get('device')} {record.get('cpu_capability')}, "
            f"{record.get('threads')} threads, torch {record.get('torch')}")


def best_optimizer(cells: dict[str, Any], setting: str, candidates: list[str], metric: str,
                   greater_is_better: bool) -> str:
    """The candidate whose runs of ``setting`` have the best mean selection-split score over
    their finished seeds; a tie goes to the earlier candidate.

    Chosen on the selection split, as tuning is: dev is the reported number, and a teacher
    picked by its dev score would make the compressed models' dev scores optimistic.
    """
    means = {}
    for name in candidates:
        scores = [math.nan if run["status"] == "diverged" else
                  run["selection"].get(metric, math.nan)
                  for run in _cell(cells, name, setting)["runs"]]
        means[name] = pd.Series(scores, dtype=float).mean()  # NaN: no seed finished
    finished = pd.Series(means, dtype=float).dropna()
    if finished.empty:
        raise ValueError(f"no finished run of {cells['task']} ({setting}) among "
                         f"compress.optimizers {', '.join(candidates)}")
    return str(finished.idxmax() if greater_is_better else finished.idxmin())


class _Builder:
    """Makes a task's variants; the fine-tuning runs share the data order (``seed``)."""

    def __init__(self, params: Params, work: Workload, seed: int) -> None:
        self.cfg, self.work, self.seed = params.compress, work, seed

    def loader(self) -> torch.utils.data.DataLoader:
        train = self.work.train_config
        return make_loader(self.work.splits[TRAIN], self.work.tokenizer, train.batch_size,
                           train=True, group_by_length=train.group_by_length, seed=self.seed)

    def pruned(self, source: str, model: nn.Module, recover: bool) -> list[Variant]:
        variants = []
        for sparsity in self.cfg.sparsities:
            pruned = copy.deepcopy(model)
            layers = prune_global(pruned, sparsity)
            if recover:
                fine_tune(pruned, self.loader(), self.cfg.recovery_steps, self.cfg.lr)
            finalize_pruning(layers)
            method = "pruned+recovery" if recover else "pruned"
            variants.append(Variant(source, method, pruned, sparsity=sparsity_of(layers)))
        return variants

    def structured(self, source: str, model: nn.Module) -> list[Variant]:
        variants = []
        for fraction in self.cfg.ffn_fractions:
            smaller = prune_ffn_neurons(model, fraction)
            fine_tune(smaller, self.loader(), self.cfg.recovery_steps, self.cfg.lr)
            variants.append(Variant(source, "ffn+recovery", smaller, sparsity=fraction))
        return variants

    def students(self, source: str, teacher: nn.Module) -> list[Variant]:
        distill, task = self.cfg.distill, self.work.task
        taught = distill_objective(teacher, DECODERS[task.kind].outputs,
                                   temperature=distill.temperature, alpha=distill.alpha,
                                   regression=task.is_regression)
        variants = []
        for layers in distill.layers:
            for method, loss in (("student", task_loss), ("student+kd", taught)):
                student = student_of(teacher, layers)
                fine_tune(student, self.loader(), distill.steps, self.cfg.lr, loss)
                variants.append(Variant(source, method, student, layers=layers))
        return variants


def _first_batch(work: Workload, size: int) -> dict[str, torch.Tensor]:
    """The first ``size`` dev examples (windows, for SQuAD), padded as the evaluator pads."""
    loader = make_loader(work.splits[DEV], work.tokenizer, size, train=False)
    return {key: value for key, value in next(iter(loader)).items() if key not in TARGETS}


def table(variants: list[Variant], timings: dict[int, dict[str, tuple[float, float]]],
          metric: str, greater_is_better: bool) -> pd.DataFrame:
    """One row per variant; ``pareto_size`` and ``pareto_latency`` (at the first batch size)
    mark the fronts of the dev metric against size and against latency."""
    rows = []
    for variant in variants:
        row = {"variant": variant.name, "source": variant.source, "method": variant.method,
               "sparsity": variant.sparsity, "layers": variant.layers, "metric": metric,
               "score": variant.scores.get(metric, float("nan")),
               "size_mb": size_on_disk(variant.model) / 1e6,
               "nonzero_params": nonzero_parameters(variant.model)}
        for batch, measured in timings.items():
            median, iqr = measured[variant.name]
            row[f"latency_b{batch}_ms"], row[f"latency_b{batch}_iqr_ms"] = median, iqr
        rows.append(row)
    frame = pd.DataFrame(rows)
    first = next(iter(timings))
    for column, cost in (("pareto_size", "size_mb"), ("pareto_latency", f"latency_b{first}_ms")):
        frame[column] = pareto_front(frame[cost].to_numpy(), frame.score.to_numpy(),
                                     greater_is_better)
    return frame


def compress_task(params: Params, task: str, prepared_dir: str | Path, cells_path: str | Path,
                  tables_dir: str | Path, figures_dir: str | Path,
                  log: Callable[[str], None] = print) -> pd.DataFrame:
    """Build, score and time every variant of ``task``; write its table and figure.

    ``cells_path`` is the evaluate stage's ``results/cells/<task>.json``: the tuned values the
    teacher is retrained with, and the selection scores that choose it. On CUDA the stage
    holds a GPU of its own, waiting for one if need be (:func:`adaopt.training.own_gpu`): the
    retraining gives the train stage's weights only on the kind of device they trained on."""
    with own_gpu(params.train_for(task), busy="wait"):
        return _compress(params, task, prepared_dir, cells_path, tables_dir, figures_dir, log)


def _compress(params: Params, task: str, prepared_dir: str | Path, cells_path: str | Path,
              tables_dir: str | Path, figures_dir: str | Path,
              log: Callable[[str], None]) -> pd.DataFrame:
    """:func:`compress_task` on the device it holds."""
    started = time.perf_counter()
    cfg = params.compress
    work = Workload(params, task, prepared_dir, overrides={"precision": "fp32"})
    spec = work.task
    cells = json.loads(Path(cells_path).read_text())
    best = best_optimizer(cells, cfg.setting, params.teacher_candidates(task), spec.metric,
                          spec.greater_is_better)
    log(f"teacher: {best}")
    training = Workload(params, task, prepared_dir)  # the train stage's precision, not fp32
    originals, notes = {}, []
    for name in dict.fromkeys([best, "adamw"]):
        originals[name], note = retrain(params, training, name, cells)
        notes.append(note)
        log(note)
    builder = _Builder(params, work, seed=params.sweep.seeds[0])
    variants = []
    for name, model in originals.items():
        variants += [Variant(name, "fp32", model), Variant(name, "int8", quantize_int8(model))]
        variants += builder.pruned(name, model, recover=False)
    teacher = originals[best]
    variants += builder.pruned(best, teacher, recover=True)
    variants += builder.structured(best, teacher)
    variants += builder.students(best, teacher)
    log(f"{len(variants)} variants built in {time.perf_counter() - started:.1f} s")
    for variant in variants:
        variant.scores, _ = work.dev(variant.model)
    models = {variant.name: variant.model for variant in variants}
    timings = {batch: latencies(models, _first_batch(work, batch), warmup=cfg.latency.warmup,
                                repeats=cfg.latency.repeats)
               for batch in cfg.latency.batch_sizes}
    frame = table(variants, timings, spec.metric, spec.greater_is_better)
    seconds = time.perf_counter() - started
    log(f"{spec.name}: {len(frame)} variants scored and timed in {seconds:.1f} s")
    write_outputs(frame, spec.name, seconds, notes, tables_dir, figures_dir,
                  spec.greater_is_better)
    return frame


def write_outputs(frame: pd.DataFrame, task: str, seconds: float, notes: list[str],
                  tables_dir: str | Path, figures_dir: str | Path, greater_is_better: bool
                  ) -> None:
    tables_dir = Path(tables_dir)
    io.write_with(tables_dir / f"{task}.csv", lambda p: frame.to_csv(p, index=False))
    shown = frame.drop(columns=["source", "method", "metric"]).round(4)
    header = (f"## Compression of {task} ({frame.metric.iloc[0]}, "
              f"{'higher' if greater_is_better else 'lower'} is better)\n\n"
              "Latency: CPU milliseconds per example (median; IQR), all variants in one "
              f"process; size: bytes of the saved state_dict. Stage time: {seconds:.0f} s.\n\n"
              + "".join(f"* {note}\n" for note in notes) + "\n")
    io.write_text(tables_dir / f"{task}.md", header + shown.to_markdown(index=False) + "\n")
    compression_front(frame, task, greater_is_better,
                      Path(figures_dir) / f"compression_{task}.png")


__all__ = ["Variant", "best_optimizer", "compress_task", "retrain", "table"]
