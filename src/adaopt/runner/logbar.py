"""A progress bar that stays readable in a log: a whole line every so often, never a carriage
return.

A many-hour ``dvc repro`` runs each stage's notebook in a Jupyter kernel, where ``sys.stderr``
is the notebook's output, not the terminal or file that ``dvc repro`` writes to: a tqdm bar
there reaches nobody while the stage runs. :class:`LogBar` writes its lines to the stage's log
(:func:`log_fd`), every ``ADAOPT_PROGRESS_EVERY_S`` seconds (60 unless set) and once at the
end, formatted by tqdm. In a kernel the notebook also gets tqdm's own bar, for whoever runs
the notebook by hand.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm
from tqdm.auto import tqdm as notebook_tqdm

EVERY_S_ENV = "ADAOPT_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 60.0
FORMAT = "{l_bar}{bar:20}{r_bar}"


def in_kernel() -> bool:
    """Whether ``sys.stderr`` is a Jupyter kernel's stream to the notebook."""
    return type(sys.stderr).__module__.startswith("ipykernel")


def log_fd() -> int:
    """The file descriptor of the stage's log: the process's own standard error. In a Jupyter
    kernel that is the kernel's original one, which ipykernel keeps behind
    ``sys.stderr.fileno()`` while it sends the stream itself to the notebook."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a kernel that does not capture fds
        return sys.__stderr__.fileno()


def write_log(text: str) -> None:
    """Append ``text`` to the stage's log, unbuffered (one ``write`` per call)."""
    os.write(log_fd(), text.encode())


def every_s() -> float:
    """Seconds between two lines, from ``ADAOPT_PROGRESS_EVERY_S``; refused in one line if it
    is not a positive number."""
    text = os.environ.get(EVERY_S_ENV, str(DEFAULT_EVERY_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"{EVERY_S_ENV}={text!r}: the seconds between progress lines must be "
                         "a positive number")
    return seconds


class LogBar:
    """Progress of one run of ``total`` steps, from step ``initial`` (a resumed run), as lines
    ``label:  40%|########            | 160/400 [01:10<01:45, 2.28step/s, loss=0.41]``.

    Disabled, it writes nothing (the other ranks of a data-parallel run, or ``progress=False``).
    """

    def __init__(self, label: str, total: int, initial: int = 0, *, enabled: bool = True,
                 unit: str = "step") -> None:
        self.label, self.total, self.initial, self.unit = label, total, initial, unit
        self.enabled = enabled
        self.every_s = every_s() if enabled else DEFAULT_EVERY_S
        self.n, self.postfix = initial, {}
        self.started = self.written = time.monotonic()
        self.written_at: int | None = None  # the step of the last line
        self.notebook = notebook_tqdm(total=total, initial=initial, desc=label, unit=unit,
                                      leave=False, disable=not (enabled and in_kernel()))

    def update(self, n: int, **postfix: str) -> None:
        """The run is at step ``n``; ``postfix`` (say, the loss) updates the values shown."""
        self.notebook.update(n - self.n)
        self.n = n
        if postfix:
            self.postfix.update(postfix)
            self.notebook.set_postfix(self.postfix, refresh=False)
        now = time.monotonic()
        if self.enabled and now - self.written >= self.every_s:
            self._write(now)

    def close(self, n: int, end: str = "") -> None:
        """The last line: the run ended at step ``n``, as ``end`` says (if given)."""
        self.notebook.close()
        self.n = n
        if self.enabled and (end or self.written_at != n):  # not the line just written again
            self._write(time.monotonic(), f" {end}" if end else "")

    def _write(self, now: float, end: str = "") -> None:
        self.written, self.written_at = now, self.n
        line = tqdm.format_meter(self.n, self.total, self.written - self.started,
                                 prefix=self.label, unit=self.unit, ascii=True,
                                 bar_format=FORMAT,
                                 postfix=", ".join(f"{k}={v}" for k, v in self.postfix.items())
                                 or None,
                                 initial=self.initial)
        write_log(f"{line}{end}\n")


__all__ = ["EVERY_S_ENV", "LogBar", "every_s", "in_kernel", "log_fd", "write_log"]
