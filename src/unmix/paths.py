"""Paths that must mean the same thing when DVC runs a stage in a temporary experiment folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def project_root(environ: Mapping[str, str], cwd: Path) -> Path:
    """The repository root: DVC_ROOT when DVC runs the stage (also for queued experiments)."""
    return Path(environ.get("DVC_ROOT") or cwd).resolve()


def resolve_data_path(path: str, root: Path) -> Path:
    """A data.path from params: absolute as given, relative to the repository root otherwise."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (root / candidate)
