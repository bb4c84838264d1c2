"""The splits every task is cut into, and how the selection split is carved out of train.

Training reads :data:`TRAIN`. Tuning, early stopping, the choice of the best checkpoint and
AdaptiveAdam's metric-driven adaptation read :data:`SELECTION` only: it is carved out of the
cleaned training data (before that is subsampled), so every choice a run makes is made on data
drawn like the training data but never trained on. :data:`DEV`, the task's published dev set,
is scored once per run with the selected weights and is the reported number; since nothing is
chosen on it, it stays an unbiased estimate. Where a split is scored from examples rather than
from its rows (extractive QA), the examples lie beside it in :func:`examples_split`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN = "train"
SELECTION = "selection"
DEV = "validation"


def examples_split(split: str) -> str:
    """The split holding the examples (id, context, gold answers) that ``split``'s features
    are decoded into and scored against (extractive QA)."""
    return f"{split}_examples"


def _too_large(n: int, task: str, available: str) -> ValueError:
    return ValueError(
        f"data.selection_samples={n} leaves no training data for {task}: its cleaned training "
        f"split has {available}; lower data.selection_samples"
    )


def _split_rows(train: pd.DataFrame, chosen: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train`` rows where ``chosen`` holds and the others, each in file order, fresh index."""
    return train[chosen].reset_index(drop=True), train[~chosen].reset_index(drop=True)


def carve_examples(
    train: pd.DataFrame, n: int, seed: int, task: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(selection, rest)``: ``n`` rows of ``train`` drawn at random (seeded), and the others.

    Rows are independent examples (GLUE), so any ``n`` of them are a fair sample; cleaning has
    made every text unique, so the two parts share no text. The same seed draws nested
    selections for growing ``n``. Raises ValueError (one line) where ``n`` would take every row.
    """
    if n >= len(train):
        raise _too_large(n, task, f"{len(train)} examples")
    chosen = np.zeros(len(train), dtype=bool)
    chosen[np.random.default_rng(seed).permutation(len(train))[:n]] = True
    return _split_rows(train, chosen)


def carve_articles(
    train: pd.DataFrame, n: int, seed: int, task: str, article: str = "title"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(selection, rest)``: whole articles drawn at random (seeded) until the selection holds
    at least ``n`` rows (questions), and the rest of ``train``.

    Questions on one article share its contexts, and often their answers; splitting an article
    would let the model train on the very paragraphs it is selected on. Raises ValueError (one
    line) where the draw would take every article.
    """
    titles = train[article].unique()
    order = np.random.default_rng(seed).permutation(len(titles))
    sizes = train[article].value_counts().reindex(titles[order]).to_numpy()
    taken = int(np.searchsorted(np.cumsum(sizes), n)) + 1  # first prefix holding >= n rows
    if taken >= len(titles):
        raise _too_large(n, task, f"{len(train)} questions in {len(titles)} articles")
    return _split_rows(train, train[article].isin(titles[order[:taken]]).to_numpy())
