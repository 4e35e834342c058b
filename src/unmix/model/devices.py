"""Where the arithmetic runs: the CPU, or a CUDA GPU with bf16 autocast and channels-last."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch
from torch import nn

from unmix.config import DEVICES, PRECISIONS
from unmix.errors import ConfigError


def resolve_device(requested: str, name: str = "device") -> torch.device:
    """`auto` → cuda when a GPU is usable, else cpu; `cuda` without one is a one-line error."""
    if requested not in DEVICES:
        raise ConfigError(f"{name}: expected one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{name}: cuda requested, but torch {torch.__version__} sees no usable CUDA GPU; use cpu or auto"
        )
    return torch.device(requested)


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether arithmetic runs under bf16 autocast: `auto` means on CUDA only.

    `auto` keeps the CPU in float32, whose results are bit-for-bit the same on any x86 CPU;
    `bf16` on a CPU with native bf16 (AVX512-BF16 or AMX) trains about twice as fast, with
    results reproducible on CPUs of that kind.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """bf16 autocast where `uses_bf16` says so (no loss scaling needed); else float32."""
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device, precision: str = "auto") -> torch.memory_format:
    """channels-last with bf16 (cuDNN's and oneDNN's NHWC kernels are the fast ones there);
    contiguous for float32 on the CPU, the layout its results were always computed in."""
    return torch.channels_last if uses_bf16(device, precision) else torch.contiguous_format


def place_model(model: nn.Module, device: torch.device, precision: str = "auto") -> nn.Module:
    """Move `model` (in place) to `device` in the memory format `precision` runs in there."""
    return model.to(device=device, memory_format=memory_format(device, precision))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (cpu for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
