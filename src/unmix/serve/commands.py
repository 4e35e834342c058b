"""What `unmix separate` and `unmix mix` do, as plain functions the CLI and the tests call."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from unmix.serve.pictures import PictureError, output_format, panel, read_picture, resize_like, write_picture

Say = Callable[[str], None]


def output_paths(picture: Path, out_dir: Path) -> tuple[Path, Path, Path]:
    """<name>_1.png, <name>_2.png and <name>_panel.png in `out_dir`."""
    return tuple(out_dir / f"{picture.stem}_{suffix}.png" for suffix in ("1", "2", "panel"))


def separate_files(
    pictures: Sequence[Path], model_spec: str, out_dir: Path, cwd: Path, environ: Mapping[str, str], say: Say = print
) -> list[tuple[Path, Path, Path]]:
    """Separate each picture with the model `model_spec` names; write both outputs and a panel.

    Every picture is read, and the output names checked, before the model loads.
    """
    from unmix.evaluation.inference import size_note
    from unmix.serve.loading import load_separator

    stems: dict[str, Path] = {}
    for picture in pictures:
        if picture.stem in stems:
            raise PictureError(
                f"{stems[picture.stem]} and {picture}: both would write {picture.stem}_1.png; "
                f"rename one or separate them into different --out folders"
            )
        stems[picture.stem] = picture
    images = [read_picture(picture) for picture in pictures]
    if out_dir.exists() and not out_dir.is_dir():
        raise PictureError(f"--out {out_dir}: a file; expected a folder")
    separator = load_separator(model_spec, cwd, environ)
    say(f"model: {separator.arch}, trained on the {separator.mix or 'unknown'} mix ({separator.source})")
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        by_size[image.shape[:2]].append(index)
    written: list[tuple[Path, Path, Path] | None] = [None] * len(images)
    for (height, width), indices in by_size.items():
        note = size_note(height, width, separator.arch, separator.depth)
        if note:
            say(f"note: {note}")
        out_1, out_2 = separator.separate(np.stack([images[i] for i in indices]))
        for row, index in enumerate(indices):
            paths = output_paths(pictures[index], out_dir)
            for path, pixels in zip(paths, (out_1[row], out_2[row], panel(images[index], out_1[row], out_2[row]))):
                write_picture(path, pixels)
            say(f"{pictures[index]} -> {', '.join(str(p) for p in paths)}")
            written[index] = paths
    return written


def mix_pictures(a: np.ndarray, b: np.ndarray, mix: str) -> np.ndarray:
    """uint8 (H, W, 3) pictures mixed with a training mix rule, exactly as the models saw mixtures."""
    from unmix.model.mixing import MIXES
    from unmix.model.tensors import normalise, to_channels_first, to_uint8_images

    if mix not in MIXES:
        raise PictureError(f"--mix {mix}: expected one of {', '.join(MIXES)}")
    return to_uint8_images(MIXES[mix](normalise(to_channels_first(a[None])), normalise(to_channels_first(b[None]))))[0]


def mix_files(first: Path, second: Path, mix: str, out: Path, say: Say = print) -> np.ndarray:
    """Mix two picture files; write the mixture to `out` and return it.

    The second picture is resized to the first's size when they differ.
    """
    output_format(out)  # a bad output name stops before any work
    a, b = read_picture(first), read_picture(second)
    if a.shape != b.shape:
        say(f"note: resized {second} ({b.shape[1]}×{b.shape[0]}) to {first}'s {a.shape[1]}×{a.shape[0]}")
        b = resize_like(b, *a.shape[:2])
    mixture = mix_pictures(a, b, mix)
    write_picture(out, mixture)
    say(f"wrote {out} ({mix} of {first} and {second})")
    return mixture


def mix_test_pair(
    index: int, data: Path | None, mix: str, out: Path, cwd: Path, environ: Mapping[str, str], say: Say = print
) -> np.ndarray:
    """Mix test pair `index` of the subset (pictures no model trained on); write it and both pictures."""
    from unmix.serve.loading import find_project_root

    output_format(out)
    if data is None:
        root = find_project_root(cwd, environ)
        if root is None:
            raise PictureError(f"--test-pair: no unmix project (dvc.yaml) in {cwd} or above; give --data")
        data = root / "data" / "subset"
    try:
        with np.load(data / "test.npz", allow_pickle=False) as test:
            pairs = len(test["a"])
            if not 0 <= index < pairs:
                raise PictureError(f"--test-pair {index}: expected 0 to {pairs - 1} ({data} has {pairs} test pairs)")
            a, b = test["a"][index], test["b"][index]
    except (OSError, KeyError, ValueError) as error:
        raise PictureError(f"--data {data}: no test pairs to read ({error})") from None
    mixture = mix_pictures(a, b, mix)
    pictures = out.with_name(f"{out.stem}_a.png"), out.with_name(f"{out.stem}_b.png")
    for path, pixels in zip(pictures, (a, b)):
        write_picture(path, pixels)
    write_picture(out, mixture)
    say(f"wrote {out} ({mix} of test pair {index}: {pictures[0]}, {pictures[1]})")
    return mixture
