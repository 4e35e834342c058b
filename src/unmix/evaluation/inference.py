"""Running a trained separator: batched inference on mixtures, the test-time flip average, and
pictures of any size (`separate_pictures`: the one path `unmix separate` and the MLflow model share)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unmix.model.devices import autocast, memory_format, model_device
from unmix.model.mixing import MIXES
from unmix.model.tensors import normalise, to_channels_first, to_uint8_images

if TYPE_CHECKING:  # annotations only
    from unmix.data.subset import PairSet

Tensor = torch.Tensor

# Validation and inference batch (pairs); forward-only, so larger than a training batch.
INFERENCE_BATCH = 512


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
        return (
            f"the {arch} model takes {TRAINED_SIZE}×{TRAINED_SIZE} only: resized {width}×{height} "
            f"to {TRAINED_SIZE}×{TRAINED_SIZE} and the outputs back to {width}×{height}"
        )
    if plan.how == "padded":
        return (
            f"the {arch} model takes sizes that are multiples of {2**depth}: padded {width}×{height} "
            f"to {plan.width}×{plan.height} and cropped the outputs back"
        )
    return None


def separate_pictures(model: nn.Module, pictures: np.ndarray, arch: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Both outputs, uint8 (B, H, W, 3), for uint8 mixtures (B, H, W, 3) of one size."""
    if pictures.dtype != np.uint8 or pictures.ndim != 4 or pictures.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 mixtures of shape (batch, height, width, 3), got {pictures.dtype} {pictures.shape}"
        )
    height, width = pictures.shape[1:3]
    plan = size_plan(height, width, arch, depth)
    mixture = normalise(to_channels_first(pictures))  # (B, 3, H, W) in [-1, 1]
    if plan.how == "resized":
        mixture = F.interpolate(
            mixture, size=(plan.height, plan.width), mode="bilinear", align_corners=False, antialias=True
        )
    elif plan.how == "padded":
        # Replicate, not zeros: a border of mid-grey would read as an image edge to separate.
        mixture = F.pad(mixture, (0, plan.width - width, 0, plan.height - height), mode="replicate")
    out_1, out_2 = separate(model, mixture)  # (B, 3, plan.height, plan.width) each
    if plan.how == "resized":
        out_1, out_2 = (
            F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False) for out in (out_1, out_2)
        )
    elif plan.how == "padded":
        out_1, out_2 = out_1[..., :height, :width], out_2[..., :height, :width]
    return to_uint8_images(out_1), to_uint8_images(out_2)


def example_mixture(size: int = TRAINED_SIZE) -> np.ndarray:
    """A fixed (1, size, size, 3) uint8 mixture of two gradients: the MLflow model's input example."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    a = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 64.0)], -1)
    b = np.stack([np.full((size, size), 200.0), ramp[::-1, None].repeat(size, 1), ramp[None, ::-1].repeat(size, 0)], -1)
    return ((a + b) / 2).round().astype(np.uint8)[None]


@torch.inference_mode()
def separate(model: nn.Module, mixture: Tensor) -> tuple[Tensor, Tensor]:
    """Both float32 outputs of `model` (eval mode) for float mixtures, on the mixture's device.

    Batches go to the model's device and run there in inference-sized batches.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    firsts, seconds = [], []
    for start in range(0, len(mixture), INFERENCE_BATCH):
        batch = mixture[start : start + INFERENCE_BATCH].to(device).contiguous(memory_format=memory_format(device))
        with autocast(device):
            out_1, out_2 = model(batch)
        firsts.append(out_1.float().to(mixture.device))
        seconds.append(out_2.float().to(mixture.device))
    model.train(was_training)
    return torch.cat(firsts), torch.cat(seconds)


def merge_mirrored(out_1: Tensor, out_2: Tensor, mirrored_1: Tensor, mirrored_2: Tensor) -> tuple[Tensor, Tensor]:
    """Average two separations of one mixture: (out_1, out_2) and, mirrored back, those of its
    mirror image. Which mirrored output goes with which is decided per pair by the smaller
    L1 distance: a symmetric mix gives no reason for the two passes to order them alike."""
    kept = (out_1 - mirrored_1).abs().flatten(1).mean(1) + (out_2 - mirrored_2).abs().flatten(1).mean(1)
    crossed = (out_1 - mirrored_2).abs().flatten(1).mean(1) + (out_2 - mirrored_1).abs().flatten(1).mean(1)
    swap = (crossed < kept)[:, None, None, None]
    partner_1 = torch.where(swap, mirrored_2, mirrored_1)
    partner_2 = torch.where(swap, mirrored_1, mirrored_2)
    return (out_1 + partner_1) / 2, (out_2 + partner_2) / 2


def separate_with_flips(model: nn.Module, mixture: Tensor, flips: bool) -> tuple[Tensor, Tensor]:
    """`separate`, or with `flips` the test-time average of the mixture's and its mirror's
    separations (`merge_mirrored`): twice the inference for a better estimate."""
    out_1, out_2 = separate(model, mixture)
    if not flips:
        return out_1, out_2
    mirrored_1, mirrored_2 = separate(model, mixture.flip(-1))
    return merge_mirrored(out_1, out_2, mirrored_1.flip(-1), mirrored_2.flip(-1))


def pair_mixture(pairs: PairSet, mix: str) -> torch.Tensor:
    """The float (P, 3, 32, 32) mixtures the network sees for fixed uint8 pairs."""
    return MIXES[mix](normalise(to_channels_first(pairs.a)), normalise(to_channels_first(pairs.b)))
