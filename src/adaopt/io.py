"""Atomic writers: an interrupted stage never leaves a half-written output behind.

Each writer renders into a temporary file in the target's folder and then renames it over the
target (``os.replace`` is atomic on POSIX), so readers see the old file or the new one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@functools.cache
def _umask() -> int:
    """The process's umask; reading it means setting it, so once, on the first write."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity; strict readers (DVC among them) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write sorted, indented JSON so that equal data gives byte-identical files."""
    write_text(path, json.dumps(_finite_or_none(data), indent=2, sort_keys=True) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write with a library's own writer (``df.to_csv``, ``fig.savefig``...)."""
    with atomic_path(path) as tmp:
        writer(tmp)
