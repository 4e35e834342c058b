"""What every stage entry point shares: argument parsing and one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from unmix.atomic import check_writable
from unmix.errors import UnmixError


class OutputPath(type(Path())):  # type: ignore[misc]  # Path() is PosixPath or WindowsPath
    """A path the stage writes: checked writable before the stage starts any work."""


def output_path(text: str) -> OutputPath:
    """argparse `type=` for a stage's output files and folders."""
    return OutputPath(text)


def stage_parser(description: str, *, with_set: bool = False) -> argparse.ArgumentParser:
    """An argument parser with --params (and --set NAME for per-set stages)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if with_set:
        parser.add_argument("--set", dest="set_name", required=True, help="parameter set name under sets:")
    return parser


def run_stage(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse arguments and run `main`; a user-fixable error prints one line and exits 1.

    Outputs (arguments of type `output_path`) are checked writable first: a folder that
    cannot be written stops the stage before training, not after. An OSError naming a file
    (disk full, permissions) is the user's to fix as well; any other exception is a bug and
    keeps its traceback.
    """
    args = parser.parse_args()
    try:
        for value in vars(args).values():
            if isinstance(value, OutputPath):
                check_writable(value)
        main(args)
    except UnmixError as error:
        _fail(str(error))
    except OSError as error:
        if error.filename is None:
            raise
        _fail(f"{error.filename}: {error.strerror or type(error).__name__}")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
