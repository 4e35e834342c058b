"""Build the markdown body of the one pull-request comment: params, metrics and figures vs a base rev.

Run after `dvc repro` in CI, e.g.
`python -m unmix.reports.pull_request --base origin/main --figures-url URL --out pr-report.md`.
"""

from __future__ import annotations

import argparse
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


def _is_empty_table(md: str) -> bool:
    """True when dvc printed nothing or a markdown table with a header and no rows."""
    rows = [line for line in md.splitlines() if line.strip().startswith("|")]
    return len(rows) <= 2


def _figures_md(figures: list[FigureChange], figures_url: str | None) -> str:
    """Render the figure list: links to the artifacts page when given, else plain paths."""
    if not figures:
        return NO_CHANGES
    # An artifact is one zip, so every link can only point at the page that offers it.
    lines = [
        f"- [`{f.path}`]({figures_url}) ({f.status})" if figures_url else f"- `{f.path}` ({f.status})" for f in figures
    ]
    if figures_url:
        lines.append(f"\nThe figures and the `dvc plots diff` HTML are in the [run's artifacts]({figures_url}).")
    return "\n".join(lines)


def build_report(
    params_md: str,
    metrics_md: str,
    figures: list[FigureChange],
    figures_url: str | None = None,
    base: str | None = None,
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
        _figures_md(figures, figures_url),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the report for --base to --out (default stdout); print one line and return 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m unmix.reports.pull_request", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare the workspace against")
    parser.add_argument("--repo", default=".", type=Path, help="repository root (default: .)")
    parser.add_argument("--figures-url", default=None, help="URL where the rendered figures can be viewed")
    parser.add_argument("--precision", default=4, type=int, help="metric digits after the point (default: 4)")
    parser.add_argument("--out", default=None, type=Path, help="output file (default: stdout)")
    args = parser.parse_args(argv)
    repo_dir = args.repo.resolve()
    try:
        report = build_report(
            params_diff_md(args.base, repo_dir),
            metrics_diff_md(args.base, repo_dir, args.precision),
            changed_figures(args.base, repo_dir),
            args.figures_url,
            base=args.base,
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
