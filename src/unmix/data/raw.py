"""Pick the data source named in params and deliver its training and test splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unmix.atomic import write_text_atomically
from unmix.config import DataConfig
from unmix.data.imageset import ImageSet, load_image_set, save_image_set
from unmix.paths import resolve_data_path


def split_seed(seed: int, split: str) -> int:
    """Independent seeds for the generated train and test splits from one data.seed."""
    return int(np.random.SeedSequence([seed, {"train": 0, "test": 1}[split]]).generate_state(1)[0])


def acquire_images(data: DataConfig, root: Path) -> tuple[ImageSet, ImageSet | None]:
    """The source's (train, test) splits; test is None when the source has no test split.

    A relative data.path is taken from the repository `root`, so queued experiments,
    which run in temporary copies, read the same folder.
    """
    if data.source == "shapes":
        from unmix.data.shapes import generate_shapes

        return (
            generate_shapes(data.shapes_train, split_seed(data.seed, "train")),
            generate_shapes(data.shapes_test, split_seed(data.seed, "test")),
        )
    if data.source == "cifar10":
        from unmix.data.sources import load_cifar10

        return load_cifar10(resolve_data_path(data.path, root))
    if data.source == "imagefolder":
        from unmix.data.sources import load_image_folder

        return load_image_folder(resolve_data_path(data.path, root))
    raise ValueError(f"unknown data.source {data.source!r}")  # config validation rules this out


def save_raw(train: ImageSet, test: ImageSet | None, directory: Path, source: str) -> None:
    """Write train.npz, test.npz (when there is a test split) and meta.json."""
    directory = Path(directory)
    save_image_set(train, directory / "train.npz")
    if test is not None:
        save_image_set(test, directory / "test.npz")
    meta = {
        "source": source,
        "n_train": len(train),
        "n_test": len(test) if test is not None else 0,
        "class_names": list(train.class_names),
    }
    write_text_atomically(directory / "meta.json", json.dumps(meta, indent=2) + "\n")


def load_raw(directory: Path) -> tuple[ImageSet, ImageSet | None]:
    """Read what `save_raw` wrote."""
    directory = Path(directory)
    test_path = directory / "test.npz"
    return load_image_set(directory / "train.npz"), load_image_set(test_path) if test_path.exists() else None
