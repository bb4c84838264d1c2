"""Profiles rewritten by tests: the design's cells follow a changed task or optimizer list."""

from __future__ import annotations

from typing import Any

from adaopt.config import SETTINGS, cell_name


def full_matrix(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ``sweep.cells`` set to every trained task x ``sweep.optimizers`` x setting,
    each with ``sweep.seeds``: what a test that narrows the smoke profile's lists expects."""
    raw["sweep"]["cells"] = {
        cell_name(task, optimizer, setting): {"task": task, "optimizer": optimizer,
                                              "setting": setting}
        for task in raw["workloads"] for optimizer in raw["sweep"]["optimizers"]
        for setting in SETTINGS}
    return raw
