"""Named kill points, so the resume tests can stop a real `dvc repro` exactly where they mean to.

`UNMIX_TEST_KILL_AT=<point>@<epoch>[:<signal>[:group]]` sends `signal` (KILL, INT or TERM;
default KILL) to this process, or with `group` to its whole process group (dvc and the
tracking worker too), when the loop reaches `point` in `epoch`. Points: `mid-epoch` (after
the epoch's first step), `validation` (before validating), `checkpoint-write` (half of the
resume checkpoint written). Unset, each call costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "UNMIX_TEST_KILL_AT"
POINTS = ("mid-epoch", "validation", "checkpoint-write")


def parse_kill_at(text: str) -> tuple[str, int, signal.Signals, bool]:
    """`mid-epoch@2:TERM:group` → ('mid-epoch', 2, SIGTERM, True); a typo is an error, not a no-op."""
    where, *rest = text.split(":")
    point, _, epoch = where.partition("@")
    if point not in POINTS or not epoch.isdigit() or len(rest) > 2 or (len(rest) == 2 and rest[1] != "group"):
        raise ValueError(f"{ENV}={text!r}: expected <{'|'.join(POINTS)}>@<epoch>[:KILL|INT|TERM[:group]]")
    return point, int(epoch), signal.Signals[f"SIG{rest[0] if rest else 'KILL'}"], len(rest) == 2


def kill_point(point: str, epoch: int) -> None:
    """Signal as UNMIX_TEST_KILL_AT asks when it names this point and epoch; else nothing."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, at_epoch, sig, group = parse_kill_at(wanted)
    if (name, at_epoch) != (point, epoch):
        return
    if group:
        os.killpg(os.getpgrp(), sig)
    else:
        os.kill(os.getpid(), sig)
