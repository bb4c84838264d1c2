"""The fine-tuning loop shared by every optimizer, and what it measures.

One loop serves all optimizers and both comparison settings; only the optimizer, the learning
rate schedule and the clipping change between runs, so differences in the results come from
them and from nothing else. The loop knows no optimizer, setting or split names: what each
setting does lives in :mod:`adaopt.protocol.settings`, and the loop scores only the data its
``evaluate`` callable was built on (the selection split, :mod:`adaopt.protocol.splits`).
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    default_data_collator,
    set_seed,
)

from adaopt import distributed
from adaopt.checkpoint import (
    ResumableBatches,
    global_rng_states,
    load_checkpoint,
    save_checkpoint,
)
from adaopt.config import TrainConfig
from adaopt.hooks import BusyPolicy, runner
from adaopt.precision import autocast, check_precision, grad_scaler, use_tf32

MODEL_INPUTS = (
    "input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions",
)
#: What a run cost (``efficiency.json``); everything else a run reports is its outcome.
EFFICIENCY = ("wall_time_s", "train_samples_per_s", "train_tokens_per_s", "peak_memory_mb",
              "optimizer_state_mb")


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same numbers: seeds Python, NumPy and torch, deterministic ops.

    On CUDA, deterministic cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before CUDA initializes
    (it raises at the first matmul otherwise); a value the user set is kept.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_seed(seed, deterministic=True)


_assigned: str | None = None  # the device own_gpu gave this process, while it holds it


def device() -> torch.device:
    """Where runs train: the GPU :func:`own_gpu` gave this process, else CUDA's current
    device when there is one, else the CPU."""
    if _assigned is not None:
        return torch.device(_assigned)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _on_gpu() -> bool:
    return device().type == "cuda"


@contextmanager
def own_gpu(config: TrainConfig, busy: BusyPolicy | None = None) -> Iterator[None]:
    """Train the block's runs on a GPU that no other run on this machine holds
    (:mod:`adaopt.runner.devices`, through :mod:`adaopt.hooks`): several stages started at
    once (``dvc queue start -j N``, several ``dvc repro``) spread over the GPUs instead of all
    landing on the first. With every GPU held, wait for one or train on the CPU (``busy``, else
    ``train.busy_gpus``: a stage that times the GPU, or must retrain the train stage's weights,
    waits). Nothing to claim without CUDA, or for data-parallel runs, whose processes own
    ``cuda:LOCAL_RANK`` (torchrun's)."""
    global _assigned
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0 or config.nproc > 1 or distributed.launched():
        yield
        return
    with runner().claim_gpu(count, busy or config.busy_gpus) as name:
        if name != "cpu":
            torch.cuda.set_device(name)
        _assigned = name
        try:
            yield
        finally:
            _assigned = None


def machine() -> dict[str, Any]:
    """What a run's numbers are bit-exact on: the same seed gives the same bytes only with the
    same torch, the same kernels (the CPU's vector extension, or the GPU) and thread count."""
    gpu = torch.cuda.get_device_name() if _on_gpu() else None
    return {"torch": torch.__version__, "device": gpu or "cpu",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- data loading


class LengthGroupedBatches(Sampler[int]):
    """Indices in an order whose consecutive ``batch_size`` chunks hold examples of similar
    length, the batches themselves in random order.

    Each epoch shuffles the examples, sorts them by length within mega-batches of
    ``mega_batches`` batches (padding is what costs on a CPU) and shuffles the batches; the one
    short batch comes last, so that chunking stays aligned. Hugging Face's
    ``LengthGroupedSampler`` keeps each mega-batch long-to-short instead, which turns a short run
    into a curriculum (its decay phase trains on the shortest examples).
    """

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator,
                 mega_batches: int = 50) -> None:
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.mega = batch_size * mega_batches

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        batches: list[torch.Tensor] = []
        for mega in order.split(self.mega):
            by_length = mega[torch.argsort(self.lengths[mega], descending=True, stable=True)]
            batches.extend(by_length.split(self.batch_size))
        short = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=self.generator)]
        yield from torch.cat([*shuffled, *short]).tolist()


PAD_TO = 8  # batches are padded to a multiple of this many tokens


def balanced_cuts(lengths: list[int], parts: int) -> list[int]:
    """Where to cut ``lengths``, sorted longest first, into ``parts`` non-empty runs of
    consecutive examples so that the largest run's padded size (its examples times its first,
    longest, one) is as small as it can be: the ``parts - 1`` cut positions.

    The smallest feasible size is found by bisection; a run takes as many examples as fit in
    it, and runs are then split further (which enlarges none) until there are ``parts``.
    """
    def runs(size: int) -> list[int]:
        starts, start = [], 0
        while start < len(lengths):
            starts.append(start)
            start += max(1, size // lengths[start])
        return starts

    low, high = lengths[0], len(lengths) * lengths[0]  # one example; one run of all
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if len(runs(middle)) <= parts else (middle + 1, high)
    starts = runs(low)
    while len(starts) < parts:  # split the run with the most examples in two
        ends = [*starts[1:], len(lengths)]
        widest = max(range(len(starts)), key=lambda i: ends[i] - starts[i])
        starts.insert(widest + 1, (starts[widest] + ends[widest] + 1) // 2)
    return starts[1:]


class ShardedBatches(Sampler[list[int]]):
    """One data-parallel process's shard of every global batch of ``batches``.

    Every process builds the same seeded sampler, so all of them draw the single-process run's
    global order; process ``rank`` of ``world_size`` takes its shard of each global batch, and
    the shards of one step together are exactly the single-process batch of that step. With the
    loop's loss weighting (by each shard's share) and DDP's gradient average, the update is the
    global batch's, so N processes follow the one-process loss curve (up to the order of float
    sums).

    With the examples' ``lengths`` the shards are balanced by padded size (lengths rounded up to
    ``pad_to``, as the collator pads): each batch is sorted longest first and cut into
    consecutive runs (:func:`balanced_cuts`), so the process with the longest examples gets
    fewer of them, and the step, which waits for the slowest process, is
    not held up by one shard padded to the batch's longest example. Without lengths (examples
    of one length, a language model's blocks) the shards are equal slices by position.

    torch's ``DistributedSampler`` cannot give that: it reshuffles per epoch from its own seed,
    deals every N-th index of the permutation to each rank (padding with repeated examples) and
    each rank batches its own indices, so a step's N local batches are not a batch of the
    single-process order, and length grouping no longer holds across ranks.
    """

    def __init__(self, batches: BatchSampler, rank: int, world_size: int,
                 lengths: list[int] | None = None, pad_to: int = 1) -> None:
        size = len(batches.sampler)  # type: ignore[arg-type]
        last = 0 if batches.drop_last else size % batches.batch_size
        if 0 < last < world_size:
            raise ValueError(f"the last batch of each epoch holds {last} examples, fewer than "
                             f"the {world_size} processes: change train.batch_size or nproc")
        self.batches = batches
        self.sampler = batches.sampler  # where ResumableBatches finds the data generator
        self.rank, self.world_size = rank, world_size
        self.lengths = None if lengths is None else [-(-n // pad_to) * pad_to for n in lengths]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            size = len(batch)
            if self.lengths is None:
                yield batch[size * self.rank // self.world_size:
                            size * (self.rank + 1) // self.world_size]
                continue
            batch = sorted(batch, key=lambda index: -self.lengths[index])  # stable
            cuts = [0, *balanced_cuts([self.lengths[i] for i in batch], self.world_size), size]
            yield batch[cuts[self.rank]:cuts[self.rank + 1]]


def make_loader(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase | None,
    batch_size: int,
    *,
    train: bool,
    group_by_length: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Batches padded to their own longest example (dynamic padding).

    Length grouping puts examples of similar length together, which on a CPU, where padding
    costs as much as real tokens, is worth more than anything else in the loop; the batches
    still come in random order (:class:`LengthGroupedBatches`). Without a ``tokenizer`` the
    examples must all have one length (a language model's blocks) and are stacked as they are.
    With ``world_size > 1`` a training loader yields process ``rank``'s shard of each global
    batch of ``batch_size`` (:class:`ShardedBatches`).
    """
    columns = [name for name in MODEL_INPUTS if name in dataset.column_names]
    data = dataset.with_format("torch", columns=columns)
    collator = (default_data_collator if tokenizer is None
                else DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO))
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if train and group_by_length:
        sampler = LengthGroupedBatches(dataset["length"], batch_size, generator)
    pin = _on_gpu()  # page-locked batches: non_blocking copies to the GPU
    if train and world_size > 1:
        order = sampler or RandomSampler(data, generator=generator)
        lengths = dataset["length"] if "length" in dataset.column_names else None
        shards = ShardedBatches(BatchSampler(order, batch_size, drop_last=False), rank,
                                world_size, lengths, PAD_TO)
        return DataLoader(data, batch_sampler=shards, generator=generator, collate_fn=collator,
                          pin_memory=pin)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=train and sampler is None,
        generator=generator,
        collate_fn=collator,
        pin_memory=pin,
    )


# --------------------------------------------------------------------------- measuring


def reset_peak_memory() -> None:
    """Reset the peak counters so that each run reports its own peak, not the process's."""
    if _on_gpu():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM
    except OSError:
        pass


def optimizer_state_mb(optimizer: Optimizer) -> float:
    """The optimizer's state tensors (moments, accumulators, step counts): the memory it adds
    beside the weights and their gradients, which decides how large a model fits."""
    return sum(value.numel() * value.element_size() for per_parameter in optimizer.state.values()
               for value in per_parameter.values() if torch.is_tensor(value)) / 2**20


def peak_memory_mb() -> float:
    """Peak GPU memory allocated, or on a CPU the process's peak resident set size."""
    if _on_gpu():
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
    """The loop's bookkeeping; a checkpoint carries it, so a resumed run goes on unchanged.

    ``best_weights`` is a copy of the weights at the best evaluation: the selected weights,
    which the caller scores on the dev set once the run has ended.
    """

    train_log: list[dict[str, float]] = field(default_factory=list)
    eval_log: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    last: dict[str, float] = field(default_factory=dict)
    last_finite_loss: float | None = None
    diverged_on: str | None = None
    bad_evals: int = 0
    cuts: list[dict[str, float]] = field(default_factory=list)  # the controller's lr cuts
    samples: int = 0
    tokens: int = 0  # real (unpadded) input tokens
    scaler: dict[str, Any] | None = None  # the fp16 loss scaler's state at a checkpoint
    train_seconds: float = 0.0  # optimizer steps only: evaluation and checkpoints excluded
    scoring_seconds: float = 0.0  # the evaluations
    saved_at_seconds: float = 0.0  # train_seconds at the last checkpoint
    peak_memory_mb: float = 0.0
    optimizer_state_mb: float = 0.0  # measured when the run ends


@dataclass
class RunResult:
    """What one training run measured.

    ``status`` is ``ok``, ``early_stopped`` or ``diverged``; ``diverged_on`` says what stopped
    being finite first (``loss``, ``grad_norm`` or ``parameters``). ``best`` holds the scores of
    the best evaluation (on whatever ``evaluate`` scored: the selection split in the pipeline).
    ``cuts`` lists each learning-rate cut a metric-driven controller made: the step of the
    evaluation that triggered it and the learning rate (first param group) after it.
    """

    status: str
    steps: int
    best_step: int | None
    best: dict[str, float]
    last: dict[str, float]
    last_finite_loss: float | None
    diverged_on: str | None
    cuts: list[dict[str, float]]
    wall_time_s: float
    train_samples_per_s: float
    train_tokens_per_s: float
    peak_memory_mb: float
    optimizer_state_mb: float
    scoring_time_s: float
    train_log: list[dict[str, float]] = field(default_factory=list, repr=False)
    eval_log: list[dict[str, float]] = field(default_factory=list, repr=False)

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
            diverged_on=state.diverged_on,
            cuts=state.cuts,
            wall_time_s=seconds,
            train_samples_per_s=state.samples / seconds if seconds > 0 else 0.0,
            train_tokens_per_s=state.tokens / seconds if seconds > 0 else 0.0,
            peak_memory_mb=max(state.peak_memory_mb, peak_memory_mb()),
            optimizer_state_mb=state.optimizer_state_mb,
            scoring_time_s=state.scoring_seconds,
            train_log=state.train_log,
            eval_log=state.eval_log,
        )

    def outcome(self) -> dict[str, Any]:
        """What the run reached: the same seed on the same machine gives the same values."""
        return {key: value for key, value in asdict(self).items()
                if key not in (*EFFICIENCY, *_TIMINGS, *_BULK)}

    def efficiency(self) -> dict[str, float]:
        """What the run cost: timings and memory, which vary from run to run."""
        return {key: getattr(self, key) for key in (*EFFICIENCY, *_TIMINGS)}


_BULK = ("train_log", "eval_log")  # written to files of their own
_TIMINGS = ("scoring_time_s",)  # how the run's time splits; not compared between optimizers
Evaluate = Callable[[torch.nn.Module], tuple[dict[str, float], dict[str, Any]]]


def _first_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().to("cpu", copy=True) for name, value in
            model.state_dict().items()}


@dataclass
class _Step:
    """One optimizer step whose values are still on the device, until the next read-back."""

    step: int
    seconds_before: float  # state.train_seconds when the step started
    seconds_after: float = 0.0
    lr: float = 0.0
    samples: int = 0
    loss: torch.Tensor | None = None
    tokens: torch.Tensor | None = None  # real (unpadded) input tokens
    grad_norm: torch.Tensor | None = None
    finite: torch.Tensor | None = None  # every parameter still finite after the step

    def values(self) -> torch.Tensor:
        """Loss, gradient norm, parameters finite and tokens as one float64 vector on the loss's
        device, wherever each was made: a stack of tensors on two devices raises on a GPU."""
        where = self.loss.device  # type: ignore[union-attr]
        return torch.stack([value.to(where, torch.float64) for value in (
            self.loss, self.grad_norm, self.finite, self.tokens)])  # type: ignore[union-attr]


def _count(batch: dict[str, torch.Tensor]) -> tuple[float, int, torch.Tensor]:
    """The global batch's samples and real tokens, and this process's loss weight: its share of
    the global batch times the process count, 1.0 for equal shards (always, in one process), so
    that DDP's average of the weighted shard means is the global batch's mean even where the
    epoch's last batch splits unevenly. The tokens stay a tensor (no host read) in one process."""
    mask = batch.get("attention_mask")
    tokens = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel())
    shard = len(batch["input_ids"])
    if not distributed.active():
        return 1.0, shard, tokens
    samples, total = (int(n) for n in distributed.all_sum([shard, int(tokens)]))
    return distributed.world_size() * shard / samples, samples, torch.tensor(total)


def _checkpoint(path: Path, config: TrainConfig, step: int, state: LoopState,
                model: torch.nn.Module, optimizer: Optimizer, scheduler: LRScheduler,
                scaler: torch.amp.GradScaler, batches: ResumableBatches) -> None:
    """Save at a checkpoint step once ``checkpoint_interval_s`` of training has passed.

    Rank 0's clock decides for every process (they all take part in gathering the random
    generators, each process's own: dropout draws differ between shards), and rank 0 writes.
    """
    due = state.train_seconds - state.saved_at_seconds >= config.checkpoint_interval_s
    if not distributed.from_main(due):
        return
    rank_rngs = distributed.gather(global_rng_states()) if distributed.active() else None
    if not distributed.is_main():
        return
    state.saved_at_seconds = state.train_seconds
    state.peak_memory_mb = max(state.peak_memory_mb, peak_memory_mb())
    state.scaler = scaler.state_dict() if scaler.is_enabled() else None
    save_checkpoint(
        path, model=model, optimizer=optimizer, scheduler=scheduler,
        generator=batches.generator, step=step, data_position=batches.position(),
        loop_state=asdict(state), rank_rngs=rank_rngs,
    )


def _resume(checkpoint: Path | None, model: torch.nn.Module, optimizer: Optimizer,
            scheduler: LRScheduler, batches: ResumableBatches) -> tuple[int, LoopState]:
    """The steps already done and the loop's state: a fresh start, or, if ``checkpoint``
    exists, where it left off (model, optimizer, scheduler, random generators and data
    position restored in place), so that the run goes on as if it had never stopped."""
    if checkpoint is None or not checkpoint.exists():
        return 0, LoopState()
    done, position, saved = load_checkpoint(
        checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
        generator=batches.generator, rank=distributed.rank(), world_size=distributed.world_size(),
    )
    batches.restore(position)
    state = LoopState(**saved)
    if distributed.is_main():
        print(f"resumed from {checkpoint} at step {done}")
    return done, state


def _accumulate_gradients(net: torch.nn.Module, batches: ResumableBatches, dev: torch.device,
                          scaler: torch.amp.GradScaler, config: TrainConfig, step: _Step) -> None:
    """Forward and backward over ``grad_accum_steps`` batches; ``step`` gets their samples and
    the global batch's mean loss and real tokens, on the device (the loss averaged over the
    processes, so that every one logs and decides on the same value)."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)  # as Python's float sum
    tokens = torch.zeros((), dtype=torch.int64, device=dev)
    for micro in range(config.grad_accum_steps):
        batch = {key: value.to(dev, non_blocking=True) for key, value in next(batches).items()}
        weight, samples, batch_tokens = _count(batch)
        step.samples += samples
        tokens += batch_tokens.to(dev)
        with distributed.syncing(net, last=micro == config.grad_accum_steps - 1):
            with autocast(config.precision, dev.type):
                loss = net(**batch).loss * weight / config.grad_accum_steps
            scaler.scale(loss).backward()
        loss_sum += loss.detach().double()
    step.loss = distributed.sum_in_place(loss_sum) / distributed.world_size()
    step.tokens = tokens


def _grad_norm(model: torch.nn.Module, max_grad_norm: float | None) -> torch.Tensor:
    """The gradients' total norm before clipping; they are clipped to ``max_grad_norm`` if set."""
    if max_grad_norm is not None:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    return torch.nn.utils.get_total_norm(
        [p.grad for p in model.parameters() if p.grad is not None])


def _optimizer_step(model: torch.nn.Module, optimizer: Optimizer, scheduler: LRScheduler,
                    scaler: torch.amp.GradScaler, max_grad_norm: float | None,
                    step: _Step, guard: bool) -> None:
    """Step the optimizer and the schedule on the accumulated gradients. ``step`` gets the
    learning rate it stepped with, and on the device the gradient norm and whether every
    parameter is still finite, which :func:`_log_steps` checks with the loss once they are read
    back: a non-finite value ends the run there. With ``guard`` the loss and the norm are read
    first, and a step with a non-finite one is not applied; without it nothing is read here,
    so a GPU never waits for the host."""
    scaler.unscale_(optimizer)  # true gradients for the norm and clipping (fp16 only)
    step.grad_norm = _grad_norm(model, max_grad_norm)
    step.lr = _first_lr(optimizer)
    where = step.loss.device  # type: ignore[union-attr]
    if guard and _diverges(*torch.stack([step.loss, step.grad_norm.to(where, torch.float64)])
                           .tolist(), fp16=scaler.is_enabled()):
        optimizer.zero_grad(set_to_none=True)
        step.finite = torch.ones((), dtype=torch.bool, device=where)  # not stepped: unchanged
        return
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    step.finite = torch.isfinite(torch.nn.utils.get_total_norm(list(model.parameters())))


def _diverges(loss: float, grad_norm: float, fp16: bool) -> str | None:
    """``loss`` or ``grad_norm`` if it is not finite, the loss first. Under fp16 a non-finite
    gradient is an overflow, not divergence: the scaler skips that step and lowers its scale."""
    if not math.isfinite(loss):
        return "loss"
    overflow = fp16 and not math.isfinite(grad_norm)
    return "grad_norm" if not math.isfinite(grad_norm) and not overflow else None


def _read_back(pending: list[_Step]) -> list[list[float]]:
    """The pending steps' device values in one host read (the loop's only one between
    read-backs): a row per step of loss, gradient norm, parameters finite, tokens."""
    return torch.stack([step.values() for step in pending]).tolist()


def _log_steps(pending: list[_Step], rows: list[list[float]], state: LoopState,
               fp16: bool) -> str | None:
    """Log the read-back steps as the loop always has; what stopped being finite first
    (``loss``, ``grad_norm`` or ``parameters``; under fp16 a non-finite gradient is an overflow,
    :func:`_diverges`), if anything: the run ended at that step, and the steps after it are
    dropped."""
    diverged = None
    for step, (loss, grad_norm, finite, tokens) in zip(pending, rows, strict=True):
        state.samples += step.samples
        state.tokens += int(tokens)
        diverged = _diverges(loss, grad_norm, fp16)
        if not diverged:
            state.last_finite_loss = loss
            diverged = None if finite else "parameters"
        if diverged:
            state.train_seconds = step.seconds_before  # the diverging step's time is not training
            break
        state.train_log.append({"step": step.step, "loss": loss, "lr": step.lr,
                                "grad_norm": grad_norm, "elapsed_s": step.seconds_after})
    pending.clear()
    return diverged


def _evaluate_and_select(model: torch.nn.Module, evaluate: Evaluate, optimizer: Optimizer,
                         scheduler: LRScheduler, step: int, state: LoopState, *, metric: str,
                         greater_is_better: bool, patience: int | None) -> bool:
    """Score ``model`` and log the scores; report ``metric`` to a metric-driven controller,
    recording the learning-rate cut it makes; keep the weights if they score best yet. Whether
    ``patience`` evaluations in a row have not improved, which stops the run early."""
    started = time.perf_counter()
    # Rank 0 scores, the others take its scores: one early-stopping and AdaptiveAdam
    # decision for all, even where GPUs of two models would round differently.
    scores = distributed.from_main(evaluate(model)[0] if distributed.is_main() else None)
    state.scoring_seconds += time.perf_counter() - started
    state.last = scores
    state.eval_log.append({"step": step, "elapsed_s": state.train_seconds,
                           "samples": state.samples, "tokens": state.tokens, **scores})
    if hasattr(scheduler, "report") and scheduler.report(scores[metric]):
        state.cuts.append({"step": step, "lr": _first_lr(optimizer)})
    value = scores[metric]  # NaN (e.g. Pearson of constant predictions) never wins
    sign = 1.0 if greater_is_better else -1.0
    if math.isfinite(value) and (not state.best or sign * (value - state.best[metric]) > 0):
        state.best, state.best_step, state.bad_evals = scores, step, 0
        state.best_weights = _weights(model)
    else:
        state.bad_evals += 1
    return patience is not None and state.bad_evals >= patience


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
    label: str = "train",
) -> RunResult:
    """Train for ``config.max_steps`` optimizer steps, evaluating every ``eval_every``.

    ``evaluate`` scores the model on held-out data (the pipeline passes the selection split);
    the best evaluation's weights are kept and loaded back into ``model`` at the end, so the
    caller holds the selected weights. The loop stops early when ``metric`` has not improved for
    ``early_stopping_patience`` evaluations, and at once (``diverged``) when the loss, the
    gradient norm or a parameter stops being finite. A diverged run is not rolled back: with
    ``log_every`` 1 a step whose loss or gradient norm is not finite is not applied (weights,
    optimizer and schedule stay as the last finite step left them), but a step that makes a
    parameter non-finite is, and with a larger ``log_every`` so are the steps up to the
    read-back that finds it. The model keeps those last weights (the best ones are not loaded
    back) and the caller never scores them. ``scheduler.report(metric)`` is called after
    each evaluation when the scheduler has it: that is how AdaptiveAdam's controller sees the
    selection metric.

    With ``checkpoint`` set, the loop saves everything it needs to go on there every
    ``checkpoint_every`` steps, and resumes from it if it exists: a resumed run reaches the
    same numbers as one that was never interrupted.

    In a process group (:mod:`adaopt.distributed`) ``train_loader`` yields this process's shard
    of each global batch and the model trains under DDP. The logged loss and the sample and
    token counts are sums over the processes, so the logs, and every decision taken on them
    (divergence, early stopping), are the same on every process and match a single-process run.
    Rank 0 evaluates and hands its scores to the others, which keeps early stopping and
    AdaptiveAdam's controller in step. Only rank 0 writes the checkpoint, of the unwrapped
    model, so it resumes a run of any process count; the timings are rank 0's.

    With ``progress``, rank 0 reports the run's progress under ``label`` in lines a log keeps
    readable (:mod:`adaopt.hooks`' progress bar).
    """
    dev = device()
    check_precision(config.precision, dev.type)
    use_tf32(config.tf32, dev.type)
    model.to(dev).train()
    reset_peak_memory()
    batches = ResumableBatches(train_loader)
    done, state = _resume(checkpoint, model, optimizer, scheduler, batches)
    net = distributed.wrap(model, dev)  # what trains; checkpoints and evaluations use ``model``
    scaler = grad_scaler(config.precision, dev.type)
    if state.scaler:
        scaler.load_state_dict(state.scaler)
    every = config.checkpoint_every or config.eval_every
    status = "ok"
    bar = runner().progress_bar(label, config.max_steps, done,
                                enabled=progress and distributed.is_main())
    pending: list[_Step] = []  # steps not yet read back
    step = done
    for step in range(done + 1, config.max_steps + 1):
        started = time.perf_counter()
        record = _Step(step, seconds_before=state.train_seconds)
        _accumulate_gradients(net, batches, dev, scaler, config, record)
        _optimizer_step(model, optimizer, scheduler, scaler, max_grad_norm, record,
                        guard=config.log_every == 1)
        pending.append(record)
        evaluating = step % config.eval_every == 0 or step == config.max_steps
        saving = checkpoint is not None and step % every == 0 and step < config.max_steps
        reading = evaluating or saving or step % config.log_every == 0
        rows = _read_back(pending) if reading else []  # waits for the device: timed with the step
        state.train_seconds += time.perf_counter() - started
        record.seconds_after = state.train_seconds
        if reading:
            diverged = _log_steps(pending, rows, state, scaler.is_enabled())
            if diverged:
                state.diverged_on, status = diverged, "diverged"
                break
            bar.update(step, loss=f"{state.train_log[-1]['loss']:.4f}", lr=f"{record.lr:.2e}")
        if evaluating:
            if _evaluate_and_select(model, evaluate, optimizer, scheduler, step, state,
                                    metric=metric, greater_is_better=greater_is_better,
                                    patience=config.early_stopping_patience):
                status = "early_stopped"
                break
            bar.update(step, **{f"selection {metric}": f"{state.last[metric]:.4g}"})
        if saving:
            _checkpoint(checkpoint, config, step, state, model, optimizer, scheduler, scaler,
                        batches)
    if status == "diverged":  # the steps logged are the finite ones
        last = len(state.train_log)
        bar.close(last, f"(diverged: {state.diverged_on} not finite at step {last + 1})")
    else:
        bar.close(step, "" if status == "ok" else "(stopped early)")
    if state.best_weights is not None and status != "diverged":
        model.load_state_dict(state.best_weights)
    state.optimizer_state_mb = optimizer_state_mb(optimizer)
    return RunResult.from_state(status, state)
