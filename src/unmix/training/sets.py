"""One parameter set's training, wired to its MLflow run (its evaluation: unmix.evaluation.scoring)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

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
from unmix.training.distributed import SINGLE, Ranks
from unmix.training.loop import train_separator
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
    on_epoch_end: Callable[[EpochResult, nn.Module], None] | None = None,
    *,
    resume: Mapping[str, Any] | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: int = 1,
    ranks: Ranks = SINGLE,
) -> tuple[nn.Module, list[EpochResult]]:
    """Build one set's model from its seed and train it on `device` (from `resume`, a
    `training_state`, when given; as one of several `ranks`); nothing logged."""
    torch.manual_seed(set_config.seed)  # weight init
    model = build_model(**set_model_config(set_config))
    history = train_separator(
        model,
        channels_first_view(subsets.train.images),  # 50,000 images: no second copy
        to_channels_first(subsets.valid.a),
        to_channels_first(subsets.valid.b),
        mix=set_config.mix,
        loss=set_config.loss,
        epochs=set_config.epochs,
        batch_size=set_config.batch_size,
        lr=set_config.lr,
        seed=set_config.seed,
        validate_every=set_config.validate_every,
        schedule=set_config.schedule,
        flip=set_config.flip,
        fresh_pairs=set_config.fresh_pairs,
        on_epoch_end=on_epoch_end,
        device=device,
        compile_model=set_config.compile,
        resume=resume,
        on_checkpoint=on_checkpoint,
        checkpoint_every=checkpoint_every,
        ranks=ranks,
        test_flips=set_config.test_flips,
        precision=set_config.precision,
        ema=set_config.ema,
    )
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
    *,
    resume: Mapping[str, Any] | None = None,
    save_checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: int = 1,
    ranks: Ranks = SINGLE,
) -> tuple[nn.Module, list[EpochResult]]:
    """Train one set's model on its device, streaming per-epoch losses and mosaics to `tracker`.

    As one of several `ranks`, only rank 0 shows progress, checkpoints and logs; the others
    train their share and get back a history without validation.

    With `save_checkpoint`, an epoch's metrics and images reach the tracker only once a
    checkpoint holding that epoch is saved, so a run resumed from it never logs an epoch
    twice; resuming re-logs the checkpoint's epochs with their first timestamps, which the
    store keeps once, in case a killed worker never wrote them. The trained model comes
    back on the CPU, ready to save and log.
    """
    device = device or resolve_device(set_config.device)
    shown = PairSet(subsets.valid.a[:LOGGED_PAIRS], subsets.valid.b[:LOGGED_PAIRS])
    every = set_config.log_images_every
    progress = EpochProgress(set_config.epochs) if ranks.is_main else contextlib.nullcontext()
    held: list[tuple[int, Callable[[], None]]] = []  # (epoch, tracker call) waiting for a checkpoint

    def log_epoch(result: EpochResult) -> None:
        tracker.log_metrics(epoch_metrics(result), step=result.epoch, timestamp_ms=int(result.finished_at * 1000))

    def report(result: EpochResult, model: nn.Module) -> None:
        progress.update(result)  # stderr first: the terminal learns of the epoch at once
        held.append((result.epoch, lambda: log_epoch(result)))
        if (every and result.epoch % every == 0) or result.epoch == set_config.epochs:
            image = pair_mosaic(model, shown, set_config.mix)  # now: the model moves on
            held.append((result.epoch, lambda: tracker.log_image(image, key="reconstructions/valid",
                                                                  step=result.epoch)))
        if save_checkpoint is None:
            release(result.epoch)

    def release(up_to_epoch: int) -> None:
        for epoch, call in [item for item in held if item[0] <= up_to_epoch]:
            call()
        held[:] = [item for item in held if item[0] > up_to_epoch]

    def checkpoint(state: dict) -> None:
        save_checkpoint(state)
        release(state["epoch"])

    if resume is not None:
        for row in resume["history"]:
            log_epoch(EpochResult(**row))
    with progress:
        model, history = fit_set(set_config, subsets, device, on_epoch_end=report, resume=resume,
                                 on_checkpoint=checkpoint if save_checkpoint else None,
                                 checkpoint_every=checkpoint_every, ranks=ranks)
    model.to("cpu", memory_format=torch.contiguous_format)
    if ranks.is_main:
        tracker.log_model(model, set_model_config(set_config))
    return model, history


