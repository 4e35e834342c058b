"""The `unmix` command: `unmix separate` your own pictures, `unmix mix` two into one to try."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from unmix.errors import UnmixError
from unmix.names import MIX_NAMES  # unmix.model.mixing.MIXES's names, without importing torch

DEFAULT_MODEL = "models:/unmix-best@champion"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="unmix", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    separate = commands.add_parser(
        "separate",
        help="separate mixtures into two pictures each",
        description="Separate PNG or JPEG mixtures; write <name>_1.png, <name>_2.png and <name>_panel.png.",
    )
    separate.add_argument("pictures", nargs="+", type=Path, metavar="PICTURE", help="PNG or JPEG mixture")
    separate.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a registered model (models:/NAME@ALIAS or models:/NAME/VERSION, in the project's "
        f"MLflow store) or a checkpoint file such as models/best.pt (default: {DEFAULT_MODEL})",
    )
    separate.add_argument("--out", type=Path, default=Path("."), help="output folder (default: the current one)")
    mix = commands.add_parser(
        "mix",
        help="mix two pictures into one, as the models were trained",
        description="Mix two PNG or JPEG pictures into one mixture to separate.",
    )
    mix.add_argument("first", type=Path, nargs="?", metavar="A", help="PNG or JPEG picture")
    mix.add_argument("second", type=Path, nargs="?", metavar="B", help="PNG or JPEG picture")
    mix.add_argument(
        "--test-pair",
        type=int,
        metavar="N",
        help="instead of A and B: test pair N of the project's subset (never used in training); "
        "its two pictures are written beside the mixture as <name>_a.png and <name>_b.png",
    )
    mix.add_argument("--data", type=Path, help="the subset folder for --test-pair (default: <project>/data/subset)")
    mix.add_argument("--mix", choices=MIX_NAMES, default="mean", help="mixing rule (default: mean, as `best`)")
    mix.add_argument("-o", "--out", type=Path, required=True, help="the mixture to write (.png, .jpg)")
    return root


def main(argv: list[str] | None = None) -> int:
    command = parser()
    args = command.parse_args(argv)
    if args.command == "mix":
        pictures = [p for p in (args.first, args.second) if p is not None]
        if len(pictures) != (0 if args.test_pair is not None else 2):
            command.error("mix takes two pictures A B, or --test-pair N alone")
    from unmix.serve.commands import mix_files, mix_test_pair, separate_files

    try:
        if args.command == "separate":
            separate_files(args.pictures, args.model, args.out, Path.cwd(), os.environ)
        elif args.test_pair is not None:
            mix_test_pair(args.test_pair, args.data, args.mix, args.out, Path.cwd(), os.environ)
        else:
            mix_files(args.first, args.second, args.mix, args.out)
    except UnmixError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
