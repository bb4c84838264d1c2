"""Task data: fetch raw release files, read and clean them, tokenize them for training.

``raw`` fills the release layout from a mirror or the hub; ``glue`` reads and cleans the
GLUE TSVs, ``squad`` cleans SQuAD questions (read by :func:`adaopt.qa.read_squad`);
``prepare`` tokenizes and saves ``DatasetDict``s. All of it is driven by the task table in
:mod:`adaopt.tasks`.
"""

from adaopt.data.glue import clean, read_split, subsample
from adaopt.data.prepare import prepare_task, read_release, tokenize
from adaopt.data.raw import MIRROR_ENV, MirrorLayoutError, fetch_raw
from adaopt.data.squad import clean_squad

__all__ = [
    "MIRROR_ENV",
    "MirrorLayoutError",
    "clean",
    "clean_squad",
    "fetch_raw",
    "prepare_task",
    "read_release",
    "read_split",
    "subsample",
    "tokenize",
]
