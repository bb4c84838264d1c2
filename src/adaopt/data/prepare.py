"""Turn release files into tokenized ``DatasetDict``s on disk, with a report of every step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, List, Value
from transformers import PreTrainedTokenizerBase

from adaopt.data.glue import clean, read_split, subsample
from adaopt.tasks import TaskSpec, get_task


def tokenize(
    df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, task: str | TaskSpec, max_length: int
) -> Dataset:
    """Tokenize the task's text columns (as a pair where there are two), truncating, unpadded.

    Padding is left to the collator so each batch pads only to its own longest example;
    the ``length`` column lets the trainer group examples of similar length.
    """
    spec = get_task(task)
    encoded = tokenizer(
        *(df[column].tolist() for column in spec.text_columns),
        truncation=True,
        max_length=max_length,
    )
    token_columns = [
        key for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded
    ]
    label_type = "float32" if spec.is_regression else "int64"
    features = Features(
        {key: List(Value("int64")) for key in token_columns}
        | {"labels": Value(label_type), "length": Value("int64")}
    )
    return Dataset.from_dict(
        {key: encoded[key] for key in token_columns}
        | {
            "labels": df["label"].to_numpy(dtype=label_type),
            "length": [len(ids) for ids in encoded["input_ids"]],
        },
        features=features,
    )


def _length_stats(lengths: np.ndarray, max_length: int) -> dict[str, float | int]:
    if lengths.size == 0:
        return {"count": 0}
    return {
        "count": int(lengths.size),
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 2),
        "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        # Examples that reached max_length were (almost always) truncated.
        "at_max_length": int((lengths >= max_length).sum()),
    }


def prepare_task(
    task: str | TaskSpec,
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    max_length: int,
    seed: int,
) -> dict[str, Any]:
    """Read, clean, subsample and tokenize one task; save it to ``out_dir/<task>``.

    The saved ``DatasetDict`` has ``train`` and ``validation`` splits and replaces any
    earlier one only once it is complete. Returns a JSON-serializable report (row counts
    after each step, token length statistics) for the caller to write next to it.
    """
    spec = get_task(task)
    raw_dir = Path(raw_dir)
    train, dev, counts = clean(
        read_split(spec, raw_dir / spec.train_path), read_split(spec, raw_dir / spec.dev_path), spec
    )
    frames = {
        "train": subsample(train, max_train_samples, seed),
        "validation": subsample(dev, max_eval_samples, seed),
    }
    splits = DatasetDict(
        {name: tokenize(frame, tokenizer, spec, max_length) for name, frame in frames.items()}
    )

    target = Path(out_dir) / spec.name
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    splits.save_to_disk(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)

    rows = {"train": counts["train"], "validation": counts["dev"]}
    return {
        "task": spec.name,
        "metric": spec.metric,
        "num_labels": spec.num_labels,
        "files": {
            "train": str(raw_dir / spec.train_path),
            "validation": str(raw_dir / spec.dev_path),
        },
        "output": str(target),
        "max_length": max_length,
        "seed": seed,
        "max_samples": {"train": max_train_samples, "validation": max_eval_samples},
        "rows": {name: {**rows[name], "subsampled": len(splits[name])} for name in splits},
        "token_length": {
            name: _length_stats(np.asarray(splits[name]["length"]), max_length) for name in splits
        },
    }
