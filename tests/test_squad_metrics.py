"""SQuAD v1.1 metrics: hand-worked cases and a check against the official script's logic."""

from __future__ import annotations

import json
import os
import random
import re
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adaopt.metrics import (
    exact_match_score,
    f1_score,
    metric_max_over_ground_truths,
    normalize_answer,
    squad_metrics,
)

# --- the official evaluate-v1.1.py functions, kept verbatim in logic as a test oracle ---


def _official_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _official_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return _official_normalize_answer(prediction) == _official_normalize_answer(ground_truth)


def _official_metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], Any], prediction: str, ground_truths: list[str]
) -> Any:
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def _official_evaluate(dataset: list[Any], predictions: dict[str, str]) -> dict[str, float]:
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += _official_metric_max_over_ground_truths(
                    _official_exact_match_score, prediction, ground_truths
                )
                f1 += _official_metric_max_over_ground_truths(
                    _official_f1_score, prediction, ground_truths
                )
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# --- normalization ---


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Denver Broncos!", "denver broncos"),
        ("the Eiffel Tower", "eiffel tower"),
        ("An apple a day", "apple day"),
        ("theater and Athens", "theater and athens"),  # articles only as whole words
        ("the-end", "theend"),  # punctuation removed first, so no article left to drop
        ("  many \t spaces\n here ", "many spaces here"),
        ("Beyoncé", "beyoncé"),
        ("“Quoted”", "“quoted”"),  # curly quotes are not in string.punctuation
        ("24–10", "24–10"),  # nor is the en dash
        ("24-10", "2410"),  # the ASCII hyphen is
        ("Levi’s", "levi’s"),
        ("THE", ""),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized
    assert _official_normalize_answer(raw) == normalized


def test_punctuation_and_articles_match() -> None:
    assert exact_match_score("Denver Broncos!", "denver broncos") is True
    assert f1_score("Denver Broncos!", "denver broncos") == 1.0
    assert exact_match_score("the Eiffel Tower", "Eiffel Tower") is True
    assert f1_score("the Eiffel Tower", "Eiffel Tower") == 1.0


def test_unicode_as_official() -> None:
    assert exact_match_score("Beyoncé", "beyoncé") is True
    assert exact_match_score("BEYONCÉ", "beyoncé") is True
    # Curly quotes / en dash survive normalization, so these do NOT match ...
    assert exact_match_score("“Hello”", "hello") is False
    assert f1_score("“Hello”", "hello") == 0.0
    assert exact_match_score("24–10", "24-10") is False
    # ... and "levi’s stadium" vs "levis stadium" share only "stadium": P = R = 1/2.
    assert f1_score("Levi’s Stadium", "Levi's Stadium") == pytest.approx(0.5)


def test_partial_overlap_hand_computed() -> None:
    # [cat, sat] vs [cat, sat, down]: P = 1, R = 2/3, F1 = 2 * (2/3) / (5/3) = 0.8
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert exact_match_score("the cat sat", "a cat sat down") is False
    # Tokens count with multiplicity: [dog, dog] vs [dog] -> P = 1/2, R = 1, F1 = 2/3
    assert f1_score("dog dog", "dog") == pytest.approx(2 / 3)


def test_empty_prediction_scores_zero() -> None:
    assert exact_match_score("", "Denver Broncos") is False
    assert f1_score("", "Denver Broncos") == 0.0


def test_both_empty_after_normalization_follows_official() -> None:
    # Official: exact match compares "" == "" -> True, but F1 has no common tokens -> 0.
    assert exact_match_score("the", "a") is True
    assert f1_score("the", "a") == 0.0
    assert _official_f1_score("the", "a") == 0


def test_metric_max_over_ground_truths() -> None:
    golds = ["Denver Broncos", "the Broncos", "Broncos of Denver"]
    assert metric_max_over_ground_truths(exact_match_score, "Broncos", golds) is True
    assert metric_max_over_ground_truths(f1_score, "Denver", golds) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="gold answer"):
        metric_max_over_ground_truths(f1_score, "x", [])


# --- squad_metrics ---

REFS = {
    "q1": ["Denver Broncos", "The Broncos"],
    "q2": ["a cat sat down"],
    "q3": ["Eiffel Tower"],
    "q4": ["Paris"],
}
PREDS = {"q1": "the broncos.", "q2": "the cat sat", "q3": "", "q4": "London"}


def test_squad_metrics_scale_0_100() -> None:
    result = squad_metrics(PREDS, REFS)
    assert set(result) == {"exact_match", "f1"}
    assert result["exact_match"] == pytest.approx(100.0 * 1 / 4)
    assert result["f1"] == pytest.approx(100.0 * (1.0 + 0.8 + 0.0 + 0.0) / 4)
    perfect = squad_metrics({k: v[0] for k, v in REFS.items()}, REFS)
    assert perfect == {"exact_match": 100.0, "f1": 100.0}


def _as_dataset(refs: dict[str, list[str]]) -> list[dict[str, Any]]:
    qas = [
        {"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
        for qid, golds in refs.items()
    ]
    return [
        {"title": "A", "paragraphs": [{"context": "ctx", "qas": qas[:2]}]},
        {
            "title": "B",
            "paragraphs": [{"context": "ctx", "qas": qas[2:3]}, {"context": "ctx", "qas": qas[3:]}],
        },
    ]


def test_dataset_json_reference_form() -> None:
    dataset = _as_dataset(REFS)
    expected = squad_metrics(PREDS, REFS)
    assert squad_metrics(PREDS, dataset) == expected
    assert squad_metrics(PREDS, {"version": "1.1", "data": dataset}) == expected
    assert _official_evaluate(dataset, PREDS) == pytest.approx(expected)


def test_missing_prediction_counts_zero_and_warns() -> None:
    preds = {"q1": "Denver Broncos", "q2": "a cat sat down", "extra": "ignored"}
    with pytest.warns(UserWarning, match="2 of 4 questions have no prediction"):
        result = squad_metrics(preds, REFS)
    assert result == {"exact_match": 50.0, "f1": 50.0}


def test_bad_references() -> None:
    with pytest.raises(ValueError, match="no questions"):
        squad_metrics({}, {})
    with pytest.raises(TypeError, match="list of strings"):
        squad_metrics({"q": "x"}, {"q": "x"})


# --- the real dev set, when the shared data directory is present ---


def _dev_path() -> Path:
    root = os.environ.get("ADAOPT_DATA_MIRROR")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="module")
def dev_data() -> list[Any]:
    path = _dev_path()
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)["data"]


@pytest.mark.real_data
def test_dev_first_gold_answer_scores_100(dev_data: list[Any]) -> None:
    qas = [qa for article in dev_data for p in article["paragraphs"] for qa in p["qas"]][:400]
    preds = {qa["id"]: qa["answers"][0]["text"] for qa in qas}
    refs = {qa["id"]: [a["text"] for a in qa["answers"]] for qa in qas}
    assert squad_metrics(preds, refs) == {"exact_match": 100.0, "f1": 100.0}


@pytest.mark.real_data
def test_dev_matches_official_logic_on_perturbed_predictions(dev_data: list[Any]) -> None:
    """Whole dev set, with noisy predictions, missing ones included: identical numbers."""
    rng = random.Random(0)
    preds: dict[str, str] = {}
    for article in dev_data:
        for paragraph in article["paragraphs"]:
            words = paragraph["context"].split()
            for qa in paragraph["qas"]:
                gold = rng.choice(qa["answers"])["text"].split()
                kind = rng.randrange(5)
                if kind == 0:
                    continue  # unanswered
                if kind == 1:
                    preds[qa["id"]] = " ".join(gold[: max(1, len(gold) // 2)])
                elif kind == 2:
                    start = rng.randrange(len(words))
                    preds[qa["id"]] = " ".join(words[start : start + rng.randint(1, 6)])
                elif kind == 3:
                    preds[qa["id"]] = "The " + " ".join(gold).upper() + "!"
                else:
                    preds[qa["id"]] = " ".join(gold + words[:2])
    with pytest.warns(UserWarning, match="no prediction"):
        ours = squad_metrics(preds, dev_data)
    official = _official_evaluate(dev_data, preds)
    assert ours["exact_match"] == official["exact_match"]
    assert ours["f1"] == official["f1"]
    assert 0.0 < official["f1"] < 100.0
