"""CPU-independent elementwise math, against values worked by hand and numpy's kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unmix.data.portable_math import arctan2, exp, layer_sum, matmul, pixel_sum, sin, sincos


def test_sin_and_cos_at_angles_known_by_hand():
    x = np.array([0, math.pi / 6, math.pi / 2, math.pi, -math.pi / 3, 7 * math.pi / 4])
    np.testing.assert_allclose(sin(x), [0, 0.5, 1, 0, -math.sqrt(3) / 2, -math.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(sincos(x)[1], [1, math.sqrt(3) / 2, 0, -1, 0.5, math.sqrt(0.5)], atol=1e-15)


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 2e-14), (np.float32, 2e-7)])
def test_sincos_matches_numpy_over_many_turns(dtype, tolerance):
    x = np.linspace(-60, 60, 20001).astype(dtype)
    s, c = sincos(x)
    assert s.dtype == c.dtype == dtype
    exact = x.astype(np.float64)
    np.testing.assert_allclose(s, np.sin(exact), atol=tolerance)
    np.testing.assert_allclose(c, np.cos(exact), atol=tolerance)


def test_arctan2_in_every_quadrant_and_on_the_axes():
    y = np.array([0.0, 1, 1, 1, 0, -1, -1, -1, 0, math.sqrt(3)])
    x = np.array([1.0, 1, 0, -1, -1, -1, 0, 1, 0, 1])
    expected = [
        0,
        math.pi / 4,
        math.pi / 2,
        3 * math.pi / 4,
        math.pi,
        -3 * math.pi / 4,
        -math.pi / 2,
        -math.pi / 4,
        0,
        math.pi / 3,
    ]  # (0, 0) gives 0, as numpy does
    np.testing.assert_allclose(arctan2(y, x), expected, atol=1e-15)


def test_arctan2_matches_numpy():
    rng = np.random.default_rng(0)
    y, x = rng.uniform(-20, 20, (2, 10000))
    np.testing.assert_allclose(arctan2(y, x), np.arctan2(y, x), atol=2e-15)
    assert arctan2(y.astype(np.float32), x.astype(np.float32)).dtype == np.float32


def test_exp_at_known_values_and_against_numpy():
    np.testing.assert_allclose(exp(np.array([0.0, math.log(2), -math.log(4), 1.0])), [1, 2, 0.25, math.e], rtol=1e-15)
    x = np.linspace(-40, 5, 1001)
    np.testing.assert_allclose(exp(x), np.exp(x), rtol=4e-16)


def test_matmul_by_hand_and_broadcast():
    a = np.array([[1.0, 2], [3, 4]])
    b = np.array([[5.0, 6], [7, 8]])
    np.testing.assert_array_equal(matmul(a, b), [[19, 22], [43, 50]])
    stacked = np.stack([a, 2 * a])
    np.testing.assert_array_equal(matmul(stacked, b), [[[19, 22], [43, 50]], [[38, 44], [86, 100]]])


def test_matmul_adds_left_to_right():
    # 1e16 + 1 - 1e16: left to right the 1 is lost to rounding (0); any other order keeps it.
    a = np.array([[1e16, 1.0, -1e16]])
    b = np.ones((3, 1))
    assert matmul(a, b)[0, 0] == 0.0


def test_layer_sum_by_hand():
    weights = [np.full((2, 2, 2), 1.0), np.full((2, 2, 2), 2.0)]
    colours = np.array([[10.0, 100.0], [1.0, 0.5]])  # image 0: 1*10 + 2*100; image 1: 1*1 + 2*0.5
    out = layer_sum(weights, colours)
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out[0], 210.0)
    np.testing.assert_array_equal(out[1], 2.0)


def test_pixel_sum_by_hand_and_its_fixed_tree():
    np.testing.assert_array_equal(pixel_sum(np.array([[[1.0, 2], [3, 4]]])), [10.0])
    # Halving pairs element i with i + n/2: (1e16 + -1e16) + (1 + 1) = 2 exactly; a plain
    # left-to-right sum would lose the first 1 (1e16 + 1 rounds back to 1e16) and give 1.
    assert pixel_sum(np.array([[[1e16, 1.0], [-1e16, 1.0]]]))[0] == 2.0
    assert pixel_sum(np.zeros((0, 32, 32), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="power-of-two"):
        pixel_sum(np.ones((1, 3, 3)))
