"""Judge a separator on fixed pairs, beside the trivial "output the mixture" separator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unmix.metrics import assignment_swapped, best_seed_l1, pair_metrics, seed_l1, to_pixel_range
from unmix.mixing import MIXES, trivial_separation
from unmix.training import normalise, separate, to_uint8_images

Tensor = torch.Tensor


@dataclass(frozen=True)
class Evaluation:
    """Summary metrics, the same per pair, and the model's outputs as uint8 images."""

    metrics: dict
    per_pair: dict[str, np.ndarray]
    output_1: np.ndarray
    output_2: np.ndarray


def score_outputs(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor) -> dict[str, Tensor]:
    """Per-pair scores of outputs against truths, all in [-1, 1]: seed L1, fixed and best.

    `seed_l1` is the seed's number with its fixed assignment; `best/seed_l1` uses the same
    per-pair best assignment as the other best metrics, the only fair reading for a
    symmetric mix, where no network can know which image is "a".
    """
    pixel = [to_pixel_range(x) for x in (out_1, out_2, a, b)]
    swapped = assignment_swapped(*pixel)
    scores = {"seed_l1": seed_l1(out_1, out_2, a, b), "best/seed_l1": best_seed_l1(out_1, out_2, a, b, swapped)}
    for assignment, values in pair_metrics(*pixel).items():
        for name, per_pair in values.items():
            scores[f"{assignment}/{name}"] = per_pair
    return scores


def summarise(scores: dict[str, Tensor]) -> dict:
    """Average per-pair scores into the nested metrics.json layout."""
    summary: dict = {"n_pairs": len(scores["seed_l1"])}
    for key, per_pair in scores.items():
        node = summary
        *parents, leaf = key.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = round(float(per_pair.double().mean()), 6)
    return summary


def evaluate_separator(model: nn.Module, a_images: np.ndarray, b_images: np.ndarray, mix: str) -> Evaluation:
    """Score `model` and the trivial baseline on fixed uint8 (P, 32, 32, 3) pairs."""
    a = normalise(torch.from_numpy(a_images).permute(0, 3, 1, 2))
    b = normalise(torch.from_numpy(b_images).permute(0, 3, 1, 2))
    mixture = MIXES[mix](a, b)
    out_1, out_2 = separate(model, mixture)
    model_scores = score_outputs(out_1, out_2, a, b)
    baseline_scores = score_outputs(*trivial_separation(mixture, mix), a, b)
    per_pair = {f"test/{k}": v.numpy() for k, v in model_scores.items()}
    per_pair |= {f"baseline/{k}": v.numpy() for k, v in baseline_scores.items()}
    return Evaluation(
        metrics={"test": summarise(model_scores), "baseline": summarise(baseline_scores)},
        per_pair=per_pair,
        output_1=to_uint8_images(out_1),
        output_2=to_uint8_images(out_2),
    )


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """{"test": {"best": {"psnr": x}}} → {"test/best/psnr": x}: MLflow's metric names."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten_metrics(value, name + "/")
        else:
            flat[name] = float(value)
    return flat
