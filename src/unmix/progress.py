"""Progress of long steps on stderr: a live tqdm bar on a terminal, plain lines in logs.

stderr, not stdout: DVC shows a stage's stderr as it comes (`dvc repro`, `dvc exp run`),
and a stage's stdout stays free for its one summary line. When stderr is not a terminal
(CI logs, `dvc queue logs`, a pipe) a bar's carriage returns would pile up into one
unreadable line, so the same facts go out as one plain line per report.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# Plain-line mode: a step other than training reports at most this often (seconds).
PLAIN_STEP_EVERY_S = 10.0


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal a live bar can redraw."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def format_duration(seconds: float) -> str:
    """Seconds as a short clock: 42s, 3m07s, 1h02m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def seconds_left(done: int, total: int, elapsed: float) -> float | None:
    """Time left at the rate so far: `done` of `total` units took `elapsed` seconds."""
    if done <= 0:
        return None
    return elapsed / done * (total - done)


def epoch_scores(train_l1: float, valid_l1: float | None, valid_psnr: float | None) -> str:
    """The losses of one epoch, named as in MLflow and history.csv."""
    text = f"train/l1 {train_l1:.4f}"
    if valid_l1 is not None:
        text += f", valid/l1 {valid_l1:.4f}"
    if valid_psnr is not None and math.isfinite(valid_psnr):
        text += f", valid/psnr {valid_psnr:.2f} dB"
    return text


def epoch_line(label: str, epoch: int, total: int, scores: str, seconds_per_epoch: float, left: float | None) -> str:
    """One plain progress line: `train: epoch 3/80, train/l1 …, 0.93 s/epoch, 1m12s left`."""
    left_text = f", {format_duration(left)} left" if left is not None else ""
    return f"{label}: epoch {epoch}/{total}, {scores}, {seconds_per_epoch:.2f} s/epoch{left_text}"


def _bar(total: int, initial: int, label: str, unit: str, stream: TextIO) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=label, unit=unit, file=stream, dynamic_ncols=True, leave=True, smoothing=0.1
    )


class EpochProgress:
    """Training's per-epoch report: k/N, losses, valid PSNR, seconds per epoch, time left.

    On a terminal a bar moves every epoch; otherwise one line per epoch that validated
    (and the last), so `validate_every` sets how chatty a log is. The rate counts only the
    epochs this process trained, so a resumed training starts its clock afresh.
    """

    def __init__(
        self,
        total_epochs: int,
        *,
        label: str = "train",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
    ) -> None:
        self.total = total_epochs
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self._clock = clock
        self._started = clock()
        self._first_epoch: int | None = None  # the epoch before this process's first one
        self._bar: Any = None

    def update(self, result: Any) -> None:
        """Report one finished epoch (an EpochResult: epoch, train_l1, valid_l1, valid_psnr)."""
        if self._first_epoch is None:
            self._first_epoch = result.epoch - 1
        done = result.epoch - self._first_epoch
        elapsed = self._clock() - self._started
        scores = epoch_scores(result.train_l1, result.valid_l1, result.valid_psnr)
        if self.live:
            if self._bar is None:
                self._bar = _bar(self.total, self._first_epoch, self.label, "epoch", self.stream)
            self._bar.set_postfix_str(scores, refresh=False)
            self._bar.update(result.epoch - self._bar.n)
            return
        if result.valid_l1 is None and result.epoch != self.total:
            return
        left = seconds_left(done, self.total - self._first_epoch, elapsed)
        print(
            epoch_line(self.label, result.epoch, self.total, scores, elapsed / done, left), file=self.stream, flush=True
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StepProgress:
    """Progress through `total` units of one long step (images decoded, pairs scored).

    A bar on a terminal; otherwise a line at most every PLAIN_STEP_EVERY_S seconds and one
    at the end, so a short step prints one line and a long one shows it is moving.
    """

    def __init__(
        self,
        total: int,
        label: str,
        unit: str,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
        every_s: float = PLAIN_STEP_EVERY_S,
    ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self._clock = clock
        self._started = self._last_line = clock()
        self._every_s = every_s
        self.done = 0
        self._bar = _bar(total, 0, label, unit, self.stream) if self.live else None

    def update(self, n: int) -> None:
        """`n` more units are done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if self.done < self.total and now - self._last_line >= self._every_s:
            self._last_line = now
            left = seconds_left(self.done, self.total, now - self._started)
            left_text = f", {format_duration(left)} left" if left is not None else ""
            print(f"{self.label}: {self.done:,}/{self.total:,} {self.unit}s{left_text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.done >= self.total:
            elapsed = self._clock() - self._started
            print(f"{self.label}: {self.total:,} {self.unit}s in {elapsed:.1f} s", file=self.stream, flush=True)

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
