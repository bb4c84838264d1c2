"""Turn release files into tokenized ``DatasetDict``s on disk, with a report of every step.

How a task's files become splits is looked up by ``TaskSpec.kind`` (:data:`BUILDERS`): GLUE
TSVs give one row per example; SQuAD JSON gives token windows (features) per question, with
the dev questions themselves saved beside them for decoding and scoring.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from adaopt import qa
from adaopt.data.glue import clean, read_split, subsample
from adaopt.data.squad import clean_squad
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


@dataclass(frozen=True)
class Limits:
    """How much of a task to keep and how to cut it into tokens (see ``DataConfig``)."""

    max_train_samples: int | None
    max_eval_samples: int | None
    seed: int
    max_length: int
    qa_max_length: int
    doc_stride: int


@dataclass(frozen=True)
class Built:
    """A task's splits, the rows per split after each step, and the token settings used.

    ``token_settings["max_length"]`` is the length limit the ``length`` columns are held to.
    """

    splits: DatasetDict
    rows: dict[str, dict[str, int]]
    token_settings: dict[str, int]


# How a task's release files are read (and checked), by TaskSpec.kind.
READERS: dict[str, Callable[[TaskSpec, Path], pd.DataFrame]] = {
    "classification": read_split,
    "regression": read_split,
    "extractive_qa": lambda spec, path: qa.read_squad(path),
}


def read_release(spec: TaskSpec, raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and dev as read from the release files; a malformed file raises ``ValueError``."""
    reader = READERS[spec.kind]
    return reader(spec, raw_dir / spec.train_path), reader(spec, raw_dir / spec.dev_path)


def build_glue(spec: TaskSpec, raw_dir: Path, tokenizer: PreTrainedTokenizerBase,
               limits: Limits) -> Built:
    """Release TSVs: clean, subsample, one tokenized row per example."""
    train, dev, counts = clean(*read_release(spec, raw_dir), spec)
    frames = {
        "train": subsample(train, limits.max_train_samples, limits.seed),
        "validation": subsample(dev, limits.max_eval_samples, limits.seed),
    }
    rows = {"train": counts["train"], "validation": counts["dev"]}
    return Built(
        splits=DatasetDict({
            name: tokenize(frame, tokenizer, spec, limits.max_length)
            for name, frame in frames.items()
        }),
        rows={name: {**rows[name], "subsampled": len(frame)} for name, frame in frames.items()},
        token_settings={"max_length": limits.max_length},
    )


_QA_FEATURE_TYPES = {
    "input_ids": List(Value("int64")),
    "token_type_ids": List(Value("int64")),
    "attention_mask": List(Value("int64")),
    "start_positions": Value("int64"),
    "end_positions": Value("int64"),
    "example_id": Value("string"),
    "offset_mapping": List(List(Value("int64"))),  # None where a token is not context
    "length": Value("int64"),
}
_QA_EXAMPLES = Features({
    "id": Value("string"),
    "context": Value("string"),
    "answers": {"text": List(Value("string")), "answer_start": List(Value("int64"))},
})
_CHUNK = 1000  # examples tokenized at a time: the full train set as Python lists is gigabytes


def qa_features(
    frame: pd.DataFrame,
    prepare: Callable[..., dict[str, list]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> Dataset:
    """Windows of ``frame``'s questions by ``prepare`` (a :mod:`adaopt.qa` function), plus
    a ``length`` column (tokens per window) for length grouping and the report."""
    parts = []
    for begin in range(0, len(frame), _CHUNK):
        encoded = prepare(
            frame.iloc[begin : begin + _CHUNK].to_dict("list"), tokenizer, max_length, doc_stride
        )
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        features = Features({key: _QA_FEATURE_TYPES[key] for key in encoded})
        parts.append(Dataset.from_dict(dict(encoded), features=features))
    if not parts:
        raise ValueError("no questions left to tokenize")
    return concatenate_datasets(parts)


def _without_long_questions(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase,
                            limits: Limits) -> pd.DataFrame:
    """Drop questions so long that no context window longer than the stride fits beside them.

    The tokenizer cannot cut such a question into windows at all; a handful of SQuAD train
    questions (up to 61 tokens) hit this with very short windows (the smoke profile's).
    """
    if frame.empty:
        return frame
    questions = tokenizer(frame["question"].str.lstrip().tolist(), add_special_tokens=False)
    room = limits.qa_max_length - 3 - limits.doc_stride  # [CLS] question [SEP] context [SEP]
    fits = [len(ids) < room for ids in questions["input_ids"]]
    return frame[fits].reset_index(drop=True)


def build_squad(spec: TaskSpec, raw_dir: Path, tokenizer: PreTrainedTokenizerBase,
                limits: Limits) -> Built:
    """Official SQuAD JSON: clean and subsample questions, then cut them into windows.

    ``train`` features carry start/end token positions (the CLS token where a window misses
    the answer), ``validation`` features their question's ``example_id`` and the offsets of
    their context tokens; ``validation_examples`` holds those questions (id, context, gold
    answers), which decoding and scoring need.
    """
    train, dev, counts = clean_squad(*read_release(spec, raw_dir))
    train = subsample(train, limits.max_train_samples, limits.seed)
    dev = subsample(dev, limits.max_eval_samples, limits.seed)
    subsampled = {"train": len(train), "dev": len(dev)}
    train, dev = (_without_long_questions(frame, tokenizer, limits) for frame in (train, dev))
    for split, frame in (("train", train), ("dev", dev)):
        counts[split]["dropped_long_question"] = subsampled[split] - len(frame)
    window = (tokenizer, limits.qa_max_length, limits.doc_stride)
    splits = DatasetDict({
        "train": qa_features(train, qa.prepare_train_features, *window),
        "validation": qa_features(dev, qa.prepare_eval_features, *window),
        "validation_examples": Dataset.from_dict(
            {column: dev[column].tolist() for column in _QA_EXAMPLES}, features=_QA_EXAMPLES
        ),
    })
    return Built(
        splits=splits,
        rows={
            "train": {**counts["train"], "subsampled": subsampled["train"]},
            "validation": {**counts["dev"], "subsampled": subsampled["dev"]},
        },
        token_settings={"max_length": limits.qa_max_length, "doc_stride": limits.doc_stride},
    )


# How a task's release files become splits, by TaskSpec.kind.
BUILDERS: dict[str, Callable[[TaskSpec, Path, PreTrainedTokenizerBase, Limits], Built]] = {
    "classification": build_glue,
    "regression": build_glue,
    "extractive_qa": build_squad,
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
    qa_max_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, Any]:
    """Read, clean, subsample and tokenize one task; save it to ``out_dir/<task>``.

    The saved ``DatasetDict`` has ``train`` and ``validation`` splits (extractive QA: token
    windows, and ``validation_examples``, the dev questions) and replaces any earlier one
    only once it is complete. Samples are counted in examples (questions), drawn with
    ``seed``. ``max_length`` applies to the GLUE tasks, ``qa_max_length`` and ``doc_stride``
    to extractive QA. Returns a JSON-serializable report (row counts after each step, token
    length statistics per split with a ``length`` column) for the caller to write next to it.
    """
    spec = get_task(task)
    raw_dir = Path(raw_dir)
    limits = Limits(max_train_samples, max_eval_samples, seed, max_length, qa_max_length,
                    doc_stride)
    built = BUILDERS[spec.kind](spec, raw_dir, tokenizer, limits)
    splits = built.splits

    target = Path(out_dir) / spec.name
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    splits.save_to_disk(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)

    limit = built.token_settings["max_length"]
    return {
        "task": spec.name,
        "metric": spec.metric,
        "num_labels": spec.num_labels,
        "files": {
            "train": str(raw_dir / spec.train_path),
            "validation": str(raw_dir / spec.dev_path),
        },
        "output": str(target),
        **built.token_settings,
        "seed": seed,
        "max_samples": {"train": max_train_samples, "validation": max_eval_samples},
        "rows": built.rows,
        "token_length": {
            name: _length_stats(np.asarray(split["length"]), limit)
            for name, split in splits.items()
            if "length" in split.column_names
        },
    }
