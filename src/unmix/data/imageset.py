"""The one in-memory and on-disk format every data source produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unmix.atomic import atomic_path
from unmix.errors import reading

IMAGE_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class ImageSet:
    """Labelled RGB images: uint8 (N, 32, 32, 3), int64 labels (N,), class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"images must be uint8 (N, 32, 32, 3), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {self.labels.shape}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError("labels must index class_names")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices`, in that order."""
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


def save_image_set(image_set: ImageSet, path: Path) -> None:
    """Write `image_set` to an .npz file atomically (a crash never leaves half a file)."""
    arrays = {
        "images": image_set.images,
        "labels": image_set.labels.astype(np.int64),
        "class_names": np.array(image_set.class_names, dtype=np.str_),
    }
    write_npz_atomically(path, arrays)


def load_image_set(path: Path, written_by: str = "download") -> ImageSet:
    """Read an .npz written by `save_image_set`; a damaged file is one line naming it."""
    with reading(path, written_by), np.load(path, allow_pickle=False) as npz:
        return ImageSet(npz["images"], npz["labels"], tuple(str(c) for c in npz["class_names"]))


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed .npz through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
