"""Image-quality metrics in [0, 1] pixel space, per image and per pair, on torch tensors."""

from __future__ import annotations

import torch

from unmix.losses import per_pair_l1

Tensor = torch.Tensor

# An exact reconstruction has infinite PSNR; capping it keeps averages finite.
MAX_PSNR_DB = 100.0


def to_pixel_range(x: Tensor) -> Tensor:
    """Map [-1, 1] network space to [0, 1] pixel space, clipping what falls outside."""
    return ((x + 1) / 2).clamp(0, 1)


def per_image_mae(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per image: shape (N,)."""
    return per_pair_l1(output, target)


def per_image_mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per image: shape (N,)."""
    return (output - target).square().flatten(1).mean(dim=1)


def psnr_from_mse(mse: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB for data range 1, capped at MAX_PSNR_DB."""
    floor = 10 ** (-MAX_PSNR_DB / 10)
    return -10 * torch.log10(mse.clamp_min(floor))


def pair_metrics(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> dict[str, dict[str, Tensor]]:
    """Per-pair MAE, MSE and PSNR, averaged over the pair's two images, for both assignments.

    All inputs in [0, 1]. "fixed" pairs output 1 with a and output 2 with b; "best" takes,
    per pair and per metric, whichever assignment scores better on that metric.
    """
    direct = _scores(out_1, a), _scores(out_2, b)
    swapped = _scores(out_1, b), _scores(out_2, a)
    fixed, best = {}, {}
    for name in ("mae", "mse", "psnr"):
        straight = (direct[0][name] + direct[1][name]) / 2
        crossed = (swapped[0][name] + swapped[1][name]) / 2
        fixed[name] = straight
        best[name] = torch.maximum(straight, crossed) if name == "psnr" else torch.minimum(straight, crossed)
    return {"fixed": fixed, "best": best}


def seed_l1(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The seed notebook's number per pair: L1(out 1, a) + L1(out 2, b) in [-1, 1] space."""
    return per_pair_l1(out_1, a) + per_pair_l1(out_2, b)


def _scores(output: Tensor, target: Tensor) -> dict[str, Tensor]:
    mse = per_image_mse(output, target)
    return {"mae": per_image_mae(output, target), "mse": mse, "psnr": psnr_from_mse(mse)}
