"""ruff, configured in pyproject.toml ([tool.ruff]), finds nothing: lint and formatting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"  # the dev extra's pinned ruff, beside this Python


def ruff(*args: str) -> subprocess.CompletedProcess:
    assert RUFF.is_file(), f"{RUFF} missing: install the dev extra (make setup)"
    return subprocess.run([str(RUFF), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_ruff_check_finds_nothing() -> None:
    result = ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_would_change_nothing() -> None:
    result = ruff("format", "--no-cache", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
