"""Time to the seed's final quality: (A) the `seed` set's full budget vs (B) unmix's fastest set.

    python benchmarks/time_to_quality.py            # CIFAR-10 copy, 1000 train images, 1201 epochs for A
    python benchmarks/time_to_quality.py --device cuda

Both train in this one process on the same images (the CIFAR-10 JPEG copy in ../shared
through the image-folder source, 1000 training images, fixed validation pairs drawn from
other images) with the same mix, A's. A runs its full budget; B trains until its
validation scores are at least as good as A's final ones: best-assignment PSNR and
seed-comparable L1 (the two decoders' L1 in [-1, 1], the same best assignment), both
measured after every epoch of B and inside B's clock. The last line is
`time-to-quality speedup: <A seconds / B seconds>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from common import DEFAULT_IMAGES, REPO, benchmark_subsets  # also puts src/ on the path

import torch

from unmix.config import load_config
from unmix.data.subset import PairSet
from unmix.evaluation.inference import pair_mixture, separate
from unmix.evaluation.metrics import best_psnr_and_seed_l1
from unmix.model.devices import resolve_device
from unmix.model.mixing import trivial_separation
from unmix.model.tensors import normalise, to_channels_first
from unmix.training.sets import fit_set
from unmix.training.state import EpochResult


class QualityReached(Exception):
    """Raised from B's epoch callback once B scores at least as well as A."""


@dataclasses.dataclass(frozen=True)
class Quality:
    psnr: float  # dB, best assignment, mean over validation pairs
    seed_l1: float  # the seed's number, best assignment

    def at_least(self, other: Quality) -> bool:
        return self.psnr >= other.psnr and self.seed_l1 <= other.seed_l1

    def __str__(self) -> str:
        return f"PSNR {self.psnr:.2f} dB, seed L1 {self.seed_l1:.4f}"


def quality(out_1: torch.Tensor, out_2: torch.Tensor, valid: PairSet) -> Quality:
    """Mean best-assignment PSNR and seed L1 of outputs against the validation pairs."""
    a, b = normalise(to_channels_first(valid.a)), normalise(to_channels_first(valid.b))
    psnr, l1 = best_psnr_and_seed_l1(out_1, out_2, a, b)
    return Quality(float(psnr.mean()), float(l1.mean()))


def model_quality(model: torch.nn.Module, valid: PairSet, mix: str) -> Quality:
    return quality(*separate(model, pair_mixture(valid, mix)), valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--source", default="imagefolder", choices=("imagefolder", "shapes"))
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image-folder root")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-valid", type=int, default=1000, help="validation images (two per pair)")
    parser.add_argument("--seed-set", default="seed")
    parser.add_argument("--seed-epochs", type=int, default=1201, help="A's budget: the notebook's 1201")
    parser.add_argument("--fast-set", default="best", help="B: the set that reaches quality fastest")
    parser.add_argument(
        "--fast-epochs",
        type=int,
        default=None,
        help="B's schedule length in epochs (default: the set's own); B stops earlier",
    )
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    device = resolve_device(args.device, name="--device")

    config = load_config(args.params)
    seed_set = dataclasses.replace(config.set(args.seed_set), epochs=args.seed_epochs, validate_every=50)
    fast_set = config.set(args.fast_set)
    # Same mix as A, so both are judged on identical validation mixtures.
    fast_set = dataclasses.replace(
        fast_set,
        mix=seed_set.mix,
        epochs=args.fast_epochs or fast_set.epochs,
        validate_every=args.fast_epochs or fast_set.epochs,
    )
    subsets = benchmark_subsets(args.source, args.images, args.n_train, args.n_valid)
    print(
        f"data: {args.source} {args.images if args.source == 'imagefolder' else ''}, "
        f"{len(subsets.train)} train images, {len(subsets.valid)} validation pairs, mix {seed_set.mix}; "
        f"torch {torch.__version__} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    baseline = quality(*trivial_separation(pair_mixture(subsets.valid, seed_set.mix), seed_set.mix), subsets.valid)
    print(f"trivial baseline (mixture as both outputs): {baseline}", flush=True)

    print(f"A: set {args.seed_set!r} ({seed_set.arch}, {seed_set.loss} loss), {seed_set.epochs} epochs ...", flush=True)
    started = time.perf_counter()
    model_a, _ = fit_set(seed_set, subsets, device)
    seconds_a = time.perf_counter() - started
    target = model_quality(model_a, subsets.valid, seed_set.mix)
    print(f"A: {seconds_a:.1f} s ({seconds_a / 60:.1f} min) → {target}", flush=True)

    reached: list[tuple[int, float, Quality]] = []

    def check(result: EpochResult, model: torch.nn.Module) -> None:
        now = model_quality(model, subsets.valid, fast_set.mix)
        elapsed = time.perf_counter() - started
        print(f"  B epoch {result.epoch}: {elapsed:.1f} s, {now}", flush=True)
        if now.at_least(target):
            reached.append((result.epoch, elapsed, now))
            raise QualityReached

    print(
        f"B: set {args.fast_set!r} ({fast_set.arch} w{fast_set.width} d{fast_set.depth}, "
        f"{fast_set.loss} loss, consistency {fast_set.consistency}), up to {fast_set.epochs} epochs ...",
        flush=True,
    )
    from unmix.training.loop import TrainingHooks

    started = time.perf_counter()
    try:
        fit_set(fast_set, subsets, device, TrainingHooks(on_epoch_end=check))
    except QualityReached:
        pass
    if not reached:
        print(f"B did not reach A's quality within {fast_set.epochs} epochs ({time.perf_counter() - started:.1f} s)")
        sys.exit(1)
    epoch_b, seconds_b, quality_b = reached[0]
    print(f"B: {seconds_b:.1f} s ({epoch_b} epochs) → {quality_b}")
    print(f"A (seed, full budget): {seconds_a:.1f} s, {target}")
    print(f"B ({args.fast_set}, until A's quality): {seconds_b:.1f} s, {quality_b}")
    print(f"time-to-quality speedup: {seconds_a / seconds_b:.1f}")


if __name__ == "__main__":
    main()
