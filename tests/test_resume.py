"""Resuming the training loop from a checkpoint gives the same numbers as never stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unmix.config import SetConfig
from unmix.model.networks import build_model
from unmix.model.tensors import to_channels_first
from unmix.training.loop import TrainingHooks, TrainingImages, train_separator
from unmix.training.resume import load_resume_checkpoint, save_resume_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Between them: dropout (seed arch), BatchNorm, a one-cycle schedule, flips, fresh and fixed pairs,
# the weight average (its own state), bf16 steps through attention, Muon and 16×16 epochs.
CASES = {
    "seed_fixed_pairs": ({"arch": "seed"}, {"mix": "quarter_sum", "loss": "fixed", "fresh_pairs": False}),
    "unet_onecycle_flips": (
        {"arch": "unet", "width": 4, "depth": 1, "consistency": True, "mix": "mean"},
        {"mix": "mean", "loss": "pit", "schedule": "onecycle", "flip": True},
    ),
    "unet_attention_ema_bf16": (
        {"arch": "unet", "width": 4, "depth": 1, "consistency": True, "mix": "mean", "attention": True},
        {"mix": "mean", "loss": "pit", "schedule": "onecycle", "ema": 0.9, "precision": "bf16"},
    ),
    # Muon's momentum buffers in the optimizer state.
    "unet_muon": (
        {"arch": "unet", "width": 4, "depth": 1, "consistency": True, "mix": "mean"},
        {"mix": "mean", "loss": "pit", "schedule": "onecycle", "optimizer": "muon"},
    ),
    # Epochs 1 and 2 on 16×16 pairs: the resumed runs start in a low-resolution epoch and at
    # the switch to full size.
    "unet_low_res": (
        {"arch": "unet", "width": 4, "depth": 2, "consistency": True, "mix": "mean"},
        {"mix": "mean", "loss": "pit", "schedule": "onecycle", "flip": True, "low_res_epochs": 2},
    ),
}
EPOCHS = 3


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    shapes = ((12, 32, 32, 3), (4, 32, 32, 3), (4, 32, 32, 3))
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]
    return dict(zip(("train", "valid_a", "valid_b"), map(to_channels_first, arrays)))


def train(images, case: str, on_epoch_end=None, **hooks):
    """A fresh model trained for EPOCHS epochs (or until interrupted), as fit_set builds it."""
    model_options, loop_options = CASES[case]
    torch.manual_seed(0)
    model = build_model(**model_options)
    config = SetConfig(epochs=EPOCHS, batch_size=4, lr=1e-3, seed=0, validate_every=1, **loop_options)
    history = train_separator(
        model,
        config,
        TrainingImages(images["train"], images["valid_a"], images["valid_b"]),
        hooks=TrainingHooks(on_epoch_end=on_epoch_end, **hooks),
    )
    return model, history


def through_disk(tmp_path: Path, state: dict) -> dict:
    """The state as a resumed stage reads it: saved, then loaded with weights_only."""
    path = tmp_path / "resume.pt"
    save_resume_checkpoint(path, state, "d" * 64, "run")
    loaded = load_resume_checkpoint(path, "d" * 64)
    assert loaded is not None
    return loaded


def same_weights(first, second) -> bool:
    return all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_resuming_after_each_epoch_ends_bit_identical(images, case, tmp_path):
    saved = []
    model, history = train(images, case, on_checkpoint=lambda state: saved.append(through_disk(tmp_path, state)))
    assert [state["epoch"] for state in saved] == [1, 2, 3]
    for state in saved[:-1]:
        resumed_model, resumed_history = train(images, case, resume=state)
        assert resumed_history == history  # every epoch's numbers, bitwise (EpochResult ==)
        assert same_weights(resumed_model, model)


def test_checkpoints_come_every_n_epochs_and_after_the_last(images):
    epochs = []
    train(images, "seed_fixed_pairs", on_checkpoint=lambda state: epochs.append(state["epoch"]), checkpoint_every=2)
    assert epochs == [2, 3]


def test_an_interruption_checkpoints_the_last_finished_epoch_then_resumes_identically(images, tmp_path):
    model, history = train(images, "unet_onecycle_flips")
    saved = []

    def interrupt_in_epoch_two(result, _model):
        if result.epoch == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, after epoch 2's training

    with pytest.raises(KeyboardInterrupt):
        train(
            images,
            "unet_onecycle_flips",
            checkpoint_every=5,
            on_epoch_end=interrupt_in_epoch_two,
            on_checkpoint=lambda state: saved.append(through_disk(tmp_path, state)),
        )
    # Epoch 1 was not due (every 5) but is the last finished one: written on the way out,
    # as it stood then, not as the model moved on during epoch 2.
    assert [state["epoch"] for state in saved] == [1]
    resumed_model, resumed_history = train(images, "unet_onecycle_flips", resume=saved[0])
    assert resumed_history == history
    assert same_weights(resumed_model, model)


def test_resumed_history_keeps_the_wall_time_already_spent(images):
    saved = []
    train(images, "seed_fixed_pairs", on_checkpoint=saved.append)
    state = saved[0]
    state["history"][0]["seconds"] = 600.0  # as if epoch 1 had taken ten minutes
    _, history = train(images, "seed_fixed_pairs", resume=state)
    assert history[0].seconds == 600.0 and history[1].seconds > 600.0
