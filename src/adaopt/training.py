"""The fine-tuning loop shared by every optimizer, and what it measures.

One loop serves all optimizers and both comparison settings; only the optimizer, the learning
rate schedule and the clipping change between runs, so differences in the results come from
them and from nothing else.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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

from adaopt.checkpoint import ResumableBatches, load_checkpoint, save_checkpoint
from adaopt.config import SettingConfig, TrainConfig, optimizer_hparams
from adaopt.optim import AdaptiveLR, build_optimizer

MODEL_INPUTS = (
    "input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions",
)
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


# --------------------------------------------------------------------------- the loop


@dataclass
class LoopState:
    """The loop's bookkeeping; a checkpoint carries it, so a resumed run goes on unchanged."""

    train_log: list[dict[str, float]] = field(default_factory=list)
    eval_log: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_predictions: dict[str, Any] = field(default_factory=dict)
    best_step: int | None = None
    last: dict[str, float] = field(default_factory=dict)
    last_finite_loss: float | None = None
    bad_evals: int = 0
    samples: int = 0
    train_seconds: float = 0.0  # optimizer steps only: evaluation and checkpoints excluded
    peak_memory_mb: float = 0.0


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
    best_predictions: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_state(cls, status: str, state: LoopState) -> RunResult:
        seconds = state.train_seconds
        return cls(
            status=status,
            steps=len(state.train_log),
            best_step=state.best_step,
            best=state.best,
            last=state.last,
            last_finite_loss=state.last_finite_loss,
            wall_time_s=seconds,
            train_samples_per_s=state.samples / seconds if seconds > 0 else 0.0,
            peak_memory_mb=max(state.peak_memory_mb, peak_memory_mb()),
            train_log=state.train_log,
            eval_log=state.eval_log,
            best_predictions=state.best_predictions,
        )

    def outcome(self) -> dict[str, Any]:
        """What the run reached: the same seed on the same machine gives the same values."""
        return {key: value for key, value in asdict(self).items()
                if key not in EFFICIENCY and key not in _BULK}

    def efficiency(self) -> dict[str, float]:
        """What the run cost: timings and memory, which vary from run to run."""
        return {key: getattr(self, key) for key in EFFICIENCY}


_BULK = ("train_log", "eval_log", "best_predictions")  # written to files of their own
Evaluate = Callable[[torch.nn.Module], tuple[dict[str, float], dict[str, Any]]]


def train(
    model: torch.nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    train_loader: DataLoader,
    evaluate: Evaluate,
    config: TrainConfig,
    *,
    metric: str,
    max_grad_norm: float | None,
    greater_is_better: bool = True,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune for ``config.max_steps`` optimizer steps, evaluating every ``eval_every``.

    The loop stops early when the dev metric has not improved for ``early_stopping_patience``
    evaluations, and at once when the loss stops being finite (recorded as ``diverged``).
    ``scheduler.report(metric)`` is called after each evaluation when the scheduler has it,
    which is how AdaptiveAdam's controller sees the validation metric.

    With ``checkpoint`` set, the loop saves everything it needs to go on there every
    ``checkpoint_every`` steps, and resumes from it if it exists: a resumed run reaches the
    same numbers as one that was never interrupted.
    """
    dev = device()
    model.to(dev).train()
    reset_peak_memory()
    batches = ResumableBatches(train_loader)
    state, done = LoopState(), 0
    if checkpoint is not None and checkpoint.exists():
        done, position, saved = load_checkpoint(
            checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
            generator=batches.generator,
        )
        batches.restore(position)
        state = LoopState(**saved)
        print(f"resumed from {checkpoint} at step {done}")
    every = config.checkpoint_every or config.eval_every
    sign = 1.0 if greater_is_better else -1.0
    status = "ok"
    bar = tqdm(range(done + 1, config.max_steps + 1), initial=done, total=config.max_steps,
               disable=not progress, desc="train", leave=False)
    for step in bar:
        started = time.perf_counter()
        loss_sum = 0.0
        for _ in range(config.grad_accum_steps):
            batch = {key: value.to(dev) for key, value in next(batches).items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16):
                loss = model(**batch).loss / config.grad_accum_steps
            loss.backward()
            loss_sum += loss.item()
            state.samples += len(batch["input_ids"])
        if not math.isfinite(loss_sum):
            status = "diverged"
            optimizer.zero_grad(set_to_none=True)
            break
        state.last_finite_loss = loss_sum
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        state.train_seconds += time.perf_counter() - started
        elapsed = state.train_seconds
        state.train_log.append({"step": step, "loss": loss_sum, "lr": lr, "elapsed_s": elapsed})
        bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}")
        if step % config.eval_every == 0 or step == config.max_steps:
            scores, predictions = evaluate(model)
            state.last = scores
            state.eval_log.append({"step": step, "elapsed_s": elapsed, **scores})
            if hasattr(scheduler, "report"):
                scheduler.report(scores[metric])
            value = scores[metric]  # NaN (e.g. Pearson of constant predictions) never wins
            if math.isfinite(value) and (not state.best or sign * (value - state.best[metric]) > 0):
                state.best, state.best_predictions = scores, predictions
                state.best_step, state.bad_evals = step, 0
            else:
                state.bad_evals += 1
            patience = config.early_stopping_patience
            if patience is not None and state.bad_evals >= patience:
                status = "early_stopped"
                break
        if checkpoint is not None and step % every == 0 and step < config.max_steps:
            state.peak_memory_mb = max(state.peak_memory_mb, peak_memory_mb())
            save_checkpoint(
                checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                generator=batches.generator, step=step, data_position=batches.position(),
                loop_state=asdict(state),
            )
    bar.close()
    return RunResult.from_state(status, state)
