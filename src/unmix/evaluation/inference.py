"""Separate uint8 pictures of any size: the one path `unmix separate` and the MLflow model share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import nn

from unmix.training.loop import normalise, separate, to_channels_first, to_uint8_images

# What every separator learned: 32×32 pictures. The seed architecture takes nothing else
# (its decoders end in a fixed 32×32 upsampling).
TRAINED_SIZE = 32


@dataclass(frozen=True)
class SizePlan:
    """How a picture of (height, width) reaches the network, and back."""

    height: int  # what the network sees
    width: int
    how: str  # "as is" | "padded" (then cropped back) | "resized" (then resized back)


def size_plan(height: int, width: int, arch: str, depth: int) -> SizePlan:
    """The seed model sees 32×32 only; the U-Net any multiple of 2**depth (its stride-2 steps)."""
    if arch == "seed":
        same = (height, width) == (TRAINED_SIZE, TRAINED_SIZE)
        return SizePlan(TRAINED_SIZE, TRAINED_SIZE, "as is" if same else "resized")
    multiple = 2**depth
    padded_h, padded_w = math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple
    return SizePlan(padded_h, padded_w, "as is" if (padded_h, padded_w) == (height, width) else "padded")


def size_note(height: int, width: int, arch: str, depth: int) -> str | None:
    """One line saying what happens to a picture of this size, or None when it fits as it is."""
    plan = size_plan(height, width, arch, depth)
    if plan.how == "resized":
        return (f"the {arch} model takes {TRAINED_SIZE}×{TRAINED_SIZE} only: resized {width}×{height} "
                f"to {TRAINED_SIZE}×{TRAINED_SIZE} and the outputs back to {width}×{height}")
    if plan.how == "padded":
        return (f"the {arch} model takes sizes that are multiples of {2**depth}: padded {width}×{height} "
                f"to {plan.width}×{plan.height} and cropped the outputs back")
    return None


def separate_pictures(model: nn.Module, pictures: np.ndarray, arch: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Both outputs, uint8 (B, H, W, 3), for uint8 mixtures (B, H, W, 3) of one size."""
    if pictures.dtype != np.uint8 or pictures.ndim != 4 or pictures.shape[-1] != 3:
        raise ValueError(f"expected uint8 mixtures of shape (batch, height, width, 3), "
                         f"got {pictures.dtype} {pictures.shape}")
    height, width = pictures.shape[1:3]
    plan = size_plan(height, width, arch, depth)
    mixture = normalise(to_channels_first(pictures))  # (B, 3, H, W) in [-1, 1]
    if plan.how == "resized":
        mixture = F.interpolate(mixture, size=(plan.height, plan.width), mode="bilinear",
                                align_corners=False, antialias=True)
    elif plan.how == "padded":
        # Replicate, not zeros: a border of mid-grey would read as an image edge to separate.
        mixture = F.pad(mixture, (0, plan.width - width, 0, plan.height - height), mode="replicate")
    out_1, out_2 = separate(model, mixture)  # (B, 3, plan.height, plan.width) each
    if plan.how == "resized":
        out_1, out_2 = (F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
                        for out in (out_1, out_2))
    elif plan.how == "padded":
        out_1, out_2 = out_1[..., :height, :width], out_2[..., :height, :width]
    return to_uint8_images(out_1), to_uint8_images(out_2)


def example_mixture(size: int = TRAINED_SIZE) -> np.ndarray:
    """A fixed (1, size, size, 3) uint8 mixture of two gradients: the MLflow model's input example."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    a = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 64.0)], -1)
    b = np.stack([np.full((size, size), 200.0), ramp[::-1, None].repeat(size, 1), ramp[None, ::-1].repeat(size, 0)], -1)
    return ((a + b) / 2).round().astype(np.uint8)[None]
