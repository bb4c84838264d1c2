"""Where the tests find the real data: ``$ADAOPT_DATA_MIRROR``, else ``../shared/data``.

A relative ``$ADAOPT_DATA_MIRROR`` (docs/tasks.md's ``export ADAOPT_DATA_MIRROR=../shared/data``)
is made absolute here, from the directory pytest starts in: the tests link to it and hand it to
pipelines that run in temporary folders, where the relative path would name nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from adaopt.data.raw import MIRROR_ENV

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get(MIRROR_ENV) or ROOT.parent / "shared" / "data").absolute()


def real_data_dir() -> Path | None:
    """``REAL_DATA`` where it holds the GLUE releases, else None (the real-data tests skip)."""
    return REAL_DATA if (REAL_DATA / "glue").is_dir() else None
