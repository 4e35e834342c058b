"""Pixel-space metrics by hand: range mapping, MAE/MSE/PSNR, the PSNR cap, fixed vs best, seed L1."""

from __future__ import annotations

import math

import pytest
import torch

from unmix.evaluation.metrics import (
    MAX_PSNR_DB,
    best_psnr_and_seed_l1,
    pair_metrics,
    per_image_mae,
    per_image_mse,
    psnr_from_mse,
    seed_l1,
    to_pixel_range,
)


def full(value: float, n: int = 1) -> torch.Tensor:
    """n constant images of shape (3, 2, 2)."""
    return torch.full((n, 3, 2, 2), value)


# --- to_pixel_range --------------------------------------------------------------------------------------


def test_to_pixel_range_maps_network_range_linearly():
    # (x + 1) / 2: -1 -> 0, -0.5 -> 0.25, 0 -> 0.5, 1 -> 1
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0])
    assert torch.equal(to_pixel_range(x), torch.tensor([0.0, 0.25, 0.5, 1.0]))


def test_to_pixel_range_clips_outside_values():
    # (-3 + 1) / 2 = -1 -> 0; (2 + 1) / 2 = 1.5 -> 1
    x = torch.tensor([-3.0, 2.0])
    assert torch.equal(to_pixel_range(x), torch.tensor([0.0, 1.0]))


# --- per-image metrics -----------------------------------------------------------------------------------


def test_constant_error_gives_hand_mae_mse_psnr():
    target = full(0.5)
    output = full(0.6)
    # error 0.1 everywhere: MAE 0.1, MSE 0.01, PSNR -10 log10(0.01) = 20 dB
    assert per_image_mae(output, target).item() == pytest.approx(0.1, abs=1e-6)
    assert per_image_mse(output, target).item() == pytest.approx(0.01, abs=1e-6)
    assert psnr_from_mse(per_image_mse(output, target)).item() == pytest.approx(20.0, abs=1e-4)


def test_per_image_metrics_average_mixed_errors_within_each_image():
    target = torch.zeros(2, 1, 1, 4)
    output = torch.tensor([[[[0.0, 0.0, 0.2, 0.4]]], [[[0.5, 0.5, 0.5, 0.5]]]])
    # image 0: MAE (0 + 0 + 0.2 + 0.4) / 4 = 0.15, MSE (0.04 + 0.16) / 4 = 0.05
    # image 1: MAE 0.5, MSE 0.25
    assert torch.allclose(per_image_mae(output, target), torch.tensor([0.15, 0.5]))
    assert torch.allclose(per_image_mse(output, target), torch.tensor([0.05, 0.25]))


def test_psnr_of_known_mse_values():
    # -10 log10(1) = 0; -10 log10(0.1) = 10; -10 log10(0.25) = 20 log10(2) = 6.0206
    mse = torch.tensor([1.0, 0.1, 0.25])
    expected = torch.tensor([0.0, 10.0, 20 * math.log10(2)])
    assert torch.allclose(psnr_from_mse(mse), expected, atol=1e-4)


def test_psnr_of_identical_images_is_capped():
    image = full(0.3, n=2)
    psnr = psnr_from_mse(per_image_mse(image, image))
    assert torch.isfinite(psnr).all()
    assert torch.allclose(psnr, torch.full((2,), MAX_PSNR_DB), atol=1e-3)


def test_psnr_cap_does_not_touch_tiny_but_real_errors():
    # MSE 1e-8 -> 80 dB, below the 100 dB cap
    assert psnr_from_mse(torch.tensor([1e-8])).item() == pytest.approx(80.0, abs=1e-3)


# --- pair metrics ----------------------------------------------------------------------------------------


def test_pair_metrics_swapped_outputs_best_is_perfect_fixed_is_not():
    a, b = full(1.0), full(0.0)
    scores = pair_metrics(b, a, a, b)  # outputs (b, a): the right images, wrong order
    # fixed: each image off by 1 -> MAE 1, MSE 1, PSNR 0
    assert scores["fixed"]["mae"].item() == pytest.approx(1.0)
    assert scores["fixed"]["mse"].item() == pytest.approx(1.0)
    assert scores["fixed"]["psnr"].item() == pytest.approx(0.0, abs=1e-6)
    # best: the swapped assignment is exact
    assert scores["best"]["mae"].item() == 0.0
    assert scores["best"]["mse"].item() == 0.0
    assert scores["best"]["psnr"].item() == pytest.approx(MAX_PSNR_DB, abs=1e-3)


def test_pair_metrics_average_the_two_images_of_a_pair():
    a, b = full(0.5), full(0.5)
    out_1, out_2 = full(0.6), full(0.8)
    # image 1: error 0.1 -> MAE 0.1, MSE 0.01, PSNR 20; image 2: error 0.3 -> 0.3, 0.09, 10.4576
    # pair: MAE 0.2, MSE 0.05, PSNR (20 + 10.4576) / 2 = 15.2288 (mean of PSNRs, not PSNR of mean)
    scores = pair_metrics(out_1, out_2, a, b)
    assert scores["fixed"]["mae"].item() == pytest.approx(0.2, abs=1e-6)
    assert scores["fixed"]["mse"].item() == pytest.approx(0.05, abs=1e-6)
    expected_psnr = (20 + (-10 * math.log10(0.09))) / 2
    assert scores["fixed"]["psnr"].item() == pytest.approx(expected_psnr, abs=1e-4)


def test_best_uses_one_assignment_per_pair_for_every_metric():
    # One-pixel, one-channel images: a = 0.5, b = 0.8, out_1 = 0.51, out_2 = 0.2
    # direct  (out_1~a, out_2~b): errors 0.01, 0.6
    #     MAE (0.01 + 0.6) / 2 = 0.305; MSE (1e-4 + 0.36) / 2 = 0.18005
    #     PSNR (40 + -10 log10 0.36) / 2 = (40 + 4.4370) / 2 = 22.2185
    # swapped (out_1~b, out_2~a): errors 0.29, 0.3
    #     MAE (0.29 + 0.3) / 2 = 0.295; MSE (0.0841 + 0.09) / 2 = 0.08705
    #     PSNR (10.7520 + 10.4576) / 2 = 10.6048
    # best: the assignment with the lower MSE ("swapped", 0.08705 < 0.18005) for every
    # metric, so PSNR 10.6048 even though "direct" would have the higher PSNR.
    a, b = torch.tensor([[[[0.5]]]]), torch.tensor([[[[0.8]]]])
    out_1, out_2 = torch.tensor([[[[0.51]]]]), torch.tensor([[[[0.2]]]])
    scores = pair_metrics(out_1, out_2, a, b)
    direct_psnr = (40 - 10 * math.log10(0.36)) / 2
    assert scores["fixed"]["mae"].item() == pytest.approx(0.305, abs=1e-5)
    assert scores["fixed"]["mse"].item() == pytest.approx(0.18005, abs=1e-5)
    assert scores["fixed"]["psnr"].item() == pytest.approx(direct_psnr, abs=1e-3)
    assert scores["best"]["mae"].item() == pytest.approx(0.295, abs=1e-5)
    assert scores["best"]["mse"].item() == pytest.approx(0.08705, abs=1e-5)
    swapped_psnr = (-10 * math.log10(0.0841) - 10 * math.log10(0.09)) / 2
    assert scores["best"]["psnr"].item() == pytest.approx(swapped_psnr, abs=1e-3)


def test_best_takes_the_better_assignment_for_psnr():
    # swapped assignment exact -> its PSNR is the cap; min would pick the fixed PSNR 0
    a, b = full(1.0), full(0.0)
    scores = pair_metrics(b, a, a, b)
    assert scores["best"]["psnr"] > scores["fixed"]["psnr"]


def test_pair_metrics_are_per_pair_and_best_never_worse():
    generator = torch.Generator().manual_seed(0)
    out_1, out_2, a, b = (torch.rand(7, 3, 4, 4, generator=generator) for _ in range(4))
    scores = pair_metrics(out_1, out_2, a, b)
    for assignment in ("fixed", "best"):
        for name in ("mae", "mse", "psnr"):
            assert scores[assignment][name].shape == (7,)
    # the assignment is chosen by MSE, so only MSE is never worse than fixed
    assert (scores["best"]["mse"] <= scores["fixed"]["mse"]).all()
    same = scores["best"]["mse"] == scores["fixed"]["mse"]
    assert torch.equal(scores["best"]["psnr"][same], scores["fixed"]["psnr"][same])


# --- seed L1 ---------------------------------------------------------------------------------------------


def test_seed_l1_by_hand():
    a = torch.cat([full(1.0), full(0.0)])
    b = torch.cat([full(-1.0), full(0.5)])
    out_1 = torch.cat([full(0.5), full(0.0)])
    out_2 = torch.cat([full(-1.0), full(-0.5)])
    # pair 0: |0.5 - 1| + |-1 - -1| = 0.5; pair 1: |0 - 0| + |-0.5 - 0.5| = 1.0
    assert torch.allclose(seed_l1(out_1, out_2, a, b), torch.tensor([0.5, 1.0]))


def test_seed_l1_is_fixed_assignment_so_swaps_cost():
    a, b = full(1.0), full(-1.0)
    # outputs swapped: 2 + 2 = 4 (no min over assignments)
    assert seed_l1(b, a, a, b).item() == pytest.approx(4.0)


# --- SSIM ------------------------------------------------------------------------------------------------


def test_gaussian_window_is_normalised_symmetric_and_peaks_in_the_middle():
    from unmix.evaluation.metrics import gaussian_window

    window = gaussian_window(11, 1.5)
    assert window.shape == (11, 11)
    assert torch.isclose(window.sum(), torch.tensor(1.0))
    assert torch.equal(window, window.T) and window.argmax() == 5 * 11 + 5


def test_ssim_of_an_image_with_itself_is_one():
    from unmix.evaluation.metrics import per_image_ssim

    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(per_image_ssim(x, x), torch.ones(3), atol=1e-5)


def test_ssim_of_two_flat_images_by_hand():
    from unmix.evaluation.metrics import per_image_ssim

    # Flat images have no variance, so SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) with
    # C1 = 0.01^2: for 0.2 and 0.6, (0.24 + 0.0001) / (0.04 + 0.36 + 0.0001) = 0.599975...
    x, y = torch.full((1, 3, 32, 32), 0.2), torch.full((1, 3, 32, 32), 0.6)
    expected = (2 * 0.2 * 0.6 + 1e-4) / (0.2**2 + 0.6**2 + 1e-4)
    assert torch.allclose(per_image_ssim(x, y), torch.tensor([expected]), atol=1e-5)


def test_ssim_falls_as_noise_grows_and_is_symmetric():
    from unmix.evaluation.metrics import per_image_ssim

    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 32, 32, generator=generator)
    noise = torch.randn(1, 3, 32, 32, generator=generator)
    scores = [float(per_image_ssim(x, (x + s * noise).clamp(0, 1))) for s in (0.05, 0.2, 0.5)]
    assert scores[0] > scores[1] > scores[2]
    y = (x + 0.2 * noise).clamp(0, 1)
    assert torch.allclose(per_image_ssim(x, y), per_image_ssim(y, x), atol=1e-6)


def test_best_ssim_takes_the_better_assignment():
    from unmix.evaluation.metrics import pair_metrics

    generator = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    scores = pair_metrics(b, a, a, b)  # outputs swapped
    assert torch.allclose(scores["best"]["ssim"], torch.ones(2), atol=1e-5)
    assert (scores["fixed"]["ssim"] < 0.5).all()


def test_best_psnr_and_seed_l1_by_hand():
    # Pair 0 swapped: out_1 = b exactly, out_2 = a + 0.5 ([-1, 1]) → errors 0 and 0.25 in pixels.
    # Pixel MSE 0 → capped 100 dB; 0.0625 → 10·log10(1/0.0625) = 12.0412 dB; mean 56.0206.
    # Seed L1 under the swap: L1(out_2, a) + L1(out_1, b) = 0.5 + 0.
    # Pair 1 straight: out_1 = a, out_2 = b - 0.5 → the same numbers.
    a = torch.cat([full(-0.5), full(0.0)])
    b = torch.cat([full(0.5), full(0.5)])
    out_1 = torch.cat([full(0.5), full(0.0)])
    out_2 = torch.cat([full(0.0), full(0.0)])
    psnr, l1 = best_psnr_and_seed_l1(out_1, out_2, a, b)
    expected_psnr = (MAX_PSNR_DB + 10 * math.log10(1 / 0.0625)) / 2
    assert psnr.tolist() == pytest.approx([expected_psnr, expected_psnr], abs=1e-4)
    assert l1.tolist() == pytest.approx([0.5, 0.5])
