"""One parameter set's training, wired to its MLflow run (its evaluation: unmix.evaluation.scoring)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from unmix.config import SetConfig
from unmix.data.subset import PairSet, Subsets
from unmix.evaluation.inference import pair_mixture, separate
from unmix.evaluation.mosaic import reconstruction_mosaic
from unmix.model.devices import resolve_device
from unmix.model.networks import build_model, set_model_config
from unmix.model.tensors import channels_first_view, to_channels_first, to_uint8_images
from unmix.progress import EpochProgress
from unmix.training.loop import NO_HOOKS, TrainingHooks, TrainingImages, train_separator
from unmix.training.state import EpochResult

# Pairs shown in the reconstruction images logged to MLflow during training.
LOGGED_PAIRS = 8


def separate_pairs(model: nn.Module, pairs: PairSet, mix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixtures and both outputs of `model` on fixed pairs, as uint8 (P, 32, 32, 3)."""
    mixture = pair_mixture(pairs, mix)
    out_1, out_2 = separate(model, mixture)
    return to_uint8_images(mixture), to_uint8_images(out_1), to_uint8_images(out_2)


def pair_mosaic(model: nn.Module, pairs: PairSet, mix: str) -> np.ndarray:
    """Rows of mixture, truth a, truth b, output 1, output 2, as one uint8 image."""
    mixture, out_1, out_2 = separate_pairs(model, pairs, mix)
    return reconstruction_mosaic([mixture, pairs.a, pairs.b, out_1, out_2])


def fit_set(
    set_config: SetConfig,
    subsets: Subsets,
    device: torch.device,
    hooks: TrainingHooks = NO_HOOKS,
    teacher: nn.Module | None = None,
) -> tuple[nn.Module, list[EpochResult]]:
    """Build one set's model from its seed and train it on `device` (resuming, checkpointing
    and as one of several ranks as `hooks` say; distilling from `teacher` when given); nothing logged."""
    torch.manual_seed(set_config.seed)  # weight init
    model = build_model(**set_model_config(set_config))
    images = TrainingImages(
        channels_first_view(subsets.train.images),  # 50,000 images: no second copy
        to_channels_first(subsets.valid.a),
        to_channels_first(subsets.valid.b),
    )
    history = train_separator(model, set_config, images, device, hooks, teacher)
    return model, history


def epoch_metrics(result: EpochResult) -> dict[str, float]:
    """What MLflow records of one epoch; `time/minutes` is training wall time so far."""
    metrics = {"train/l1": result.train_l1, "time/minutes": result.seconds / 60}
    if result.valid_l1 is not None:
        metrics["valid/l1"] = result.valid_l1
        metrics["valid/psnr"] = result.valid_psnr
    return metrics


def train_set(
    set_config: SetConfig,
    subsets: Subsets,
    tracker: Any,
    device: torch.device | None = None,
    hooks: TrainingHooks = NO_HOOKS,
    teacher: nn.Module | None = None,
) -> tuple[nn.Module, list[EpochResult]]:
    """Train one set's model on its device, streaming per-epoch losses and mosaics to `tracker`.

    As one of several `hooks.ranks`, only rank 0 shows progress, checkpoints and logs; the
    others train their share and get back a history without validation.

    With `hooks.on_checkpoint` (it saves the checkpoint), an epoch's metrics and images reach
    the tracker only once a checkpoint holding that epoch is saved, so a run resumed from it
    never logs an epoch twice; resuming (`hooks.resume`) re-logs the checkpoint's epochs with
    their first timestamps, which the store keeps once, in case a killed worker never wrote
    them. `hooks.on_epoch_end` is called after the tracker's. The trained model comes back
    on the CPU, ready to save and log.
    """
    device = device or resolve_device(set_config.device)
    progress = EpochProgress(set_config.epochs) if hooks.ranks.is_main else contextlib.nullcontext()
    logger = _EpochLogger(set_config, subsets, tracker, progress, held=hooks.on_checkpoint is not None)
    if hooks.resume is not None:
        for row in hooks.resume["history"]:
            logger.log_epoch(EpochResult(**row))
    save_checkpoint = hooks.on_checkpoint

    def checkpoint(state: dict) -> None:
        save_checkpoint(state)
        logger.release(state["epoch"])

    def on_epoch_end(result: EpochResult, model: nn.Module) -> None:
        logger.report(result, model)
        if hooks.on_epoch_end is not None:
            hooks.on_epoch_end(result, model)

    tracked = dataclasses.replace(
        hooks, on_epoch_end=on_epoch_end, on_checkpoint=checkpoint if save_checkpoint else None
    )
    with progress:
        model, history = fit_set(set_config, subsets, device, tracked, teacher)
    model.to("cpu", memory_format=torch.contiguous_format)
    if hooks.ranks.is_main:
        tracker.log_model(model, set_model_config(set_config))
    return model, history


class _EpochLogger:
    """Progress on stderr at once; each epoch's metrics and mosaic to the tracker, held until
    a checkpoint holds that epoch when `held`."""

    def __init__(self, set_config: SetConfig, subsets: Subsets, tracker: Any, progress: Any, held: bool) -> None:
        self.set_config, self.tracker, self.progress, self.holds = set_config, tracker, progress, held
        self.shown = PairSet(subsets.valid.a[:LOGGED_PAIRS], subsets.valid.b[:LOGGED_PAIRS])
        self.held: list[tuple[int, Callable[[], None]]] = []  # (epoch, tracker call) waiting for a checkpoint

    def log_epoch(self, result: EpochResult) -> None:
        self.tracker.log_metrics(epoch_metrics(result), step=result.epoch, timestamp_ms=int(result.finished_at * 1000))

    def report(self, result: EpochResult, model: nn.Module) -> None:
        self.progress.update(result)  # stderr first: the terminal learns of the epoch at once
        self.held.append((result.epoch, lambda: self.log_epoch(result)))
        every = self.set_config.log_images_every
        if (every and result.epoch % every == 0) or result.epoch == self.set_config.epochs:
            image = pair_mosaic(model, self.shown, self.set_config.mix)  # now: the model moves on
            self.held.append(
                (result.epoch, lambda: self.tracker.log_image(image, key="reconstructions/valid", step=result.epoch))
            )
        if not self.holds:
            self.release(result.epoch)

    def release(self, up_to_epoch: int) -> None:
        for _epoch, call in [item for item in self.held if item[0] <= up_to_epoch]:
            call()
        self.held[:] = [item for item in self.held if item[0] > up_to_epoch]
