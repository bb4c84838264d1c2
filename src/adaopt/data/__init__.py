"""Task data: fetch raw release files, read and clean them, tokenize them for training.

``raw`` fills the release layout from a mirror or the hub; ``glue`` reads and cleans the
GLUE TSVs; ``prepare`` tokenizes and saves ``DatasetDict``s. All of it is driven by the
task table in :mod:`adaopt.tasks`.
"""

from adaopt.data.glue import clean, read_split, subsample
from adaopt.data.prepare import prepare_task, tokenize
from adaopt.data.raw import MIRROR_ENV, MirrorLayoutError, fetch_raw

__all__ = [
    "MIRROR_ENV",
    "MirrorLayoutError",
    "clean",
    "fetch_raw",
    "prepare_task",
    "read_split",
    "subsample",
    "tokenize",
]
