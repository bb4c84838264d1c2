"""Held-out evaluation: model outputs, then task predictions, then the task's metrics.

An :class:`Evaluator` scores one prepared split: the pipeline builds one on the selection split
(read during training) and one on the dev split (scored once, after training).

The model-facing part (a forward pass over batches) is shared; what turns outputs into
predictions and scores is looked up by the task's kind (:data:`DECODERS`), so the training
loop never branches on a task:

* ``classification`` / ``regression`` (GLUE): ``logits`` -> class ids or scores ->
  :func:`adaopt.metrics.glue_metrics` (fractions); predictions ``{row index: value}``.
* ``extractive_qa`` (SQuAD): ``start_logits``/``end_logits`` per window ->
  :func:`adaopt.qa.postprocess_predictions` (plain numpy, over the prepared
  ``validation_examples``) -> :func:`adaopt.metrics.squad_metrics` (``exact_match`` and
  ``f1``, 0-100); predictions ``{question id: answer text}``, the official predictions.json.
  A QA split ``<name>`` comes with ``<name>_examples``, its questions.
* ``language_modeling``: ``logits`` per block -> the cross-entropy of every token after the
  block's first (nats per token): ``loss`` and ``perplexity``; predictions ``{block index: mean
  loss}``, so that a bootstrap over blocks recomputes the validation loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from datasets import DatasetDict
from transformers import PreTrainedTokenizerBase

from adaopt.metrics import GLUE_METRIC_PATH, SQUAD_METRIC_PATH, load_metric
from adaopt.precision import autocast
from adaopt.protocol.splits import examples_split
from adaopt.qa import postprocess_predictions
from adaopt.tasks import TaskSpec
from adaopt.training import device, make_loader

Scores = dict[str, float]
Predictions = dict[str, Any]

# Training targets that a loader may carry; the model gets them only when training.
TARGETS = ("labels", "start_positions", "end_positions")


def _concat_padded(parts: list[torch.Tensor], fill: float) -> np.ndarray:
    """Stack batches along dim 0, padding later dims (per-batch sequence length) with ``fill``."""
    width = [max(part.shape[d] for part in parts) for d in range(1, parts[0].dim())]
    padded = []
    for part in parts:
        pad: list[int] = []
        for d in reversed(range(1, part.dim())):
            pad += [0, width[d - 1] - part.shape[d]]
        padded.append(torch.nn.functional.pad(part, pad, value=fill) if any(pad) else part)
    return torch.cat(padded).numpy()


@torch.no_grad()
def forward_outputs(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, precision: str,
    names: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """Concatenate the named model outputs (``logits``, ``start_logits``...) over a loader.

    Per-token outputs come back as long as each batch's padded inputs; they are padded with
    ``-inf`` to the longest batch, so row ``i`` is feature ``i`` and padding never wins.
    """
    was_training = model.training
    model.eval()
    # Where the model is (the compress stage scores on the CPU); a model without parameters: the
    # default device.
    weight = next(model.parameters(), None)
    dev = device() if weight is None else weight.device
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for batch in loader:
        inputs = {k: v.to(dev) for k, v in batch.items() if k not in TARGETS}
        with autocast(precision, dev.type):
            result = model(**inputs)
        for name in names:
            outputs[name].append(result[name].float().cpu())
    model.train(was_training)
    return {name: _concat_padded(parts, -np.inf) for name, parts in outputs.items()}


@dataclass(frozen=True)
class PostProcessing:
    """How extractive QA picks spans (a workload's ``decoding``)."""

    n_best: int = 20
    max_answer_length: int = 30


class Decoder(Protocol):
    """Turns a task's model outputs on the prepared dev split into (scores, predictions)."""

    outputs: tuple[str, ...]  # the model outputs it needs

    def __call__(self, outputs: dict[str, np.ndarray]) -> tuple[Scores, Predictions]: ...


class _GlueDecoder:
    outputs = ("logits",)

    def __init__(self, splits: DatasetDict, split: str, task: TaskSpec, post: PostProcessing
                 ) -> None:
        self.task = task
        self.labels = np.asarray(splits[split]["labels"])
        self.metric = load_metric(GLUE_METRIC_PATH, task.name)

    def __call__(self, outputs: dict[str, np.ndarray]) -> tuple[Scores, Predictions]:
        logits = outputs["logits"]
        predicted = logits[:, 0] if self.task.is_regression else logits.argmax(-1)
        scores = self.metric.compute(predictions=predicted, references=self.labels)
        return scores, {str(i): value.item() for i, value in enumerate(predicted)}


class _SpanDecoder:
    outputs = ("start_logits", "end_logits")

    def __init__(self, splits: DatasetDict, split: str, task: TaskSpec, post: PostProcessing
                 ) -> None:
        examples = splits[examples_split(split)]
        features = splits[split]
        # Read once: the offsets of every window are the bulk of the dev data.
        self.examples = {"id": list(examples["id"]), "context": list(examples["context"])}
        # The hub's SQuAD references, one per id (as the predictions are).
        answers_by_id = dict(zip(examples["id"], examples["answers"], strict=True))
        self.references = [
            {"id": qid, "answers": answers} for qid, answers in answers_by_id.items()
        ]
        self.metric = load_metric(SQUAD_METRIC_PATH)
        self.features = {
            "example_id": list(features["example_id"]),
            "offset_mapping": list(features["offset_mapping"]),
        }
        self.post = post

    def __call__(self, outputs: dict[str, np.ndarray]) -> tuple[Scores, Predictions]:
        predictions = postprocess_predictions(
            self.examples,
            self.features,
            outputs["start_logits"],
            outputs["end_logits"],
            n_best=self.post.n_best,
            max_answer_length=self.post.max_answer_length,
        )
        scores = self.metric.compute(
            predictions=[{"id": qid, "prediction_text": text} for qid, text in predictions.items()],
            references=self.references,
        )
        return scores, predictions


class _NextTokenDecoder:
    outputs = ("logits",)

    def __init__(self, splits: DatasetDict, split: str, task: TaskSpec, post: PostProcessing
                 ) -> None:
        # The model predicts token t + 1 of a block from tokens 0..t, as in training.
        self.targets = torch.as_tensor(np.asarray(splits[split]["input_ids"])[:, 1:])

    def __call__(self, outputs: dict[str, np.ndarray]) -> tuple[Scores, Predictions]:
        logits = torch.from_numpy(outputs["logits"][:, :-1])
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), self.targets,
                                                      reduction="none")
        per_block = per_token.double().mean(dim=1).numpy()
        loss = float(per_block.mean())
        return ({"loss": loss, "perplexity": math.exp(loss)},
                {str(i): float(value) for i, value in enumerate(per_block)})


# How model outputs become predictions and scores, by TaskSpec.kind.
DECODERS: dict[str, Callable[[DatasetDict, str, TaskSpec, PostProcessing], Decoder]] = {
    "classification": _GlueDecoder,
    "regression": _GlueDecoder,
    "extractive_qa": _SpanDecoder,
    "language_modeling": _NextTokenDecoder,
}


class Evaluator:
    """Scores a model on one of a task's prepared splits (``split``, the dev split by default);
    callable as ``evaluator(model)``.

    Returns ``(scores, predictions)``: the task's metrics (GLUE: fractions; SQuAD:
    ``exact_match`` and ``f1`` on the 0-100 scale) and the predictions behind them (SQuAD:
    ``{question id: answer text}`` for every dev question, ready for
    :func:`adaopt.qa.write_predictions`). ``n_best`` and ``max_answer_length`` only matter
    for extractive QA.
    """

    def __init__(
        self,
        splits: DatasetDict,
        task: TaskSpec,
        tokenizer: PreTrainedTokenizerBase | None,
        batch_size: int,
        precision: str = "fp32",
        *,
        split: str = "validation",
        n_best: int = PostProcessing.n_best,
        max_answer_length: int = PostProcessing.max_answer_length,
    ) -> None:
        self.split, self.task, self.precision = split, task, precision
        post = PostProcessing(n_best, max_answer_length)
        self.decode = DECODERS[task.kind](splits, split, task, post)
        self.loader = make_loader(splits[split], tokenizer, batch_size, train=False)
        examples = examples_split(split)
        self.examples = len(splits[examples] if examples in splits else splits[split])

    def __call__(self, model: torch.nn.Module) -> tuple[Scores, Predictions]:
        outputs = forward_outputs(model, self.loader, self.precision, self.decode.outputs)
        return self.decode(outputs)
