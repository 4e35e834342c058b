"""The PR report against a real two-commit git + DVC repo, and its empty-diff wording."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unmix.reports.pull_request import MARKER, NO_CHANGES, FigureChange, build_report, find_dvc, image_name, main

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


def images_in(report: str) -> dict[str, str]:
    """Each markdown image of the report: its alt text → its address."""
    return dict(re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", report))


def test_report_shows_each_changed_figure_inline_before_and_after(repo: tuple[Path, str], tmp_path: Path) -> None:
    repo_dir, base = repo
    _git(repo_dir, "add", "-A")
    _git(repo_dir, "commit", "-q", "-m", "the pull request")  # two commits: base and head, checked out
    out, images_dir = tmp_path / "report.md", tmp_path / "published"
    url = "https://github.com/o/r/raw/unmix-pr-figures/figures"
    argv = ["--base", base, "--repo", str(repo_dir), "--images-dir", str(images_dir), "--image-url", url]

    assert main([*argv, "--out", str(out)]) == 0
    shown = images_in(out.read_text())

    def published(address: str) -> bytes:
        assert address.startswith(url + "/")
        return (images_dir / address.removeprefix(url + "/")).read_bytes()

    changed = "reports/figures/changed.png"
    assert published(shown[f"before: {changed}"]) == PNG_A  # the base commit's bytes
    assert published(shown[f"after: {changed}"]) == PNG_B  # the workspace's
    assert published(shown["after: reports/figures/new.png"]) == PNG_B
    assert "before: reports/figures/new.png" not in shown
    assert published(shown["before: reports/figures/gone.png"]) == PNG_A
    assert "after: reports/figures/gone.png" not in shown
    assert not any("same.png" in alt for alt in shown)
    assert len(shown) == 4
    # Before beside after: one table row holds both images of a figure.
    row = next(line for line in out.read_text().splitlines() if f"before: {changed}" in line)
    assert f"after: {changed}" in row


def test_image_names_follow_the_bytes_so_a_published_image_never_changes(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    repo_dir, base = repo
    first, second = tmp_path / "first", tmp_path / "second"
    for images_dir in (first, second):
        assert main(["--base", base, "--repo", str(repo_dir), "--images-dir", str(images_dir)]) == 0
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())
    (repo_dir / "reports/figures/changed.png").write_bytes(PNG_A + b"more")
    assert main(["--base", base, "--repo", str(repo_dir), "--images-dir", str(second)]) == 0
    assert len(list(second.iterdir())) == len(list(first.iterdir())) + 1  # added, nothing overwritten


def test_without_an_image_url_the_images_are_relative_to_the_report(repo: tuple[Path, str], tmp_path: Path) -> None:
    repo_dir, base = repo
    out = tmp_path / "comment" / "report.md"
    out.parent.mkdir()
    images_dir = tmp_path / "images"
    assert main(["--base", base, "--repo", str(repo_dir), "--images-dir", str(images_dir), "--out", str(out)]) == 0
    shown = images_in(out.read_text())
    assert (out.parent / shown["before: reports/figures/changed.png"]).read_bytes() == PNG_A
    assert (out.parent / shown["after: reports/figures/changed.png"]).read_bytes() == PNG_B


def test_an_image_url_without_a_folder_to_publish_is_refused(
    repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo_dir, base = repo
    with pytest.raises(SystemExit):
        main(["--base", base, "--repo", str(repo_dir), "--image-url", "https://example.com"])
    assert "--images-dir" in capsys.readouterr().err


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


def test_image_name_is_the_figure_name_and_the_digest_of_its_bytes() -> None:
    # sha256(b"") = e3b0c44298fc1c14…; a character a URL would need escaped becomes "_".
    assert image_name("reports/figures/a b(1).png", b"") == "a_b_1_-e3b0c44298fc1c14.png"
