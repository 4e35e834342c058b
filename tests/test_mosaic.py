"""reconstruction_mosaic: size from K pairs x columns with scale and gap; cells are the upscaled inputs; gaps white."""

from __future__ import annotations

import numpy as np
import pytest

from unmix.evaluation.mosaic import reconstruction_mosaic

K, H, W, COLUMNS = 3, 2, 3, 5


@pytest.fixture
def columns() -> list[np.ndarray]:
    """Five (K, 2, 3, 3) uint8 columns; no pixel is 255, so white can only come from gaps."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (K, H, W, 3), dtype=np.uint8) for _ in range(COLUMNS)]


def cell(mosaic: np.ndarray, row: int, column: int, scale: int, gap: int) -> np.ndarray:
    top, left = row * (H * scale + gap), column * (W * scale + gap)
    return mosaic[top : top + H * scale, left : left + W * scale]


def test_shape_for_k_pairs_by_five_columns(columns):
    mosaic = reconstruction_mosaic(columns, scale=4, gap=2)
    # height: 3 rows * (2 * 4) + 2 gaps * 2 = 24 + 4 = 28
    # width:  5 cols * (3 * 4) + 4 gaps * 2 = 60 + 8 = 68
    assert mosaic.shape == (28, 68, 3)
    assert mosaic.dtype == np.uint8


def test_shape_for_32_pixel_images_with_defaults():
    columns = [np.zeros((2, 32, 32, 3), dtype=np.uint8)] * 5
    # defaults scale 4, gap 2: height 2 * 128 + 2 = 258, width 5 * 128 + 4 * 2 = 648
    assert reconstruction_mosaic(columns).shape == (258, 648, 3)


def test_cells_are_the_upscaled_inputs(columns):
    scale, gap = 3, 2
    mosaic = reconstruction_mosaic(columns, scale=scale, gap=gap)
    for column, images in enumerate(columns):
        for row in range(K):
            expected = np.kron(images[row], np.ones((scale, scale, 1), dtype=np.uint8))
            np.testing.assert_array_equal(cell(mosaic, row, column, scale, gap), expected)


def test_each_source_pixel_becomes_a_scale_by_scale_block(columns):
    scale, gap = 2, 1
    mosaic = reconstruction_mosaic(columns, scale=scale, gap=gap)
    # pixel (1, 2) of pair 2 in column 4 -> rows 2*(2*2+1) + 1*2 .. +2 = 12..13,
    # columns 4*(3*2+1) + 2*2 .. +2 = 32..33
    block = mosaic[12:14, 32:34]
    assert (block == columns[4][2, 1, 2]).all()


def test_gaps_are_white_and_nothing_else_is(columns):
    scale, gap = 2, 3
    mosaic = reconstruction_mosaic(columns, scale=scale, gap=gap)
    is_gap = np.ones(mosaic.shape[:2], dtype=bool)
    for row in range(K):
        for column in range(COLUMNS):
            top, left = row * (H * scale + gap), column * (W * scale + gap)
            is_gap[top : top + H * scale, left : left + W * scale] = False
    assert is_gap.any()
    assert (mosaic[is_gap] == 255).all()
    assert (mosaic[~is_gap] < 255).all()  # inputs never contain 255


def test_zero_gap_tiles_edge_to_edge(columns):
    mosaic = reconstruction_mosaic(columns, scale=1, gap=0)
    assert mosaic.shape == (K * H, COLUMNS * W, 3)
    np.testing.assert_array_equal(mosaic[:H, :W], columns[0][0])
    np.testing.assert_array_equal(mosaic[-H:, -W:], columns[-1][-1])


def test_single_pair_has_no_horizontal_gap():
    columns = [np.full((1, 2, 2, 3), value, dtype=np.uint8) for value in (10, 20)]
    mosaic = reconstruction_mosaic(columns, scale=1, gap=1)
    # 1 row: height 2; width 2 + 1 + 2 = 5, with the middle column white
    assert mosaic.shape == (2, 5, 3)
    assert (mosaic[:, 2] == 255).all()
    assert (mosaic[:, :2] == 10).all() and (mosaic[:, 3:] == 20).all()
