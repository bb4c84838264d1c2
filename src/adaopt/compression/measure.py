"""What a compressed variant costs: bytes on disk, CPU latency, and which variants are on the
Pareto front of quality against cost."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn


def size_on_disk(model: nn.Module) -> int:
    """Bytes of the saved ``state_dict`` (``torch.save``). Zeros cost as much as any weight:
    an unstructured-pruned dense model is as large as the original."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def nonzero_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly zero (what a sparse format would store)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def latencies(models: Mapping[str, nn.Module], inputs: dict[str, torch.Tensor], *,
              warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Milliseconds per example of each model on ``inputs`` (one batch): median and
    interquartile range of ``repeats`` timed calls after ``warmup`` untimed ones.

    The models take turns within each round, so that a slower phase of a shared machine
    falls on all of them alike.
    """
    examples = len(next(iter(inputs.values())))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.eval()
            for _ in range(warmup):
                model(**inputs)
        for _ in range(repeats):
            for name, model in models.items():
                started = time.perf_counter()
                model(**inputs)
                times[name].append((time.perf_counter() - started) * 1000 / examples)
    result = {}
    for name, values in times.items():
        low, median, high = np.percentile(values, [25, 50, 75])
        result[name] = (float(median), float(high - low))
    return result


def pareto_front(cost: np.ndarray, score: np.ndarray, greater_is_better: bool) -> np.ndarray:
    """Which points no other point dominates (no more cost and at least as good a score, one
    of them strictly). NaN scores are never on the front."""
    cost, score = np.asarray(cost, float), np.asarray(score, float)
    quality = score if greater_is_better else -score
    front = np.zeros(len(cost), dtype=bool)
    for i in range(len(cost)):
        if np.isnan(quality[i]):
            continue
        others = ~np.isnan(quality)
        dominated = others & (cost <= cost[i]) & (quality >= quality[i]) & (
            (cost < cost[i]) | (quality > quality[i]))
        front[i] = not dominated.any()
    return front
