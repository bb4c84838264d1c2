"""The task table (GLUE, SQuAD v1.1 and a language-modeling corpus): the one place that knows
how each task looks on disk and on the hub.

Everything else (fetching, reading, cleaning, tokenizing, model heads, metric selection) is
driven by a :class:`TaskSpec` looked up here, in the spirit of Hugging Face's ``run_glue.py``:
adding a task means adding a row, never an ``if task == ...`` branch. Where the code paths of
tasks differ (the file format, the model head, how outputs become predictions), they are looked
up by ``TaskSpec.kind`` in small tables next to the code: ``classification`` and ``regression``
(GLUE: release TSVs, a sequence-level head), ``extractive_qa`` (SQuAD: the official JSON,
a span head over token windows, :mod:`adaopt.qa`) or ``language_modeling`` (a plain-text corpus,
a GPT-2 style decoder trained from scratch on next-token prediction, :mod:`adaopt.data.lm`).

Column and label names follow the HF ``nyu-mll/glue`` dataset, so a model trained from the
release TSVs and one trained from the hub see identical label ids.

Model-selection metric (``TaskSpec.metric``): Matthews correlation for CoLA and Pearson
correlation for STS-B (the GLUE leaderboard's primary numbers), accuracy for every other GLUE
task, F1 for SQuAD (exact match is reported next to it). For MRPC and QQP, GLUE also reports
F1; we select on accuracy because it does not depend on which class counts as positive; F1 can
still be reported next to it. The language model is selected on its validation loss (nats per
token; lower is better), perplexity is reported next to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

HUB_PATH = "nyu-mll/glue"
KINDS = ("classification", "regression", "extractive_qa", "language_modeling")
Kind = Literal["classification", "regression", "extractive_qa", "language_modeling"]
#: Metrics for which a smaller value is better (everything else: larger is better).
LOWER_IS_BETTER = frozenset({"loss", "perplexity"})
TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


@dataclass(frozen=True)
class TaskSpec:
    """How one task is laid out in its release files and in the HF hub dataset.

    ``kind`` selects the code path: ``classification``/``regression`` tasks are GLUE release
    TSVs, ``extractive_qa`` tasks official SQuAD v1.1 JSON files (read by
    :func:`adaopt.qa.read_squad`). The release files lie in ``<release_parent>/<release_dir>/``
    under the raw data directory; ``train_alternatives`` are other names (same folder) under
    which a data mirror may hold the train file, tried in order (``.gz`` is decompressed).

    TSV tasks only: ``release_columns`` is the full column order of the release TSV;
    ``release_text_columns`` and ``release_label_column`` name (in that file) the columns that
    hold ``text_columns`` and the label. ``release_labels[i]`` is how label id ``i``
    (``label_names[i]``) is spelled in the file; both are ``None`` for regression. For
    extractive QA, ``text_columns`` are the question and the context and ``label_names`` the
    two outputs of the span head per token (start and end). A language-modeling corpus is one
    plain-text file (train and dev name the same file: the splits are cut from it), fetched from
    ``hub_data_files`` by the ``datasets`` text builder when there is no mirror.
    """

    name: str
    release_dir: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metric: str
    kind: Kind = "classification"
    release_columns: tuple[str, ...] = ()
    release_text_columns: tuple[str, ...] = ()
    release_label_column: str | None = None
    release_labels: tuple[str, ...] | None = None
    release_index_column: str | None = None
    release_parent: str = "glue"
    has_header: bool = True
    dev_file: str = "dev.tsv"
    hub_dev_split: str = "validation"
    train_file: str = "train.tsv"
    train_alternatives: tuple[str, ...] = ()
    hub_path: str = HUB_PATH
    hub_config_is_name: bool = True  # GLUE: one hub config per task, named like the task
    hub_data_files: str | None = None  # a file the hub builder ``hub_path`` reads (plain text)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        labelled = self.kind in ("classification", "regression")
        if labelled and (self.kind == "regression") != (self.label_names is None):
            raise ValueError(f"task {self.name!r}: label_names must be None exactly for regression")

    @property
    def greater_is_better(self) -> bool:
        """Whether a larger value of the model-selection metric is better (not for a loss)."""
        return self.metric not in LOWER_IS_BETTER

    @property
    def hub_kwargs(self) -> dict[str, str]:
        """Keyword arguments of ``datasets.load_dataset`` for this task."""
        if self.hub_data_files is None:
            return {}
        return {"data_files": self.hub_data_files, "sample_by": "document"}

    @property
    def hub_config(self) -> str | None:
        return self.name if self.hub_config_is_name else None

    @property
    def hub_args(self) -> tuple[str, ...]:
        """Positional arguments of ``datasets.load_dataset`` for this task."""
        return (self.hub_path,) if self.hub_config is None else (self.hub_path, self.hub_config)

    def _release_path(self, file: str) -> str:
        return PurePosixPath(self.release_parent, self.release_dir, file).as_posix()

    @property
    def train_path(self) -> str:
        """Train file path relative to the raw data directory (release layout)."""
        return self._release_path(self.train_file)

    @property
    def dev_path(self) -> str:
        """Dev file path relative to the raw data directory (release layout)."""
        return self._release_path(self.dev_file)

    @property
    def train_alternative_paths(self) -> tuple[str, ...]:
        """Other paths (relative to a mirror) that may hold the train file."""
        return tuple(self._release_path(file) for file in self.train_alternatives)

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"

    @property
    def num_labels(self) -> int:
        """Outputs of the head: per example (classes, or 1 score) or per token (QA: 2)."""
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
        kind="regression",
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
    TaskSpec(
        name="squad",
        release_dir="squad",
        release_parent="",
        text_columns=("question", "context"),
        label_names=("start", "end"),
        metric="f1",
        kind="extractive_qa",
        train_file="train-v1.1.json",
        dev_file="dev-v1.1.json",
        # The real mirror holds a train file rebuilt from the SQuAD explorer pages (same JSON
        # format; synthetic ids, re-derived answer_start): see its PROVENANCE.md.
        train_alternatives=("train-v1.1.explorer-reconstruction.json.gz",),
        hub_path="rajpurkar/squad",
        hub_config_is_name=False,
    ),
    TaskSpec(
        name="lm_pretrain",
        release_dir="text",
        release_parent="",
        text_columns=("text",),
        label_names=None,
        metric="loss",
        kind="language_modeling",
        train_file="tinyshakespeare.txt",
        dev_file="tinyshakespeare.txt",
        hub_dev_split="train",
        hub_path="text",
        hub_config_is_name=False,
        hub_data_files=TINY_SHAKESPEARE_URL,
    ),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def normalize_task_name(name: str) -> str:
    """Fold case and drop '-', '_' and spaces, so that 'SST-2', 'sst_2' and 'sst2' compare equal.

    The one spelling rule for task names: the task table and the GLUE metric table both use it.
    """
    return re.sub(r"[-_\s]", "", name).lower()


_BY_KEY = {normalize_task_name(spec.name): spec for spec in _SPECS}


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look a task up by its HF config name or release directory name, in any case."""
    if isinstance(name, TaskSpec):
        return name
    spec = _BY_KEY.get(normalize_task_name(name))
    if spec is None:
        known = ", ".join(
            s.name if s.release_dir == s.name else f"{s.name} ({s.release_dir})" for s in _SPECS
        )
        raise ValueError(f"unknown task {name!r}; known tasks: {known}")
    return spec
