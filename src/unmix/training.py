"""The training loop: uint8 images in memory, batches cut from a seeded permutation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from unmix.losses import LOSSES
from unmix.mixing import MIXES

Tensor = torch.Tensor

# Validation and inference batch (pairs); forward-only, so larger than a training batch.
INFERENCE_BATCH = 512


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured: mean training loss, and validation loss when it ran."""

    epoch: int  # 1-based: the number of passes over the training images so far
    train_l1: float
    valid_l1: float | None


def to_channels_first(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) array → contiguous uint8 (N, C, H, W) tensor; stays uint8 in memory."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def normalise(batch: Tensor) -> Tensor:
    """uint8 [0, 255] → float32 [-1, 1], the seed's Normalize(mean 0.5, std 0.5)."""
    return batch.float().div(127.5).sub_(1.0)  # div makes a copy: a float input is untouched


def to_uint8_images(x: Tensor) -> np.ndarray:
    """float [-1, 1] (N, C, H, W) tensor → uint8 (N, H, W, C) array, clipped and rounded."""
    pixels = ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def train_separator(
    model: nn.Module,
    train_images: Tensor,
    valid_a: Tensor,
    valid_b: Tensor,
    *,
    mix: str,
    loss: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    validate_every: int,
    on_epoch_end: Callable[[EpochResult, nn.Module], None] | None = None,
) -> list[EpochResult]:
    """Train `model` in place as the seed does: each batch split in halves a, b, mixed.

    Images are uint8 (N, 3, 32, 32) tensors. Same arguments and seed give the same
    numbers on the CPU.
    """
    mix_fn, loss_fn = MIXES[mix], LOSSES[loss]
    torch.manual_seed(seed)  # dropout masks
    batch_order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        permutation = torch.randperm(len(train_images), generator=batch_order)
        loss_sum = torch.zeros(())
        pairs_seen = 0
        for start in range(0, len(permutation), batch_size):
            batch = normalise(train_images[permutation[start : start + batch_size]])
            half = len(batch) // 2
            if half == 0:
                continue  # a last batch of one image makes no pair
            a, b = batch[:half], batch[half : 2 * half]
            out_1, out_2 = model(mix_fn(a, b))
            step_loss = loss_fn(out_1, out_2, a, b)
            optimizer.zero_grad(set_to_none=True)
            step_loss.backward()
            optimizer.step()
            # Accumulate on the tensor: a .item() here would sync every step.
            loss_sum += step_loss.detach() * half
            pairs_seen += half
        valid_l1 = None
        if epoch % validate_every == 0 or epoch == epochs:
            valid_l1 = mean_pair_loss(model, valid_a, valid_b, mix=mix, loss=loss)
        result = EpochResult(epoch, float(loss_sum) / pairs_seen, valid_l1)
        history.append(result)
        if on_epoch_end is not None:
            on_epoch_end(result, model)
    model.eval()
    return history


@torch.inference_mode()
def separate(model: nn.Module, mixture: Tensor) -> tuple[Tensor, Tensor]:
    """Both outputs of `model` (eval mode) for float mixtures, in inference-sized batches."""
    was_training = model.training
    model.eval()
    outputs = [model(mixture[start : start + INFERENCE_BATCH]) for start in range(0, len(mixture), INFERENCE_BATCH)]
    model.train(was_training)
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])


def mean_pair_loss(model: nn.Module, a: Tensor, b: Tensor, *, mix: str, loss: str) -> float:
    """The training loss of `model` (eval mode) averaged over fixed uint8 pairs (a[i], b[i])."""
    a, b = normalise(a), normalise(b)
    out_1, out_2 = separate(model, MIXES[mix](a, b))
    return float(LOSSES[loss](out_1, out_2, a, b))
