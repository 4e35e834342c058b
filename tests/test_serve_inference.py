"""Separating pictures of any size: the plan per architecture, padding and resizing round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unmix.evaluation.inference import example_mixture, separate, separate_pictures, size_note, size_plan
from unmix.model.networks import build_model
from unmix.model.tensors import normalise, to_channels_first, to_uint8_images


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def pictures(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("height", "width", "arch", "depth", "expected"),
    [
        (32, 32, "seed", 3, (32, 32, "as is")),
        (64, 48, "seed", 3, (32, 32, "resized")),
        (32, 32, "unet", 3, (32, 32, "as is")),
        (64, 48, "unet", 3, (64, 48, "as is")),  # multiples of 2**3
        (33, 50, "unet", 3, (40, 56, "padded")),  # next multiples of 8
        (33, 50, "unet", 1, (34, 50, "padded")),  # next multiples of 2
        (1, 1, "unet", 2, (4, 4, "padded")),
    ],
)
def test_size_plan(height: int, width: int, arch: str, depth: int, expected: tuple) -> None:
    plan = size_plan(height, width, arch, depth)
    assert (plan.height, plan.width, plan.how) == expected


def test_size_note_names_the_sizes_only_when_something_changes() -> None:
    assert size_note(32, 32, "seed", 3) is None
    assert size_note(48, 64, "unet", 3) is None
    assert size_note(48, 64, "seed", 3) == (
        "the seed model takes 32×32 only: resized 64×48 to 32×32 and the outputs back to 64×48"
    )
    assert size_note(33, 50, "unet", 3) == (
        "the unet model takes sizes that are multiples of 8: padded 50×33 to 56×40 and cropped the outputs back"
    )


def test_32_by_32_is_exactly_what_training_and_evaluation_compute() -> None:
    torch.manual_seed(0)
    model = build_model("unet", width=8, depth=2, consistency=True, mix="mean").eval()
    batch = pictures(5, 32, 32)
    out_1, out_2 = separate_pictures(model, batch, "unet", 2)
    expected_1, expected_2 = separate(model, normalise(to_channels_first(batch)))
    np.testing.assert_array_equal(out_1, to_uint8_images(expected_1))
    np.testing.assert_array_equal(out_2, to_uint8_images(expected_2))


def test_unet_pads_with_the_edge_and_crops_back() -> None:
    torch.manual_seed(0)
    model = build_model("unet", width=8, depth=2).eval()
    batch = pictures(2, 30, 37)
    out_1, out_2 = separate_pictures(model, batch, "unet", 2)
    assert out_1.shape == out_2.shape == batch.shape and out_1.dtype == np.uint8
    # By hand: replicate the last row and column up to 32×40, run, keep the top-left 30×37.
    padded = np.pad(batch, ((0, 0), (0, 2), (0, 3), (0, 0)), mode="edge")
    full_1, full_2 = separate_pictures(model, padded, "unet", 2)
    np.testing.assert_array_equal(out_1, full_1[:, :30, :37])
    np.testing.assert_array_equal(out_2, full_2[:, :30, :37])


def test_seed_resizes_to_32_and_back() -> None:
    torch.manual_seed(0)
    model = build_model("seed").eval()
    batch = pictures(2, 48, 64)
    out_1, _ = separate_pictures(model, batch, "seed", 3)
    assert out_1.shape == batch.shape
    small = F.interpolate(normalise(to_channels_first(batch)), size=(32, 32), mode="bilinear", antialias=True)
    expected_1, _ = separate(model, small)
    expected_1 = F.interpolate(expected_1, size=(48, 64), mode="bilinear")
    np.testing.assert_array_equal(out_1, to_uint8_images(expected_1))


def test_anything_but_uint8_pictures_with_three_channels_is_refused() -> None:
    model = build_model("unet", width=8, depth=2).eval()
    with pytest.raises(ValueError, match="uint8 mixtures of shape"):
        separate_pictures(model, pictures(1, 32, 32).astype(np.float32), "unet", 2)
    with pytest.raises(ValueError, match="uint8 mixtures of shape"):
        separate_pictures(model, pictures(1, 32, 32)[..., :1], "unet", 2)


def test_example_mixture_is_a_fixed_uint8_picture() -> None:
    example = example_mixture()
    assert example.shape == (1, 32, 32, 3) and example.dtype == np.uint8
    np.testing.assert_array_equal(example, example_mixture())
    assert example.std() > 10  # not a flat picture
