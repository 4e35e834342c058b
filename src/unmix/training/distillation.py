"""Distillation: a trained model's outputs as targets beside the truth.

A longer run's model separates a training mixture better than a short run's will; its two
outputs are a second pair of targets, smoother than the truth (what the mixture leaves
ambiguous, it averages). The student's loss blends both; the teacher only runs forward,
so each step costs one more forward pass of the teacher (about a third of a step of a
model of the same size).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from unmix.errors import ConfigError

Tensor = torch.Tensor
Loss = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def distilled_loss(
    loss: Loss, out_1: Tensor, out_2: Tensor, truth_term: Tensor, teacher_1: Tensor, teacher_2: Tensor, weight: float
) -> Tensor:
    """(1 - weight) · truth_term + weight · loss(outputs, teacher's outputs), where `truth_term`
    is loss(outputs, truth): the step computes it once, for this and for its report.

    With the permutation-invariant loss each term takes its own assignment: the teacher's
    output 1 may be either image.
    """
    return (1 - weight) * truth_term + weight * loss(out_1, out_2, teacher_1, teacher_2)


def load_teacher(path: str, name: str, mix: str) -> nn.Module:
    """The model file at `path` (written by the train stage) as a frozen teacher, in eval mode.

    A missing file, or a teacher trained on another `mix` than the student's (its outputs
    would answer another question), is one line naming the parameter `name`; an unreadable
    file is one line naming the file.
    """
    from unmix.errors import reading
    from unmix.model.model_file import load_model

    if not Path(path).is_file():
        raise ConfigError(f"{name}: {path}: no such model file; expected a models/<set>.pt written by a train stage")
    with reading(path, "train"):
        trained_on = torch.load(path, map_location="cpu", weights_only=True)["model_config"]["mix"]
    if trained_on != mix:
        raise ConfigError(
            f"{name}: {path} was trained on mix {trained_on}, this set mixes {mix}; expected a teacher of the same mix"
        )
    model, _ = load_model(path)
    model.requires_grad_(False)
    return model
