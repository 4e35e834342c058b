"""What `make repro` changed against the committed record, in a few lines.

    python -m unmix.reports.repro_summary

A newcomer who runs `make repro` and then `git status` should not meet a list of changed
files with no word of why. This prints either that every committed output came out
byte-identical, or how many changed and how far each set's test PSNR and SSIM moved
(`dvc metrics diff HEAD`), with the reason: float training rounds differently on CPUs
with other vector units (docs/reproducibility.md). Outside a git checkout it prints nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The committed outputs `dvc repro` rewrites (the data and models are DVC's, not git's).
TRACKED_OUTPUTS = ("dvc.lock", "reports")
KEYS = (("test.best.psnr", "PSNR", "dB"), ("test.best.ssim", "SSIM", ""))


def changed_files(porcelain: str) -> list[str]:
    """Paths from `git status --porcelain` lines ("XY path")."""
    return [line[3:] for line in porcelain.splitlines() if len(line) > 3]


def metric_moves(diff: dict) -> list[str]:
    """One line per changed metrics file: its set and how far PSNR and SSIM moved.

    `diff` is `dvc metrics diff --json`: {path: {metric: {"old", "new", "diff"}}}.
    """
    lines = []
    for path, metrics in sorted(diff.items()):
        parts = []
        for key, label, unit in KEYS:
            change = metrics.get(key)
            if change and change.get("old") is not None and change.get("new") is not None:
                parts.append(
                    f"{label} {change['old']:.3f} → {change['new']:.3f}{' ' + unit if unit else ''} "
                    f"({change['new'] - change['old']:+.3f})"
                )
        if parts:
            lines.append(f"  {Path(path).parent.name}: " + ", ".join(parts))
    return lines


def summary(changed: list[str], moves: list[str]) -> str:
    if not changed:
        return "make repro: every committed output came out byte-identical (git status is clean)."
    head = (
        f"make repro: {len(changed)} committed file{'s' if len(changed) > 1 else ''} changed "
        f"({', '.join(changed[:3])}{', …' if len(changed) > 3 else ''})."
    )
    if not moves:
        return head + " No test metric moved."
    return "\n".join(
        [
            head,
            "Test metrics against the committed record (best assignment):",
            *moves,
            "Float training rounds differently on other CPU kernels: docs/reproducibility.md says "
            "how far, and `git checkout -- dvc.lock reports` goes back to the record.",
        ]
    )


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def main() -> None:
    status = _run(["git", "status", "--porcelain", "--", *TRACKED_OUTPUTS])
    if status.returncode != 0:
        return  # not a git checkout: nothing committed to compare with
    changed = changed_files(status.stdout)
    moves = []
    if changed:
        dvc = Path(sys.executable).with_name("dvc")
        diff = _run([str(dvc), "metrics", "diff", "HEAD", "--json"])
        if diff.returncode == 0 and diff.stdout.strip():
            moves = metric_moves(json.loads(diff.stdout))
    print(summary(changed, moves))


if __name__ == "__main__":
    main()
