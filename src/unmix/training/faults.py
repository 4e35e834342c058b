"""Named kill points, so the resume tests can stop a real `dvc repro` exactly where they mean to.

`UNMIX_TEST_KILL_AT=<point>@<epoch>[:<signal>[:group|:rank<N>]]` sends `signal` (KILL, INT
or TERM; default KILL) to this process, or with `group` to its whole process group (dvc and
the tracking worker too), when the loop reaches `point` in `epoch`; with `rank<N>`, only in
the training process of that rank (torchrun's RANK) of several. Points: `mid-epoch` (after
the epoch's first step), `validation` (before validating), `checkpoint-write` (half of the
resume checkpoint written). Unset, each call costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "UNMIX_TEST_KILL_AT"
POINTS = ("mid-epoch", "validation", "checkpoint-write")


def parse_kill_at(text: str) -> tuple[str, int, signal.Signals, bool, int | None]:
    """`mid-epoch@2:TERM:group` → ('mid-epoch', 2, SIGTERM, True, None), `…:KILL:rank1` → (…, False, 1);
    a typo is an error, not a no-op."""
    where, *rest = text.split(":")
    point, _, epoch = where.partition("@")
    scope = rest[1] if len(rest) == 2 else ""
    rank = int(scope[4:]) if scope.startswith("rank") and scope[4:].isdigit() else None
    if (
        point not in POINTS
        or not epoch.isdigit()
        or len(rest) > 2
        or (rest and rest[0] not in ("KILL", "INT", "TERM"))
        or (scope and scope != "group" and rank is None)
    ):
        raise ValueError(f"{ENV}={text!r}: expected <{'|'.join(POINTS)}>@<epoch>[:KILL|INT|TERM[:group|:rank<N>]]")
    return point, int(epoch), signal.Signals[f"SIG{rest[0] if rest else 'KILL'}"], scope == "group", rank


def kill_point(point: str, epoch: int) -> None:
    """Signal as UNMIX_TEST_KILL_AT asks when it names this point and epoch; else nothing."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, at_epoch, sig, group, rank = parse_kill_at(wanted)
    if (name, at_epoch) != (point, epoch) or (rank is not None and os.environ.get("RANK", "0") != str(rank)):
        return
    if group:
        os.killpg(os.getpgrp(), sig)
    else:
        os.kill(os.getpid(), sig)
