"""The PR report against a real two-commit git + DVC repo, and its empty-diff wording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unmix.reports.pull_request import MARKER, NO_CHANGES, FigureChange, build_report, find_dvc, main

DVC_YAML = """\
stages:
  train:
    cmd: "true"
    params: [train.lr, train.epochs]
    metrics:
      - reports/a/metrics.json: {cache: false}
"""

# Any bytes do: the report compares bytes, it never decodes the images.
PNG_A = b"\x89PNG\r\n\x1a\n" + b"A" * 32
PNG_B = b"\x89PNG\r\n\x1a\n" + b"B" * 32


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _write(repo: Path, rel: str, data: str | bytes) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A repo whose first commit is the base; the workspace changes a param, a metric and a figure."""
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "test")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "test@example.com")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    dvc = find_dvc()
    _git(tmp_path, "init", "-q")
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "config", "core.analytics", "false"], cwd=tmp_path, check=True)
    _write(tmp_path, "params.yaml", "train:\n  lr: 0.01\n  epochs: 3\n")
    _write(tmp_path, "dvc.yaml", DVC_YAML)
    _write(tmp_path, "reports/a/metrics.json", json.dumps({"test": {"best": {"psnr": 15.1}}}))
    _write(tmp_path, "reports/figures/changed.png", PNG_A)
    _write(tmp_path, "reports/figures/same.png", PNG_A)
    _write(tmp_path, "reports/figures/gone.png", PNG_A)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "base")
    base = _git(tmp_path, "rev-parse", "HEAD").strip()

    _write(tmp_path, "params.yaml", "train:\n  lr: 0.02\n  epochs: 3\n")
    _write(tmp_path, "reports/a/metrics.json", json.dumps({"test": {"best": {"psnr": 17.3}}}))
    _write(tmp_path, "reports/figures/changed.png", PNG_B)
    _write(tmp_path, "reports/figures/new.png", PNG_B)
    (tmp_path / "reports/figures/gone.png").unlink()
    return tmp_path, base


def test_report_against_base_commit(repo: tuple[Path, str], tmp_path: Path) -> None:
    repo_dir, base = repo
    out = tmp_path / "report.md"
    url = "https://example.com/run/1"

    assert main(["--base", base, "--repo", str(repo_dir), "--figures-url", url, "--out", str(out)]) == 0
    report = out.read_text()

    assert report.startswith(MARKER)
    assert "15.1" in report and "17.3" in report
    assert "train.lr" in report and "0.01" in report and "0.02" in report
    assert "train.epochs" not in report
    assert f"[`reports/figures/changed.png`]({url}) (changed)" in report
    assert "`reports/figures/new.png`" in report and "(added)" in report
    assert "`reports/figures/gone.png`" in report and "(removed)" in report
    assert "same.png" not in report


def test_bad_base_fails_with_one_line(repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, _ = repo
    assert main(["--base", "no-such-rev", "--repo", str(repo_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "params diff no-such-rev" in err and "no-such-rev" in err


def test_build_report_empty_diffs_say_no_changes() -> None:
    # dvc prints a header-only table when nothing changed; that must read as "No changes."
    empty_table = "| Path   | Param   | HEAD   | workspace   |\n|--------|---------|--------|-------------|\n\n"
    report = build_report(empty_table, "", [], None)

    assert report.startswith(MARKER + "\n")
    assert report.count(NO_CHANGES) == 3
    assert "|" not in report


def test_build_report_lists_paths_without_url() -> None:
    report = build_report("", "", [FigureChange("reports/figures/x.png", "changed")], None, base="origin/main")

    assert "- `reports/figures/x.png` (changed)" in report
    assert "](" not in report
    assert "`origin/main`" in report


def test_module_runs_as_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unmix.reports.pull_request", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert "--figures-url" in proc.stdout
