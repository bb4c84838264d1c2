"""How much a data-parallel step's slowest shard shrinks when shards are balanced by length.

A step waits for its slowest process, and each process pads its shard to its own longest
example (to a multiple of ``PAD_TO``, as the collator does). For every prepared fine-tuning
task, one epoch of the training loader's full global batches (seed 0, the profile's batch size,
with and without length grouping) is split over N = 2, 4, 8 processes two ways: equal slices
by position (the split before balancing) and :class:`adaopt.training.ShardedBatches` with the
examples' lengths (balanced). It counts, summed over the epoch's steps, the padded tokens of
each step's largest shard: the work the step waits for. No timing: the counts are exact and
the same on every machine. Writes ``shard_balance.md`` and ``shard_balance.json`` to
``--out-dir``. Usage::

    python benchmarks/shard_balance.py --prepared data/prepared [--task sst2 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from datasets import load_from_disk
from torch.utils.data import BatchSampler, RandomSampler

from adaopt import io
from adaopt.config import load_params
from adaopt.protocol.splits import TRAIN
from adaopt.training import PAD_TO, LengthGroupedBatches, ShardedBatches

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = (2, 4, 8)


def padded(lengths: list[int], shard: list[int]) -> int:
    longest = max(lengths[i] for i in shard)
    return len(shard) * -(-longest // PAD_TO) * PAD_TO


def largest_shards(lengths: list[int], batch_size: int, grouped: bool, nproc: int,
                   balanced: bool) -> int:
    """The epoch's sum over steps of the largest shard's padded tokens."""
    def batches() -> BatchSampler:
        generator = torch.Generator().manual_seed(0)
        order = (LengthGroupedBatches(lengths, batch_size, generator) if grouped
                 else RandomSampler(range(len(lengths)), generator=generator))
        return BatchSampler(order, batch_size, drop_last=True)  # full batches only

    shards = [ShardedBatches(batches(), rank, nproc, lengths if balanced else None, PAD_TO)
              for rank in range(nproc)]
    return sum(max(padded(lengths, shard) for shard in step)
               for step in zip(*shards, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--task", dest="tasks", action="append",
                        help="a prepared task (repeatable; default: every one the profile has)")
    args = parser.parse_args()
    params = load_params(args.params)
    rows = []
    for task in args.tasks or params.prepared_tasks:
        data = load_from_disk(str(args.prepared / task))[TRAIN]
        if "length" not in data.column_names:
            continue  # a language model's blocks: one length, nothing to balance
        lengths, config = list(data["length"]), params.train_for(task)
        for grouped in (config.group_by_length, not config.group_by_length):
            for nproc in PROCESSES:
                by_position, balanced = (largest_shards(lengths, config.batch_size, grouped,
                                                        nproc, flag) for flag in (False, True))
                rows.append({"task": task, "batch_size": config.batch_size,
                             "group_by_length": grouped, "nproc": nproc,
                             "by_position": by_position, "balanced": balanced,
                             "ratio": round(balanced / by_position, 3)})
    table = pd.DataFrame(rows)
    io.write_json(args.out_dir / "shard_balance.json", {"params": str(args.params),
                                                        "rows": rows})
    io.write_text(args.out_dir / "shard_balance.md", "\n".join([
        "# Largest shard per step: balanced by length against equal slices by position",
        "",
        f"`python benchmarks/shard_balance.py` ({args.params.name}, one epoch, seed 0). Padded "
        "tokens of each step's largest shard, summed over the epoch; `ratio` = balanced / by "
        "position (below 1: the step waits for less). Exact counts, no timing.",
        "",
        table.to_markdown(index=False),
        ""]))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
