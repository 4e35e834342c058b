"""Device choice: auto falls back to the CPU, cuda without a GPU is one clear line."""

from __future__ import annotations

import pytest
import torch

from unmix.errors import ConfigError
from unmix.model.devices import autocast, memory_format, model_device, place_model, resolve_device, uses_bf16


def test_cpu_is_always_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(("available", "expected"), [(False, "cpu"), (True, "cuda")])
def test_auto_picks_cuda_only_when_available(monkeypatch, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto") == torch.device(expected)


def test_cuda_without_a_gpu_names_the_parameter(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^sets\.best\.device: cuda requested, but torch .* no usable CUDA GPU"):
        resolve_device("cuda", name="sets.best.device")


def test_unknown_device_lists_the_choices():
    with pytest.raises(ConfigError, match=r"device: expected one of auto, cpu, cuda, got 'tpu'"):
        resolve_device("tpu")


def test_cpu_keeps_float32_and_contiguous_layout():
    cpu = torch.device("cpu")
    layer = torch.nn.Linear(4, 4)
    with autocast(cpu):
        assert layer(torch.ones(2, 4)).dtype == torch.float32
    assert memory_format(cpu) == torch.contiguous_format


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # the context is built, not entered
def test_cuda_asks_for_bf16_autocast_and_channels_last():
    cuda = torch.device("cuda")
    context = autocast(cuda)
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    assert memory_format(cuda) == torch.channels_last


def test_bf16_on_the_cpu_autocasts_and_goes_channels_last():
    cpu = torch.device("cpu")
    layer = torch.nn.Linear(4, 4)
    with autocast(cpu, "bf16"):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    assert memory_format(cpu, "bf16") == torch.channels_last
    assert place_model(torch.nn.Conv2d(3, 4, 3), cpu, "bf16").weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("device", "precision", "expected"),
    [
        ("cpu", "auto", False),
        ("cpu", "fp32", False),
        ("cpu", "bf16", True),
        ("cuda", "auto", True),
        ("cuda", "fp32", False),
        ("cuda", "bf16", True),
    ],
)
def test_uses_bf16_by_device_and_precision(device, precision, expected):
    assert uses_bf16(torch.device(device), precision) is expected


def test_unknown_precision_names_the_parameter():
    with pytest.raises(ConfigError, match=r"^precision: expected one of auto, fp32, bf16, got 'fp16'$"):
        uses_bf16(torch.device("cpu"), "fp16")


def test_place_model_and_model_device():
    model = place_model(torch.nn.Conv2d(3, 4, 3), torch.device("cpu"))
    assert model_device(model) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
