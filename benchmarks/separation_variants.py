"""Separator variants at one fixed training-time budget: which change buys quality?

    python benchmarks/separation_variants.py                  # every variant, 5 minutes each
    python benchmarks/separation_variants.py --minutes 2 --variants unet_l1 unet_w48_logmse

Each variant trains a mixture-consistent separator on the `mean` mix of the CIFAR-10 copy
(39,500 training images, flips, fresh random pairs every batch) for the same wall-clock
budget: a few warm-up steps measure its speed, which sizes a one-cycle schedule to the
budget, then a freshly initialised model trains for that many steps. It is scored on fixed
validation pairs drawn from other images (best-assignment PSNR and seed L1). The last line
names the best variant and the spread of all of them.

This is an exploration tool for the `best` set, not the pipeline: batches are drawn with
replacement and the loop is the plain one, so its numbers sit near, not on, a stage's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import DEFAULT_IMAGES, benchmark_subsets  # also puts src/ on the path

import torch
import torch.nn.functional as F
from torch import nn

from unmix.evaluation.inference import separate
from unmix.evaluation.metrics import best_psnr_and_seed_l1, per_image_mse
from unmix.model.mixing import mean, trivial_separation
from unmix.model.networks import ConsistentSeparator, UNetSeparator, _conv_block, _conv_bn_relu
from unmix.model.tensors import channels_first_view, normalise, to_channels_first
from unmix.training.loop import random_flips
from unmix.training.losses import permutation_invariant_l1

WARMUP_STEPS = 8  # timed steps that size the schedule to the budget


class PixelShuffleUNet(nn.Module):
    """The U-Net working from 16x16: a space-to-depth stem in, a pixel-shuffle head out."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        channels = [width * 2**level for level in range(depth + 1)]
        self.stem = _conv_block(12, channels[0])
        self.down = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(c_in, c_out, stride=2), _conv_bn_relu(c_out, c_out))
            for c_in, c_out in zip(channels, channels[1:])
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(c_out, c_in, 2, stride=2) for c_in, c_out in zip(channels, channels[1:])
        )
        self.fuse = nn.ModuleList(_conv_block(2 * c, c) for c in channels[:-1])
        self.head = nn.Conv2d(channels[0], 24, 3, padding=1)  # 2 images x 3 channels x 2x2 pixels

    def forward(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.stem(F.pixel_unshuffle(mixture, 2))
        skips = []
        for down in self.down:
            skips.append(features)
            features = down(features)
        for up, fuse in zip(reversed(self.up), reversed(self.fuse)):
            features = fuse(torch.cat([up(features), skips.pop()], dim=1))
        out = F.pixel_shuffle(self.head(features), 2)
        return out[:, :3], out[:, 3:]


def cheaper_assignment(per_image: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A loss: per pair, the sum of `per_image` under the cheaper output-to-image assignment, averaged."""

    def loss(out_1, out_2, a, b):
        direct = per_image(out_1, a) + per_image(out_2, b)
        return torch.minimum(direct, per_image(out_1, b) + per_image(out_2, a)).mean()

    return loss


def five_log10_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus an image's PSNR up to a constant; summed over both images by `cheaper_assignment`."""
    return 5 * torch.log10(per_image_mse(output, target) + 1e-4)


@dataclass(frozen=True)
class Variant:
    arch: str  # unet | shuffle
    width: int
    depth: int
    loss: str  # l1 | mse | logmse
    lr: float

    def build(self) -> nn.Module:
        separator = (UNetSeparator if self.arch == "unet" else PixelShuffleUNet)(self.width, self.depth)
        return ConsistentSeparator(separator, "mean")


LOSSES = {
    "l1": permutation_invariant_l1,
    "mse": cheaper_assignment(per_image_mse),
    "logmse": cheaper_assignment(five_log10_mse),
}
VARIANTS = {
    "unet_l1": Variant("unet", 32, 3, "l1", 2e-3),  # the `best` set
    "unet_mse": Variant("unet", 32, 3, "mse", 2e-3),
    "unet_logmse": Variant("unet", 32, 3, "logmse", 2e-3),
    "unet_logmse_lr4e-3": Variant("unet", 32, 3, "logmse", 4e-3),
    "unet_d4_logmse": Variant("unet", 32, 4, "logmse", 2e-3),
    "unet_w48_logmse": Variant("unet", 48, 3, "logmse", 2e-3),
    "shuffle_w64_l1": Variant("shuffle", 64, 3, "l1", 2e-3),
}


def train_for(
    variant: Variant, train: torch.Tensor, seconds: float, batch_size: int, seed: int
) -> tuple[nn.Module, int]:
    """A fresh model of `variant` trained for about `seconds`; returns it and its step count."""
    loss_fn = LOSSES[variant.loss]
    generator = torch.Generator().manual_seed(seed)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        drawn = train[torch.randint(len(train), (batch_size,), generator=generator)]
        batch = random_flips(normalise(drawn.contiguous()), generator)
        a, b = batch[: batch_size // 2], batch[batch_size // 2 :]
        loss = loss_fn(*model(mean(a, b)), a, b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    torch.manual_seed(seed)
    warmup = variant.build().train()
    optimizer = torch.optim.Adam(warmup.parameters(), lr=variant.lr)
    step(warmup, optimizer)  # the first step pays one-off allocations: not timed
    started = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        step(warmup, optimizer)
    steps = max(1, int(seconds * WARMUP_STEPS / (time.perf_counter() - started)))
    torch.manual_seed(seed)
    model = variant.build().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=variant.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=variant.lr, total_steps=steps)
    for _ in range(steps):
        step(model, optimizer)
        schedule.step()
    return model.eval(), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="imagefolder", choices=("imagefolder", "shapes"))
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image-folder root")
    parser.add_argument("--n-train", type=int, default=39500)
    parser.add_argument("--n-valid", type=int, default=2000, help="validation images (two per pair)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of every variant")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (half as many pairs)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    subsets = benchmark_subsets(args.source, args.images, args.n_train, args.n_valid)
    train = channels_first_view(subsets.train.images)
    valid_a, valid_b = normalise(to_channels_first(subsets.valid.a)), normalise(to_channels_first(subsets.valid.b))
    valid_mixture = mean(valid_a, valid_b)
    baseline, _ = best_psnr_and_seed_l1(*trivial_separation(valid_mixture, "mean"), valid_a, valid_b)
    print(
        f"data: {args.source}, {len(train)} train images, {len(valid_a)} validation pairs; "
        f"{args.minutes:g} minutes per variant; trivial baseline PSNR {float(baseline.mean()):.2f} dB",
        flush=True,
    )
    scores = {}
    for name in args.variants:
        started = time.perf_counter()
        model, steps = train_for(VARIANTS[name], train, args.minutes * 60, args.batch_size, seed=0)
        minutes = (time.perf_counter() - started) / 60
        psnr, seed_l1 = best_psnr_and_seed_l1(*separate(model, valid_mixture), valid_a, valid_b)
        scores[name] = float(psnr.mean())
        print(
            f"{name}: {VARIANTS[name]}, {steps} steps, {minutes:.1f} min with warm-up: "
            f"PSNR {scores[name]:.2f} dB, seed L1 {float(seed_l1.mean()):.4f}",
            flush=True,
        )
    best = max(scores, key=scores.get)
    spread = max(scores.values()) - min(scores.values())
    print(f"best variant: {best} at {scores[best]:.2f} dB; spread of all {spread:.2f} dB")


if __name__ == "__main__":
    main()
