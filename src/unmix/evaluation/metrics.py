"""Image-quality metrics in [0, 1] pixel space, per image and per pair, on torch tensors."""

from __future__ import annotations

import torch

Tensor = torch.Tensor

# An exact reconstruction has infinite PSNR; capping it keeps averages finite.
MAX_PSNR_DB = 100.0


def to_pixel_range(x: Tensor) -> Tensor:
    """Map [-1, 1] network space to [0, 1] pixel space, clipping what falls outside."""
    return ((x + 1) / 2).clamp(0, 1)


def per_pair_l1(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of each image against its target: shape (N,)."""
    return (output - target).abs().flatten(1).mean(dim=1)


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


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 2-D Gaussian window of SSIM (Wang et al., 2004): (size, size)."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def per_image_ssim(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM per image (N,): Gaussian 11x11 window, sigma 1.5, per channel, valid region."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    dtype = output.dtype
    # float64: E[x^2] - E[x]^2 cancels badly in float32 on flat regions.
    output, target = output.double(), target.double()
    channels, height, width = output.shape[1:]
    size = min(11, height, width)
    size -= 1 - size % 2  # odd, and no larger than the image: tiny test images still score
    window = gaussian_window(size).to(output.dtype)[None, None].repeat(channels, 1, 1, 1)

    def local_mean(x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, window, groups=channels)

    mu_x, mu_y = local_mean(output), local_mean(target)
    var_x = local_mean(output * output) - mu_x**2
    var_y = local_mean(target * target) - mu_y**2
    cov = local_mean(output * target) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).to(dtype)


def assignment_swapped(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per pair, True where output 1 ↔ b, output 2 ↔ a has the lower total squared error."""
    straight = per_image_mse(out_1, a) + per_image_mse(out_2, b)
    crossed = per_image_mse(out_1, b) + per_image_mse(out_2, a)
    return crossed < straight


def pair_metrics(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> dict[str, dict[str, Tensor]]:
    """Per-pair MAE, MSE, PSNR and SSIM, averaged over the pair's two images, both assignments.

    All inputs in [0, 1]. "fixed" pairs output 1 with a and output 2 with b; "best" takes,
    per pair, the one assignment with the lower squared error and reports every metric
    under it (choosing per metric would flatter the model).
    """
    direct = _scores(out_1, a), _scores(out_2, b)
    swapped = _scores(out_1, b), _scores(out_2, a)
    use_swapped = assignment_swapped(out_1, out_2, a, b)
    fixed, best = {}, {}
    for name in ("mae", "mse", "psnr", "ssim"):
        straight = (direct[0][name] + direct[1][name]) / 2
        crossed = (swapped[0][name] + swapped[1][name]) / 2
        fixed[name] = straight
        best[name] = torch.where(use_swapped, crossed, straight)
    return {"fixed": fixed, "best": best}


def seed_l1(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The seed notebook's number per pair: L1(out 1, a) + L1(out 2, b) in [-1, 1] space."""
    return per_pair_l1(out_1, a) + per_pair_l1(out_2, b)


def best_seed_l1(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor, swapped: Tensor) -> Tensor:
    """Per pair, the seed's L1 ([-1, 1] tensors) under the assignment `swapped` chose."""
    return torch.where(swapped, seed_l1(out_2, out_1, a, b), seed_l1(out_1, out_2, a, b))


def best_psnr_and_seed_l1(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per pair, from [-1, 1] tensors: PSNR (dB, [0, 1] pixels) and seed L1, best assignment.

    No SSIM: cheap enough to run after every epoch.
    """
    pixels = [to_pixel_range(x) for x in (out_1, out_2, a, b)]
    swapped = assignment_swapped(*pixels)
    first = torch.where(swapped[:, None, None, None], pixels[3], pixels[2])
    second = torch.where(swapped[:, None, None, None], pixels[2], pixels[3])
    psnr = (psnr_from_mse(per_image_mse(pixels[0], first)) + psnr_from_mse(per_image_mse(pixels[1], second))) / 2
    return psnr, best_seed_l1(out_1, out_2, a, b, swapped)


def _scores(output: Tensor, target: Tensor) -> dict[str, Tensor]:
    mse = per_image_mse(output, target)
    return {
        "mae": per_image_mae(output, target),
        "mse": mse,
        "psnr": psnr_from_mse(mse),
        "ssim": per_image_ssim(output, target),
    }
