"""Turn release files into tokenized ``DatasetDict``s on disk, with a report of every step.

How a task's files become splits is looked up by ``TaskSpec.kind`` (:data:`BUILDERS`): GLUE
TSVs give one row per example; SQuAD JSON gives token windows (features) per question, with
the selection and dev questions themselves saved beside them for decoding and scoring; a
plain-text corpus gives blocks of tokens cut from contiguous splits (:mod:`adaopt.data.lm`). The
selection split (:mod:`adaopt.protocol.splits`) is carved out of the cleaned training data
before that is subsampled. Each report carries the task's trivial baseline on dev
(:data:`BASELINES`), which :func:`check_targets` holds the time-to-target lines above.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from adaopt import qa
from adaopt.config import LMDataConfig, ModelConfig
from adaopt.data.glue import clean, read_split, subsample
from adaopt.data.lm import VOCABULARY_FILE, build_corpus_splits
from adaopt.data.squad import clean_squad
from adaopt.metrics import glue_metrics, squad_metrics
from adaopt.protocol.splits import (
    DEV,
    SELECTION,
    TRAIN,
    carve_articles,
    carve_examples,
    examples_split,
)
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
    selection_samples: int
    seed: int
    max_length: int
    qa_max_length: int
    doc_stride: int
    lm: LMDataConfig = field(default_factory=LMDataConfig)


@dataclass(frozen=True)
class Built:
    """A task's splits, the rows per split after each step, the token settings used and the
    task's trivial baseline (:func:`trivial_baseline`).

    ``token_settings["max_length"]`` is the length limit the ``length`` columns are held to.
    """

    splits: DatasetDict
    rows: dict[str, dict[str, int]]
    token_settings: dict[str, int]
    baseline: dict[str, str | float]
    files: dict[str, str] = field(default_factory=dict)  # saved beside the splits: name -> text


def _majority_class(spec: TaskSpec, train: pd.DataFrame, dev: pd.DataFrame) -> float:
    """Always the training split's most frequent label (ties: the lowest id), scored on dev."""
    majority = train["label"].mode().iloc[0]
    labels = dev["label"].to_numpy()
    return glue_metrics(spec.name, np.full(len(labels), majority), labels)[spec.metric]


def _zero(spec: TaskSpec, train: pd.DataFrame, dev: pd.DataFrame) -> float:
    """0 whatever the data: a constant prediction does not correlate."""
    return 0.0


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def best_overlap_sentence(question: str, context: str) -> str:
    """The context sentence that shares the most distinct words with the question (the first
    such); sentences end at ``.``, ``!`` or ``?`` followed by white space."""
    asked = _words(question)
    sentences = _SENTENCE_END.split(context)
    return max(sentences, key=lambda sentence: len(asked & _words(sentence)))


def _overlap_sentence_f1(spec: TaskSpec, train: pd.DataFrame, dev: pd.DataFrame) -> float:
    """SQuAD F1 of answering every question with :func:`best_overlap_sentence` of its
    context: a reader that only matches words (an empty answer would score 0)."""
    predictions = {row.id: best_overlap_sentence(row.question, row.context)
                   for row in dev.itertuples(index=False)}
    references = {row.id: list(row.answers["text"]) for row in dev.itertuples(index=False)}
    return squad_metrics(predictions, references)[spec.metric]


@dataclass(frozen=True)
class Baseline:
    """What a trivial predictor does, and its model-selection metric given (spec, train, dev)."""

    rule: str
    score: Callable[[TaskSpec, pd.DataFrame, pd.DataFrame], float]


# The trivial baseline of a task's model-selection metric, by TaskSpec.kind.
BASELINES: dict[str, Baseline] = {
    "classification": Baseline("always predict the training split's majority class",
                               _majority_class),
    "regression": Baseline("predict one constant score (zero correlation)", _zero),
    "extractive_qa": Baseline("answer with the context sentence that shares the most words "
                              "with the question", _overlap_sentence_f1),
}


def trivial_baseline(
    task: str | TaskSpec, train: pd.DataFrame, dev: pd.DataFrame
) -> dict[str, str | float]:
    """``{"rule", "value"}``: the task's model-selection metric on ``dev`` of a predictor that
    learns nothing (or only the label frequencies of ``train``), on the metric's own scale.

    A time-to-target line at or below it would be reached without learning anything.
    """
    spec = get_task(task)
    baseline = BASELINES[spec.kind]
    return {"rule": baseline.rule, "value": float(baseline.score(spec, train, dev))}


def check_targets(reports: dict[str, dict], targets: dict[str, float]) -> None:
    """Raise ValueError (one line) for the first time-to-target line that is not strictly better
    than its task's trivial baseline (``reports[task]["baseline"]``, as :func:`prepare_task`
    reports it; above it, or below it for a loss): the time to reach it would measure nothing.
    Tasks without a target are not checked: they simply have no time to target.
    """
    for task, report in reports.items():
        if task not in targets:
            continue
        target, baseline = targets[task], report["baseline"]
        greater = get_task(task).greater_is_better
        if (target <= baseline["value"]) if greater else (target >= baseline["value"]):
            side = "above" if greater else "below"
            raise ValueError(
                f"evaluate.targets.{task}={target} is not {side} the task's trivial baseline "
                f"{baseline['value']:.4g} on dev ({baseline['rule']}); set a target {side} it"
            )


def _draw(
    spec: TaskSpec,
    train: pd.DataFrame,
    dev: pd.DataFrame,
    limits: Limits,
    carve: Callable[[pd.DataFrame, int, int, str], tuple[pd.DataFrame, pd.DataFrame]],
) -> dict[str, pd.DataFrame]:
    """The cleaned frames cut into splits: selection carved out of train first (so it does not
    depend on ``max_train_samples``), then the rest of train and dev subsampled."""
    selection, rest = carve(train, limits.selection_samples, limits.seed, spec.name)
    return {
        TRAIN: subsample(rest, limits.max_train_samples, limits.seed),
        SELECTION: selection,
        DEV: subsample(dev, limits.max_eval_samples, limits.seed),
    }


def _rows(counts: dict[str, dict[str, int]], drawn: dict[str, pd.DataFrame]
          ) -> dict[str, dict[str, int]]:
    """Rows per split: the cleaning counts, then how many went to selection and were drawn."""
    selected = len(drawn[SELECTION])
    return {
        TRAIN: {**counts["train"], "to_selection": selected, "subsampled": len(drawn[TRAIN])},
        SELECTION: {"carved": selected},
        DEV: {**counts["dev"], "subsampled": len(drawn[DEV])},
    }


def read_text(spec: TaskSpec, path: Path) -> pd.DataFrame:
    """A plain-text corpus as one row; a file that is empty or not UTF-8 raises ValueError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise ValueError(f"{path}: the corpus is empty")
    return pd.DataFrame({spec.text_columns[0]: [text]})


# How a task's release files are read (and checked), by TaskSpec.kind.
READERS: dict[str, Callable[[TaskSpec, Path], pd.DataFrame]] = {
    "classification": read_split,
    "regression": read_split,
    "extractive_qa": lambda spec, path: qa.read_squad(path),
    "language_modeling": read_text,
}


def read_release(spec: TaskSpec, raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and dev as read from the release files; a malformed file raises ``ValueError``."""
    reader = READERS[spec.kind]
    return reader(spec, raw_dir / spec.train_path), reader(spec, raw_dir / spec.dev_path)


def build_glue(spec: TaskSpec, raw_dir: Path, tokenizer: PreTrainedTokenizerBase,
               limits: Limits) -> Built:
    """Release TSVs: clean, carve selection, subsample, one tokenized row per example."""
    train, dev, counts = clean(*read_release(spec, raw_dir), spec)
    frames = _draw(spec, train, dev, limits, carve_examples)
    return Built(
        splits=DatasetDict({
            name: tokenize(frame, tokenizer, spec, limits.max_length)
            for name, frame in frames.items()
        }),
        rows=_rows(counts, frames),
        token_settings={"max_length": limits.max_length},
        baseline=trivial_baseline(spec, frames[TRAIN], frames[DEV]),
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


def _examples(frame: pd.DataFrame) -> Dataset:
    """The questions themselves (id, context, gold answers), which decoding and scoring need."""
    return Dataset.from_dict(
        {column: frame[column].tolist() for column in _QA_EXAMPLES}, features=_QA_EXAMPLES
    )


def build_squad(spec: TaskSpec, raw_dir: Path, tokenizer: PreTrainedTokenizerBase,
                limits: Limits) -> Built:
    """Official SQuAD JSON: clean, carve selection (whole articles), subsample questions, then
    cut them into windows.

    ``train`` features carry start/end token positions (the CLS token where a window misses
    the answer); ``selection`` and ``validation`` features are scored alike: each carries its
    question's ``example_id`` and the offsets of its context tokens, and
    ``selection_examples``/``validation_examples`` hold those questions.
    """
    train, dev, counts = clean_squad(*read_release(spec, raw_dir))
    drawn = _draw(spec, train, dev, limits, carve_articles)
    questions = {
        name: _without_long_questions(frame, tokenizer, limits) for name, frame in drawn.items()
    }
    window = (tokenizer, limits.qa_max_length, limits.doc_stride)
    splits = DatasetDict({TRAIN: qa_features(questions[TRAIN], qa.prepare_train_features,
                                             *window)})
    for name in (SELECTION, DEV):
        splits[name] = qa_features(questions[name], qa.prepare_eval_features, *window)
        splits[examples_split(name)] = _examples(questions[name])
    rows = _rows(counts, drawn)
    rows[SELECTION]["articles"] = int(drawn[SELECTION]["title"].nunique())
    for name, frame in questions.items():
        rows[name]["dropped_long_question"] = len(drawn[name]) - len(frame)
    return Built(
        splits=splits,
        rows=rows,
        token_settings={"max_length": limits.qa_max_length, "doc_stride": limits.doc_stride},
        baseline=trivial_baseline(spec, questions[TRAIN], questions[DEV]),
    )


def build_lm(spec: TaskSpec, raw_dir: Path, tokenizer: PreTrainedTokenizerBase,
             limits: Limits) -> Built:
    """A plain-text corpus (``data.lm.corpus``, else the task's release file): contiguous
    train / selection / dev text, a vocabulary fit on the training text, blocks of tokens.

    ``tokenizer`` (the fine-tuning model's) is not used: the model is trained from scratch on
    its own vocabulary, saved beside the splits. The sample limits do not apply.
    """
    path = Path(limits.lm.corpus) if limits.lm.corpus else raw_dir / spec.train_path
    text = read_text(spec, path)[spec.text_columns[0]].iloc[0]
    corpus = build_corpus_splits(text, limits.lm)
    return Built(
        splits=corpus.splits,
        rows=corpus.counts,
        token_settings={"max_length": limits.lm.context, "vocab_size": corpus.vocabulary.size},
        baseline={"rule": "a unigram model of the training tokens (nats per token)",
                  "value": corpus.baseline},
        files={VOCABULARY_FILE: corpus.vocabulary.to_json()},
    )


# How a task's release files become splits, by TaskSpec.kind.
BUILDERS: dict[str, Callable[[TaskSpec, Path, PreTrainedTokenizerBase, Limits], Built]] = {
    "classification": build_glue,
    "regression": build_glue,
    "extractive_qa": build_squad,
    "language_modeling": build_lm,
}


MODEL_FILE = "model.json"  # the model a pretrained model's data was tokenized for


def prepare_task(
    task: str | TaskSpec,
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    selection_samples: int,
    max_length: int,
    seed: int,
    qa_max_length: int = 384,
    doc_stride: int = 128,
    lm: LMDataConfig | None = None,
    model: ModelConfig | None = None,
) -> dict[str, Any]:
    """Read, clean, carve, subsample and tokenize one task; save it to ``out_dir/<task>``.

    The saved ``DatasetDict`` has ``train``, ``selection`` and ``validation`` splits
    (:mod:`adaopt.protocol.splits`; extractive QA: token windows, with the selection and dev
    questions in ``selection_examples`` and ``validation_examples``) and replaces any earlier
    one only once it is complete. Samples are counted in examples (questions), drawn with
    ``seed``: ``selection_samples`` (extractive QA: at least, in whole articles) are carved
    out of the cleaned training data, then ``max_train_samples`` of the rest and
    ``max_eval_samples`` of dev are drawn. ``max_length`` applies to the GLUE tasks,
    ``qa_max_length`` and ``doc_stride`` to extractive QA, ``lm`` to a language-modeling
    corpus (which the sample counts do not cut: :func:`build_lm`). ``model``, the model the
    tokenizer belongs to, is recorded beside a pretrained model's data (:data:`MODEL_FILE`): the
    folder's bytes then change with the model, so the stages that read it re-run, and a run
    checks that it fine-tunes that model. Returns a JSON-serializable
    report (row counts after each step, token length statistics per split with a ``length`` column,
    the trivial baseline on dev) for the caller to write next to it. Raises ValueError (one
    line) where the selection split would take all the training data.
    """
    spec = get_task(task)
    raw_dir = Path(raw_dir)
    limits = Limits(max_train_samples, max_eval_samples, selection_samples, seed, max_length,
                    qa_max_length, doc_stride, lm or LMDataConfig())
    built = BUILDERS[spec.kind](spec, raw_dir, tokenizer, limits)
    splits = built.splits

    target = Path(out_dir) / spec.name
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    splits.save_to_disk(str(tmp))
    files = dict(built.files)
    if model is not None and spec.kind != "language_modeling":
        files[MODEL_FILE] = json.dumps(model.model_dump(), indent=2, sort_keys=True) + "\n"
    for name, content in files.items():
        (tmp / name).write_text(content)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)

    limit = built.token_settings["max_length"]
    return {
        "task": spec.name,
        "metric": spec.metric,
        "num_labels": spec.num_labels,
        "files": {
            TRAIN: str(raw_dir / spec.train_path),
            DEV: str(raw_dir / spec.dev_path),
        },
        "output": str(target),
        **built.token_settings,
        "seed": seed,
        "max_samples": {TRAIN: max_train_samples, DEV: max_eval_samples},
        "selection_samples": selection_samples,
        "rows": built.rows,
        "baseline": built.baseline,
        "token_length": {
            name: _length_stats(np.asarray(split["length"]), limit)
            for name, split in splits.items()
            if "length" in split.column_names
        },
    }
