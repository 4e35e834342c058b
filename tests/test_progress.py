"""Progress on stderr: the plain lines a log gets, the bar a terminal gets, the arithmetic."""

from __future__ import annotations

import io

from unmix.progress import (
    EpochProgress,
    StepProgress,
    epoch_line,
    epoch_scores,
    format_duration,
    is_terminal,
    seconds_left,
)
from unmix.training.state import EpochResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_duration_reads_like_a_clock() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(42.4) == "42s"
    assert format_duration(187) == "3m07s"
    assert format_duration(3720) == "1h02m"
    assert format_duration(-5) == "0s"


def test_seconds_left_extrapolates_the_rate_so_far() -> None:
    assert seconds_left(0, 10, 5.0) is None
    assert seconds_left(2, 10, 3.0) == 12.0  # 1.5 s per unit, 8 units left
    assert seconds_left(10, 10, 7.0) == 0.0


def test_epoch_scores_name_the_metrics_as_mlflow_does() -> None:
    assert epoch_scores(0.5, None, None) == "train/l1 0.5000"
    assert epoch_scores(0.5, 0.25, 14.123) == "train/l1 0.5000, valid/l1 0.2500, valid/psnr 14.12 dB"
    assert (
        epoch_line("train", 3, 80, "train/l1 0.5000", 0.93, 72.0)
        == "train: epoch 3/80, train/l1 0.5000, 0.93 s/epoch, 1m12s left"
    )


def test_plain_lines_come_on_validated_epochs_and_the_last() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = EpochProgress(4, stream=stream, clock=clock, live=False)
    results = [
        EpochResult(1, 0.9, None),
        EpochResult(2, 0.8, 0.7, 13.0),
        EpochResult(3, 0.7, None),
        EpochResult(4, 0.6, None),
    ]
    for result in results:
        clock.now += 2.0  # 2 s per epoch
        progress.update(result)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "train: epoch 2/4, train/l1 0.8000, valid/l1 0.7000, valid/psnr 13.00 dB, 2.00 s/epoch, 4s left",
        "train: epoch 4/4, train/l1 0.6000, 2.00 s/epoch, 0s left",
    ]


def test_a_resumed_training_counts_its_rate_from_its_own_first_epoch() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = EpochProgress(10, stream=stream, clock=clock, live=False)
    clock.now += 3.0
    progress.update(EpochResult(7, 0.5, 0.4, 15.0))  # epochs 1-6 ran in another process
    assert (
        stream.getvalue()
        .strip()
        .endswith("epoch 7/10, train/l1 0.5000, valid/l1 0.4000, valid/psnr 15.00 dB, 3.00 s/epoch, 9s left")
    )


def test_a_terminal_gets_a_bar_with_the_losses() -> None:
    stream = io.StringIO()
    with EpochProgress(5, stream=stream, live=True) as progress:
        for epoch in (1, 2, 3):
            progress.update(EpochResult(epoch, 1.0 / epoch, 0.5, 12.5))
    text = stream.getvalue()
    assert "\r" in text and "3/5" in text
    assert "train/l1 0.3333, valid/l1 0.5000, valid/psnr 12.50 dB" in text


def test_is_terminal_is_false_for_files_and_pipes() -> None:
    assert not is_terminal(io.StringIO())
    assert not is_terminal(object())


def test_a_long_step_prints_a_line_every_interval_and_one_at_the_end() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with StepProgress(1000, "decoding images", "image", stream=stream, clock=clock, live=False, every_s=10) as step:
        for _ in range(4):
            clock.now += 6.0
            step.update(250)
    assert stream.getvalue().splitlines() == [
        "decoding images: 500/1,000 images, 12s left",  # at 12 s; the one at 6 s was too soon
        "decoding images: 1,000 images in 24.0 s",
    ]


def test_a_step_that_stopped_early_prints_no_end_line() -> None:
    stream = io.StringIO()
    with StepProgress(10, "scoring", "pair", stream=stream, live=False) as step:
        step.update(3)
    assert stream.getvalue() == ""
