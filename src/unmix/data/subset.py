"""Disjoint train/valid/test subsets and the fixed pairs every parameter set is judged on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unmix.atomic import write_text_atomically
from unmix.data.imageset import ImageSet, load_image_set, save_image_set, write_npz_atomically
from unmix.errors import DataError, reading

SUBSET_META_KEYS = ("source", "test_from", "class_names", "digest")


@dataclass(frozen=True)
class PairSet:
    """Fixed pairs of images (a[i], b[i]) to mix: uint8 (P, 32, 32, 3) each."""

    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


@dataclass(frozen=True)
class Subsets:
    """What training and evaluation read: training images and fixed valid/test pairs."""

    train: ImageSet
    valid: PairSet
    test: PairSet
    test_from: str  # "test split" or "training split" (carved out, disjoint)

    def digest(self) -> str:
        """SHA-256 of every pixel and pairing, so a run can name exactly the data it saw."""
        sha = hashlib.sha256()
        for array in (self.train.images, self.train.labels, self.valid.a, self.valid.b, self.test.a, self.test.b):
            sha.update(np.ascontiguousarray(array).tobytes())
        return sha.hexdigest()


def draw_subsets(train: ImageSet, test: ImageSet | None, n_train: int, n_valid: int, n_test: int, seed: int) -> Subsets:
    """Draw disjoint subsets with `seed`; test comes from the test split when there is one."""
    needed_from_train = n_train + n_valid + (0 if test is not None else n_test)
    if needed_from_train > len(train):
        asked = "data.n_train + data.n_valid" + ("" if test is not None else " + data.n_test")
        raise DataError(f"{asked} = {needed_from_train}: more than the {len(train)} images in the training split")
    if test is not None and n_test > len(test):
        raise DataError(f"data.n_test = {n_test}: more than the {len(test)} images in the test split")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    train_part = train.take(np.sort(order[:n_train]))
    valid_images = train.take(order[n_train : n_train + n_valid]).images
    if test is not None:
        test_images = test.take(rng.permutation(len(test))[:n_test]).images
    else:
        test_images = train.take(order[n_train + n_valid : needed_from_train]).images
    return Subsets(
        train=train_part,
        valid=fixed_pairs(valid_images, rng),
        test=fixed_pairs(test_images, rng),
        test_from="test split" if test is not None else "training split",
    )


def fixed_pairs(images: np.ndarray, rng: np.random.Generator) -> PairSet:
    """Pair the images of a random permutation's first half with its second half."""
    order = rng.permutation(len(images))
    half = len(images) // 2
    return PairSet(a=images[order[:half]], b=images[order[half : 2 * half]])


def save_subsets(subsets: Subsets, directory: Path, source: str) -> None:
    """Write train.npz, valid.npz, test.npz and meta.json into `directory`."""
    directory = Path(directory)
    save_image_set(subsets.train, directory / "train.npz")
    for name, pairs in (("valid", subsets.valid), ("test", subsets.test)):
        write_npz_atomically(directory / f"{name}.npz", {"a": pairs.a, "b": pairs.b})
    meta = {
        "source": source,
        "n_train": len(subsets.train),
        "n_valid_pairs": len(subsets.valid),
        "n_test_pairs": len(subsets.test),
        "test_from": subsets.test_from,
        "class_names": list(subsets.train.class_names),
        "digest": subsets.digest(),
    }
    write_text_atomically(directory / "meta.json", json.dumps(meta, indent=2) + "\n")


def load_subsets(directory: Path) -> Subsets:
    """Read what `save_subsets` wrote."""
    directory = Path(directory)
    pairs = {}
    for name in ("valid", "test"):
        path = directory / f"{name}.npz"
        with reading(path, "subset"), np.load(path, allow_pickle=False) as npz:
            pairs[name] = PairSet(a=npz["a"], b=npz["b"])
            if pairs[name].a.shape != pairs[name].b.shape or pairs[name].a.shape[1:] != (32, 32, 3):
                raise ValueError(f"pairs of shapes {pairs[name].a.shape} and {pairs[name].b.shape}")
    meta = load_subset_meta(directory)
    train = load_image_set(directory / "train.npz", written_by="subset")
    return Subsets(train, pairs["valid"], pairs["test"], meta["test_from"])


def load_subset_meta(directory: Path) -> dict:
    """The subset's meta.json: counts, source, class names and digest."""
    path = Path(directory) / "meta.json"
    with reading(path, "subset"):
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
        missing = [key for key in SUBSET_META_KEYS if key not in meta]
        if missing:
            raise ValueError(f"no {missing[0]!r} key")
        return meta
