"""DVC stage `subset`: draw disjoint train/valid/test subsets and fix the valid/test pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from unmix.atomic import atomic_directory
from unmix.cli import output_path, run_stage, stage_parser
from unmix.config import load_config
from unmix.data.raw import load_raw
from unmix.data.subset import draw_subsets, save_subsets


def main(args: argparse.Namespace) -> None:
    data = load_config(args.params).data
    train, test = load_raw(args.raw)
    subsets = draw_subsets(train, test, data.n_train, data.n_valid, data.n_test, data.seed)
    with atomic_directory(args.out) as tmp:
        save_subsets(subsets, tmp, data.source)
    print(
        f"subset: {len(subsets.train)} train images, {len(subsets.valid)} valid pairs, "
        f"{len(subsets.test)} test pairs (test from the {subsets.test_from}) → {args.out}"
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=output_path, default="data/subset")
    run_stage(main, parser)
