"""Clean SQuAD v1.1 frames (as :func:`adaopt.qa.read_squad` reads them) like the GLUE ones.

The same steps and the same report keys as :func:`adaopt.data.glue.clean`: rows are
questions; a question is missing when its text, its context or a gold answer text is empty;
a duplicate repeats an earlier train question on the same context; a leak is a train question
asked on the same context in dev. There is no conflicting-label step (``dropped_conflicting``
is 0): a repeated question on the same context is a duplicate whatever its answers.
"""

from __future__ import annotations

import pandas as pd

from adaopt.data.glue import blank, cleaning_counts


def _no_answer(answers: pd.Series) -> pd.Series:
    """No gold answer, or an empty one: nothing to train towards or to score against."""
    return answers.map(
        lambda a: not isinstance(a, dict)
        or not a.get("text")
        or any(not str(text).strip() for text in a["text"])
    )


def clean_squad(
    train: pd.DataFrame, dev: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Drop questions that would bias training or evaluation, and count each drop.

    Both splits lose questions with a missing question, context or answer. Train also loses
    exact duplicates (same question on the same context; the first is kept), then questions
    asked on the same context in dev (leakage). The same question on another context is not
    a leak: generic questions such as "What does AC stand for?" recur across articles, with
    other answers. Dev is otherwise kept whole, so that scores stay comparable with published
    ones. Returns the cleaned frames (fresh index) and ``{"train": {...}, "dev": {...}}``
    counts with the keys :func:`adaopt.data.glue.clean` uses.
    """

    def drop_missing(df: pd.DataFrame) -> pd.DataFrame:
        missing = blank(df["question"]) | blank(df["context"]) | _no_answer(df["answers"])
        return df[~missing]

    train_ok, dev_ok = drop_missing(train), drop_missing(dev)
    pair = ["question", "context"]
    unique = train_ok[~train_ok.duplicated(subset=pair)]
    in_dev = pd.MultiIndex.from_frame(unique[pair]).isin(pd.MultiIndex.from_frame(dev_ok[pair]))
    kept = unique[~in_dev]
    # No conflicting step: the frame after it is the frame before it.
    counts = cleaning_counts((train, train_ok, unique, unique, kept), dev, dev_ok)
    return kept.reset_index(drop=True), dev_ok.reset_index(drop=True), counts
