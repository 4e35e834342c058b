"""Where the arithmetic runs: the CPU, or a CUDA GPU with bf16 autocast and channels-last."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import nn

from unmix.config import DEVICES
from unmix.errors import ConfigError


def resolve_device(requested: str, name: str = "device") -> torch.device:
    """`auto` → cuda when a GPU is usable, else cpu; `cuda` without one is a one-line error."""
    if requested not in DEVICES:
        raise ConfigError(f"{name}: expected one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{name}: cuda requested, but torch {torch.__version__} sees no usable CUDA GPU; "
                          "use cpu or auto")
    return torch.device(requested)


def autocast(device: torch.device) -> ContextManager:
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); float32 on the CPU.

    The CPU keeps float32: bf16 matmuls are not faster on CPUs without AMX, and the CPU
    results stay bit-for-bit reproducible.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """channels-last on CUDA, where cuDNN's NHWC kernels are faster; contiguous on the CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move `model` (in place) to `device` in that device's memory format."""
    return model.to(device=device, memory_format=memory_format(device))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (cpu for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
