"""How a fine-tuned encoder is made smaller: each function returns a new model (or changes the
one it is given, where it says so) and knows nothing of the pipeline.

Quantization uses ``torch.ao.quantization.quantize_dynamic``: torch 2.13 deprecates it for
torchao's ``quantize_``, whose eager int8 path is slower than fp32 on a CPU without
``torch.compile`` (docs/compression.md), while ``torch.ao`` runs on fbgemm's int8 kernels; so
``torch.ao`` it is, its DeprecationWarning silenced here, and no new dependency.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader

TARGETS = ("labels", "start_positions", "end_positions")


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy with every ``nn.Linear`` dynamically quantized to int8 (weights int8, activations
    quantized per batch at run time); embeddings and LayerNorms stay fp32. CPU only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().eval(),
                                                      {nn.Linear}, dtype=torch.qint8)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a Hugging Face encoder (``model.<base>.encoder.layer``)."""
    return getattr(model, model.base_model_prefix).encoder.layer


def prunable_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of the encoder's transformer layers: what pruning touches (embeddings,
    pooler and task head are left dense, as usual)."""
    return [module for module in encoder_layers(model).modules() if isinstance(module, nn.Linear)]


def prune_global(model: nn.Module, sparsity: float) -> list[nn.Linear]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights over all prunable Linear
    weights together (global, unstructured), in place.

    The masks stay attached as forward pre-hooks (``weight = weight_orig * weight_mask``), so
    that a recovery fine-tune keeps the pruned weights at zero; :func:`finalize_pruning` makes
    them permanent. Returns the pruned layers.
    """
    layers = prunable_linears(model)
    prune.global_unstructured([(layer, "weight") for layer in layers],
                              pruning_method=prune.L1Unstructured, amount=sparsity)
    return layers


def finalize_pruning(layers: list[nn.Linear]) -> None:
    """Fold the masks into the weights and drop the hooks (a plain dense model again)."""
    for layer in layers:
        prune.remove(layer, "weight")


def sparsity_of(layers: list[nn.Linear]) -> float:
    """The fraction of exact zeros over the layers' weights together."""
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    return zeros / sum(layer.weight.numel() for layer in layers)


def _keep_rows(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller Linear holding the ``index`` outputs (``dim=0``) or inputs (``dim=1``)."""
    weight = linear.weight.detach().index_select(dim, index)
    smaller = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    smaller.weight.data.copy_(weight)
    if linear.bias is not None:
        smaller.bias.data.copy_(linear.bias.detach() if dim == 1 else linear.bias[index])
    return smaller


def prune_ffn_neurons(model: nn.Module, fraction: float) -> nn.Module:
    """A copy with ``fraction`` of every layer's FFN neurons removed (structured pruning).

    A neuron's importance is the norm of its input row times the norm of its output column;
    the least important go, and both FFN matrices shrink, so the dense kernels do less work
    (unstructured zeros, by contrast, cost as much as any other weight).
    """
    smaller = copy.deepcopy(model)
    for layer in encoder_layers(smaller):
        up, down = layer.intermediate.dense, layer.output.dense
        importance = up.weight.norm(dim=1) * down.weight.norm(dim=0)
        keep = max(1, round(up.out_features * (1 - fraction)))
        index = importance.topk(keep).indices.sort().values
        layer.intermediate.dense = _keep_rows(up, index, dim=0)
        layer.output.dense = _keep_rows(down, index, dim=1)
    smaller.config.intermediate_size = keep
    return smaller


def student_of(teacher: nn.Module, layers: int) -> nn.Module:
    """A student initialized from the teacher's first ``layers`` transformer layers (with its
    embeddings and task head)."""
    total = len(encoder_layers(teacher))
    if not 1 <= layers < total:
        raise ValueError(f"compress.distill.layers={layers}: a student needs 1 to {total - 1} "
                         f"of the teacher's {total} layers")
    student = copy.deepcopy(teacher)
    base = getattr(student, student.base_model_prefix)
    base.encoder.layer = nn.ModuleList(list(base.encoder.layer)[:layers])
    student.config.num_hidden_layers = layers
    return student


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, hard: torch.Tensor, *,
                      temperature: float, alpha: float, regression: bool) -> torch.Tensor:
    """``alpha * soft + (1 - alpha) * hard``: the soft term is Hinton et al.'s
    ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over the last dimension (classes,
    or token positions for span starts and ends), averaged over the batch; for regression
    (STS-B) it is the mean squared error to the teacher's output instead (no distribution to
    soften). ``hard`` is the task loss on the labels."""
    if regression:
        soft = nn.functional.mse_loss(student, teacher)
    else:
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(student / temperature, dim=-1),
            nn.functional.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean", log_target=True,
        ) * temperature**2
    return alpha * soft + (1 - alpha) * hard


Loss = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def task_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own training loss (cross-entropy, MSE, or span cross-entropy)."""
    return model(**batch).loss


def distill_objective(teacher: nn.Module, outputs: tuple[str, ...], *, temperature: float,
                      alpha: float, regression: bool) -> Loss:
    """The student's loss against ``teacher``'s ``outputs`` (``logits``, or the span start and
    end logits, whose soft terms are averaged)."""
    teacher.eval()

    def loss(student: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: value for key, value in batch.items() if key not in TARGETS}
        with torch.no_grad():
            taught = teacher(**inputs)
        result = student(**batch)
        terms = [distillation_loss(result[name], taught[name], result.loss,
                                   temperature=temperature, alpha=alpha, regression=regression)
                 for name in outputs]
        return torch.stack(terms).mean()

    return loss


def _cycle(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def fine_tune(model: nn.Module, loader: DataLoader, steps: int, lr: float,
              loss: Loss = task_loss) -> list[float]:
    """``steps`` AdamW steps at a constant ``lr`` (no weight decay) on the CPU, in place; the
    recovery after pruning and the distillation runs share it. Returns the losses.

    Pruning masks attached by :func:`prune_global` keep applying: the gradient of a masked
    weight is zero, and the weight itself is recomputed as ``orig * mask`` at every forward.
    """
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _, batch in zip(range(steps), _cycle(loader), strict=False):
        value = loss(model, batch)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(value.item())
    model.eval()
    return losses
