"""score_outputs/summarise by hand, evaluate_separator against the trivial baseline, flatten_metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from unmix.evaluation.scoring import Evaluation, evaluate_separator, flatten_metrics, score_outputs, summarise


def images(values: list[float]) -> torch.Tensor:
    """One-pixel, one-channel images in [-1, 1]: shape (len(values), 1, 1, 1)."""
    return torch.tensor(values).reshape(-1, 1, 1, 1)


@pytest.fixture
def three_pairs():
    # pair 0: exact;  pair 1: outputs swapped;  pair 2: a == b == 0, outputs +-0.2
    a = images([1.0, 1.0, 0.0])
    b = images([-1.0, -1.0, 0.0])
    out_1 = images([1.0, -1.0, 0.2])
    out_2 = images([-1.0, 1.0, -0.2])
    return out_1, out_2, a, b


def test_score_outputs_keys_and_per_pair_values(three_pairs):
    scores = score_outputs(*three_pairs)
    assert set(scores) == {
        "seed_l1",
        "best/seed_l1",
        "fixed/mae",
        "fixed/mse",
        "fixed/psnr",
        "fixed/ssim",
        "best/mae",
        "best/mse",
        "best/psnr",
        "best/ssim",
    }
    # seed L1 in [-1, 1]: pair 0: 0; pair 1: |-1-1| + |1+1| = 4; pair 2: 0.2 + 0.2 = 0.4
    assert torch.allclose(scores["seed_l1"], torch.tensor([0.0, 4.0, 0.4]))
    # best assignment: pair 1's outputs are swapped, so 0; pair 2 is 0.4 either way
    assert torch.allclose(scores["best/seed_l1"], torch.tensor([0.0, 0.0, 0.4]))
    # pixel space: a -> 1, b -> 0; pair 2: truths 0.5, outputs 0.6 and 0.4 (error 0.1)
    # fixed MAE: 0, (1 + 1) / 2 = 1, 0.1;  best MAE: 0, 0, 0.1
    assert torch.allclose(scores["fixed/mae"], torch.tensor([0.0, 1.0, 0.1]))
    assert torch.allclose(scores["best/mae"], torch.tensor([0.0, 0.0, 0.1]))
    # fixed PSNR: cap 100, 0, 20;  best PSNR: 100, 100, 20
    assert torch.allclose(scores["fixed/psnr"], torch.tensor([100.0, 0.0, 20.0]), atol=1e-3)
    assert torch.allclose(scores["best/psnr"], torch.tensor([100.0, 100.0, 20.0]), atol=1e-3)


def test_score_outputs_measures_pixel_metrics_after_clipping():
    # an output of 3 in [-1, 1] clips to pixel 1, so against a = 1 it is exact in pixel space,
    # while the seed L1 (no clipping) still sees |3 - 1| = 2.
    a, b = images([1.0]), images([-1.0])
    scores = score_outputs(images([3.0]), images([-1.0]), a, b)
    assert scores["seed_l1"].item() == pytest.approx(2.0)
    assert scores["fixed/mae"].item() == 0.0


def test_summarise_nests_and_averages_by_hand(three_pairs):
    summary = summarise(score_outputs(*three_pairs))
    assert set(summary) == {"n_pairs", "seed_l1", "fixed", "best"}
    assert summary["n_pairs"] == 3
    assert set(summary["fixed"]) == {"mae", "mse", "psnr", "ssim"}
    assert set(summary["best"]) == {"mae", "mse", "psnr", "ssim", "seed_l1"}
    # seed L1: (0 + 4 + 0.4) / 3 = 1.466667
    assert summary["seed_l1"] == pytest.approx(4.4 / 3, abs=1e-6)
    # fixed: MAE (0 + 1 + 0.1) / 3 = 0.366667; MSE (0 + 1 + 0.01) / 3 = 0.336667;
    #        PSNR (100 + 0 + 20) / 3 = 40
    assert summary["fixed"]["mae"] == pytest.approx(1.1 / 3, abs=1e-6)
    assert summary["fixed"]["mse"] == pytest.approx(1.01 / 3, abs=1e-6)
    assert summary["fixed"]["psnr"] == pytest.approx(40.0, abs=1e-3)
    # best: MAE 0.1 / 3 = 0.033333; MSE 0.01 / 3 = 0.003333; PSNR (100 + 100 + 20) / 3 = 73.333333
    assert summary["best"]["mae"] == pytest.approx(0.1 / 3, abs=1e-6)
    assert summary["best"]["mse"] == pytest.approx(0.01 / 3, abs=1e-6)
    assert summary["best"]["psnr"] == pytest.approx(220 / 3, abs=1e-3)


def test_summarise_rounds_to_six_decimals_and_gives_plain_floats():
    summary = summarise({"seed_l1": torch.tensor([1 / 3, 0.0]), "best/psnr": torch.tensor([1.0, 2.0])})
    # (1/3 + 0) / 2 = 0.1666666... -> 0.166667
    assert summary == {"n_pairs": 2, "seed_l1": 0.166667, "best": {"psnr": 1.5}}
    assert type(summary["seed_l1"]) is float


class MixtureTwice(nn.Module):
    """Returns its input as both outputs: the trivial separator for the mean mix."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, mixture):
        return mixture, mixture


class Zeros(nn.Module):
    """Returns mid-grey (0 in [-1, 1]) twice."""

    def forward(self, mixture):
        return torch.zeros_like(mixture), torch.zeros_like(mixture)


def random_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))


def test_model_outputting_the_mixture_scores_exactly_the_mean_baseline():
    a, b = random_pairs(4, seed=0)
    result = evaluate_separator(MixtureTwice(), a, b, mix="mean")
    assert isinstance(result, Evaluation)
    assert result.metrics["test"] == result.metrics["baseline"]
    for key in (
        "seed_l1",
        "fixed/mae",
        "fixed/mse",
        "fixed/psnr",
        "best/mae",
        "best/mse",
        "best/psnr",
        "best/ssim",
        "best/seed_l1",
    ):
        np.testing.assert_array_equal(result.per_pair[f"test/{key}"], result.per_pair[f"baseline/{key}"])
        assert result.per_pair[f"test/{key}"].shape == (4,)


def test_evaluate_separator_outputs_are_uint8_images_of_the_model_output():
    a, b = random_pairs(3, seed=1)
    result = evaluate_separator(MixtureTwice(), a, b, mix="mean")
    assert result.output_1.dtype == np.uint8 and result.output_1.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(result.output_1, result.output_2)
    # the mean of two uint8 images, through [-1, 1] and back, is within one level of (a + b) / 2
    expected = (a.astype(np.float64) + b) / 2
    assert np.abs(result.output_1 - expected).max() <= 0.5 + 1e-6


def test_evaluate_separator_scores_model_and_baseline_separately_by_hand():
    # a = b = 255 -> 1 in [-1, 1]; mean mix = 1; baseline outputs (1, 1): exact.
    # Zeros model: seed L1 = 1 + 1 = 2; pixel outputs 0.5 vs truth 1: MAE 0.5, MSE 0.25,
    # PSNR -10 log10(0.25) = 6.0206 dB, same for both assignments.
    a = np.full((2, 32, 32, 3), 255, dtype=np.uint8)
    b = a.copy()
    result = evaluate_separator(Zeros(), a, b, mix="mean")
    test, baseline = result.metrics["test"], result.metrics["baseline"]
    assert test["n_pairs"] == baseline["n_pairs"] == 2
    assert test["seed_l1"] == pytest.approx(2.0)
    for assignment in ("fixed", "best"):
        assert test[assignment]["mae"] == pytest.approx(0.5)
        assert test[assignment]["mse"] == pytest.approx(0.25)
        assert test[assignment]["psnr"] == pytest.approx(20 * math.log10(2), abs=1e-4)
        assert baseline[assignment]["mae"] == 0.0
        assert baseline[assignment]["psnr"] == pytest.approx(100.0, abs=1e-3)
    assert baseline["seed_l1"] == 0.0
    np.testing.assert_array_equal(result.output_1, np.full((2, 32, 32, 3), 128, dtype=np.uint8))


def test_evaluate_separator_uses_the_named_mix_for_the_baseline():
    # quarter_sum: mixture (1 + 1) / 4 = 0.5, baseline 2 * 0.5 = 1: exact again.
    # half_difference: mixture 0, baseline (0, -0) vs truths (1, 1): seed L1 = 2.
    a = np.full((1, 32, 32, 3), 255, dtype=np.uint8)
    quarter = evaluate_separator(Zeros(), a, a.copy(), mix="quarter_sum")
    difference = evaluate_separator(Zeros(), a, a.copy(), mix="half_difference")
    assert quarter.metrics["baseline"]["seed_l1"] == 0.0
    assert difference.metrics["baseline"]["seed_l1"] == pytest.approx(2.0)


def test_evaluate_separator_leaves_model_training_mode_as_it_was():
    model = MixtureTwice().train()
    a, b = random_pairs(1, seed=2)
    evaluate_separator(model, a, b, mix="mean")
    assert model.training


def test_flatten_metrics_joins_nested_keys_with_slashes():
    metrics = {"test": {"n_pairs": 3, "best": {"psnr": 1.5}}, "baseline": {"seed_l1": 2}, "x": 0.25}
    flat = flatten_metrics(metrics)
    assert flat == {"test/n_pairs": 3.0, "test/best/psnr": 1.5, "baseline/seed_l1": 2.0, "x": 0.25}
    assert all(type(value) is float for value in flat.values())


def test_flatten_metrics_with_prefix():
    assert flatten_metrics({"a": {"b": 1}}, prefix="eval/") == {"eval/a/b": 1.0}


def test_flatten_of_summarise_round_trips_the_score_names(three_pairs):
    scores = score_outputs(*three_pairs)
    flat = flatten_metrics(summarise(scores))
    assert set(flat) == set(scores) | {"n_pairs"}
