"""The runner's side of :mod:`adaopt.hooks` (its :class:`~adaopt.hooks.Runner`): what the
computing code calls for its progress lines, its GPU and its log."""

from __future__ import annotations

from adaopt.runner.devices import claim_gpu
from adaopt.runner.logbar import LogBar as progress_bar
from adaopt.runner.logbar import every_s, in_kernel, write_log
from adaopt.runner.slices import stage_name


def log(text: str) -> None:
    """Copy ``text``, already on ``sys.stdout``, to the stage's log when in a kernel (outside
    one, ``sys.stdout`` is the log)."""
    if in_kernel():
        write_log(text)


def check_progress_interval() -> None:
    """Refuse a bad ``ADAOPT_PROGRESS_EVERY_S`` before a stage trains, not at its first line."""
    every_s()


__all__ = ["check_progress_interval", "claim_gpu", "log", "progress_bar", "stage_name"]
