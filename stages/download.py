"""DVC stage `download`: deliver the data source's images as uint8 arrays in data/raw/."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from unmix.atomic import atomic_directory
from unmix.cli import output_path, run_stage, stage_parser
from unmix.config import load_config
from unmix.data.raw import acquire_images, save_raw
from unmix.paths import project_root


def main(args: argparse.Namespace) -> None:
    data = load_config(args.params).data
    started = time.perf_counter()
    train, test = acquire_images(data, project_root(os.environ, Path.cwd()))
    with atomic_directory(args.out) as tmp:
        save_raw(train, test, tmp, data.source)
    test_count = len(test) if test is not None else 0
    print(
        f"download: {data.source}: {len(train)} train, {test_count} test images "
        f"in {time.perf_counter() - started:.1f} s → {args.out}"
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=output_path, default="data/raw")
    run_stage(main, parser)
