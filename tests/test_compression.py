"""The compress stage's checks: the teacher is chosen on the selection split, int8 keeps the
fp32 model's predictions, pruning is exact and survives the recovery fine-tune, the distillation
loss is the textbook one, and the measuring helpers (structured pruning, students, latency,
Pareto fronts) do what the table claims."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from adaopt.compression.measure import latencies, pareto_front, size_on_disk
from adaopt.compression.methods import (
    distillation_loss,
    encoder_layers,
    finalize_pruning,
    fine_tune,
    prune_ffn_neurons,
    prune_global,
    quantize_int8,
    sparsity_of,
    student_of,
)
from adaopt.compression.stage import best_optimizer
from adaopt.config import load_params
from adaopt.evaluation import forward_outputs
from adaopt.modeling import load_model, load_tokenizer
from adaopt.protocol.splits import DEV, TRAIN
from adaopt.tasks import get_task
from adaopt.training import make_loader, seed_everything

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "profiles" / "smoke.yaml")
SST2 = get_task("sst2")


@pytest.fixture(scope="module")
def loaders(prepared_sst2: Path) -> dict[str, torch.utils.data.DataLoader]:
    splits = load_from_disk(str(prepared_sst2 / "sst2"))
    tokenizer = load_tokenizer(PARAMS.model)
    return {TRAIN: make_loader(splits[TRAIN], tokenizer, 16, train=True, seed=0),
            DEV: make_loader(splits[DEV], tokenizer, 32, train=False)}


@pytest.fixture(scope="module")
def trained(loaders: dict[str, torch.utils.data.DataLoader]) -> torch.nn.Module:
    """The smoke profile's tiny BERT, trained a few steps so that its classes have margins."""
    seed_everything(0)
    model = load_model(PARAMS.model, SST2)
    fine_tune(model, loaders[TRAIN], steps=8, lr=1e-3)
    return model


def _classes(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> np.ndarray:
    return forward_outputs(model, loader, "fp32", ("logits",))["logits"]


def test_int8_model_is_finite_and_agrees_with_fp32(
    trained: torch.nn.Module, loaders: dict[str, torch.utils.data.DataLoader]
) -> None:
    quantized = quantize_int8(trained)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantized.modules())
    reference, logits = _classes(trained, loaders[DEV]), _classes(quantized, loaders[DEV])
    assert np.isfinite(logits).all()
    agreement = (reference.argmax(-1) == logits.argmax(-1)).mean()
    assert agreement >= 0.9, f"int8 agrees with fp32 on {agreement:.0%} of dev"
    assert size_on_disk(quantized) < size_on_disk(trained)


@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_pruning_is_exact_and_pruned_weights_stay_zero_through_recovery(
    trained: torch.nn.Module, loaders: dict[str, torch.utils.data.DataLoader], sparsity: float
) -> None:
    model = load_model(PARAMS.model, SST2)
    model.load_state_dict(trained.state_dict())
    layers = prune_global(model, sparsity)
    total = sum(layer.weight.numel() for layer in layers)
    assert sparsity_of(layers) == round(sparsity * total) / total
    masks = [layer.weight_mask.clone() for layer in layers]
    before = [layer.weight.detach().clone() for layer in layers]
    fine_tune(model, loaders[TRAIN], steps=3, lr=1e-2)
    finalize_pruning(layers)
    for layer, mask, old in zip(layers, masks, before, strict=True):
        assert not hasattr(layer, "weight_mask")  # a plain dense Linear again
        assert (layer.weight[mask == 0] == 0).all()
        assert not torch.equal(layer.weight[mask == 1], old[mask == 1])  # the rest trained
    assert sparsity_of(layers) == round(sparsity * total) / total


def test_distillation_loss_equals_a_hand_computed_value() -> None:
    student, teacher = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 1.0, 3.0]])
    temperature, alpha, hard = 2.0, 0.25, torch.tensor(0.7)

    def softmax(values: list[float]) -> list[float]:
        exps = [math.exp(v / temperature) for v in values]
        return [e / sum(exps) for e in exps]

    p, q = softmax([0.0, 1.0, 3.0]), softmax([1.0, 2.0, 0.0])
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = alpha * temperature**2 * kl + (1 - alpha) * 0.7
    loss = distillation_loss(student, teacher, hard, temperature=temperature, alpha=alpha,
                             regression=False)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    mse = distillation_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]]), hard,
                            temperature=temperature, alpha=alpha, regression=True)
    assert mse.item() == pytest.approx(alpha * (1 + 4) / 2 + (1 - alpha) * 0.7, rel=1e-6)


def test_ffn_pruning_shrinks_the_matrices_and_keeps_the_outputs_shaped(
    trained: torch.nn.Module, loaders: dict[str, torch.utils.data.DataLoader]
) -> None:
    smaller = prune_ffn_neurons(trained, 0.5)
    for layer in encoder_layers(smaller):
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == 32
    assert encoder_layers(trained)[0].intermediate.dense.out_features == 64  # a copy
    assert _classes(smaller, loaders[DEV]).shape == _classes(trained, loaders[DEV]).shape
    assert size_on_disk(smaller) < size_on_disk(trained)


def test_student_is_the_teachers_first_layers(trained: torch.nn.Module) -> None:
    student = student_of(trained, 1)
    assert len(encoder_layers(student)) == 1 and len(encoder_layers(trained)) == 2
    assert torch.equal(encoder_layers(student)[0].output.dense.weight,
                       encoder_layers(trained)[0].output.dense.weight)
    with pytest.raises(ValueError, match="1 to 1"):
        student_of(trained, 2)


def test_latencies_time_every_model_per_example(trained: torch.nn.Module) -> None:
    inputs = {"input_ids": torch.randint(1000, 2000, (4, 16))}
    timed = latencies({"a": trained, "b": quantize_int8(trained)}, inputs, warmup=1, repeats=3)
    assert set(timed) == {"a", "b"}
    assert all(median > 0 and iqr >= 0 for median, iqr in timed.values())


def test_pareto_front_keeps_the_undominated_points() -> None:
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    score = np.array([0.5, 0.7, 0.6, 0.7, np.nan])
    assert pareto_front(cost, score, True).tolist() == [True, True, False, False, False]
    assert pareto_front(cost, score, False).tolist() == [True, False, False, False, False]


# A run: (status, selection-split score, dev score) on the task's metric.
RunScores = tuple[str, float, float]


def _cells(metric: str, cells: dict[str, list[RunScores]]) -> dict:
    """SST-2's fair cells as the evaluate stage records them (``results/cells/sst2.json``):
    per optimizer, its seeds 0, 1, ..."""
    return {"task": "sst2", "cells": [
        {"optimizer": optimizer, "setting": "fair", "hparams": {"lr": 1e-4},
         "runs": [{"seed": seed, "status": status, "selection": {metric: selection},
                   "dev": {metric: dev}} for seed, (status, selection, dev) in enumerate(seeds)]}
        for optimizer, seeds in cells.items()]}


def test_the_teacher_is_the_best_by_mean_selection_score_not_by_dev() -> None:
    cells = _cells("accuracy", {
        "adamw": [("ok", 0.80, 0.99), ("ok", 0.82, 0.99)],  # best on dev
        "lamb": [("ok", 0.86, 0.70), ("early_stopped", 0.84, 0.72)],  # best on selection
        "sgd": [("ok", 0.60, 0.60), ("ok", 0.62, 0.61)],
    })
    assert best_optimizer(cells, "fair", ["adamw", "lamb", "sgd"], "accuracy", True) == "lamb"
    assert best_optimizer(cells, "fair", ["adamw", "sgd"], "accuracy", True) == "adamw"


def test_the_teacher_ranks_finished_seeds_in_the_tasks_direction() -> None:
    """Lower is better (a loss), and a diverged seed's score, however good, is left out."""
    cells = _cells("loss", {"adam": [("ok", 2.6, 2.6), ("diverged", 1.0, 1.0)],
                            "adamw": [("ok", 2.5, 2.5), ("ok", 2.5, 2.5)]})
    assert best_optimizer(cells, "fair", ["adam", "adamw"], "loss", False) == "adamw"


def test_a_tie_goes_to_the_earlier_candidate_and_no_finished_run_is_an_error() -> None:
    cells = _cells("accuracy", {"adam": [("ok", 0.8, 0.9)], "adamw": [("ok", 0.8, 0.7)],
                                "sgd": [("diverged", 0.9, 0.9)]})
    assert best_optimizer(cells, "fair", ["adam", "adamw"], "accuracy", True) == "adam"
    assert best_optimizer(cells, "fair", ["adamw", "adam"], "accuracy", True) == "adamw"
    with pytest.raises(ValueError, match="no finished run of sst2"):
        best_optimizer(cells, "fair", ["sgd"], "accuracy", True)
    with pytest.raises(ValueError, match=r"no cell \(lamb, fair\); run the evaluate stage"):
        best_optimizer(cells, "fair", ["lamb"], "accuracy", True)
