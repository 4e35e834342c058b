"""Errors a user can fix: each carries one line naming the key, file or value at fault."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UnmixError(Exception):
    """Base class: the stages print the message alone, with no traceback, and exit 1."""


class ConfigError(UnmixError):
    """A parameter in params.yaml (or an override) is missing, unknown or ill-typed."""


class DataError(UnmixError):
    """A data source cannot deliver what the parameters ask for."""


class OutputError(UnmixError):
    """A stage cannot write one of its outputs where it was told to."""


@contextmanager
def reading(path: Path | str, written_by: str) -> Iterator[None]:
    """Whatever goes wrong reading `path` in the block becomes one line naming it and its maker.

    Parsers of npz, JSON, CSV and torch files raise dozens of exception types on a truncated
    or foreign file; to the user they all mean the same: this file is not what was expected.
    """
    try:
        yield
    except UnmixError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected the {written_by} stage's output (dvc repro writes it)") from None
    except Exception as error:  # noqa: BLE001 - see above
        reason = f"{type(error).__name__}: {first_line(error)}" if str(error).strip() else type(error).__name__
        raise DataError(
            f"{path}: unreadable ({reason}); expected the {written_by} stage's output: `dvc repro` writes it again"
        ) from None


def first_line(error: BaseException, message: object = None) -> str:
    """The first line of `message` (by default the error's own text), or the error's type name
    when that is empty: how a failure reads in one line."""
    text = str(message or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
