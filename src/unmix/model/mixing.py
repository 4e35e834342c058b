"""Mixing rules: how two images in [-1, 1] become the one picture the network sees."""

from __future__ import annotations

from collections.abc import Callable

import torch

from unmix.names import MIX_NAMES

Tensor = torch.Tensor


def quarter_sum(a: Tensor, b: Tensor) -> Tensor:
    """(a + b) / 4: what the seed notebook's code computed."""
    return (a + b) / 4


def mean(a: Tensor, b: Tensor) -> Tensor:
    """(a + b) / 2: the plain average."""
    return (a + b) / 2


def half_difference(a: Tensor, b: Tensor) -> Tensor:
    """(a - b) / 2: what the seed notebook's text described."""
    return (a - b) / 2


# unmix.names.MIX_NAMES, in its order, each with its function.
MIXES: dict[str, Callable[[Tensor, Tensor], Tensor]] = dict(zip(MIX_NAMES, (quarter_sum, mean, half_difference)))


# Every mix is linear, mix(a, b) = alpha * a + beta * b: what mixture consistency projects onto.
MIX_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "quarter_sum": (0.25, 0.25),
    "mean": (0.5, 0.5),
    "half_difference": (0.5, -0.5),
}


def mixture_consistent(out_1: Tensor, out_2: Tensor, mixture: Tensor, mix: str) -> tuple[Tensor, Tensor]:
    """Project two outputs so that mix(out_1, out_2) == mixture exactly (Wisdom et al., 2019).

    The residual r = mixture - (alpha out_1 + beta out_2) is shared out as the smallest
    change that removes it: out_i += c_i r / (alpha^2 + beta^2), with c = (alpha, beta).
    """
    alpha, beta = MIX_COEFFICIENTS[mix]
    residual = mixture - (alpha * out_1 + beta * out_2)
    norm = alpha**2 + beta**2
    return out_1 + (alpha / norm) * residual, out_2 + (beta / norm) * residual


def trivial_separation(mixture: Tensor, mix: str) -> tuple[Tensor, Tensor]:
    """The "doing nothing" separator: two outputs made from the mixture by a fixed rule.

    For the sum mixes both outputs are the mixture rescaled to one image's range; for the
    difference mix they are mid-grey (0 in [-1, 1]) plus and minus the mixture.
    """
    if mix == "quarter_sum":
        return 2 * mixture, 2 * mixture
    if mix == "mean":
        return mixture, mixture
    if mix == "half_difference":
        return mixture, -mixture
    raise ValueError(f"unknown mix {mix!r}; expected one of {', '.join(MIXES)}")
