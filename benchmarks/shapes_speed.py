"""What CPU-independent data cost: the shapes generator with portable math against numpy's own.

    python benchmarks/shapes_speed.py --images 10000 --pairs 3

The generator computes sin, cos, arctan2, its blurs and its colour sums with
`unmix.data.portable_math` (IEEE basic operations in a fixed order) so that its bytes do not
depend on the CPU. This times `generate_shapes` as it is, then with those functions
swapped for numpy's SIMD-dispatched ufuncs and BLAS matmul (as the generator was before),
alternated `--pairs` times in one run, and prints the median slowdown (portable / numpy).
The issue's bound is 2x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import numpy as np

from unmix.data import shapes


def _numpy_layer_sum(weights, colours):
    return np.einsum("kb...,bk->b...", np.stack(weights), colours)


_NUMPY = {
    "sin": np.sin,
    "sincos": lambda x: (np.sin(x), np.cos(x)),
    "arctan2": np.arctan2,
    "matmul": np.matmul,
    "layer_sum": _numpy_layer_sum,
    "pixel_sum": lambda x: x.sum((-2, -1)),
}


@contextmanager
def numpy_math():
    """The generator with numpy's dispatched kernels in place of the portable ones."""
    saved = {name: getattr(shapes, name) for name in _NUMPY}
    try:
        for name, function in _NUMPY.items():
            setattr(shapes, name, function)
        yield
    finally:
        for name, function in saved.items():
            setattr(shapes, name, function)


def timed(n_images: int, seed: int) -> float:
    started = time.perf_counter()
    shapes.generate_shapes(n_images, seed)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--pairs", type=int, default=3, help="alternated portable/numpy pairs")
    args = parser.parse_args()
    timed(min(args.images, 1024), 0)  # warm-up: first-touch page faults, imports
    ratios = []
    for pair in range(1, args.pairs + 1):
        seconds = {}
        for kind in ("portable", "numpy") if pair % 2 else ("numpy", "portable"):
            if kind == "numpy":
                with numpy_math():
                    seconds[kind] = timed(args.images, pair)
            else:
                seconds[kind] = timed(args.images, pair)
        ratios.append(seconds["portable"] / seconds["numpy"])
        print(
            f"pair {pair}: portable {seconds['portable']:.2f} s, numpy {seconds['numpy']:.2f} s, "
            f"slowdown {ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"portable math costs {statistics.median(ratios):.3f}x numpy's kernels "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}; {args.images} images a run)"
    )


if __name__ == "__main__":
    main()
