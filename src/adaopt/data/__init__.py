"""Task data: fetch raw release files, read and clean them, tokenize them for training.

``raw`` fills the release layout from a mirror or the hub; ``glue`` reads and cleans the
GLUE TSVs, ``squad`` cleans SQuAD questions (read by :func:`adaopt.qa.read_squad`);
``prepare`` carves the selection split (:mod:`adaopt.protocol.splits`), tokenizes and saves
``DatasetDict``s, and checks the time-to-target lines against each task's trivial baseline.
All of it is driven by the task table in :mod:`adaopt.tasks`.
"""

from adaopt.data.glue import clean, read_split, subsample
from adaopt.data.prepare import (
    check_targets,
    prepare_task,
    read_release,
    tokenize,
    trivial_baseline,
)
from adaopt.data.raw import MIRROR_ENV, MirrorLayoutError, fetch_raw
from adaopt.data.squad import clean_squad

__all__ = [
    "MIRROR_ENV",
    "MirrorLayoutError",
    "check_targets",
    "clean",
    "clean_squad",
    "fetch_raw",
    "prepare_task",
    "read_release",
    "read_split",
    "subsample",
    "tokenize",
    "trivial_baseline",
]
