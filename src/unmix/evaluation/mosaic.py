"""Reconstruction mosaics as plain uint8 arrays: cheap enough to log during training."""

from __future__ import annotations

import numpy as np


def reconstruction_mosaic(columns: list[np.ndarray], scale: int = 4, gap: int = 2) -> np.ndarray:
    """Tile uint8 (K, H, W, 3) arrays as columns (one row per pair), upscaled `scale`×.

    Columns are typically mixture, truth a, truth b, output 1, output 2; white gaps keep
    neighbouring images apart.
    """
    count, height, width, channels = columns[0].shape
    cell_h, cell_w = height * scale, width * scale
    mosaic = np.full(
        (count * cell_h + (count - 1) * gap, len(columns) * cell_w + (len(columns) - 1) * gap, channels),
        255,
        dtype=np.uint8,
    )
    for column, images in enumerate(columns):
        big = images.repeat(scale, axis=1).repeat(scale, axis=2)
        for row in range(count):
            top, left = row * (cell_h + gap), column * (cell_w + gap)
            mosaic[top : top + cell_h, left : left + cell_w] = big[row]
    return mosaic
