"""The runner implements every hook the computing code asks for (adaopt.hooks)."""

from __future__ import annotations

import inspect

from adaopt.hooks import RUNNER, Runner, runner


def test_the_runner_provides_every_hook_with_its_signature() -> None:
    provided = runner()
    assert provided.__name__ == RUNNER
    for name, hook in vars(Runner).items():
        if name.startswith("_") or not callable(hook):
            continue
        expected = list(inspect.signature(hook).parameters)[1:]  # less self
        given = list(inspect.signature(getattr(provided, name)).parameters)
        assert given[:len(expected)] == expected, name
