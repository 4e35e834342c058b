"""What every stage entry point shares: argument parsing and one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from unmix.errors import UnmixError


def stage_parser(description: str, *, with_set: bool = False) -> argparse.ArgumentParser:
    """An argument parser with --params (and --set NAME for per-set stages)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if with_set:
        parser.add_argument("--set", dest="set_name", required=True, help="parameter set name under sets:")
    return parser


def run_stage(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse arguments and run `main`; a user-fixable error prints one line and exits 1."""
    args = parser.parse_args()
    try:
        main(args)
    except UnmixError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
