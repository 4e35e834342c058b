"""Source dispatch: what the download stage gets for each data.source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmix.config import DataConfig
from unmix.data.raw import acquire_images, load_raw, save_raw, split_seed
from unmix.errors import DataError


def test_shapes_train_and_test_splits_are_generated_from_different_seeds() -> None:
    train, test = acquire_images(DataConfig(shapes_train=20, shapes_test=20, seed=3), Path("."))
    assert len(train) == 20 and len(test) == 20
    assert not np.array_equal(train.images, test.images)
    assert split_seed(3, "train") != split_seed(3, "test") != split_seed(4, "test")


def test_relative_image_folder_path_is_taken_from_the_repository_root(tmp_path: Path) -> None:
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "pictures" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), colour).save(tmp_path / "pictures" / name / "0.png")
    train, test = acquire_images(DataConfig(source="imagefolder", path="pictures"), tmp_path)
    assert train.class_names == ("blue", "red") and test is None
    assert train.images[train.labels.tolist().index(1)][0, 0].tolist() == [255, 0, 0]


def test_missing_image_folder_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        acquire_images(DataConfig(source="imagefolder", path="nowhere"), tmp_path)


def test_raw_round_trip_keeps_a_missing_test_split_missing(tmp_path: Path) -> None:
    train, _ = acquire_images(DataConfig(shapes_train=10, shapes_test=10), tmp_path)
    save_raw(train, None, tmp_path / "raw", "shapes")
    loaded, test = load_raw(tmp_path / "raw")
    assert test is None and np.array_equal(loaded.images, train.images)
