"""Training losses on a batch of pairs; images and outputs in [-1, 1], shape (N, 3, H, W)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from unmix.evaluation.metrics import per_pair_l1

Tensor = torch.Tensor


def fixed_assignment_l1(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The seed's loss: L1(output 1, a) + L1(output 2, b), averaged over pairs."""
    return (per_pair_l1(out_1, a) + per_pair_l1(out_2, b)).mean()


def permutation_invariant_l1(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per pair, the cheaper of the two output-to-image assignments, averaged over pairs.

    With a symmetric mix, mix(a, b) == mix(b, a), so no network can know which image
    decoder 1 should give; taking the minimum makes the task well-posed.
    """
    direct = per_pair_l1(out_1, a) + per_pair_l1(out_2, b)
    swapped = per_pair_l1(out_1, b) + per_pair_l1(out_2, a)
    return torch.minimum(direct, swapped).mean()


LOSSES: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]] = {
    "fixed": fixed_assignment_l1,
    "pit": permutation_invariant_l1,
}
