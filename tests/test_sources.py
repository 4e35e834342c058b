"""Tests for unmix.data.sources on small CIFAR-10 archives and image trees built in tmp_path."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmix.data import sources
from unmix.data.imageset import ImageSet
from unmix.data.sources import load_cifar10, load_image_folder
from unmix.errors import DataError

CLASS_NAMES = ("airplane", "automobile", "bird")


def random_image_set(n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return ImageSet(images, rng.integers(0, len(CLASS_NAMES), size=n).astype(np.int64), CLASS_NAMES)


def _dump(file: Path, obj: dict) -> None:
    # Protocol 2 is what the official (Python 2) files use.
    file.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10_folder(directory: Path, train: ImageSet, test: ImageSet) -> Path:
    """Write `train` (as 5 batches) and `test` as directory/cifar-10-batches-py in the official format."""
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(part: ImageSet, label: str) -> dict:
        rows = part.images.transpose(0, 3, 1, 2).reshape(len(part), 3072)  # channel-major rows
        names = [f"{i}.png".encode() for i in range(len(part))]
        labels = part.labels.tolist()
        return {b"batch_label": label.encode(), b"labels": labels, b"data": rows, b"filenames": names}

    for i, indices in enumerate(np.array_split(np.arange(len(train)), 5), start=1):
        _dump(folder / f"data_batch_{i}", batch(train.take(indices), f"training batch {i} of 5"))
    _dump(folder / "test_batch", batch(test, "testing batch 1 of 1"))
    names = [n.encode() for n in train.class_names]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": len(test), b"num_vis": 3072})
    return folder


def write_cifar10_archive(directory: Path, train: ImageSet, test: ImageSet) -> Path:
    """Write directory/cifar-10-python.tar.gz holding cifar-10-batches-py/, as the official archive does."""
    staging = directory / "staging"
    folder = write_cifar10_folder(staging, train, test)
    archive = directory / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    staging.rmdir()
    return archive


@pytest.fixture
def splits() -> tuple[ImageSet, ImageSet]:
    return random_image_set(20, seed=1), random_image_set(4, seed=2)


def assert_same(actual: ImageSet, expected: ImageSet) -> None:
    assert actual.images.dtype == np.uint8 and actual.images.flags.c_contiguous
    np.testing.assert_array_equal(actual.images, expected.images)
    np.testing.assert_array_equal(actual.labels, expected.labels)
    assert actual.labels.dtype == np.int64
    assert actual.class_names == expected.class_names


def assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_cifar10_folder_round_trips_pixels_labels_and_names(tmp_path, splits):
    write_cifar10_folder(tmp_path, *splits)
    train, test = load_cifar10(tmp_path)
    assert_same(train, splits[0])
    assert_same(test, splits[1])


def test_cifar10_rows_are_channel_major(tmp_path, splits):
    # Worked by hand from the CIFAR-10 page: 1024 red values, then green, then blue, each row-major.
    write_cifar10_folder(tmp_path, *splits)
    row = np.zeros(3072, dtype=np.uint8)
    row[:1024], row[1024:2048], row[2048:] = 10, 20, 30
    row[0], row[31], row[32], row[1024 + 33] = 255, 1, 2, 3
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": row[None], b"labels": [2]})
    _, test = load_cifar10(tmp_path)
    assert test.images.shape == (1, 32, 32, 3)
    assert test.images[0, 0, 0].tolist() == [255, 20, 30]
    assert test.images[0, 0, 31, 0] == 1  # red, row 0, column 31
    assert test.images[0, 1, 0, 0] == 2  # red, row 1, column 0
    assert test.images[0, 1, 1].tolist() == [10, 3, 30]  # green, row 1, column 1
    assert test.labels.tolist() == [2]


def test_cifar10_archive_is_extracted_then_read(tmp_path, splits):
    write_cifar10_archive(tmp_path, *splits)
    train, test = load_cifar10(tmp_path)
    assert_same(train, splits[0])
    assert_same(test, splits[1])
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_cifar10_corrupt_archive_names_it(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a gzip file")
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    assert_one_line(error, str(tmp_path / "cifar-10-python.tar.gz"), "delete it")
    assert not (tmp_path / "cifar-10-batches-py").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]


def test_cifar10_archive_member_outside_the_folder_is_refused(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    assert_one_line(error, "cifar-10-python.tar.gz", "cannot extract")
    assert not (tmp_path.parent / "escaped").exists()


def test_cifar10_archive_without_the_folder(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("README"), io.BytesIO(b""))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    assert_one_line(error, "cifar-10-python.tar.gz", "has no cifar-10-batches-py/")


def fake_torchvision(monkeypatch, download_url) -> None:
    # Registering the submodule alone is enough for `from ... import`, and skips torchvision's
    # multi-second import.
    utils = types.ModuleType("torchvision.datasets.utils")
    utils.download_url = download_url
    monkeypatch.setitem(sys.modules, "torchvision.datasets.utils", utils)


def test_cifar10_download_failure_says_what_was_tried(tmp_path, monkeypatch):
    calls = []

    def failing_download(url, root, filename=None, md5=None):
        calls.append((url, root, filename, md5))
        Path(root, filename).write_bytes(b"half")  # a partial file must not survive
        raise urllib.error.URLError("no route to host")

    fake_torchvision(monkeypatch, failing_download)
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    assert_one_line(error, f"data.path={tmp_path}", sources.CIFAR10_URL, "no route to host", f"in {tmp_path}")
    md5 = "c58f30108f718f92721af3b95e74349a"
    assert calls == [(sources.CIFAR10_URL, str(tmp_path), "cifar-10-python.tar.gz", md5)]
    assert list(tmp_path.iterdir()) == []


def test_cifar10_download_success_is_extracted(tmp_path, monkeypatch, splits):
    def download(url, root, filename=None, md5=None):
        write_cifar10_archive(Path(root), *splits)

    fake_torchvision(monkeypatch, download)
    train, test = load_cifar10(tmp_path)
    assert_same(train, splits[0])
    assert_same(test, splits[1])


def test_cifar10_real_torchvision_downloader_failure(tmp_path, monkeypatch):
    # The real download_url, with the network cut: our call must match its signature, or the
    # TypeError would masquerade as a download failure.
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network cut by the test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    pytest.importorskip("torchvision")
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path / "data")
    assert_one_line(error, str(tmp_path / "data"), "network cut by the test")
    assert "TypeError" not in str(error.value)


def test_cifar10_loading_does_not_import_torch(tmp_path, splits):
    write_cifar10_folder(tmp_path, *splits)
    code = (
        "import sys; from pathlib import Path; from unmix.data.sources import load_cifar10; "
        f"load_cifar10(Path({str(tmp_path)!r})); assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(sources.__file__).parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def put_batch(name: str, data: np.ndarray, labels: list):
    return lambda folder: _dump(folder / name, {b"data": data, b"labels": labels})


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: (f / "data_batch_3").write_bytes(b"garbage"), "data_batch_3"),
        (lambda f: (f / "test_batch").unlink(), "test_batch"),
        (lambda f: (f / "batches.meta").unlink(), "batches.meta"),
        (lambda f: _dump(f / "batches.meta", {b"num_vis": 3072}), "batches.meta"),
        (put_batch("data_batch_1", np.zeros((2, 3072), np.int32), [0, 1]), "data_batch_1"),  # dtype
        (put_batch("data_batch_2", np.zeros((2, 3072), np.uint8), [0]), "data_batch_2"),  # label count
        (put_batch("data_batch_4", np.zeros((1, 3072), np.uint8), [3]), "data_batch_4"),  # label range
        (put_batch("data_batch_4", np.zeros((1, 3072), np.uint8), [b"x"]), "data_batch_4"),  # label type
        (put_batch("data_batch_4", np.zeros((1, 1024), np.uint8), [0]), "data_batch_4"),  # row length
        (lambda f: (f / "data_batch_5").write_bytes(pickle.dumps([1, 2])), "data_batch_5"),
    ],
)
def test_cifar10_missing_or_corrupt_batch_names_the_file(tmp_path, splits, damage, named):
    damage(write_cifar10_folder(tmp_path, *splits))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    assert_one_line(error, str(tmp_path / "cifar-10-batches-py" / named))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_pickle_cannot_run_code(tmp_path, splits):
    folder = write_cifar10_folder(tmp_path, *splits)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}))
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path)
    assert_one_line(error, "test_batch", "refusing to load")


# ---- image folders ----


def write_png(file: Path, pixels: np.ndarray, mode: str | None = None) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(file)


def write_tree(root: Path, n_per_class: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """PNG tree root/<class>/<i>.png; returns each class's pixels in file-name order."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for name, n in n_per_class.items():
        pixels[name] = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        for i, image in enumerate(pixels[name]):
            write_png(root / name / f"{i:03d}.png", image)
    return pixels


def test_image_folder_without_splits(tmp_path):
    pixels = write_tree(tmp_path, {"dog": 2, "cat": 3}, seed=0)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    train, test = load_image_folder(tmp_path)
    assert test is None
    assert train.class_names == ("cat", "dog")
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(train.images, np.concatenate([pixels["cat"], pixels["dog"]]))


def test_image_folder_with_train_and_test_splits(tmp_path):
    train_pixels = write_tree(tmp_path / "train", {"a": 1, "b": 2, "c": 1}, seed=1)
    test_pixels = write_tree(tmp_path / "test", {"c": 2}, seed=2)
    train, test = load_image_folder(tmp_path)
    assert train.class_names == test.class_names == ("a", "b", "c")
    assert train.labels.tolist() == [0, 1, 1, 2]
    assert test.labels.tolist() == [2, 2]  # the train split's index for "c", not 0
    np.testing.assert_array_equal(train.images, np.concatenate(list(train_pixels.values())))
    np.testing.assert_array_equal(test.images, test_pixels["c"])


def test_image_folder_train_split_alone_has_no_test(tmp_path):
    write_tree(tmp_path / "train", {"a": 1, "b": 1}, seed=3)
    train, test = load_image_folder(tmp_path)
    assert len(train) == 2 and test is None


def test_image_folder_resizes_large_images_bicubically(tmp_path):
    big = np.random.default_rng(4).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    write_png(tmp_path / "x" / "big.png", big)
    flat = np.full((64, 48, 3), (7, 80, 200), np.uint8)  # not square, and an upper-case extension
    write_png(tmp_path / "x" / "flat.PNG", flat)
    train, _ = load_image_folder(tmp_path)
    expected = np.asarray(Image.fromarray(big).resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(train.images[0], expected)
    assert (train.images[1] == (7, 80, 200)).all()


def test_image_folder_large_jpeg_is_decoded_small(tmp_path):
    (tmp_path / "x").mkdir()
    Image.new("RGB", (256, 256), (200, 30, 90)).save(tmp_path / "x" / "big.jpg", quality=95)
    train, _ = load_image_folder(tmp_path)
    assert train.images.shape == (1, 32, 32, 3)
    assert np.abs(train.images[0].astype(int) - (200, 30, 90)).max() <= 3  # JPEG is lossy


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA"])
def test_image_folder_converts_other_modes_to_rgb(tmp_path, mode):
    gray = np.random.default_rng(5).integers(0, 256, size=(32, 32), dtype=np.uint8)
    write_png(tmp_path / "x" / "0.png", np.stack([gray] * 3, axis=-1), mode)
    train, _ = load_image_folder(tmp_path)
    expected = np.asarray(Image.open(tmp_path / "x" / "0.png").convert("RGB"))
    np.testing.assert_array_equal(train.images[0], expected)
    if mode in ("L", "LA"):
        np.testing.assert_array_equal(train.images[0], np.stack([gray] * 3, axis=-1))


def test_image_folder_worker_processes_give_the_same_result(tmp_path, monkeypatch):
    pixels = write_tree(tmp_path, {"a": 4, "b": 3}, seed=6)
    monkeypatch.setattr(sources, "DECODE_CHUNK", 2)  # 4 chunks: the pool path, even on this tiny tree
    train, _ = load_image_folder(tmp_path)
    np.testing.assert_array_equal(train.images, np.concatenate([pixels["a"], pixels["b"]]))
    (tmp_path / "b" / "002.png").write_bytes(b"broken")
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path)
    assert_one_line(error, str(tmp_path / "b" / "002.png"))


def test_image_folder_root_missing(tmp_path):
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path / "nowhere")
    assert_one_line(error, str(tmp_path / "nowhere"), "not a directory")


def test_image_folder_root_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path / "file")
    assert_one_line(error, str(tmp_path / "file"), "not a directory")


def test_image_folder_without_class_folders(tmp_path):
    write_png(tmp_path / "loose.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path)
    assert_one_line(error, str(tmp_path), "no class folders")


def test_image_folder_class_without_images(tmp_path):
    write_tree(tmp_path, {"a": 1}, seed=7)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path)
    assert_one_line(error, str(tmp_path / "b"), "no images")


def test_image_folder_unreadable_image_is_named(tmp_path):
    write_tree(tmp_path, {"a": 2}, seed=8)
    (tmp_path / "a" / "001.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path)
    assert_one_line(error, str(tmp_path / "a" / "001.png"), "cannot read")


def test_image_folder_unknown_test_class(tmp_path):
    write_tree(tmp_path / "train", {"a": 1}, seed=9)
    write_tree(tmp_path / "test", {"a": 1, "zebra": 1}, seed=10)
    with pytest.raises(DataError) as error:
        load_image_folder(tmp_path)
    assert_one_line(error, str(tmp_path / "test"), "zebra", "['a']")
