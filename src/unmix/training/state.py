"""What an epoch measured, and the state that continues training after it: weights, optimizer,
schedule, every RNG state (what a resume checkpoint holds)."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured: mean training loss, and validation scores when it ran."""

    epoch: int  # 1-based: the number of passes over the training images so far
    train_l1: float
    valid_l1: float | None
    valid_psnr: float | None = None  # dB, best assignment per pair, [0, 1] pixel space
    # Wall time since training started (before an interruption too), validation included,
    # and the Unix time the epoch ended; not part of equality: two identical runs never
    # take the same time.
    seconds: float = field(default=0.0, compare=False)
    finished_at: float = field(default=0.0, compare=False)


def training_state(
    history: list[EpochResult],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    averaged: nn.Module | None = None,
    copied: bool = False,
) -> dict:
    """Everything that continues training after `history[-1]`: weights, optimizer and schedule,
    every RNG state, the history as plain numbers; `torch.load(weights_only=True)` reads it back.

    Without `copied` the tensors are the live ones: save the state before training goes on.
    """
    state = {
        "epoch": history[-1].epoch,
        "history": [asdict(row) for row in history],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": rng_states(generator),
    }
    if averaged is not None:  # the weight average (AveragedModel), with its count of updates
        state["averaged"] = averaged.state_dict()
    return copy.deepcopy(state) if copied else state


def restore_training_state(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    averaged: nn.Module | None = None,
) -> list[EpochResult]:
    """Put a `training_state` back into freshly built objects; return its history."""
    model.load_state_dict(state["model"])
    if averaged is not None:
        averaged.load_state_dict(state["averaged"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    restore_rng_states(state["rng"], generator)
    return [EpochResult(**row) for row in state["history"]]


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every random state the loop can touch, as tensors and numbers.

    The batch generator cuts, pairs and flips; torch's global one draws dropout masks.
    NumPy's and Python's are not used today; kept so that a future use cannot break resume.
    """
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    states = {
        "batches": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_position": [int(v) for v in numpy_state[2:4]] + [float(numpy_state[4])],
        "python": torch.tensor(python_state[1], dtype=torch.int64),
        "python_gauss": python_state[2],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any], generator: torch.Generator) -> None:
    """Set what `rng_states` recorded."""
    generator.set_state(states["batches"])
    torch.set_rng_state(states["torch"])
    position, has_gauss, cached = states["numpy_position"]
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate((3, tuple(int(v) for v in states["python"].tolist()), states["python_gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
