"""The training loop: uint8 images in memory, batches cut from a seeded permutation."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from unmix.errors import ConfigError
from unmix.evaluation.inference import separate_with_flips
from unmix.evaluation.metrics import best_psnr_and_seed_l1
from unmix.model.devices import autocast, memory_format, place_model
from unmix.model.mixing import MIXES
from unmix.model.tensors import normalise
from unmix.training.distributed import SINGLE, Ranks, Stopped, peer_lost, share, share_weight, sum_over_ranks
from unmix.training.faults import kill_point
from unmix.training.losses import LOSSES
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


def check_shares(batch_pairs: list[int], ranks: Ranks) -> None:
    """Every batch must give every rank at least one pair; one line naming the parameter if not."""
    smallest = min(batch_pairs)
    if smallest < ranks.world_size:
        raise ConfigError(f"batch_size: a batch of {smallest} pairs cannot be shared by {ranks.world_size} "
                          "processes; use a batch size (and a number of training images) that gives every "
                          "batch at least one pair per process")


def train_separator(
    model: nn.Module,
    train_images: Tensor,
    valid_a: Tensor,
    valid_b: Tensor,
    *,
    mix: str,
    loss: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    validate_every: int,
    schedule: str = "constant",
    flip: bool = False,
    fresh_pairs: bool = True,
    on_epoch_end: Callable[[EpochResult, nn.Module], None] | None = None,
    device: torch.device | str = "cpu",
    compile_model: bool = False,
    resume: Mapping[str, Any] | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: int = 1,
    ranks: Ranks = SINGLE,
    test_flips: bool = False,
    precision: str = "auto",
    ema: float = 0.0,
) -> list[EpochResult]:
    """Train `model` in place on mixtures of pairs of uint8 (N, 3, 32, 32) images (a view is fine).

    Same arguments and seed give the same numbers on the CPU. `schedule` "onecycle"
    warms the learning rate up to `lr` and anneals it to ~0 by the last step. On CUDA the
    uint8 images are copied to the GPU once and every batch is cut, flipped and mixed
    there; the model runs channels-last under bf16 autocast. `compile_model` trains
    through `torch.compile` (the weights stay those of `model`).

    `on_checkpoint` receives the `training_state` after `on_epoch_end`, every
    `checkpoint_every` epochs and after the last; an interruption (KeyboardInterrupt) hands
    it the last finished epoch's state first when that was not checkpointed yet. `resume`,
    such a state, continues after its epoch to the same numbers as an uninterrupted run.
    `test_flips` validates with the test-time flip average (`separate_with_flips`).
    `precision` "bf16" runs the training steps under bf16 autocast, channels-last, on the
    CPU too (`unmix.model.devices.uses_bf16`); validation keeps the device's usual arithmetic.
    `ema` > 0 keeps an exponential moving average of the weights (buffers too) with that
    decay per step; it is what validation, `on_epoch_end` and the caller see: `model` holds
    the averaged weights when training ends.

    With several `ranks` (torchrun, process group joined), every rank draws the whole
    batch's pairs and flips and trains on its share through DistributedDataParallel; rank 0
    alone validates and calls `on_epoch_end` and `on_checkpoint`. Another rank gone stops
    training as an interruption does (`Stopped`).
    """
    device = torch.device(device)
    mix_fn, loss_fn = MIXES[mix], LOSSES[loss]
    torch.manual_seed(seed)  # dropout masks
    generator = torch.Generator(device=device).manual_seed(seed)
    place_model(model, device, precision)
    train_images = train_images.to(device)
    valid_a, valid_b = valid_a.to(device), valid_b.to(device)
    step_model = torch.compile(model) if compile_model else model
    valid_model = step_model
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":  # statistics over the global batch; SyncBatchNorm has no CPU kernel
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the layers in place
        wrapped = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        step_model = torch.compile(wrapped) if compile_model else wrapped
        # valid_model stays the plain one: validation runs on rank 0 alone, and a forward
        # through DDP would wait for the other ranks.
    averaged = None
    if ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
        valid_model = averaged.module
    shown_model = model if averaged is None else averaged.module
    fixed_pairs = None
    if not fresh_pairs:
        fixed_pairs = torch.randperm(len(train_images), generator=generator, device=device)
        fixed_pairs = fixed_pairs[: len(train_images) // 2 * 2].view(-1, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch_pairs = [len(a) for a, _ in epoch_pairs(len(train_images), batch_size, torch.Generator(device), fixed_pairs)]
    steps_per_epoch = len(batch_pairs)
    check_shares(batch_pairs, ranks)
    scheduler = None
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history: list[EpochResult] = []
    if resume is not None:
        history = restore_training_state(resume, model, optimizer, scheduler, generator, averaged)
    started = time.perf_counter() - (history[-1].seconds if history else 0.0)
    unsaved = None  # the last finished epoch's state while it is not checkpointed
    try:
        for epoch in range(len(history) + 1, epochs + 1):
            model.train()
            loss_sum = torch.zeros((), device=device)
            pairs_seen = 0
            for a_index, b_index in epoch_pairs(len(train_images), batch_size, generator, fixed_pairs):
                # Drawn for the whole batch on every rank, in one process's order, then shared.
                flip_a = flip_draw(len(a_index), generator) if flip else None
                flip_b = flip_draw(len(b_index), generator) if flip else None
                mine = share(len(a_index), ranks)
                # contiguous(): a batch gathered from a channels-first view keeps the view's
                # strides, and convolutions would take another (slower, differently rounded) path.
                a = normalise(train_images[a_index[mine]].contiguous())
                b = normalise(train_images[b_index[mine]].contiguous())
                if flip:
                    a, b = apply_flips(a, flip_a[mine]), apply_flips(b, flip_b[mine])
                with autocast(device, precision):
                    out_1, out_2 = step_model(mix_fn(a, b).contiguous(memory_format=memory_format(device, precision)))
                step_loss = loss_fn(out_1.float(), out_2.float(), a, b)
                optimizer.zero_grad(set_to_none=True)
                if ranks.distributed:
                    (step_loss * share_weight(len(a), len(a_index), ranks)).backward()
                else:
                    step_loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                # Accumulate on the tensor: a .item() here would sync every step.
                loss_sum += step_loss.detach() * len(a)
                pairs_seen += len(a_index)
                kill_point("mid-epoch", epoch)
            sum_over_ranks(loss_sum, ranks)
            valid_l1 = valid_psnr = None
            if ranks.is_main and (epoch % validate_every == 0 or epoch == epochs):
                kill_point("validation", epoch)
                valid_l1, valid_psnr = validate(valid_model, valid_a, valid_b, mix=mix, loss=loss, flips=test_flips)
            result = EpochResult(epoch, float(loss_sum) / pairs_seen, valid_l1, valid_psnr,
                                 time.perf_counter() - started, time.time())
            history.append(result)
            if on_epoch_end is not None and ranks.is_main:
                on_epoch_end(result, shown_model)
            if on_checkpoint is not None and ranks.is_main:
                due = epoch % checkpoint_every == 0 or epoch == epochs
                # Kept for an interruption, the state must not move on with the model: a copy.
                state = training_state(history, model, optimizer, scheduler, generator, averaged, copied=not due)
                unsaved = None if due else state
                if due:
                    on_checkpoint(state)
    except KeyboardInterrupt:
        if unsaved is not None:
            on_checkpoint(unsaved)
        raise
    except RuntimeError as error:
        if not (ranks.distributed and peer_lost(error)):
            raise
        if unsaved is not None:
            on_checkpoint(unsaved)
        raise Stopped("another process of the training is gone") from None
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    model.eval()
    return history


def validate(model: nn.Module, a: Tensor, b: Tensor, *, mix: str, loss: str, flips: bool = False) -> tuple[float, float]:
    """The training loss and best-assignment PSNR (dB) of `model` on fixed uint8 pairs
    (with `flips`, of its test-time flip average)."""
    a, b = normalise(a), normalise(b)
    out_1, out_2 = separate_with_flips(model, MIXES[mix](a, b), flips)
    # Not pair_metrics: its SSIM would cost as much as a training epoch here.
    psnr, _ = best_psnr_and_seed_l1(out_1, out_2, a, b)
    return float(LOSSES[loss](out_1, out_2, a, b)), float(psnr.mean())
