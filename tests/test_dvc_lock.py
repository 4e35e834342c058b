"""The committed dvc.lock matches the committed code: a fresh clone starts with no stage changed.

A dependency edited after the last `dvc repro` leaves the lock holding the old digest, and
`dvc status` on a fresh clone then reports every stage downstream as changed before
anything has run. DVC itself computes the digests (files and folders alike), so this
checks exactly what `dvc status` would say, for the dependencies git tracks (the data
folders are DVC's, absent from a clone until it runs).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from conftest import BIN, REPO, command_env


def stage_outputs() -> set[str]:
    """Every path a stage writes, from dvc.lock: data, not code, even where git keeps a .gitignore in it."""
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    return {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def _inside(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def from_git(path: str, outputs: set[str]) -> bool:
    """Whether git, not a stage, provides this dependency."""
    if any(_inside(out, path) or _inside(path, out) for out in outputs):  # an output, in one or holding one
        return False
    listed = subprocess.run(["git", "ls-files", "--", path], cwd=REPO, capture_output=True, text=True, check=True)
    return bool(listed.stdout.strip())


def changed_dependencies(status: dict) -> dict[str, str]:
    """{path: change} over every stage of `dvc status --json`'s answer, dependencies only."""
    changed = {}
    for entries in status.values():
        for entry in entries:
            if isinstance(entry, dict):
                changed.update(entry.get("changed deps", {}))
    return changed


def test_changed_dependencies_are_read_from_dvc_status():
    status = {
        "train@seed": [
            {"changed deps": {"src/unmix/config.py": "modified", "data/subset": "deleted"}},
            {"changed outs": {"models/seed.pt": "deleted"}},
        ],
        "download": ["changed command"],
    }
    assert changed_dependencies(status) == {"src/unmix/config.py": "modified", "data/subset": "deleted"}


def test_stage_outputs_are_not_counted_as_code():
    outputs = {"data/eval/seed.npz", "data/subset"}
    assert not from_git("data/subset", outputs)
    assert not from_git("data/subset/train.npz", outputs)
    assert not from_git("data/eval", outputs)  # git keeps a .gitignore there; the rest is evaluate's
    assert from_git("src/unmix/config.py", outputs)
    assert not from_git("src/unmix/no_such_module.py", outputs)


def test_every_tracked_dependency_has_the_digest_the_lock_records():
    result = subprocess.run(
        [str(Path(BIN) / "dvc"), "status", "--json"],
        cwd=REPO,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    changed = changed_dependencies(json.loads(result.stdout or "{}"))
    outputs = stage_outputs()
    stale = {path: change for path, change in changed.items() if ":" not in path and from_git(path, outputs)}
    assert not stale, (
        f"dvc.lock records other digests than these files have: {stale}. "
        "Run `make repro` and commit dvc.lock with the outputs it changes."
    )
