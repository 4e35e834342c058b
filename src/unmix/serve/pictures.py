"""Pictures on disk: PNG or JPEG in, PNG out (atomically), the side-by-side panel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from unmix.atomic import atomic_path
from unmix.errors import UnmixError
from unmix.evaluation.mosaic import reconstruction_mosaic

READABLE = ("PNG", "JPEG")
WRITABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
PANEL_TITLES = ("mixture", "output 1", "output 2")
PANEL_MIN_SIDE = 128  # px: small pictures are enlarged (nearest neighbour) to about this
TITLE_HEIGHT = 14  # px above each panel column


class PictureError(UnmixError):
    """A picture cannot be read or written."""


def read_picture(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) pixels of a PNG or JPEG file, as RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format not in READABLE:
                raise PictureError(f"{path}: a {image.format} image; expected PNG or JPEG")
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise PictureError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PictureError(f"{path}: a folder; expected a PNG or JPEG file") from None
    except UnidentifiedImageError:
        raise PictureError(f"{path}: not a PNG or JPEG image") from None
    except OSError as error:  # truncated or corrupt data, found while decoding
        raise PictureError(f"{path}: cannot read the image ({error})") from None


def output_format(path: Path) -> str:
    """PIL's format name for an output path, from its suffix."""
    try:
        return WRITABLE[path.suffix.lower()]
    except KeyError:
        raise PictureError(f"{path}: expected a .png, .jpg or .jpeg file name") from None


def write_picture(path: Path, pixels: np.ndarray) -> None:
    """Write uint8 (H, W, 3) pixels in the format the suffix names, replacing `path` in one rename."""
    from PIL import Image

    image_format = output_format(path)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))


def panel(mixture: np.ndarray, output_1: np.ndarray, output_2: np.ndarray) -> np.ndarray:
    """mixture | output 1 | output 2, enlarged to ~PANEL_MIN_SIDE px, each under its title."""
    from PIL import Image, ImageDraw, ImageFont

    scale = max(1, math.ceil(PANEL_MIN_SIDE / max(mixture.shape[:2])))
    gap = 4
    images = reconstruction_mosaic([p[None] for p in (mixture, output_1, output_2)], scale=scale, gap=gap)
    canvas = Image.new("RGB", (images.shape[1], images.shape[0] + TITLE_HEIGHT), "white")
    canvas.paste(Image.fromarray(images), (0, TITLE_HEIGHT))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    column = mixture.shape[1] * scale + gap
    for index, title in enumerate(PANEL_TITLES):
        draw.text((index * column + 2, 1), title, fill="black", font=font)
    return np.asarray(canvas)


def resize_like(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3) pixels resized to (height, width) with a good filter."""
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))
