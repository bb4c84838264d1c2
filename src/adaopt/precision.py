"""Numeric precision of a run: fp32, bf16 autocast, or fp16 autocast with a gradient scaler.

``train.precision`` picks one for training and held-out scoring alike. bf16 runs wherever torch
has bf16 kernels; on a CPU without native bf16 (AVX2, no AVX512-BF16 or AMX) torch emulates it
and a step runs many times slower than fp32 (:func:`native_bf16` tells; the precision ablation
skips bf16 there). fp16 needs a CUDA GPU, because its small range needs the gradient scaler that
only CUDA's autocast pairs with, so it is refused on a CPU with one line before any compute.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device_type: str, where: str = "train.precision") -> None:
    """Raise ValueError (one line) for a precision this device cannot train in."""
    if precision not in PRECISIONS:
        raise ValueError(f"{where}={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type != "cuda":
        raise ValueError(f"{where}=fp16 needs a CUDA GPU (fp16 autocast with a gradient "
                         f"scaler); on {device_type} use fp32 or bf16")


def native_bf16(device_type: str) -> bool:
    """Whether this device computes bf16 natively (a CUDA GPU that supports it; a CPU with
    oneDNN's bf16 kernels, i.e. AVX512-BF16 or AMX), rather than emulating it."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(precision: str, device_type: str) -> AbstractContextManager[None]:
    """Autocast to the precision's dtype; a no-op for fp32."""
    return torch.autocast(device_type, dtype=_DTYPES.get(precision, torch.bfloat16),
                          enabled=precision != "fp32")


def grad_scaler(precision: str, device_type: str) -> torch.amp.GradScaler:
    """The loss scaler fp16 needs; disabled (every call passes through) otherwise."""
    return torch.amp.GradScaler(device_type, enabled=precision == "fp16")


def use_tf32(enabled: bool, device_type: str) -> None:
    """TF32 for CUDA's fp32 matmuls and convolutions (``train.tf32``): on Ampere and later GPUs
    several times faster, with 10-bit mantissas in the products. The CPU has no TF32."""
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
