"""Build the markdown body of the one pull-request comment: params, metrics and figures vs a base rev.

Run after `dvc repro` in CI, e.g. `python -m unmix.reports.pull_request --base origin/main
--images-dir pr-figures --image-url URL --out pr-report.md`: each changed figure is shown
before and after, as images copied into --images-dir under names made of their digests and
linked at --image-url (where the workflow publishes that folder); without --image-url the
links are relative paths, for a local preview or `cml comment create --publish`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from unmix.errors import UnmixError

# The workflow finds its earlier comment by this line, so each push edits one comment.
MARKER = "<!-- unmix-pr-report -->"
FIGURES_DIR = "reports/figures"
NO_CHANGES = "No changes."


@dataclass(frozen=True)
class FigureChange:
    """One PNG under reports/figures that differs from the base: 'changed', 'added' or 'removed'."""

    path: str
    status: str


@dataclass(frozen=True)
class FigureImages:
    """Where a changed figure's images are shown: the base's and the workspace's (None: none)."""

    before: str | None
    after: str | None


def find_dvc() -> str:
    """Return the dvc next to this interpreter (the venv's), else the one on PATH."""
    # Prefer the venv's dvc: a dvc of another version on PATH may read the repo differently.
    candidate = Path(sys.executable).parent / "dvc"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("dvc")
    if found is None:
        raise UnmixError(f"dvc not found next to {sys.executable} nor on PATH")
    return found


def _run(cmd: list[str], repo_dir: Path, *, text: bool = True) -> str | bytes:
    """Run cmd in repo_dir and return its stdout; raise UnmixError with one line on failure."""
    try:
        proc = subprocess.run(cmd, cwd=repo_dir, capture_output=True, text=text, check=False)
    except OSError as exc:
        raise UnmixError(f"`{' '.join(cmd)}` could not start: {exc}") from exc
    if proc.returncode != 0:
        stderr = proc.stderr if text else proc.stderr.decode(errors="replace")
        detail = " ".join(stderr.split()) or f"exit status {proc.returncode}"
        raise UnmixError(f"`{' '.join(cmd)}` failed: {detail}")
    return proc.stdout


def params_diff_md(base: str, repo_dir: Path) -> str:
    """Return `dvc params diff <base> --md` against the workspace."""
    return str(_run([find_dvc(), "params", "diff", base, "--md"], repo_dir))


def metrics_diff_md(base: str, repo_dir: Path, precision: int = 4) -> str:
    """Return `dvc metrics diff <base> --md --precision N` against the workspace."""
    cmd = [find_dvc(), "metrics", "diff", base, "--md", "--precision", str(precision)]
    return str(_run(cmd, repo_dir))


def changed_figures(base: str, repo_dir: Path, figures_dir: str = FIGURES_DIR) -> list[FigureChange]:
    """List PNGs under figures_dir whose bytes differ between base and the workspace, sorted by path."""
    listing = str(_run(["git", "ls-tree", "-r", "-z", "--name-only", base, "--", figures_dir], repo_dir))
    base_paths = {p for p in listing.split("\0") if p.lower().endswith(".png")}
    root = repo_dir / figures_dir
    work_paths = (
        {p.relative_to(repo_dir).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".png"}
        if root.is_dir()
        else set()
    )
    changes = []
    for path in sorted(base_paths | work_paths):
        if path not in work_paths:
            changes.append(FigureChange(path, "removed"))
        elif path not in base_paths:
            changes.append(FigureChange(path, "added"))
        elif _run(["git", "show", f"{base}:{path}"], repo_dir, text=False) != (repo_dir / path).read_bytes():
            changes.append(FigureChange(path, "changed"))
    return changes


def image_name(path: str, data: bytes) -> str:
    """A published image's file name: the figure's name and the digest of its bytes.

    By digest, so a name never changes meaning: a published image is never overwritten,
    an earlier comment keeps showing what it showed, and no cache serves a stale one.
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)  # safe in a URL and a file name as is
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.png"


def figure_images(
    base: str,
    figures: list[FigureChange],
    repo_dir: Path,
    images_dir: Path,
    image_url: str | None = None,
    relative_to: Path | None = None,
) -> dict[str, FigureImages]:
    """Copy each changed figure's base and workspace PNG into images_dir; return where each shows.

    The address is image_url/<name> when image_url is given (where images_dir is published),
    else the copy's path relative to `relative_to` (default: the current directory).
    """
    images_dir.mkdir(parents=True, exist_ok=True)

    def place(path: str, data: bytes) -> str:
        name = image_name(path, data)
        (images_dir / name).write_bytes(data)
        if image_url:
            return f"{image_url.rstrip('/')}/{name}"
        return Path(os.path.relpath(images_dir / name, relative_to or Path.cwd())).as_posix()

    shown = {}
    for figure in figures:
        before = after = None
        if figure.status != "added":
            before = place(figure.path, bytes(_run(["git", "show", f"{base}:{figure.path}"], repo_dir, text=False)))
        if figure.status != "removed":
            after = place(figure.path, (repo_dir / figure.path).read_bytes())
        shown[figure.path] = FigureImages(before, after)
    return shown


def _is_empty_table(md: str) -> bool:
    """True when dvc printed nothing or a markdown table with a header and no rows."""
    rows = [line for line in md.splitlines() if line.strip().startswith("|")]
    return len(rows) <= 2


def _image_table(figure: FigureChange, images: FigureImages, base: str | None) -> str:
    """One figure as a two-column table, before beside after, so the eye compares them at once."""
    before = f"![before: {figure.path}]({images.before})" if images.before else "(none: added here)"
    after = f"![after: {figure.path}]({images.after})" if images.after else "(none: removed here)"
    base_name = f" (`{base}`)" if base else ""
    return "\n".join(
        [
            f"**`{figure.path}`** ({figure.status})",
            "",
            f"| before{base_name} | after (this pull request) |",
            "| --- | --- |",
            f"| {before} | {after} |",
        ]
    )


def _figures_md(
    figures: list[FigureChange],
    figures_url: str | None,
    images: dict[str, FigureImages] | None = None,
    base: str | None = None,
) -> str:
    """The changed figures, inline before and after when `images` says where they show, else a
    list (links to the artifacts page when given, else plain paths)."""
    if not figures:
        return NO_CHANGES
    if images:
        parts = [_image_table(f, images[f.path], base) for f in figures]
    else:
        # An artifact is one zip, so every link can only point at the page that offers it.
        parts = [
            "\n".join(
                f"- [`{f.path}`]({figures_url}) ({f.status})" if figures_url else f"- `{f.path}` ({f.status})"
                for f in figures
            )
        ]
    if figures_url:
        parts.append(f"The figures and the `dvc plots diff` HTML are in the [run's artifacts]({figures_url}).")
    return "\n\n".join(parts)


def build_report(
    params_md: str,
    metrics_md: str,
    figures: list[FigureChange],
    figures_url: str | None = None,
    base: str | None = None,
    images: dict[str, FigureImages] | None = None,
) -> str:
    """Assemble the comment body: marker, header, then params, metrics and figures sections."""
    against = f" against `{base}`" if base else ""
    sections = [
        MARKER,
        f"## unmix pipeline report{against}",
        "### Parameters",
        NO_CHANGES if _is_empty_table(params_md) else params_md.strip(),
        "### Metrics",
        NO_CHANGES if _is_empty_table(metrics_md) else metrics_md.strip(),
        "### Figures",
        _figures_md(figures, figures_url, images, base),
    ]
    return "\n\n".join(sections) + "\n"


def make_parser() -> argparse.ArgumentParser:
    """The command line of `python -m unmix.reports.pull_request` (the workflow's calls are tested against it)."""
    parser = argparse.ArgumentParser(prog="python -m unmix.reports.pull_request", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare the workspace against")
    parser.add_argument("--repo", default=".", type=Path, help="repository root (default: .)")
    parser.add_argument("--figures-url", default=None, help="URL of the run's artifacts (figures, plots diff HTML)")
    parser.add_argument(
        "--images-dir", default=None, type=Path, help="show changed figures inline: copy their images here"
    )
    parser.add_argument(
        "--image-url", default=None, help="URL where --images-dir is published (default: relative paths)"
    )
    parser.add_argument("--precision", default=4, type=int, help="metric digits after the point (default: 4)")
    parser.add_argument("--out", default=None, type=Path, help="output file (default: stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write the report for --base to --out (default stdout); print one line and return 1 on failure."""
    parser = make_parser()
    args = parser.parse_args(argv)
    repo_dir = args.repo.resolve()
    if args.image_url and args.images_dir is None:
        parser.error("--image-url: give --images-dir too (the folder published at that URL)")
    try:
        params_md = params_diff_md(args.base, repo_dir)
        metrics_md = metrics_diff_md(args.base, repo_dir, args.precision)
        figures = changed_figures(args.base, repo_dir)
        images = None
        if args.images_dir is not None:
            relative_to = args.out.resolve().parent if args.out else Path.cwd()
            images = figure_images(args.base, figures, repo_dir, args.images_dir, args.image_url, relative_to)
        report = build_report(
            params_md,
            metrics_md,
            figures,
            args.figures_url,
            base=args.base,
            images=images,
        )
    except UnmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(report)
    else:
        args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
