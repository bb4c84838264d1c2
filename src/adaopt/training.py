"""The fine-tuning loop shared by every optimizer, and what it measures.

One loop serves all optimizers and both comparison settings; only the optimizer, the learning
rate schedule and the clipping change between runs, so differences in the results come from
them and from nothing else.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    get_scheduler,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from adaopt.config import SettingConfig, TrainConfig, optimizer_hparams
from adaopt.metrics import glue_metrics
from adaopt.optim import AdaptiveLR, build_optimizer
from adaopt.tasks import TaskSpec

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")
EFFICIENCY = ("wall_time_s", "train_samples_per_s", "peak_memory_mb")


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same numbers: seeds Python, NumPy and torch, deterministic ops."""
    set_seed(seed, deterministic=True)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- data loading


def make_loader(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    *,
    train: bool,
    group_by_length: bool = False,
    seed: int = 0,
) -> DataLoader:
    """Batches padded to their own longest example (dynamic padding).

    Length grouping puts examples of similar length together, which on a CPU, where padding
    costs as much as real tokens, is worth more than anything else in the loop.
    """
    columns = [name for name in MODEL_INPUTS if name in dataset.column_names]
    data = dataset.with_format("torch", columns=columns)
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if train and group_by_length:
        sampler = LengthGroupedSampler(batch_size, lengths=dataset["length"], generator=generator)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=train and sampler is None,
        generator=generator,
        collate_fn=collator,
    )


def endless(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """Epoch after epoch; the sampler draws a new order from its generator each time."""
    while True:
        yield from loader


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class LRPlan:
    """Warmup, then constant until ``decay_start``, then the chosen decay to the end."""

    schedule: str
    warmup_steps: int
    decay_start: int
    gamma: float
    max_grad_norm: float | None


def lr_plan(setting: SettingConfig, max_steps: int) -> LRPlan:
    return LRPlan(
        schedule=setting.schedule,
        warmup_steps=round(setting.warmup_ratio * max_steps),
        decay_start=round(setting.decay_start_ratio * max_steps),
        gamma=setting.gamma,
        max_grad_norm=setting.max_grad_norm,
    )


def adaptive_plan(section: dict[str, Any], max_steps: int, fair: LRPlan | None) -> LRPlan:
    """AdaptiveAdam's own schedule, or in the fair setting the shared one."""
    if fair is not None:
        return LRPlan("exponential", fair.warmup_steps, fair.decay_start, fair.gamma,
                      fair.max_grad_norm)
    return LRPlan(
        "exponential",
        round(section.get("warmup_ratio", 0.0) * max_steps),
        round(section.get("decay_start_ratio", 0.0) * max_steps),
        section.get("gamma", 1.0),
        None,
    )


def controller_kwargs(plan: LRPlan, max_steps: int) -> dict[str, Any]:
    """Map a plan onto :class:`AdaptiveLR`: the lr has decayed by ``gamma`` after the last step."""
    decay_start = max(plan.decay_start, plan.warmup_steps)
    return {
        "warmup_steps": plan.warmup_steps,
        "decay_start": decay_start,
        "decay_steps": max(1, max_steps - decay_start),
        "gamma": plan.gamma,
    }


def build_schedule(optimizer: Optimizer, plan: LRPlan, max_steps: int) -> LRScheduler:
    """Hugging Face's schedules where they exist; :class:`AdaptiveLR` for exponential decay."""
    if plan.schedule == "exponential":
        return AdaptiveLR(optimizer, adapt=False, **controller_kwargs(plan, max_steps))
    return get_scheduler(
        plan.schedule if plan.schedule != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=max_steps,
    )


def build_optimization(
    model: torch.nn.Module,
    name: str,
    section: dict[str, Any],
    setting_name: str,
    setting: SettingConfig,
    max_steps: int,
) -> tuple[Optimizer, LRScheduler, float | None]:
    """The optimizer, its schedule and the clipping norm for one (optimizer, setting) run.

    ``traditional``: every baseline as usually run (constant learning rate, no clipping) and
    AdaptiveAdam with its own controller. ``fair``: every optimizer gets the same warmup, decay
    and clipping; AdaptiveAdam keeps only its metric-driven adaptation on top.
    """
    plan = lr_plan(setting, max_steps)
    hparams = optimizer_hparams(section)
    if name == "adaptive_adam":
        own = adaptive_plan(section, max_steps, plan if setting_name == "fair" else None)
        optimizer = build_optimizer(name, model, **{**hparams, **controller_kwargs(own, max_steps)})
        return optimizer, optimizer.controller, own.max_grad_norm
    optimizer = build_optimizer(name, model, **hparams)
    return optimizer, build_schedule(optimizer, plan, max_steps), plan.max_grad_norm


# --------------------------------------------------------------------------- measuring


def reset_peak_memory() -> None:
    """Reset the peak counters so that each run reports its own peak, not the process's."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM
    except OSError:
        pass


def peak_memory_mb() -> float:
    """Peak GPU memory allocated, or on a CPU the process's peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def predict(
    model: torch.nn.Module, loader: DataLoader, bf16: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (class ids, or scores for regression) and labels over a whole loader."""
    model.eval()
    dev = device()
    predictions, labels = [], []
    for batch in loader:
        batch = {key: value.to(dev) for key, value in batch.items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        predictions.append(logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1))
        labels.append(batch["labels"])
    model.train()
    return torch.cat(predictions).cpu().numpy(), torch.cat(labels).cpu().numpy()


def evaluate(model: torch.nn.Module, loader: DataLoader, task: TaskSpec, bf16: bool) -> dict:
    predictions, labels = predict(model, loader, bf16)
    return glue_metrics(task.name, predictions, labels)


# --------------------------------------------------------------------------- the loop


@dataclass
class RunResult:
    """What one training run measured; ``status`` is ``ok``, ``early_stopped`` or ``diverged``."""

    status: str
    steps: int
    best_step: int | None
    best: dict[str, float]
    last: dict[str, float]
    last_finite_loss: float | None
    wall_time_s: float
    train_samples_per_s: float
    peak_memory_mb: float
    train_log: list[dict[str, float]] = field(default_factory=list, repr=False)
    eval_log: list[dict[str, float]] = field(default_factory=list, repr=False)

    def outcome(self) -> dict[str, Any]:
        """What the run reached: the same seed on the same machine gives the same values."""
        return {key: value for key, value in asdict(self).items()
                if key not in EFFICIENCY and not key.endswith("_log")}

    def efficiency(self) -> dict[str, float]:
        """What the run cost: timings and memory, which vary from run to run."""
        return {key: getattr(self, key) for key in EFFICIENCY}


def train(
    model: torch.nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    train_loader: DataLoader,
    eval_fn: Callable[[torch.nn.Module], dict[str, float]],
    config: TrainConfig,
    *,
    metric: str,
    max_grad_norm: float | None,
    greater_is_better: bool = True,
    progress: bool = True,
) -> RunResult:
    """Fine-tune for ``config.max_steps`` optimizer steps, evaluating every ``eval_every``.

    The loop stops early when the dev metric has not improved for ``early_stopping_patience``
    evaluations, and at once when the loss stops being finite (recorded as ``diverged``).
    ``scheduler.report(metric)`` is called after each evaluation when the scheduler has it,
    which is how AdaptiveAdam's controller sees the validation metric.
    """
    dev = device()
    model.to(dev).train()
    reset_peak_memory()
    batches = endless(train_loader)
    train_log: list[dict[str, float]] = []
    eval_log: list[dict[str, float]] = []
    best: dict[str, float] = {}
    last: dict[str, float] = {}
    best_step: int | None = None
    last_finite: float | None = None
    bad_evals = 0
    status = "ok"
    samples = 0
    sign = 1.0 if greater_is_better else -1.0
    start = time.perf_counter()
    bar = tqdm(range(1, config.max_steps + 1), disable=not progress, desc="train", leave=False)
    step = 0
    for step in bar:
        loss_sum = 0.0
        for _ in range(config.grad_accum_steps):
            batch = {key: value.to(dev) for key, value in next(batches).items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16):
                loss = model(**batch).loss / config.grad_accum_steps
            loss.backward()
            loss_sum += loss.item()
            samples += len(batch["labels"])
        if not math.isfinite(loss_sum):
            status = "diverged"
            optimizer.zero_grad(set_to_none=True)
            break
        last_finite = loss_sum
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        elapsed = time.perf_counter() - start
        train_log.append({"step": step, "loss": loss_sum, "lr": lr, "elapsed_s": elapsed})
        bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}")
        if step % config.eval_every == 0 or step == config.max_steps:
            eval_start = time.perf_counter()
            scores = last = eval_fn(model)
            start += time.perf_counter() - eval_start  # evaluation is not training time
            eval_log.append({"step": step, "elapsed_s": elapsed, **scores})
            if hasattr(scheduler, "report"):
                scheduler.report(scores[metric])
            value = scores[metric]  # NaN (e.g. Pearson of constant predictions) never wins
            if math.isfinite(value) and (not best or sign * (value - best[metric]) > 0):
                best, best_step, bad_evals = scores, step, 0
            else:
                bad_evals += 1
            patience = config.early_stopping_patience
            if patience is not None and bad_evals >= patience:
                status = "early_stopped"
                break
    bar.close()
    wall = time.perf_counter() - start
    return RunResult(
        status=status,
        steps=len(train_log),
        best_step=best_step,
        best=best,
        last=last,
        last_finite_loss=last_finite,
        wall_time_s=wall,
        train_samples_per_s=samples / wall if wall > 0 else 0.0,
        peak_memory_mb=peak_memory_mb(),
        train_log=train_log,
        eval_log=eval_log,
    )
