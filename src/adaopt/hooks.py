"""What the computing code asks of the layer that runs it (:mod:`adaopt.runner`): a progress bar
a log keeps readable, a GPU no other stage holds, a line in the stage's log, a stage's name for a
label, and the check of the progress lines' interval.

None of these changes a weight or a score, so none of the runner's code is a stage's dependency in
``dvc.yaml``: the computing code reaches the runner's implementation (:data:`RUNNER`) by name, at
run time, never by an import, and an edit of the runner outdates no stage
(``tests/test_dvc_dependencies.py`` checks both halves). What the runner must provide is
:class:`Runner`; ``tests/test_hooks.py`` checks that it does.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from functools import cache
from typing import Literal, Protocol, cast

#: The module that implements :class:`Runner`.
RUNNER = "adaopt.runner.hooks"

#: With every GPU held by other runs: wait for one, or train on the CPU.
BusyPolicy = Literal["wait", "cpu"]


class Bar(Protocol):
    """Progress of one run (:class:`adaopt.runner.logbar.LogBar`)."""

    def update(self, n: int, **postfix: str) -> None: ...

    def close(self, n: int, end: str = "") -> None: ...


class Runner(Protocol):
    """The hooks :data:`RUNNER` provides."""

    def progress_bar(self, label: str, total: int, initial: int = 0, *,
                     enabled: bool = True) -> Bar: ...

    def claim_gpu(self, count: int, busy: BusyPolicy) -> AbstractContextManager[str]: ...

    def log(self, text: str) -> None: ...

    def stage_name(self, kind: str, task: str, optimizer: str, setting: str) -> str: ...

    def check_progress_interval(self) -> None: ...


@cache
def runner() -> Runner:
    """The runner's implementation of the hooks, imported on first use."""
    return cast(Runner, importlib.import_module(RUNNER))


__all__ = ["RUNNER", "Bar", "BusyPolicy", "Runner", "runner"]
