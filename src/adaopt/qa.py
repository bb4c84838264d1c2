"""SQuAD v1.1 extractive QA: read the official JSON, build token windows, decode predictions.

The windowing follows Hugging Face's ``run_qa.py``: a context longer than ``max_length``
becomes several overlapping features (``doc_stride`` tokens shared between neighbours), and
training labels are token indices of the answer, or the CLS index where a window does not
hold the whole answer. Post-processing (:func:`postprocess_predictions`) is plain numpy and
knows nothing of the model, so it can be tested on hand-built logits; the model head meant
to produce those logits is ``transformers.AutoModelForQuestionAnswering``.

Preprocessing needs a fast tokenizer (offsets) that pads on the right and takes the
question as the first sequence, like the packaged all-MiniLM-L6-v2 (BERT) tokenizer.
Both ``prepare_*`` functions return more rows than they get, so with ``Dataset.map`` use
``batched=True, remove_columns=dataset.column_names``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from adaopt.io import write_json

__all__ = [
    "postprocess_predictions",
    "prepare_eval_features",
    "prepare_train_features",
    "read_squad",
    "write_predictions",
]

COLUMNS = ("id", "title", "context", "question", "answers")
_CONTEXT = 1  # sequence id of the context: the question is the first sequence of each pair


def _require(node: Any, key: str, where: str, path: Path) -> Any:
    if not isinstance(node, Mapping) or key not in node:
        raise ValueError(f"{path}: malformed SQuAD JSON, missing key {key!r} in {where}")
    return node[key]


def _answers(qa: Mapping[str, Any], context: str, where: str, path: Path) -> dict[str, list]:
    """Answer texts and starts, checked against the context.

    A start that does not point at its text would silently train on the wrong span, so it
    is an error here rather than a surprise in the labels.
    """
    answers: dict[str, list] = {"text": [], "answer_start": []}
    for a, answer in enumerate(_require(qa, "answers", where, path)):
        text = _require(answer, "text", f"{where} answer {a}", path)
        start = _require(answer, "answer_start", f"{where} answer {a}", path)
        if not isinstance(start, int) or context[start : start + len(text)] != text:
            raise ValueError(
                f"{path}: {where} answer {a}: answer_start {start!r} does not point at "
                f"{text!r} in the context"
            )
        answers["text"].append(text)
        answers["answer_start"].append(start)
    return answers


def read_squad(path: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per question of an official SQuAD v1.1 file (``.gz`` is decompressed).

    Columns ``id, title, context, question, answers`` with ``answers`` a dict of lists
    (``text``, ``answer_start``), the layout of the HF ``squad`` dataset, so the frame
    converts to a ``datasets.Dataset`` that the ``prepare_*`` functions can map over.
    Raises ValueError naming the file (and the missing key and where) for unreadable,
    non-JSON or structurally incomplete files.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        try:
            raw = json.load(fh)
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable SQuAD JSON file ({err})") from err
    articles = _require(raw, "data", "the top-level object", path)
    if not isinstance(articles, list):
        raise ValueError(f"{path}: malformed SQuAD JSON, 'data' is not a list")
    rows = []
    for i, article in enumerate(articles):
        title = _require(article, "title", f"article {i}", path)
        for j, paragraph in enumerate(_require(article, "paragraphs", f"article {i}", path)):
            where = f"article {i} paragraph {j}"
            context = _require(paragraph, "context", where, path)
            for k, qa in enumerate(_require(paragraph, "qas", where, path)):
                qa_where = f"{where} question {k}"
                rows.append(
                    {
                        "id": _require(qa, "id", qa_where, path),
                        "title": title,
                        "context": context,
                        "question": _require(qa, "question", qa_where, path),
                        "answers": _answers(qa, context, qa_where, path),
                    }
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _tokenize(
    examples: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> Any:
    """Question/context pairs cut into overlapping windows over the context only.

    Questions are left-stripped: leading whitespace can become tokens (e.g. byte-level
    BPE) and would eat into the window for nothing, as HF notes.
    """
    if not tokenizer.is_fast:
        raise ValueError("SQuAD preprocessing needs a fast tokenizer (for offset mappings)")
    if tokenizer.padding_side != "right":
        raise ValueError("SQuAD preprocessing expects a tokenizer that pads on the right")
    return tokenizer(
        [question.lstrip() for question in examples["question"]],
        list(examples["context"]),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def _model_inputs(encoded: Any) -> dict[str, list]:
    keys = ("input_ids", "token_type_ids", "attention_mask")
    return {key: encoded[key] for key in keys if key in encoded}


def prepare_train_features(
    examples: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Tokenized windows with ``start_positions``/``end_positions`` of the first gold answer.

    The start is the first context token ending after the answer's first character, the end
    the last context token starting before its end, so both stay on context tokens even
    where the answer meets whitespace. A window that does not hold the whole answer (or an
    example without answers) points both positions at the CLS token, HF's "no answer here".
    """
    encoded = _tokenize(examples, tokenizer, max_length, doc_stride)
    features = _model_inputs(encoded)
    starts: list[int] = []
    ends: list[int] = []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        cls_index = encoded["input_ids"][i].index(tokenizer.cls_token_id)
        answers = examples["answers"][encoded["overflow_to_sample_mapping"][i]]
        context = [k for k, s in enumerate(encoded.sequence_ids(i)) if s == _CONTEXT]
        start = end = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            if offsets[context[0]][0] <= start_char and offsets[context[-1]][1] >= end_char:
                inside = [k for k in context if offsets[k][1] > start_char]
                before_end = [k for k in context if offsets[k][0] < end_char]
                if inside and before_end and inside[0] <= before_end[-1]:
                    start, end = inside[0], before_end[-1]
        starts.append(start)
        ends.append(end)
    return features | {"start_positions": starts, "end_positions": ends}


def prepare_eval_features(
    examples: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Tokenized windows with ``example_id`` and an ``offset_mapping`` for decoding.

    Offsets of question, special and padding tokens are None, which is how
    :func:`postprocess_predictions` knows they cannot be part of an answer.
    """
    encoded = _tokenize(examples, tokenizer, max_length, doc_stride)
    example_ids = []
    offset_mapping = []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        example_ids.append(examples["id"][encoded["overflow_to_sample_mapping"][i]])
        sequence_ids = encoded.sequence_ids(i)
        offset_mapping.append(
            [
                list(offset) if sequence_ids[k] == _CONTEXT else None
                for k, offset in enumerate(offsets)
            ]
        )
    return _model_inputs(encoded) | {"example_id": example_ids, "offset_mapping": offset_mapping}


# Columns by name (a dict of lists, a Dataset, a DataFrame) or a list of row mappings.
Table = Mapping[str, Sequence[Any]] | Dataset | pd.DataFrame | Sequence[Mapping[str, Any]]


def _column(table: Any, name: str) -> list[Any]:
    """One column of any :data:`Table`, as a list."""
    if isinstance(table, pd.DataFrame):
        return table[name].tolist()
    if isinstance(table, Mapping | Dataset):
        return list(table[name])
    return [row[name] for row in table]


def _best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[Sequence[int] | None],
    n_best: int,
    max_answer_length: int,
) -> tuple[float, int, int] | None:
    """Highest start+end score of one feature as (score, start token, end token), or None.

    Only context tokens are candidates, and they are filtered before the ``n_best`` cut
    (HF cuts first), so question tokens with high logits cannot crowd out valid spans.
    """
    if len(start_logits) < len(offsets) or len(end_logits) < len(offsets):
        raise ValueError(
            f"a feature has {len(offsets)} tokens but only "
            f"{min(len(start_logits), len(end_logits))} logits"
        )
    context = np.array([k for k, offset in enumerate(offsets) if offset is not None], dtype=int)
    if context.size == 0:
        return None
    starts = context[np.argsort(-start_logits[context], kind="stable")[:n_best]]
    ends = context[np.argsort(-end_logits[context], kind="stable")[:n_best]]
    length = ends[None, :] - starts[:, None] + 1
    scores = start_logits[starts][:, None] + end_logits[ends][None, :]
    scores = np.where((length >= 1) & (length <= max_answer_length), scores, -np.inf)
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    if not np.isfinite(scores[i, j]):
        return None
    return float(scores[i, j]), int(starts[i]), int(ends[j])


def postprocess_predictions(
    examples: Table,
    features: Table,
    start_logits: np.ndarray | Sequence[Sequence[float]],
    end_logits: np.ndarray | Sequence[Sequence[float]],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Best answer text per example id, from the model's logits over all its features.

    ``examples`` need ``id`` and ``context``; ``features`` need ``example_id`` and
    ``offset_mapping`` (as :func:`prepare_eval_features` makes them); ``start_logits`` and
    ``end_logits`` hold one row per feature, in feature order, either a 2-D array (rows may be
    padded past a feature's length) or one 1-D row per feature. A span is valid when both
    ends are context tokens, start <= end and it spans at most ``max_answer_length`` tokens;
    the best valid span (start + end logit) over all of an example's features wins, and its
    text is cut from the original context by character offsets, so it keeps the original
    casing and spacing. An example with no valid span gets the empty string.
    """
    example_ids = _column(examples, "id")
    contexts = dict(zip(example_ids, _column(examples, "context"), strict=True))
    feature_ids = _column(features, "example_id")
    offset_mapping = _column(features, "offset_mapping")
    if len(start_logits) != len(feature_ids) or len(end_logits) != len(feature_ids):
        raise ValueError(
            f"{len(feature_ids)} features but {len(start_logits)} start and "
            f"{len(end_logits)} end logit rows"
        )
    best: dict[str, tuple[float, int, int]] = {}
    for example_id, offsets, starts, ends in zip(
        feature_ids, offset_mapping, start_logits, end_logits, strict=True
    ):
        if example_id not in contexts:
            raise ValueError(f"feature for unknown example id {example_id!r}")
        span = _best_span(
            np.asarray(starts, dtype=float),
            np.asarray(ends, dtype=float),
            offsets,
            n_best,
            max_answer_length,
        )
        if span is None:
            continue
        score, start, end = span
        if example_id not in best or score > best[example_id][0]:
            best[example_id] = (score, offsets[start][0], offsets[end][1])
    predictions = {}
    for example_id in example_ids:
        if example_id in best:
            _, start_char, end_char = best[example_id]
            predictions[example_id] = contexts[example_id][start_char:end_char]
        else:
            predictions[example_id] = ""
    return predictions


def write_predictions(path: str | os.PathLike[str], predictions: Mapping[str, str]) -> None:
    """Write ``{question id: answer text}``, the file the official evaluate script reads.

    Atomic (via :func:`adaopt.io.write_json`), so an interrupted run leaves no partial file.
    """
    bad = [qid for qid, text in predictions.items() if not isinstance(text, str)]
    if bad:
        raise TypeError(f"predictions must be answer strings; not for question {bad[0]!r}")
    write_json(path, dict(predictions))
