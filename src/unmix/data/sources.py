"""Real-image sources: CIFAR-10's python batches and any folder of class subfolders."""

from __future__ import annotations

import codecs
import contextlib
import io
import multiprocessing as mp
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unmix.data.imageset import IMAGE_SHAPE, ImageSet
from unmix.errors import DataError
from unmix.progress import StepProgress

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_META = "batches.meta"

IMAGE_SIZE = (IMAGE_SHAPE[1], IMAGE_SHAPE[0])  # Pillow's (width, height)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Files per worker task: enough that passing the (512, 32, 32, 3) result back costs little.
DECODE_CHUNK = 512
MAX_DECODE_PROCESSES = 8


def load_cifar10(path: Path) -> tuple[ImageSet, ImageSet]:
    """CIFAR-10's train (50,000) and test (10,000) splits in `path`, extracted or downloaded if need be."""
    path = Path(path)
    folder = path / CIFAR10_FOLDER
    if not folder.is_dir():
        archive = path / CIFAR10_ARCHIVE
        if not archive.is_file():
            _download_cifar10(path)
        _extract_cifar10(archive, path)
    meta = _read_cifar10_pickle(folder / CIFAR10_META)
    try:
        class_names = tuple(name.decode() for name in meta[b"label_names"])
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise _corrupt(folder / CIFAR10_META, "no b'label_names' list of byte strings") from None
    train = _read_cifar10_batches([folder / name for name in CIFAR10_TRAIN_BATCHES], class_names)
    test = _read_cifar10_batches([folder / CIFAR10_TEST_BATCH], class_names)
    return train, test


def _download_cifar10(path: Path) -> None:
    # torchvision only here: importing it costs seconds that the data stages should not pay.
    # download_url checks the MD5; we extract ourselves because torchvision's extraction
    # trusts every member path in the archive.
    archive = path / CIFAR10_ARCHIVE
    try:
        from torchvision.datasets.utils import download_url

        download_url(CIFAR10_URL, str(path), filename=CIFAR10_ARCHIVE, md5=CIFAR10_MD5)
    except Exception as error:  # network, disk, checksum and import failures all end the same way
        archive.unlink(missing_ok=True)  # else the next run would take a partial download for the archive
        reason = f"{type(error).__name__}: {error}".replace("\n", " ")
        raise DataError(
            f"data.path={path}: no {CIFAR10_FOLDER}/ or {CIFAR10_ARCHIVE} there, and downloading "
            f"{CIFAR10_URL} failed ({reason}); download the archive on a machine with internet "
            f"and put it in {path}"
        ) from None


def _extract_cifar10(archive: Path, path: Path) -> None:
    # Extract beside the target and rename, so an interrupted run never leaves a half folder
    # that the next run would take for a complete one.
    try:
        tmp = Path(tempfile.mkdtemp(dir=path, prefix=".extract-"))
    except OSError as error:
        raise DataError(f"{path}: cannot extract {archive.name} here ({error!r}); make it writable") from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        if not (tmp / CIFAR10_FOLDER).is_dir():
            raise DataError(f"{archive}: has no {CIFAR10_FOLDER}/ folder; expected CIFAR-10's python version")
        os.replace(tmp / CIFAR10_FOLDER, path / CIFAR10_FOLDER)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{archive}: cannot extract ({error!r}); delete it and download it again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _CifarUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only, so a planted batch file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "_codecs" and name == "encode":  # how protocol 2 spells bytes
            return codecs.encode
        if module.split(".")[0] == "numpy":
            allowed = {
                "ndarray": np.ndarray,
                "dtype": np.dtype,
                "_reconstruct": np.empty(0).__reduce__()[0],  # numpy.core or numpy._core: either works
                "scalar": np.int64(0).__reduce__()[0],
            }
            if name in allowed:
                return allowed[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _corrupt(file: Path, problem: str) -> DataError:
    return DataError(f"{file}: {problem}; delete {file.parent} to have it extracted or downloaded again")


def _read_cifar10_pickle(file: Path) -> dict[bytes, Any]:
    if not file.is_file():
        raise _corrupt(file, "missing")
    try:
        with open(file, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as error:  # unpickling garbage can raise almost any exception type
        raise _corrupt(file, f"not a CIFAR-10 pickle ({error!r})") from None
    if not isinstance(batch, dict):
        raise _corrupt(file, f"holds a {type(batch).__name__}, expected a dict")
    return batch


def _read_cifar10_batches(files: list[Path], class_names: tuple[str, ...]) -> ImageSet:
    images, labels = [], []
    for file in files:
        batch = _read_cifar10_pickle(file)
        data = batch.get(b"data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
            raise _corrupt(file, "b'data' is not a uint8 (N, 3072) array")
        try:
            batch_labels = np.asarray(batch.get(b"labels"), dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            batch_labels = np.empty(0, dtype=np.int64)
        in_range = (batch_labels >= 0) & (batch_labels < len(class_names))
        if batch_labels.shape != (len(data),) or not in_range.all():
            raise _corrupt(file, f"b'labels' is not {len(data)} ints in 0..{len(class_names) - 1}")
        images.append(data)
        labels.append(batch_labels)
    # Rows are channel-major (1024 red, 1024 green, 1024 blue): (N, 3, 32, 32) -> (N, 32, 32, 3).
    pixels = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ImageSet(np.ascontiguousarray(pixels), np.concatenate(labels), class_names)


def load_image_folder(root: Path) -> tuple[ImageSet, ImageSet | None]:
    """Images from `root/<class>/<image>`, or `root/train/...` plus an optional `root/test/...` split."""
    train_dir = _train_directory(root)
    train = _read_class_tree(train_dir, None)
    test_dir = Path(root) / "test"
    if train_dir == Path(root) or not test_dir.is_dir():
        return train, None
    return train, _read_class_tree(test_dir, train.class_names)


def image_folder_train_files(root: Path) -> list[str]:
    """The train split's image files, in the order `load_image_folder` decodes them: the
    subset's image k is file k of this list (benchmarks/gpu_train.py carries their bytes)."""
    return _class_tree_files(_train_directory(root), None)[0]


def _train_directory(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        layouts = "<root>/<class>/<image> or <root>/train/<class>/<image>"
        raise DataError(f"data.path={root}: not a directory; expected {layouts}")
    return root / "train" if (root / "train").is_dir() else root


def _read_class_tree(directory: Path, class_names: tuple[str, ...] | None) -> ImageSet:
    files, labels, class_names = _class_tree_files(directory, class_names)
    return ImageSet(_decode_images(files), np.array(labels, dtype=np.int64), class_names)


def _class_tree_files(
    directory: Path, class_names: tuple[str, ...] | None
) -> tuple[list[str], list[int], tuple[str, ...]]:
    """`directory/<class>/<image>`'s files (sorted by class, then name), their labels, the classes."""
    # Hidden entries (.ipynb_checkpoints/, macOS's ._x.jpg) are litter, never classes or images.
    folders = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and entry.name[0] != ".")
    if not folders:
        raise DataError(f"{directory}: no class folders; expected {directory}/<class>/<image>")
    if class_names is None:
        class_names = tuple(folders)
    unknown = [name for name in folders if name not in class_names]
    if unknown:
        raise DataError(f"{directory}: classes {unknown} are not in the train split's {list(class_names)}")
    files: list[str] = []
    labels: list[int] = []
    for name in folders:
        # scandir's cached file type spares one stat per image: 50,000 of them on CIFAR-10.
        found = sorted(
            entry.path
            for entry in os.scandir(directory / name)
            if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.name[0] != "." and entry.is_file()
        )
        if not found:
            extensions = " ".join(sorted(IMAGE_EXTENSIONS))
            raise DataError(f"{directory / name}: no images; expected files ending in one of {extensions}")
        files += found
        labels += [class_names.index(name)] * len(found)
    return files, labels, class_names


def _decode_images(files: list[str]) -> np.ndarray:
    images = np.empty((len(files), *IMAGE_SHAPE), dtype=np.uint8)
    starts = range(0, len(files), DECODE_CHUNK)
    chunks = [files[start : start + DECODE_CHUNK] for start in starts]
    # Decoding a 32x32 image is ~100 us of mostly Python (header parsing, mode checks) that
    # holds the GIL, so threads gain nothing: only processes use the second core. Forking is
    # cheap; small folders stay in-process.
    workers = min(os.cpu_count() or 1, len(chunks), MAX_DECODE_PROCESSES)
    with contextlib.ExitStack() as stack:
        blocks: Iterator[np.ndarray] = map(_decode_chunk, chunks)
        if workers > 1 and "fork" in mp.get_all_start_methods():
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")))
            blocks = pool.map(_decode_chunk, chunks)
        with StepProgress(len(files), "decoding images", "image") as progress:
            for start, block in zip(starts, blocks):
                images[start : start + len(block)] = block
                progress.update(len(block))
    return images


def _decode_chunk(files: list[str]) -> np.ndarray:
    return np.stack([_decode_image(file) for file in files])


def _decode_image(file: str) -> np.ndarray:
    try:
        # One read, then parsing from memory: cheaper than Pillow's many small reads on the file.
        with open(file, "rb") as f:
            image = Image.open(io.BytesIO(f.read()))
        if image.size != IMAGE_SIZE:
            image.draft("RGB", IMAGE_SIZE)  # a large JPEG is decoded at 1/2..1/8 scale: far cheaper
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != IMAGE_SIZE:
            image = image.resize(IMAGE_SIZE, Image.Resampling.BICUBIC)
        return np.asarray(image)
    except Exception as error:  # Pillow raises many types for bad files; all mean "unreadable"
        raise DataError(f"{file}: cannot read as an image ({error!r}); delete or replace it") from None
