"""Our training loop against the Hugging Face Trainer, and dynamic padding against max_length.

Usage::

    python benchmarks/loop_vs_trainer.py [--steps 30] [--rounds 3] [--batch-size 16]
        [--max-length 64] [--train-samples 512] [--threads 2] [--mirror DIR] [--check]

Trains the packaged MiniLM on SST-2 (prepared by ``adaopt.data.prepare_task`` from the mirror:
``--mirror``, else ``$ADAOPT_DATA_MIRROR``, else ``../shared/data``) for ``--steps`` steps in
four ways, with the same data, batch size, fused AdamW (lr 1e-4, weight decay 0.01 off biases
and LayerNorm weights), constant schedule, no clipping (both still compute the gradient norm):

* ours: ``adaopt.training.train`` with ``build_optimization(..., "traditional")`` and
  ``make_loader(..., group_by_length=True)``: dynamic padding, length-grouped batches;
* HF Trainer: ``transformers.Trainer`` with ``train_sampling_strategy="group_by_length"``
  (the ``group_by_length`` of transformers 4) and the same collator, no logging, saving or
  evaluation;
* HF Trainer with our sampler: the Trainer drawing batches with our ``LengthGroupedBatches``
  (mega-batches of 50 batches; the Trainer's ``LengthGroupedSampler`` sorts within mega-batches
  of at most 50 and at least 4 batches, fewer on small data, so it pads more): what is left
  between it and ours is the loop itself;
* ours padded to ``--max-length``: the same loop, random batches padded to max_length.

samples/s is ``steps * batch size`` over the wall time of everything a run does after the
model is built: the optimizer, scheduler and loader (for the Trainer: ``Trainer(...)``) and
``train``, data loading and optimizer steps included (ours also copies the weights at its one
trivial evaluation). Each round runs every variant once, in a seeded random order, after one
untimed warmup run of each; every run starts from a fresh model under
``adaopt.training.seed_everything``, as the pipeline's runs do. The medians are reported, with
what each reports itself (ours: steps only; the Trainer: its ``train_samples_per_second``) and
the padded tokens per example each variant fed the model. Targets, as PASS/FAIL lines: ours
>= 1.0x the Trainer, and dynamic padding with length grouping >= 2.0x padding to max_length;
``--check`` makes a FAIL exit with code 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from datasets import Dataset, load_from_disk
from torch.utils.data import DataLoader, Sampler
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from adaopt.config import ModelConfig, SettingConfig, TrainConfig
from adaopt.data import MIRROR_ENV, prepare_task
from adaopt.modeling import load_model, load_tokenizer
from adaopt.protocol.settings import build_optimization
from adaopt.tasks import get_task
from adaopt.training import LengthGroupedBatches, make_loader, seed_everything, train

ROOT = Path(__file__).resolve().parents[1]
TASK = "sst2"
LR, WEIGHT_DECAY = 1e-4, 0.01
OURS, TRAINER, MAX_LENGTH = "ours", "HF Trainer", "ours, max_length"
TRAINER_OUR_SAMPLER = "HF Trainer, our sampler"
LABELS = {
    OURS: "ours: dynamic padding, length-grouped",
    TRAINER: "HF Trainer: dynamic padding, group_by_length",
    TRAINER_OUR_SAMPLER: "HF Trainer with our length-grouped sampler",
    MAX_LENGTH: "ours: padded to max_length",
}
TARGETS = (  # (variant, reference, smallest allowed ratio of samples/s, what is compared)
    (OURS, TRAINER, 1.0, "our loop"),
    (OURS, MAX_LENGTH, 2.0, "dynamic padding + length grouping"),
)


def default_mirror() -> Path:
    return Path(os.environ.get(MIRROR_ENV) or ROOT.parent / "shared" / "data")


def sst2_train(mirror: Path, out: Path, tokenizer: PreTrainedTokenizerBase, max_length: int,
               samples: int, selection_samples: int = 8, seed: int = 0) -> Dataset:
    """SST-2's training split as the pipeline prepares it (unpadded, with a ``length`` column);
    ``selection_samples`` are carved out first, so they decide which examples are drawn."""
    prepare_task(TASK, mirror, out, tokenizer, max_train_samples=samples, max_eval_samples=8,
                 selection_samples=selection_samples, max_length=max_length, seed=seed)
    return load_from_disk(str(out / get_task(TASK).name))["train"]


class TokenCounter:
    """A collator that counts what it hands the model: examples and token positions (padding
    included), which is what the forward and backward passes cost on a CPU."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, torch.Tensor]]) -> None:
        self.collate = collate
        self.examples = 0
        self.tokens = 0

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        self.examples += len(batch["input_ids"])
        self.tokens += batch["input_ids"].numel()
        return batch


@dataclass(frozen=True)
class Run:
    """One timed run: wall seconds, the samples/s the trainer itself reported, the padded tokens
    per example it fed the model."""

    seconds: float
    reported: float
    tokens_per_example: float


@dataclass(frozen=True)
class Bench:
    """What every run shares."""

    data: Dataset
    tokenizer: PreTrainedTokenizerBase
    steps: int
    batch_size: int
    max_length: int
    threads: int
    seed: int
    out: Path


def fresh_model(bench: Bench) -> PreTrainedModel:
    """The pipeline's start of a run: seeded, then the pretrained MiniLM with a new head."""
    torch.set_num_threads(bench.threads)
    seed_everything(bench.seed)
    return load_model(ModelConfig(), get_task(TASK))


def our_loader(bench: Bench, pad_to_max_length: bool) -> DataLoader:
    """``make_loader`` as the pipeline calls it, or random batches padded to max_length."""
    loader = make_loader(bench.data, bench.tokenizer, bench.batch_size, train=True,
                         group_by_length=not pad_to_max_length, seed=bench.seed)
    if pad_to_max_length:
        loader.collate_fn = DataCollatorWithPadding(bench.tokenizer, padding="max_length",
                                                    max_length=bench.max_length)
    loader.collate_fn = TokenCounter(loader.collate_fn)
    return loader


def run_ours(bench: Bench, pad_to_max_length: bool = False) -> Run:
    """Our loop with AdamW (fused), constant schedule, one trivial evaluation at the end."""
    model = fresh_model(bench)
    started = time.perf_counter()
    optimization = build_optimization(model, "adamw", {"lr": LR, "weight_decay": WEIGHT_DECAY},
                                      "traditional", SettingConfig(schedule="constant"),
                                      bench.steps)
    loader = our_loader(bench, pad_to_max_length)
    config = TrainConfig(batch_size=bench.batch_size, max_steps=bench.steps,
                         eval_every=bench.steps)
    result = train(model, optimization.optimizer, optimization.scheduler, loader,
                   lambda _: ({"accuracy": 0.0}, {}), config, metric="accuracy",
                   max_grad_norm=optimization.max_grad_norm, progress=False)
    seconds = time.perf_counter() - started
    counter = loader.collate_fn
    return Run(seconds, result.train_samples_per_s, counter.tokens / counter.examples)


def trainer_args(bench: Bench) -> TrainingArguments:
    """The Trainer configured like our loop: same optimizer, schedule, batches, no extras."""
    return TrainingArguments(
        output_dir=str(bench.out / "trainer"),
        per_device_train_batch_size=bench.batch_size,
        max_steps=bench.steps,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="constant",
        optim="adamw_torch_fused",
        max_grad_norm=0.0,  # no clipping; the Trainer still computes the norm, as ours does
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=bench.seed,
    )


class OurSamplerTrainer(Trainer):
    """The Trainer drawing its batches with our :class:`LengthGroupedBatches`: the padding is
    then ours too, so what differs from our loop is the loop itself."""

    def __init__(self, *args: Any, sampler: Sampler[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampler = sampler

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler[int]:
        return self.sampler


def run_trainer(bench: Bench, our_sampler: bool = False) -> Run:
    """``Trainer(...).train()``; its own figure, ``train_samples_per_second``, is kept too."""
    model = fresh_model(bench)
    counter = TokenCounter(DataCollatorWithPadding(bench.tokenizer, pad_to_multiple_of=8))
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"model": model, "args": trainer_args(bench),
                              "train_dataset": bench.data, "data_collator": counter}
    if our_sampler:
        generator = torch.Generator().manual_seed(bench.seed)
        sampler = LengthGroupedBatches(bench.data["length"], bench.batch_size, generator)
        trainer: Trainer = OurSamplerTrainer(sampler=sampler, **kwargs)
    else:
        trainer = Trainer(**kwargs)
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics to stdout
    output = trainer.train()
    seconds = time.perf_counter() - started
    return Run(seconds, output.metrics["train_samples_per_second"],
               counter.tokens / counter.examples)


VARIANTS: dict[str, Callable[[Bench], Run]] = {
    OURS: run_ours,
    TRAINER: run_trainer,
    TRAINER_OUR_SAMPLER: lambda bench: run_trainer(bench, our_sampler=True),
    MAX_LENGTH: lambda bench: run_ours(bench, pad_to_max_length=True),
}


def measure(bench: Bench, rounds: int, warmup_steps: int) -> dict[str, list[Run]]:
    """``rounds`` runs of every variant, each round in a fresh seeded random order, after one
    untimed short run of each (imports, kernel caches and the allocator warm up there)."""
    warm = Bench(**{**bench.__dict__, "steps": warmup_steps})
    for variant in VARIANTS.values():
        variant(warm)
    order = random.Random(bench.seed)
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name in order.sample(list(VARIANTS), len(VARIANTS)):
            runs[name].append(VARIANTS[name](bench))
    return runs


def quiet() -> None:
    """Load reports, progress bars and the Trainer's notices come with every run: not news."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    datasets.disable_progress_bars()


def report(bench: Bench, runs: dict[str, list[Run]], rounds: int) -> bool:
    """Print the table and the PASS/FAIL lines; True when every target is met."""
    samples = bench.steps * bench.batch_size
    rate = {name: samples / statistics.median(r.seconds for r in rs) for name, rs in runs.items()}
    lengths = bench.data["length"]
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{bench.threads} threads, {platform.processor() or platform.machine()}; SST-2 train: "
        f"{len(lengths)} examples of {statistics.mean(lengths):.1f} tokens on average "
        f"(max_length {bench.max_length}); batch {bench.batch_size}, {bench.steps} steps "
        f"({samples} samples) per run, {rounds} timed rounds"
    )
    print()
    print("| variant                                      | samples/s | min-max samples/s | "
          "reported samples/s | padded tokens/example | x ours |")
    print("|----------------------------------------------|----------:|-------------------|"
          "-------------------:|----------------------:|-------:|")
    for name, rs in runs.items():
        rates = [samples / r.seconds for r in rs]
        print(
            f"| {LABELS[name]:<44} | {rate[name]:9.1f} | {min(rates):7.1f} - {max(rates):7.1f} | "
            f"{statistics.median(r.reported for r in rs):18.1f} | "
            f"{statistics.median(r.tokens_per_example for r in rs):21.1f} | "
            f"{rate[name] / rate[OURS]:6.2f} |"
        )
    print()
    ok = True
    for name, ref, target, what in TARGETS:
        ratio = rate[name] / rate[ref]
        ok &= ratio >= target
        print(
            f"{'PASS' if ratio >= target else 'FAIL'}: {what} = {ratio:.2f}x {LABELS[ref]} "
            f"({rate[name]:.1f} vs {rate[ref]:.1f} samples/s; target >= {target:.2f}x)"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per run (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--batch-size", type=int, default=16, help="default 16 (cpu profile)")
    parser.add_argument("--max-length", type=int, default=64, help="default 64 (cpu profile)")
    parser.add_argument("--train-samples", type=int, default=512, help="SST-2 examples drawn")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--mirror", type=Path, default=default_mirror(), help="raw data mirror")
    parser.add_argument("--seed", type=int, default=0, help="seed of the runs and the order")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds, args.batch_size, args.train_samples, args.threads) < 1:
        parser.error("--steps, --rounds, --batch-size, --train-samples, --threads must be >= 1")
    quiet()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_tokenizer(ModelConfig())
        data = sst2_train(args.mirror, Path(tmp), tokenizer, args.max_length,
                          args.train_samples)
        bench = Bench(data, tokenizer, args.steps, args.batch_size, args.max_length,
                      args.threads, args.seed, Path(tmp))
        runs = measure(bench, args.rounds, warmup_steps=min(args.steps, 2))
        ok = report(bench, runs, args.rounds)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
