"""draw_subsets: disjoint, seeded, fixed pairs; save/load round trip; the digest sees one pixel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unmix.data.imageset import ImageSet
from unmix.data.subset import PairSet, Subsets, draw_subsets, load_subset_meta, load_subsets, save_subsets
from unmix.errors import DataError

TRAIN_SPLIT, TEST_SPLIT = 0, 1
CLASS_NAMES = ("circle", "square", "star")


def indexed_images(n: int, split: int) -> ImageSet:
    """Images whose pixel (0, 0) encodes (index % 256, index // 256, split); label = index % 3."""
    images = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    index = np.arange(n)
    images[:, 0, 0, 0] = index % 256
    images[:, 0, 0, 1] = index // 256
    images[:, 0, 0, 2] = split
    images[:, 1:, :, :] = (index % 251)[:, None, None, None]  # some bulk that also varies
    return ImageSet(images, (index % 3).astype(np.int64), CLASS_NAMES)


def ids(images: np.ndarray) -> list[tuple[int, int]]:
    """(split, index) of each image made by indexed_images."""
    pixel = images[:, 0, 0].astype(int)
    return [(int(s), int(lo + 256 * hi)) for lo, hi, s in pixel]


@pytest.fixture(scope="module")
def train_split() -> ImageSet:
    return indexed_images(300, TRAIN_SPLIT)  # > 256, so the index needs both channels


@pytest.fixture(scope="module")
def test_split() -> ImageSet:
    return indexed_images(80, TEST_SPLIT)


@pytest.fixture(scope="module")
def carved(train_split) -> Subsets:
    return draw_subsets(train_split, None, n_train=100, n_valid=40, n_test=60, seed=7)


@pytest.fixture(scope="module")
def with_test(train_split, test_split) -> Subsets:
    return draw_subsets(train_split, test_split, n_train=100, n_valid=40, n_test=60, seed=7)


def all_ids(subsets: Subsets) -> dict[str, list[tuple[int, int]]]:
    return {
        "train": ids(subsets.train.images),
        "valid": ids(subsets.valid.a) + ids(subsets.valid.b),
        "test": ids(subsets.test.a) + ids(subsets.test.b),
    }


# --- sizes and sources -----------------------------------------------------------------------------------


def test_sizes_are_images_and_pairs(carved):
    assert len(carved.train) == 100
    assert len(carved.valid) == 20  # 40 images -> 20 pairs
    assert len(carved.test) == 30
    assert carved.valid.a.shape == carved.valid.b.shape == (20, 32, 32, 3)


def test_carved_test_is_disjoint_from_train_and_valid(carved):
    groups = all_ids(carved)
    train, valid, test = (set(groups[name]) for name in ("train", "valid", "test"))
    assert len(train) == 100 and len(valid) == 40 and len(test) == 60  # no repeats inside a group
    assert not train & valid and not train & test and not valid & test
    assert {split for split, _ in train | valid | test} == {TRAIN_SPLIT}
    assert carved.test_from == "training split"


def test_test_split_is_used_when_given(with_test):
    groups = all_ids(with_test)
    assert {split for split, _ in groups["test"]} == {TEST_SPLIT}
    assert {split for split, _ in groups["train"] + groups["valid"]} == {TRAIN_SPLIT}
    assert not set(groups["train"]) & set(groups["valid"])
    assert len(set(groups["test"])) == 60
    assert with_test.test_from == "test split"


def test_training_images_keep_their_labels_and_source_order(carved):
    train_ids = [index for _, index in ids(carved.train.images)]
    assert train_ids == sorted(train_ids)
    assert list(carved.train.labels) == [index % 3 for index in train_ids]
    assert carved.train.class_names == CLASS_NAMES


def test_all_images_used_when_exactly_enough(train_split):
    subsets = draw_subsets(train_split, None, n_train=200, n_valid=50, n_test=50, seed=0)
    groups = all_ids(subsets)
    assert set(groups["train"]) | set(groups["valid"]) | set(groups["test"]) == set(ids(train_split.images))


def test_odd_count_makes_floor_half_pairs(train_split):
    subsets = draw_subsets(train_split, None, n_train=10, n_valid=5, n_test=7, seed=0)
    assert len(subsets.valid) == 2 and len(subsets.test) == 3


# --- pairs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["valid", "test"])
def test_pairs_join_two_different_images_each_used_once(carved, name):
    pairs: PairSet = getattr(carved, name)
    a, b = ids(pairs.a), ids(pairs.b)
    assert all(x != y for x, y in zip(a, b))
    assert len(set(a) | set(b)) == 2 * len(pairs)


# --- seeds -----------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_subsets(train_split, test_split):
    first = draw_subsets(train_split, test_split, 100, 40, 60, seed=3)
    second = draw_subsets(train_split, test_split, 100, 40, 60, seed=3)
    for x, y in zip(
        (first.train.images, first.train.labels, first.valid.a, first.valid.b, first.test.a, first.test.b),
        (second.train.images, second.train.labels, second.valid.a, second.valid.b, second.test.a, second.test.b),
    ):
        np.testing.assert_array_equal(x, y)
    assert first.digest() == second.digest()


def test_different_seeds_give_different_subsets_and_pairs(train_split, test_split):
    first = draw_subsets(train_split, test_split, 100, 40, 60, seed=3)
    second = draw_subsets(train_split, test_split, 100, 40, 60, seed=4)
    assert ids(first.train.images) != ids(second.train.images)
    assert ids(first.valid.a) != ids(second.valid.a)
    assert ids(first.test.a) != ids(second.test.a)
    assert first.digest() != second.digest()


# --- not enough images -----------------------------------------------------------------------------------


def test_too_many_images_from_training_split_without_test_split(train_split):
    with pytest.raises(DataError) as caught:
        draw_subsets(train_split, None, n_train=200, n_valid=50, n_test=51, seed=0)
    # 200 + 50 + 51 = 301 > 300
    assert str(caught.value) == (
        "data.n_train + data.n_valid + data.n_test = 301: more than the 300 images in the training split"
    )


def test_too_many_images_from_training_split_with_test_split(train_split, test_split):
    with pytest.raises(DataError) as caught:
        draw_subsets(train_split, test_split, n_train=290, n_valid=11, n_test=10, seed=0)
    assert str(caught.value) == "data.n_train + data.n_valid = 301: more than the 300 images in the training split"


def test_too_many_test_images(train_split, test_split):
    with pytest.raises(DataError) as caught:
        draw_subsets(train_split, test_split, n_train=10, n_valid=10, n_test=81, seed=0)
    assert str(caught.value) == "data.n_test = 81: more than the 80 images in the test split"


def test_test_split_does_not_count_against_training_split(train_split, test_split):
    # 250 + 50 = 300 from train, 80 from test: fits exactly
    subsets = draw_subsets(train_split, test_split, n_train=250, n_valid=50, n_test=80, seed=0)
    assert len(subsets.train) == 250 and len(subsets.test) == 40


# --- save / load / digest --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, with_test):
    save_subsets(with_test, tmp_path, "shapes")
    loaded = load_subsets(tmp_path)
    np.testing.assert_array_equal(loaded.train.images, with_test.train.images)
    np.testing.assert_array_equal(loaded.train.labels, with_test.train.labels)
    assert loaded.train.class_names == CLASS_NAMES
    for name in ("valid", "test"):
        np.testing.assert_array_equal(getattr(loaded, name).a, getattr(with_test, name).a)
        np.testing.assert_array_equal(getattr(loaded, name).b, getattr(with_test, name).b)
    assert loaded.test_from == "test split"
    assert loaded.digest() == with_test.digest()


def test_saved_meta_describes_the_subsets(tmp_path, carved):
    save_subsets(carved, tmp_path, "shapes")
    meta = load_subset_meta(tmp_path)
    assert meta == {
        "source": "shapes",
        "n_train": 100,
        "n_valid_pairs": 20,
        "n_test_pairs": 30,
        "test_from": "training split",
        "class_names": list(CLASS_NAMES),
        "digest": carved.digest(),
    }
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "test.npz", "train.npz", "valid.npz"]


def test_digest_changes_when_one_pixel_changes(carved):
    b = carved.test.b.copy()
    b[-1, 31, 31, 2] ^= 1
    changed = Subsets(carved.train, carved.valid, PairSet(carved.test.a, b), carved.test_from)
    assert changed.digest() != carved.digest()


def test_digest_changes_when_pairs_are_swapped(carved):
    swapped = Subsets(carved.train, PairSet(carved.valid.b, carved.valid.a), carved.test, carved.test_from)
    assert swapped.digest() != carved.digest()


def test_digest_is_a_sha256_hex_string(carved):
    digest = carved.digest()
    assert len(digest) == 64 and int(digest, 16) >= 0
