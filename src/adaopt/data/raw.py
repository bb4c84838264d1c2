"""Fetch raw task data into the original release layout.

The layout under ``raw_dir`` is the one the GLUE download script and the SQuAD site produce
(``glue/<ReleaseDir>/train.tsv`` + the task's dev file, ``squad/{train,dev}-v1.1.json``), so
that a local mirror, the hub and a hand-downloaded copy all feed the same readers.
The source is a mirror directory with that layout when one is given (argument or the
``ADAOPT_DATA_MIRROR`` environment variable), otherwise the Hugging Face hub.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import datasets
import pandas as pd

from adaopt.tasks import TaskSpec, get_task

MIRROR_ENV = "ADAOPT_DATA_MIRROR"
SQUAD = "squad"
SQUAD_TRAIN = get_task(SQUAD).train_path
SQUAD_DEV = get_task(SQUAD).dev_path
# The real mirror holds a train file rebuilt from the SQuAD explorer pages (same JSON format).
(SQUAD_TRAIN_RECONSTRUCTION,) = get_task(SQUAD).train_alternative_paths
MIRROR_LAYOUT = (
    f"glue/<ReleaseDir>/train.tsv and dev.tsv (MNLI: dev_matched.tsv), {SQUAD_DEV}, "
    f"{SQUAD_TRAIN} or {SQUAD_TRAIN_RECONSTRUCTION}, {get_task('lm_pretrain').train_path}"
)


class MirrorLayoutError(FileNotFoundError):
    """A file the release layout needs is absent from the data mirror."""


@dataclass(frozen=True)
class RawFile:
    """One file of the release layout: where it goes and where it comes from."""

    path: str  # relative to raw_dir, and the preferred path in a mirror
    hub_split: str
    mirror_alternatives: tuple[str, ...] = ()  # tried in order; ``.gz`` is decompressed


@dataclass(frozen=True)
class RawSource:
    """The hub dataset behind a task and how one of its splits becomes a release file."""

    hub_args: tuple[str, ...]
    files: tuple[RawFile, ...]
    render: Callable[[datasets.Dataset], str] = field(repr=False)
    hub_kwargs: dict[str, str] = field(default_factory=dict)


def raw_source(name: str) -> RawSource:
    """The raw files for task ``name`` (any alias), as its table entry describes them."""
    spec = get_task(name)
    train = RawFile(spec.train_path, "train", spec.train_alternative_paths)
    dev = RawFile(spec.dev_path, spec.hub_dev_split)
    return RawSource(
        hub_args=spec.hub_args,
        files=(train,) if dev.path == train.path else (train, dev),  # a corpus: one file
        render=partial(RENDERERS[spec.kind], spec),
        hub_kwargs=spec.hub_kwargs,
    )


def fetch_raw(
    task_names: Iterable[str],
    raw_dir: str | os.PathLike[str],
    mirror: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Fill ``raw_dir`` with the release files of the given tasks; return the paths written.

    With a mirror every source file is located before anything is copied, so a missing
    file stops the run with one line (:class:`MirrorLayoutError`) and leaves no partial
    layout behind. Every file is written atomically.
    """
    raw_dir = Path(raw_dir)
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    sources = [raw_source(name) for name in task_names]
    if mirror is not None:
        plan = [
            (_find_in_mirror(Path(mirror), f), raw_dir / f.path)
            for source in sources
            for f in source.files
        ]
        for src, dst in plan:
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as fin, _atomic_write(dst) as fout:
                shutil.copyfileobj(fin, fout)
        return [dst for _, dst in plan]

    written = []
    for source in sources:
        hub = datasets.load_dataset(*source.hub_args, **source.hub_kwargs)
        for f in source.files:
            dst = raw_dir / f.path
            with _atomic_write(dst) as fout:
                fout.write(source.render(hub[f.hub_split]).encode("utf-8"))
            written.append(dst)
    return written


def _find_in_mirror(mirror: Path, raw_file: RawFile) -> Path:
    for relative in (raw_file.path, *raw_file.mirror_alternatives):
        if (mirror / relative).is_file():
            return mirror / relative
    alternatives = "".join(f" (or {alt})" for alt in raw_file.mirror_alternatives)
    raise MirrorLayoutError(
        f"data mirror file not found: {mirror / raw_file.path}{alternatives}; "
        f"expected layout under {mirror}: {MIRROR_LAYOUT}"
    )


@contextmanager
def _atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """Write to a sibling temp file and rename it over ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_TSV_BREAKERS = re.compile(r"[\t\r\n]+")


def release_tsv(spec: TaskSpec, split: datasets.Dataset) -> str:
    """Render a hub split as the release TSV (release column order, no quoting).

    Columns the hub does not carry (MRPC ids, STS-B genre, MNLI parses...) are left empty;
    the index column gets the hub ``idx``. Tabs and line breaks inside text, which the
    unquoted format cannot hold, become single spaces. Scores use the release's three
    decimals, which is exact because the hub built its float32 scores from those files.
    """
    hub = split.to_pandas()
    labels = hub["label"]
    if spec.release_labels is None:
        label_text = labels.map(lambda score: f"{score:.3f}")
    else:
        bad = labels[~labels.between(0, spec.num_labels - 1)]
        if not bad.empty:
            raise ValueError(
                f"{spec.hub_path}/{spec.hub_config}: label {bad.iloc[0]} "
                f"outside 0..{spec.num_labels - 1}"
            )
        label_text = labels.map(lambda i: spec.release_labels[i])
    columns = {column: "" for column in spec.release_columns}
    for hub_column, column in zip(spec.text_columns, spec.release_text_columns, strict=True):
        columns[column] = hub[hub_column].str.replace(_TSV_BREAKERS, " ", regex=True)
    columns[spec.release_label_column] = label_text
    if spec.release_index_column is not None:
        columns[spec.release_index_column] = hub["idx"]
    table = pd.DataFrame(columns, index=hub.index)
    return table.to_csv(
        sep="\t", header=spec.has_header, index=False, quoting=csv.QUOTE_NONE, lineterminator="\n"
    )


def squad_json(spec: TaskSpec, split: datasets.Dataset) -> str:
    """Rebuild the official SQuAD v1.1 JSON (data -> paragraphs -> qas) from hub rows.

    The hub keeps the official order, so consecutive rows with the same title and context
    belong to the same article and paragraph. ``spec`` is unused (the format is fixed).
    """
    articles: list[dict] = []
    for row in split:
        if not articles or articles[-1]["title"] != row["title"]:
            articles.append({"title": row["title"], "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != row["context"]:
            paragraphs.append({"context": row["context"], "qas": []})
        answers = [
            {"answer_start": start, "text": text}
            for start, text in zip(
                row["answers"]["answer_start"], row["answers"]["text"], strict=True
            )
        ]
        paragraphs[-1]["qas"].append(
            {"answers": answers, "question": row["question"], "id": row["id"]}
        )
    return json.dumps({"data": articles, "version": "1.1"})


def plain_text(spec: TaskSpec, split: datasets.Dataset) -> str:
    """The text builder's documents joined back into the file they came from."""
    return "".join(split[spec.text_columns[0]])


# How a hub split becomes a release file, by TaskSpec.kind.
RENDERERS: dict[str, Callable[[TaskSpec, datasets.Dataset], str]] = {
    "classification": release_tsv,
    "regression": release_tsv,
    "extractive_qa": squad_json,
    "language_modeling": plain_text,
}
