"""Read GLUE release TSVs into uniform frames, clean them and subsample them.

Every step is driven by the task table (:mod:`adaopt.tasks`); the frames always have the
HF text column names plus ``label`` (label ids in HF order, or a float score for regression).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from adaopt.tasks import TaskSpec, get_task


def _expected(spec: TaskSpec) -> str:
    header = "with header" if spec.has_header else "without header"
    return f"tab-separated {spec.release_dir} file {header}, columns {list(spec.release_columns)}"


def blank(values: pd.Series) -> pd.Series:
    """Missing or whitespace-only: the release files write missing text as an empty field."""
    return values.isna() | values.astype("str").str.strip().eq("")


def read_split(task: str | TaskSpec, path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read one release TSV; empty text and label fields become missing values (NA).

    Quoting is disabled because the raw files contain unbalanced quotes (QNLI dev) that
    must stay part of the text. Label ids are a nullable ``Int64`` so that rows with a
    missing label survive until :func:`clean` drops them; scores are ``float64``.
    Raises ValueError naming the file (and line) for empty, truncated or mislabelled files.
    """
    spec = get_task(task)
    path = Path(path)
    try:
        raw = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,  # keeps row i on line i + 1 (+1 for a header)
            header=0 if spec.has_header else None,
            encoding="utf-8-sig",  # the MRPC release starts with a byte-order mark
        )
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file; expected a {_expected(spec)}") from None
    except pd.errors.ParserError as err:
        detail = str(err).strip()
        raise ValueError(
            f"{path}: malformed TSV ({detail}); expected a {_expected(spec)}"
        ) from None
    if raw.empty:
        raise ValueError(f"{path}: no data rows; expected a {_expected(spec)}")
    if not spec.has_header:
        if raw.shape[1] != len(spec.release_columns):
            raise ValueError(
                f"{path}: line 1 has {raw.shape[1]} fields; expected a {_expected(spec)}"
            )
        raw.columns = list(spec.release_columns)
    needed = [*spec.release_text_columns, spec.release_label_column]
    missing = [column for column in needed if column not in raw.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing} (header: {list(raw.columns)}); "
            f"expected a {_expected(spec)}"
        )

    values = raw[spec.release_label_column].str.strip()
    present = ~blank(values)
    if spec.release_labels is None:
        labels = pd.to_numeric(values.where(present), errors="coerce").astype("float64")
        allowed = "a number"
    else:
        ids = {label: i for i, label in enumerate(spec.release_labels)}
        labels = values.map(ids).astype("Int64")
        allowed = ", ".join(repr(label) for label in spec.release_labels)
    bad = np.flatnonzero((present & labels.isna()).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{path}: line {row + 1 + int(spec.has_header)}: unknown label {values.iloc[row]!r} "
            f"in column {spec.release_label_column!r}; allowed: {allowed}"
        )

    frame = {
        name: raw[column].mask(blank(raw[column]))
        for name, column in zip(spec.text_columns, spec.release_text_columns, strict=True)
    }
    return pd.DataFrame({**frame, "label": labels})


# The steps that drop training rows, in the order they run; dev only loses missing rows.
TRAIN_DROPS = ("dropped_missing", "dropped_duplicate", "dropped_conflicting", "dropped_leakage")


def cleaning_counts(
    train_steps: Sequence[pd.DataFrame], dev: pd.DataFrame, dev_ok: pd.DataFrame
) -> dict[str, dict[str, int]]:
    """Rows after each cleaning step, as the drops the prepare report shows; shared by GLUE
    and SQuAD, so that both report the same keys.

    ``train_steps`` is train as read, then after each step of :data:`TRAIN_DROPS` (a step a
    task does not have repeats the frame before it: it drops nothing).
    """
    drops = zip(TRAIN_DROPS, train_steps[:-1], train_steps[1:], strict=True)
    return {
        "train": {
            "read": len(train_steps[0]),
            **{key: len(before) - len(after) for key, before, after in drops},
            "kept": len(train_steps[-1]),
        },
        "dev": {
            "read": len(dev),
            "dropped_missing": len(dev) - len(dev_ok),
            "kept": len(dev_ok),
        },
    }


def clean(
    train: pd.DataFrame, dev: pd.DataFrame, task: str | TaskSpec
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Drop rows that would bias training or evaluation, and count each drop.

    Both splits lose rows with missing text or label. Train also loses exact duplicate
    rows (text and label), then every row of a text tuple whose labels (scores) conflict:
    no label is known to be right, and keeping them would put one text in both the selection
    and the training split. Then train loses rows whose text tuple occurs in dev (leakage:
    the model would be scored on sentences it trained on). Dev is otherwise kept whole so
    that scores stay comparable with published ones. Returns the cleaned frames (fresh
    index, ``int64`` or ``float64`` labels) and ``{"train": {...}, "dev": {...}}`` row counts
    (:func:`cleaning_counts`).
    """
    spec = get_task(task)
    text = list(spec.text_columns)
    needed = [*text, "label"]
    dtype = "float64" if spec.is_regression else "int64"

    def drop_missing(df: pd.DataFrame) -> pd.DataFrame:
        missing = df["label"].isna()
        for column in text:
            missing |= blank(df[column])
        return df[~missing]

    train_ok, dev_ok = drop_missing(train), drop_missing(dev)
    unique = train_ok[~train_ok.duplicated(subset=needed)]
    consistent = unique[~unique.duplicated(subset=text, keep=False)]
    in_dev = pd.MultiIndex.from_frame(consistent[text]).isin(
        pd.MultiIndex.from_frame(dev_ok[text])
    )
    kept = consistent[~in_dev]

    counts = cleaning_counts((train, train_ok, unique, consistent, kept), dev, dev_ok)

    def finish(df: pd.DataFrame) -> pd.DataFrame:
        return df.astype({"label": dtype}).reset_index(drop=True)

    return finish(kept), finish(dev_ok), counts


def subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Pick ``n`` rows at random (seeded), kept in file order; ``None`` or ``n >= len``: all.

    The same seed draws nested samples for growing ``n``, so small runs are subsets of
    larger ones.
    """
    if n is not None and n < 0:
        raise ValueError(f"sample size must be None or >= 0, got {n}")
    if n is None or n >= len(df):
        return df.reset_index(drop=True)
    return df.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)
