"""Training speed of a set in float32 against bf16 (`precision`), alternated in one run.

    python benchmarks/precision_speed.py --set best --images 4000 --pairs 3

Trains the set's model for one epoch on `--images` CIFAR-10 images (the image folder, or
generated shapes with `--source shapes`) with the training loop itself (`train_separator`,
validation included), once with `precision: fp32` and once with `bf16`, `--pairs` times in
alternation, and prints each epoch's seconds, the median of the per-pair speedups (fp32
time / bf16 time) and both final training losses. The CPU's vector extensions come first:
bf16 only pays where they include AVX512-BF16 or AMX.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from common import DEFAULT_IMAGES, REPO, benchmark_subsets


def timed_epoch(set_config, subsets, precision: str) -> tuple[float, float]:
    """Seconds of one training epoch in `precision`, and its training loss."""
    import torch

    from unmix.training.sets import fit_set

    config = dataclasses.replace(set_config, epochs=1, precision=precision)
    started = time.perf_counter()
    _, history = fit_set(config, subsets, torch.device("cpu"))
    return time.perf_counter() - started, history[-1].train_l1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="set_name", default="best")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--source", choices=("imagefolder", "shapes"), default="imagefolder")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image folder (imagefolder source)")
    parser.add_argument("--n-train", type=int, default=4000, help="training images (one epoch)")
    parser.add_argument("--pairs", type=int, default=3, help="alternated fp32/bf16 pairs")
    args = parser.parse_args()
    import torch

    from unmix.config import load_config

    set_config = load_config(args.params).set(args.set_name)
    subsets = benchmark_subsets(args.source, args.images, args.n_train, 64)
    print(
        f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; set {args.set_name}, {args.n_train} images, one epoch each"
    )
    timed_epoch(set_config, subsets, "bf16")  # warm-up: oneDNN builds its kernels on first use
    ratios, losses = [], {}
    for pair in range(1, args.pairs + 1):
        seconds = {}
        for precision in ("fp32", "bf16") if pair % 2 else ("bf16", "fp32"):
            seconds[precision], losses[precision] = timed_epoch(set_config, subsets, precision)
        ratios.append(seconds["fp32"] / seconds["bf16"])
        print(
            f"pair {pair}: fp32 {seconds['fp32']:.2f} s, bf16 {seconds['bf16']:.2f} s, speedup {ratios[-1]:.3f}",
            flush=True,
        )
    print(f"final train L1: fp32 {losses['fp32']:.6f}, bf16 {losses['bf16']:.6f}")
    print(
        f"bf16 speedup over fp32, median of {len(ratios)} alternated pairs: {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
