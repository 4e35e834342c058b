"""Images as the network takes them: uint8 (N, H, W, C) arrays and float [-1, 1] (N, C, H, W) tensors."""

from __future__ import annotations

import numpy as np
import torch

Tensor = torch.Tensor


def to_channels_first(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) array → contiguous uint8 (N, C, H, W) tensor; stays uint8 in memory."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def channels_first_view(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) array → (N, C, H, W) tensor sharing its memory: no copy of a big set."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def normalise(batch: Tensor) -> Tensor:
    """uint8 [0, 255] → float32 [-1, 1], the seed's Normalize(mean 0.5, std 0.5)."""
    return batch.float().div(127.5).sub_(1.0)  # div makes a copy: a float input is untouched


def to_uint8_images(x: Tensor) -> np.ndarray:
    """float [-1, 1] (N, C, H, W) tensor → uint8 (N, H, W, C) array, clipped and rounded."""
    pixels = ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()
