"""SQuAD v1.1 exact match and F1, replicating the official ``evaluate-v1.1.py``.

The functions below follow the official script line for line (same normalization order,
same regex, same token-level Counter overlap, same averaging), so scores are comparable
to published SQuAD numbers. Deviations are only in the plumbing: the references may be
given as a plain ``{id: [gold answers]}`` mapping, unanswered questions trigger one
``UserWarning`` instead of a stderr line each, and malformed inputs raise
``ValueError``/``TypeError`` instead of failing obscurely (e.g. dividing by zero).

Scale: :func:`squad_metrics` reports both numbers on a 0-100 scale, as the official
script does (unlike the GLUE metrics, which are fractions).
"""

from __future__ import annotations

import re
import string
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "exact_match_score",
    "f1_score",
    "metric_max_over_ground_truths",
    "normalize_answer",
    "squad_metrics",
]

_PUNCTUATION = frozenset(string.punctuation)  # ASCII only: curly quotes, dashes are kept
_ARTICLES = re.compile(r"\b(a|an|the)\b")  # str pattern, so \b is Unicode-aware, as official

T = TypeVar("T", bool, float)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles a/an/the, collapse whitespace.

    Order matters and matches the official script: punctuation goes before articles, so
    "the-end" becomes "theend" and keeps its "the".
    """
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """Whether the two answers are identical after :func:`normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between normalized answers (bag-of-tokens overlap).

    As in the official script, no common token gives 0 — including when both answers
    normalize to nothing (e.g. "the" vs "a"), even though their exact match is true.
    """
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], T], prediction: str, ground_truths: Iterable[str]
) -> T:
    """Best score of ``prediction`` against any gold answer (SQuAD credits the closest)."""
    scores = [metric_fn(prediction, ground_truth) for ground_truth in ground_truths]
    if not scores:
        raise ValueError("a question needs at least one gold answer")
    return max(scores)


def _gold_answers(references: Mapping[str, Any] | Sequence[Any]) -> list[tuple[str, list[str]]]:
    """Flatten either reference form into ``[(question id, [gold answer texts]), ...]``.

    A list, not a dict, so that a repeated id in a dataset file counts once per
    occurrence, exactly as the official loop over qas counts it.

    Accepted: a mapping id -> list of answer strings; the official dataset's ``"data"``
    list (articles -> paragraphs -> qas -> answers); or the whole dataset JSON object
    (a mapping whose ``"data"`` entry is that list).
    """
    gold: list[tuple[str, list[str]]] = []
    if isinstance(references, Mapping):
        data = references.get("data")
        if isinstance(data, list) and (not data or isinstance(data[0], Mapping)):
            references = data  # the whole dataset JSON object
        else:
            for qid, answers in references.items():
                if isinstance(answers, str):
                    raise TypeError(
                        f"gold answers for question {qid!r} must be a list of strings, "
                        f"got a single string"
                    )
                gold.append((qid, list(answers)))
            return gold
    for article in references:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                gold.append((qa["id"], [answer["text"] for answer in qa["answers"]]))
    return gold


def squad_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Any] | Sequence[Any]
) -> dict[str, float]:
    """Exact match and F1 (0-100), averaged over every question in ``references``.

    A question without a prediction scores 0 on both (the official script prints a line
    per such question; we emit one warning listing them). Predictions for ids that are
    not in ``references`` are ignored, as officially.
    """
    gold = _gold_answers(references)
    if not gold:
        raise ValueError("references contain no questions")
    exact_match: float = 0
    f1: float = 0
    missing: list[str] = []
    for qid, ground_truths in gold:
        if qid not in predictions:
            missing.append(qid)
            continue
        prediction = predictions[qid]
        exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
        f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.warn(
            f"{len(missing)} of {len(gold)} questions have no prediction and score 0: {shown}",
            stacklevel=2,
        )
    total = len(gold)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
