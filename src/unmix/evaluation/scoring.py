"""Judge a separator on fixed pairs, beside the trivial "output the mixture" separator; a set's
evaluate step, its metrics added to its MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from unmix.evaluation.inference import separate_with_flips
from unmix.evaluation.metrics import assignment_swapped, best_seed_l1, pair_metrics, seed_l1, to_pixel_range
from unmix.model.devices import place_model, resolve_device
from unmix.model.mixing import MIXES, trivial_separation
from unmix.model.tensors import normalise, to_uint8_images
from unmix.progress import StepProgress

if TYPE_CHECKING:  # annotations only
    from unmix.config import SetConfig
    from unmix.data.subset import Subsets

Tensor = torch.Tensor

# Pairs scored at a time: SSIM on 5,000 pairs takes long enough to want progress, and
# every score is per pair, so chunks give the same numbers.
SCORE_CHUNK = 500


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


def score_in_chunks(out_1: Tensor, out_2: Tensor, a: Tensor, b: Tensor, progress: StepProgress) -> dict[str, Tensor]:
    """`score_outputs` over chunks of SCORE_CHUNK pairs, reporting each chunk to `progress`."""
    parts = []
    for start in range(0, len(a), SCORE_CHUNK):
        chunk = slice(start, start + SCORE_CHUNK)
        parts.append(score_outputs(out_1[chunk], out_2[chunk], a[chunk], b[chunk]))
        progress.update(len(parts[-1]["seed_l1"]))
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


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


def evaluate_separator(
    model: nn.Module, a_images: np.ndarray, b_images: np.ndarray, mix: str, test_flips: bool = False
) -> Evaluation:
    """Score `model` (with `test_flips`, its test-time flip average) and the trivial baseline
    on fixed uint8 (P, 32, 32, 3) pairs."""
    a = normalise(torch.from_numpy(a_images).permute(0, 3, 1, 2))
    b = normalise(torch.from_numpy(b_images).permute(0, 3, 1, 2))
    mixture = MIXES[mix](a, b)
    out_1, out_2 = separate_with_flips(model, mixture, test_flips)
    with StepProgress(2 * len(a), "scoring model and baseline", "pair") as progress:
        model_scores = score_in_chunks(out_1, out_2, a, b, progress)
        baseline_scores = score_in_chunks(*trivial_separation(mixture, mix), a, b, progress)
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


def evaluate_set(
    model: nn.Module, set_config: SetConfig, subsets: Subsets, tracker: Any, device: torch.device | None = None
) -> Evaluation:
    """Score the model on the fixed test pairs, on the set's device, and add the metrics to its run."""
    place_model(model, device or resolve_device(set_config.device))
    evaluation = evaluate_separator(model, subsets.test.a, subsets.test.b, set_config.mix, set_config.test_flips)
    tracker.log_metrics({k: v for k, v in flatten_metrics(evaluation.metrics).items() if not k.endswith("n_pairs")})
    return evaluation
