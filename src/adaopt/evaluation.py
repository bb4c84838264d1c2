"""Dev-set evaluation: model outputs, then task predictions, then the task's metrics.

The model-facing part (a forward pass over batches) is shared; what turns outputs into
predictions is looked up by the task's head, so the training loop never branches on a task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import DatasetDict
from transformers import PreTrainedTokenizerBase

from adaopt.metrics import glue_metrics
from adaopt.tasks import TaskSpec
from adaopt.training import device, make_loader

Scores = dict[str, float]
Predictions = dict[str, Any]


@torch.no_grad()
def forward_outputs(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, bf16: bool, names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Concatenate the named model outputs (``logits``, ``start_logits``...) over a loader."""
    was_training = model.training
    model.eval()
    dev = device()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for batch in loader:
        inputs = {k: v.to(dev) for k, v in batch.items() if k not in ("labels",)}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            result = model(**inputs)
        for name in names:
            outputs[name].append(result[name].float().cpu())
    model.train(was_training)
    return {name: torch.cat(parts).numpy() for name, parts in outputs.items()}


class Evaluator:
    """Scores a model on a task's prepared dev split; callable as ``evaluator(model)``."""

    def __init__(
        self,
        splits: DatasetDict,
        task: TaskSpec,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int,
        bf16: bool,
    ) -> None:
        self.splits, self.task, self.bf16 = splits, task, bf16
        self.loader = make_loader(splits["validation"], tokenizer, batch_size, train=False)

    def __call__(self, model: torch.nn.Module) -> tuple[Scores, Predictions]:
        logits = forward_outputs(model, self.loader, self.bf16, ("logits",))["logits"]
        predicted = logits[:, 0] if self.task.is_regression else logits.argmax(-1)
        labels = np.asarray(self.splits["validation"]["labels"])
        scores = glue_metrics(self.task.name, predicted, labels)
        return scores, {str(i): value.item() for i, value in enumerate(predicted)}
