"""The GLUE task table: the one place that knows how each task looks on disk and on the hub.

Everything else (fetching, reading, cleaning, tokenizing, model heads, metric selection) is
driven by a :class:`TaskSpec` looked up here, in the spirit of Hugging Face's ``run_glue.py``:
adding a task means adding a row, never an ``if task == ...`` branch.

Column and label names follow the HF ``nyu-mll/glue`` dataset, so a model trained from the
release TSVs and one trained from the hub see identical label ids.

Model-selection metric (``TaskSpec.metric``): Matthews correlation for CoLA and Pearson
correlation for STS-B (the GLUE leaderboard's primary numbers), accuracy for every other task.
For MRPC and QQP, GLUE also reports F1; we select on accuracy because it does not depend on
which class counts as positive; F1 can still be reported next to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HUB_PATH = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """How one GLUE task is laid out in the release TSVs and in the HF hub dataset.

    ``release_columns`` is the full column order of the release TSV; ``release_text_columns``
    and ``release_label_column`` name (in that file) the columns that hold ``text_columns``
    and the label. ``release_labels[i]`` is how label id ``i`` (``label_names[i]``) is spelled
    in the file; both are ``None`` for regression.
    """

    name: str
    release_dir: str
    text_columns: tuple[str, ...]
    release_columns: tuple[str, ...]
    release_text_columns: tuple[str, ...]
    release_label_column: str
    label_names: tuple[str, ...] | None
    release_labels: tuple[str, ...] | None
    metric: str
    release_index_column: str | None = None
    has_header: bool = True
    dev_file: str = "dev.tsv"
    hub_dev_split: str = "validation"
    train_file: str = "train.tsv"
    hub_path: str = HUB_PATH

    @property
    def hub_config(self) -> str:
        return self.name

    @property
    def train_path(self) -> str:
        """Train file path relative to the raw data directory (release layout)."""
        return f"glue/{self.release_dir}/{self.train_file}"

    @property
    def dev_path(self) -> str:
        """Dev file path relative to the raw data directory (release layout)."""
        return f"glue/{self.release_dir}/{self.dev_file}"

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)


_BINARY_IDS = ("0", "1")
_MNLI_COLUMNS = (
    "index", "promptID", "pairID", "genre",
    "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
    "sentence1", "sentence2", "label1", "gold_label",
)  # fmt: skip
_STSB_COLUMNS = (
    "index", "genre", "filename", "year", "old_index", "source1", "source2",
    "sentence1", "sentence2", "score",
)  # fmt: skip

_SPECS = (
    TaskSpec(
        name="cola",
        release_dir="CoLA",
        text_columns=("sentence",),
        release_columns=("source", "label", "original_label", "sentence"),
        release_text_columns=("sentence",),
        release_label_column="label",
        label_names=("unacceptable", "acceptable"),
        release_labels=_BINARY_IDS,
        metric="matthews_correlation",
        has_header=False,
    ),
    TaskSpec(
        name="sst2",
        release_dir="SST-2",
        text_columns=("sentence",),
        release_columns=("sentence", "label"),
        release_text_columns=("sentence",),
        release_label_column="label",
        label_names=("negative", "positive"),
        release_labels=_BINARY_IDS,
        metric="accuracy",
    ),
    TaskSpec(
        name="mrpc",
        release_dir="MRPC",
        text_columns=("sentence1", "sentence2"),
        release_columns=("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        release_text_columns=("#1 String", "#2 String"),
        release_label_column="Quality",
        label_names=("not_equivalent", "equivalent"),
        release_labels=_BINARY_IDS,
        metric="accuracy",
    ),
    TaskSpec(
        name="qqp",
        release_dir="QQP",
        text_columns=("question1", "question2"),
        release_columns=("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
        release_text_columns=("question1", "question2"),
        release_label_column="is_duplicate",
        label_names=("not_duplicate", "duplicate"),
        release_labels=_BINARY_IDS,
        metric="accuracy",
        release_index_column="id",
    ),
    TaskSpec(
        name="stsb",
        release_dir="STS-B",
        text_columns=("sentence1", "sentence2"),
        release_columns=_STSB_COLUMNS,
        release_text_columns=("sentence1", "sentence2"),
        release_label_column="score",
        label_names=None,
        release_labels=None,
        metric="pearson",
        release_index_column="index",
    ),
    TaskSpec(
        name="mnli",
        release_dir="MNLI",
        text_columns=("premise", "hypothesis"),
        release_columns=_MNLI_COLUMNS,
        release_text_columns=("sentence1", "sentence2"),
        release_label_column="gold_label",
        label_names=("entailment", "neutral", "contradiction"),
        release_labels=("entailment", "neutral", "contradiction"),
        metric="accuracy",
        release_index_column="index",
        dev_file="dev_matched.tsv",
        hub_dev_split="validation_matched",
    ),
    TaskSpec(
        name="qnli",
        release_dir="QNLI",
        text_columns=("question", "sentence"),
        release_columns=("index", "question", "sentence", "label"),
        release_text_columns=("question", "sentence"),
        release_label_column="label",
        label_names=("entailment", "not_entailment"),
        release_labels=("entailment", "not_entailment"),
        metric="accuracy",
        release_index_column="index",
    ),
    TaskSpec(
        name="rte",
        release_dir="RTE",
        text_columns=("sentence1", "sentence2"),
        release_columns=("index", "sentence1", "sentence2", "label"),
        release_text_columns=("sentence1", "sentence2"),
        release_label_column="label",
        label_names=("entailment", "not_entailment"),
        release_labels=("entailment", "not_entailment"),
        metric="accuracy",
        release_index_column="index",
    ),
    TaskSpec(
        name="wnli",
        release_dir="WNLI",
        text_columns=("sentence1", "sentence2"),
        release_columns=("index", "sentence1", "sentence2", "label"),
        release_text_columns=("sentence1", "sentence2"),
        release_label_column="label",
        label_names=("not_entailment", "entailment"),
        release_labels=_BINARY_IDS,
        metric="accuracy",
        release_index_column="index",
    ),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def _normalize(name: str) -> str:
    """Fold case and drop '-'/'_' so 'SST-2', 'sst_2' and 'STS-B' find their task."""
    return re.sub(r"[-_\s]", "", name).lower()


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look a task up by its HF config name or release directory name, in any case."""
    if isinstance(name, TaskSpec):
        return name
    spec = TASKS.get(_normalize(name))
    if spec is None:
        known = ", ".join(f"{s.name} ({s.release_dir})" for s in _SPECS)
        raise ValueError(f"unknown GLUE task {name!r}; known tasks: {known}")
    return spec
