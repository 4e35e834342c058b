"""What `unmix separate` and `unmix mix` do, as plain functions the CLI and the tests call."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
    from unmix.serve.inference import size_note
    from unmix.serve.loading import load_separator

    stems: dict[str, Path] = {}
    for picture in pictures:
        if picture.stem in stems:
            raise PictureError(f"{stems[picture.stem]} and {picture}: both would write {picture.stem}_1.png; "
                               f"rename one or separate them into different --out folders")
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


def mix_files(first: Path, second: Path, mix: str, out: Path, say: Say = print) -> np.ndarray:
    """Mix two pictures with a training mix rule, as the models saw mixtures; write and return it.

    The second picture is resized to the first's size when they differ.
    """
    from unmix.mixing import MIXES
    from unmix.training import normalise, to_channels_first, to_uint8_images

    if mix not in MIXES:
        raise PictureError(f"--mix {mix}: expected one of {', '.join(MIXES)}")
    output_format(out)  # a bad output name stops before any work
    a, b = read_picture(first), read_picture(second)
    if a.shape != b.shape:
        say(f"note: resized {second} ({b.shape[1]}×{b.shape[0]}) to {first}'s {a.shape[1]}×{a.shape[0]}")
        b = resize_like(b, *a.shape[:2])
    mixture = to_uint8_images(MIXES[mix](normalise(to_channels_first(a[None])), normalise(to_channels_first(b[None]))))[0]
    write_picture(out, mixture)
    say(f"wrote {out} ({mix} of {first} and {second})")
    return mixture
