"""The training loop: uint8 images in memory, batches cut from a seeded permutation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unmix.config import SetConfig
from unmix.errors import ConfigError
from unmix.evaluation.inference import separate_with_flips
from unmix.evaluation.metrics import best_psnr_and_seed_l1
from unmix.model.devices import autocast, memory_format, place_model
from unmix.model.mixing import MIXES
from unmix.model.tensors import normalise
from unmix.training.distillation import distilled_loss
from unmix.training.distributed import SINGLE, Ranks, Stopped, peer_lost, share, share_weight, sum_over_ranks
from unmix.training.faults import kill_point
from unmix.training.losses import LOSSES
from unmix.training.optimizers import build_optimizer
from unmix.training.state import EpochResult, restore_training_state, training_state

Tensor = torch.Tensor


def epoch_pairs(
    n_images: int, batch_size: int, generator: torch.Generator, fixed_pairs: Tensor | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Index tensors (a, b) of each batch of one epoch.

    Without `fixed_pairs` each batch is a slice of a fresh permutation split in halves, the
    seed's way, so pairs change every epoch; with it, the given (P, 2) pairs are reshuffled.
    """
    if fixed_pairs is None:
        permutation = torch.randperm(n_images, generator=generator, device=generator.device)
        for start in range(0, n_images, batch_size):
            chunk = permutation[start : start + batch_size]
            half = len(chunk) // 2
            if half:  # a last batch of one image makes no pair
                yield chunk[:half], chunk[half : 2 * half]
        return
    order = fixed_pairs[torch.randperm(len(fixed_pairs), generator=generator, device=generator.device)]
    for start in range(0, len(order), batch_size // 2):
        chunk = order[start : start + batch_size // 2]
        yield chunk[:, 0], chunk[:, 1]


def flip_draw(n: int, generator: torch.Generator) -> Tensor:
    """Which of n images to mirror: each with probability 1/2."""
    return torch.rand(n, generator=generator, device=generator.device) < 0.5


def apply_flips(batch: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images of `batch` where `flip` is true."""
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


def random_flips(batch: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    return apply_flips(batch, flip_draw(len(batch), generator))


def half_size(batch: Tensor) -> Tensor:
    """Each image 2×2-averaged: (N, C, H, W) → (N, C, H/2, W/2), a quarter of the pixels.

    Applied to both images of each pair before mixing: every mix is linear, so the mixture
    is the 2×2 average of the full-size one, and the loss needs the averaged images anyway.
    """
    return F.avg_pool2d(batch, 2)


def check_shares(batch_pairs: list[int], ranks: Ranks) -> None:
    """Every batch must give every rank at least one pair; one line naming the parameter if not."""
    smallest = min(batch_pairs)
    if smallest < ranks.world_size:
        raise ConfigError(
            f"batch_size: a batch of {smallest} pairs cannot be shared by {ranks.world_size} "
            "processes; use a batch size (and a number of training images) that gives every "
            "batch at least one pair per process"
        )


@dataclass(frozen=True)
class TrainingImages:
    """uint8 (N, 3, 32, 32) training images (a view is fine) and fixed validation pairs."""

    train: Tensor
    valid_a: Tensor
    valid_b: Tensor

    def to(self, device: torch.device) -> TrainingImages:
        return TrainingImages(self.train.to(device), self.valid_a.to(device), self.valid_b.to(device))


@dataclass(frozen=True)
class TrainingHooks:
    """What happens around the loop rather than in it: reporting, checkpoints, resuming, ranks.

    `on_epoch_end(result, model)` sees each finished epoch and the weights validation saw
    (tracking and progress are such a hook). `on_checkpoint` receives the `training_state`
    after `on_epoch_end`, every `checkpoint_every` epochs and after the last; an interruption
    (KeyboardInterrupt) hands it the last finished epoch's state first when that was not
    checkpointed yet. `resume`, such a state, continues after its epoch to the same numbers
    as an uninterrupted run. With several `ranks` (torchrun, process group joined), rank 0
    alone validates and calls the hooks; another rank gone stops training as an
    interruption does (`Stopped`).
    """

    on_epoch_end: Callable[[EpochResult, nn.Module], None] | None = None
    on_checkpoint: Callable[[dict], None] | None = None
    checkpoint_every: int = 1
    resume: Mapping[str, Any] | None = None
    ranks: Ranks = SINGLE

    def epoch_ended(self, result: EpochResult, model: nn.Module) -> None:
        """`on_epoch_end`, on rank 0 alone."""
        if self.on_epoch_end is not None and self.ranks.is_main:
            self.on_epoch_end(result, model)


NO_HOOKS = TrainingHooks()


@dataclass
class _Training:
    """The objects one training moves: the weights and their views, optimizer, schedule, RNG.

    `model` holds the weights the optimizer moves; `step` is what a training step calls
    (compiled and/or DistributedDataParallel); `valid` is what validation calls and
    `shown` what the hooks and the caller see (the weight average when there is one).
    """

    model: nn.Module
    step: nn.Module
    valid: nn.Module
    averaged: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    fixed_pairs: Tensor | None
    images: TrainingImages
    teacher: nn.Module | None = None

    @property
    def shown(self) -> nn.Module:
        return self.model if self.averaged is None else self.averaged.module

    def state(self, history: list[EpochResult], copied: bool) -> dict:
        return training_state(
            history, self.model, self.optimizer, self.scheduler, self.generator, self.averaged, copied=copied
        )

    def restore(self, state: Mapping[str, Any]) -> list[EpochResult]:
        return restore_training_state(state, self.model, self.optimizer, self.scheduler, self.generator, self.averaged)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        return epoch_pairs(len(self.images.train), batch_size, generator or self.generator, self.fixed_pairs)


def train_separator(
    model: nn.Module,
    config: SetConfig,
    images: TrainingImages,
    device: torch.device | str = "cpu",
    hooks: TrainingHooks = NO_HOOKS,
    teacher: nn.Module | None = None,
) -> list[EpochResult]:
    """Train `model` in place as `config` says, on mixtures of pairs of `images`.

    Same arguments and seed give the same numbers on the CPU. `schedule` "onecycle"
    warms the learning rate up to `lr` and anneals it to ~0 by the last step. On CUDA the
    uint8 images are copied to the GPU once and every batch is cut, flipped and mixed
    there; the model runs channels-last under bf16 autocast. `compile` trains through
    `torch.compile` (the weights stay those of `model`). `test_flips` validates with the
    test-time flip average (`separate_with_flips`). `precision` "bf16" runs the training
    steps under bf16 autocast, channels-last, on the CPU too (`unmix.model.devices.uses_bf16`);
    validation keeps the device's usual arithmetic. `ema` > 0 keeps an exponential moving
    average of the weights (buffers too) with that decay per step; it is what validation,
    `on_epoch_end` and the caller see: `model` holds the averaged weights when training ends.
    `optimizer` "muon" steps the convolutions that feed a BatchNorm with Muon at `muon_lr`
    (unmix.training.optimizers). The first `low_res_epochs` train on `half_size` pairs
    (their train loss is measured there too); validation is always at full size. A
    `teacher` (a trained model, frozen) gives second targets for every full-size training
    mixture, weighted by `teacher_weight` (unmix.training.distillation); the
    low-resolution epochs train on the truth alone. The train loss reported stays the one
    against the truth.

    With several `hooks.ranks`, every rank draws the whole batch's pairs and flips and
    trains on its share through DistributedDataParallel (`TrainingHooks` for the rest).
    """
    if (teacher is None) != (config.teacher is None):  # a caller's mistake, not the user's
        raise ValueError(
            f"teacher {'given' if teacher is not None else 'missing'}: config.teacher is {config.teacher!r}"
        )
    device = torch.device(device)
    training = _set_up(model, config, images, device, hooks.ranks)
    if teacher is not None:
        training.teacher = place_model(teacher.eval(), device, config.precision)
    history = training.restore(hooks.resume) if hooks.resume is not None else []
    started = time.perf_counter() - (history[-1].seconds if history else 0.0)
    checkpoints = _Checkpoints(hooks, config.epochs)
    with checkpoints.kept_on_interruption():
        for epoch in range(len(history) + 1, config.epochs + 1):
            train_l1 = _train_epoch(training, config, device, hooks.ranks, epoch)
            valid_l1, valid_psnr = _validate_epoch(training, config, hooks.ranks, epoch)
            history.append(
                EpochResult(epoch, train_l1, valid_l1, valid_psnr, time.perf_counter() - started, time.time())
            )
            hooks.epoch_ended(history[-1], training.shown)
            checkpoints.after_epoch(training, history)
    if training.averaged is not None:  # the caller gets the averaged weights
        model.load_state_dict(training.averaged.module.state_dict())
    model.eval()
    return history


def _set_up(
    model: nn.Module, config: SetConfig, images: TrainingImages, device: torch.device, ranks: Ranks
) -> _Training:
    """Seed, place and wrap the model, then the optimizer and schedule: the loop's first draws."""
    torch.manual_seed(config.seed)  # dropout masks
    generator = torch.Generator(device=device).manual_seed(config.seed)
    place_model(model, device, config.precision)
    images = images.to(device)
    valid = step = torch.compile(model) if config.compile else model
    # valid stays the plain one with several ranks: validation runs on rank 0 alone, and a
    # forward through DDP would wait for the other ranks.
    step = _data_parallel(model, config, device) if ranks.distributed else step
    averaged = None
    if config.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        valid = averaged.module
    fixed_pairs = None
    if not config.fresh_pairs:
        fixed_pairs = torch.randperm(len(images.train), generator=generator, device=device)
        fixed_pairs = fixed_pairs[: len(images.train) // 2 * 2].view(-1, 2)
    optimizer = build_optimizer(model, config)
    training = _Training(model, step, valid, averaged, optimizer, None, generator, fixed_pairs, images)
    # An unseeded generator of its own: counting the batches draws nothing from the seeded one.
    batch_pairs = [len(a) for a, _ in training.batches(config.batch_size, torch.Generator(device))]
    check_shares(batch_pairs, ranks)
    if config.schedule == "onecycle":
        # Each param group's own peak (Muon's and Adam's); low-resolution epochs have as many steps.
        training.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=config.epochs * len(batch_pairs),
        )
    return training


def _data_parallel(model: nn.Module, config: SetConfig, device: torch.device) -> nn.Module:
    """What a training step calls on one of several ranks: DistributedDataParallel around
    `model` (compiled with `compile`)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":  # statistics over the global batch; SyncBatchNorm has no CPU kernel
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the layers in place
    wrapped = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return torch.compile(wrapped) if config.compile else wrapped


def _train_epoch(training: _Training, config: SetConfig, device: torch.device, ranks: Ranks, epoch: int) -> float:
    """One pass over the training images; the mean training loss per pair, over all ranks."""
    training.model.train()
    loss_sum = torch.zeros((), device=device)
    pairs_seen = 0
    low_res = epoch <= config.low_res_epochs  # the epoch alone decides: a resumed run agrees
    # A teacher saw 32×32 mixtures only; on 16×16 ones its outputs would be guesses.
    teacher = None if low_res else training.teacher
    for a_index, b_index in training.batches(config.batch_size):
        a, b = _batch(training, config, ranks, a_index, b_index)
        if low_res:
            a, b = half_size(a), half_size(b)
        weight = share_weight(len(a), len(a_index), ranks) if ranks.distributed else None
        step_loss = _step(training, config, device, a, b, weight, teacher)
        # Accumulate on the tensor: a .item() here would sync every step.
        loss_sum += step_loss.detach() * len(a)
        pairs_seen += len(a_index)
        kill_point("mid-epoch", epoch)
    sum_over_ranks(loss_sum, ranks)
    return float(loss_sum) / pairs_seen


def _validate_epoch(
    training: _Training, config: SetConfig, ranks: Ranks, epoch: int
) -> tuple[float, float] | tuple[None, None]:
    """Validation loss and PSNR when this epoch validates (every `validate_every` and the
    last, on rank 0 alone); (None, None) otherwise."""
    if not ranks.is_main or (epoch % config.validate_every != 0 and epoch != config.epochs):
        return None, None
    kill_point("validation", epoch)
    return validate(
        training.valid,
        training.images.valid_a,
        training.images.valid_b,
        mix=config.mix,
        loss=config.loss,
        flips=config.test_flips,
    )


def _batch(
    training: _Training, config: SetConfig, ranks: Ranks, a_index: Tensor, b_index: Tensor
) -> tuple[Tensor, Tensor]:
    """This rank's share of one batch's pairs, normalised and (with `flip`) mirrored."""
    # Drawn for the whole batch on every rank, in one process's order, then shared.
    flip_a = flip_draw(len(a_index), training.generator) if config.flip else None
    flip_b = flip_draw(len(b_index), training.generator) if config.flip else None
    mine = share(len(a_index), ranks)
    # contiguous(): a batch gathered from a channels-first view keeps the view's
    # strides, and convolutions would take another (slower, differently rounded) path.
    a = normalise(training.images.train[a_index[mine]].contiguous())
    b = normalise(training.images.train[b_index[mine]].contiguous())
    if config.flip:
        a, b = apply_flips(a, flip_a[mine]), apply_flips(b, flip_b[mine])
    return a, b


def _step(
    training: _Training,
    config: SetConfig,
    device: torch.device,
    a: Tensor,
    b: Tensor,
    weight: float | None,
    teacher: nn.Module | None,
) -> Tensor:
    """One optimizer step on the mixtures of `a` and `b`; the batch's (unweighted) loss
    against the truth (a `teacher`'s term moves the weights, it is not reported).

    `weight` (several ranks) scales the gradient so that unequal shares sum as one process's.
    """
    with autocast(device, config.precision):
        mixture = MIXES[config.mix](a, b).contiguous(memory_format=memory_format(device, config.precision))
        out_1, out_2 = training.step(mixture)
    loss, out_1, out_2 = LOSSES[config.loss], out_1.float(), out_2.float()
    step_loss = objective = loss(out_1, out_2, a, b)
    if teacher is not None:
        with torch.no_grad(), autocast(device, config.precision):
            teacher_1, teacher_2 = teacher(mixture)
        objective = distilled_loss(
            loss, out_1, out_2, step_loss, teacher_1.float(), teacher_2.float(), config.teacher_weight
        )
    training.optimizer.zero_grad(set_to_none=True)
    (objective if weight is None else objective * weight).backward()
    training.optimizer.step()
    if training.scheduler is not None:
        training.scheduler.step()
    if training.averaged is not None:
        training.averaged.update_parameters(training.model)
    return step_loss


class _Checkpoints:
    """When `hooks.on_checkpoint` is called: every `checkpoint_every` epochs, after the last,
    and on an interruption for the last finished epoch not yet checkpointed."""

    def __init__(self, hooks: TrainingHooks, epochs: int) -> None:
        self.hooks, self.epochs = hooks, epochs
        self.unsaved: dict | None = None  # the last finished epoch's state while it is not checkpointed

    def after_epoch(self, training: _Training, history: list[EpochResult]) -> None:
        if self.hooks.on_checkpoint is None or not self.hooks.ranks.is_main:
            return
        epoch = history[-1].epoch
        due = epoch % self.hooks.checkpoint_every == 0 or epoch == self.epochs
        # Kept for an interruption, the state must not move on with the model: a copy.
        state = training.state(history, copied=not due)
        self.unsaved = None if due else state
        if due:
            self.hooks.on_checkpoint(state)

    @contextmanager
    def kept_on_interruption(self) -> Iterator[None]:
        """Checkpoint what is unsaved when training is interrupted or another rank is gone."""
        try:
            yield
        except KeyboardInterrupt:
            self._save_unsaved()
            raise
        except RuntimeError as error:
            if not (self.hooks.ranks.distributed and peer_lost(error)):
                raise
            self._save_unsaved()
            raise Stopped("another process of the training is gone") from None

    def _save_unsaved(self) -> None:
        if self.unsaved is not None:
            self.hooks.on_checkpoint(self.unsaved)


def validate(
    model: nn.Module, a: Tensor, b: Tensor, *, mix: str, loss: str, flips: bool = False
) -> tuple[float, float]:
    """The training loss and best-assignment PSNR (dB) of `model` on fixed uint8 pairs
    (with `flips`, of its test-time flip average)."""
    a, b = normalise(a), normalise(b)
    out_1, out_2 = separate_with_flips(model, MIXES[mix](a, b), flips)
    # Not pair_metrics: its SSIM would cost as much as a training epoch here.
    psnr, _ = best_psnr_and_seed_l1(out_1, out_2, a, b)
    return float(LOSSES[loss](out_1, out_2, a, b)), float(psnr.mean())
