"""The training loop on a few tiny images: reproducible per seed, learns, validates when asked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unmix.config import SetConfig
from unmix.evaluation.inference import merge_mirrored, separate, separate_with_flips
from unmix.model.networks import SeedAutoencoder, UNetSeparator
from unmix.model.tensors import channels_first_view, normalise, to_channels_first, to_uint8_images
from unmix.training.loop import (
    TrainingHooks,
    TrainingImages,
    epoch_pairs,
    half_size,
    random_flips,
    train_separator,
    validate,
)
from unmix.training.state import EpochResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    valid_a = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    valid_b = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    return {
        "train": to_channels_first(train),
        "valid_a": to_channels_first(valid_a),
        "valid_b": to_channels_first(valid_b),
    }


def loop_images(images) -> TrainingImages:
    return TrainingImages(images["train"], images["valid_a"], images["valid_b"])


def run(
    images,
    *,
    seed=0,
    init_seed=0,
    epochs=2,
    batch_size=8,
    lr=5e-4,
    mix="quarter_sum",
    loss="fixed",
    validate_every=1,
    on_epoch_end=None,
    device=None,
    **options,
):
    torch.manual_seed(init_seed)
    model = SeedAutoencoder()
    config = SetConfig(
        mix=mix,
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        validate_every=validate_every,
        **options,
    )
    where = {} if device is None else {"device": device}  # None: the loop's default device
    history = train_separator(
        model, config, loop_images(images), hooks=TrainingHooks(on_epoch_end=on_epoch_end), **where
    )
    return model, history


def weights_equal(first, second) -> bool:
    return all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))


# --- conversions -----------------------------------------------------------------------------------------


def test_normalise_maps_byte_range_to_minus_one_one():
    values = torch.tensor([0, 255, 51], dtype=torch.uint8)
    # 0 / 127.5 - 1 = -1; 255 / 127.5 - 1 = 1; 51 / 127.5 - 1 = -0.6
    result = normalise(values)
    assert result.dtype == torch.float32
    assert result[0].item() == -1.0 and result[1].item() == 1.0
    assert result[2].item() == pytest.approx(-0.6, abs=1e-6)


def test_normalise_leaves_a_uint8_input_unchanged():
    values = torch.tensor([0, 255], dtype=torch.uint8)
    normalise(values)
    assert values.tolist() == [0, 255]


def test_to_uint8_of_normalise_is_exact_for_every_byte():
    every_byte = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    back = to_uint8_images(normalise(every_byte))
    assert back.dtype == np.uint8 and back.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(back, every_byte.permute(0, 2, 3, 1).numpy())


def test_to_uint8_clips_and_rounds():
    # (-2 + 1) * 127.5 = -127.5 -> 0; (2 + 1) * 127.5 = 382.5 -> 255; (0 + 1) * 127.5 = 127.5 -> 128 (half to even)
    x = torch.tensor([-2.0, 2.0, 0.0]).reshape(1, 3, 1, 1)
    assert to_uint8_images(x).reshape(-1).tolist() == [0, 255, 128]


def test_to_channels_first_layout():
    array = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    tensor = to_channels_first(array)
    assert tensor.shape == (2, 3, 4, 5) and tensor.dtype == torch.uint8 and tensor.is_contiguous()
    assert tensor[1, 2, 3, 4].item() == array[1, 3, 4, 2]


# --- reproducibility -------------------------------------------------------------------------------------


def test_same_seed_gives_identical_history_and_weights(images):
    first_model, first = run(images, seed=1)
    second_model, second = run(images, seed=1)
    assert first == second  # EpochResult equality compares the floats bitwise (==)
    assert weights_equal(first_model, second_model)


def test_different_seeds_give_different_runs(images):
    first_model, first = run(images, seed=1)
    second_model, second = run(images, seed=2)
    assert [r.train_l1 for r in first] != [r.train_l1 for r in second]
    assert not weights_equal(first_model, second_model)


class TinySeparator(nn.Module):
    """A 1x1 conv with no dropout: runs differ only through the batch order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)

    def forward(self, mixture):
        y = torch.tanh(self.conv(mixture))
        return y[:, :3], y[:, 3:]


def test_batch_order_follows_the_seed(images):
    def train(seed):
        torch.manual_seed(0)  # same initial weights
        model = TinySeparator()
        config = SetConfig(
            mix="half_difference", loss="fixed", epochs=2, batch_size=4, lr=1e-2, seed=seed, validate_every=1
        )
        return train_separator(model, config, loop_images(images))

    assert train(5) == train(5)
    assert [r.train_l1 for r in train(5)] != [r.train_l1 for r in train(6)]


def test_history_has_one_result_per_epoch_with_finite_losses(images):
    _, history = run(images, epochs=2)
    assert [r.epoch for r in history] == [1, 2]
    assert all(isinstance(r, EpochResult) for r in history)
    assert all(np.isfinite(r.train_l1) and r.train_l1 > 0 for r in history)
    assert all(isinstance(r.valid_l1, float) for r in history)


def test_model_is_left_in_eval_mode(images):
    model, _ = run(images, epochs=1)
    assert not model.training


# --- learning --------------------------------------------------------------------------------------------


def two_tone_images() -> dict[str, torch.Tensor]:
    """Sixteen copies of one two-tone picture: a == b in every pair, a learnable task."""
    picture = np.zeros((16, 32, 32, 3), dtype=np.uint8)
    picture[:, :16] = (200, 50, 120)
    picture[:, 16:] = (20, 220, 90)
    train = to_channels_first(picture)
    return {"train": train, "valid_a": train[:2], "valid_b": train[2:4]}


def test_training_loss_decreases_when_overfitting_a_tiny_set():
    # Sixteen copies of one two-tone picture: a == b in every pair, so the task is learnable
    # (output the picture twice) and 30 Adam steps at lr 1e-3 must make real progress. Noise
    # images would not do: their L1 stays near 1 whatever a tiny budget does.
    _, history = run(two_tone_images(), epochs=15, lr=1e-3, validate_every=15)
    losses = [r.train_l1 for r in history]
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.parametrize("lever", [{"optimizer": "muon"}, {"low_res_epochs": 5}], ids=["muon", "low_res"])
def test_the_unet_learns_with_each_training_lever(lever):
    # The two-tone set above on a small U-Net, 20 steps at Adam's 5e-3 (and Muon's 0.24):
    # plain Adam ends at 0.71 of its first epoch's loss, each lever must reach 0.8 too
    # (Muon 0.67, five epochs on 16×16 pairs 0.70).
    torch.manual_seed(0)
    model = UNetSeparator(width=4, depth=2)
    config = SetConfig(arch="unet", epochs=10, batch_size=8, lr=5e-3, seed=0, validate_every=10, **lever)
    history = train_separator(model, config, loop_images(two_tone_images()))
    losses = [r.train_l1 for r in history]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("loss", ["fixed", "pit"])
def test_validation_loss_is_the_training_loss_on_valid_pairs(images, loss):
    model, history = run(images, epochs=1, loss=loss)
    expected_l1, expected_psnr = validate(model, images["valid_a"], images["valid_b"], mix="quarter_sum", loss=loss)
    assert history[-1].valid_l1 == expected_l1
    assert history[-1].valid_psnr == expected_psnr


# --- validation schedule and callback --------------------------------------------------------------------


def test_validate_every_two_with_three_epochs_validates_epochs_two_and_three(images):
    _, history = run(images, epochs=3, validate_every=2)
    assert history[0].valid_l1 is None
    assert history[1].valid_l1 is not None  # 2 % 2 == 0
    assert history[2].valid_l1 is not None  # the last epoch is always validated


def test_on_epoch_end_called_once_per_epoch_with_result_and_model(images):
    calls = []

    def record(result, model):
        calls.append((result, model))

    model, history = run(images, epochs=3, on_epoch_end=record)
    assert len(calls) == 3
    assert [result for result, _ in calls] == history
    assert all(passed is model for _, passed in calls)


# --- inference -------------------------------------------------------------------------------------------


def test_separate_batches_like_one_pass_and_restores_mode(monkeypatch):
    import unmix.evaluation.inference as inference

    torch.manual_seed(0)
    model = SeedAutoencoder().train()
    mixture = torch.rand(5, 3, 32, 32) * 2 - 1
    whole = separate(model, mixture)
    monkeypatch.setattr(inference, "INFERENCE_BATCH", 2)  # 5 pairs -> batches of 2, 2, 1
    batched = separate(model, mixture)
    assert model.training
    for x, y in zip(whole, batched):
        assert x.shape == (5, 3, 32, 32)
        assert torch.allclose(x, y, atol=1e-6)


# --- pairing, flips, schedule ----------------------------------------------------------------------------


def test_fresh_pairs_split_each_batch_in_halves_and_use_every_image_once():
    batches = list(epoch_pairs(10, 4, torch.Generator().manual_seed(0)))
    # 10 images in batches of 4: 4, 4, 2 → 2 + 2 + 1 pairs
    assert [len(a) for a, _ in batches] == [2, 2, 1]
    used = torch.cat([torch.cat([a, b]) for a, b in batches])
    assert sorted(used.tolist()) == list(range(10))


def test_fresh_pairs_change_between_epochs_and_fixed_pairs_do_not():
    generator = torch.Generator().manual_seed(0)
    fixed = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])

    def pair_set(batches):
        return {tuple(sorted(p)) for a, b in batches for p in zip(a.tolist(), b.tolist())}

    fresh = [pair_set(epoch_pairs(8, 4, generator)) for _ in range(2)]
    assert fresh[0] != fresh[1]
    again = [pair_set(epoch_pairs(8, 4, generator, fixed)) for _ in range(2)]
    assert again[0] == again[1] == {(0, 1), (2, 3), (4, 5), (6, 7)}


def test_random_flips_mirror_some_images_and_leave_the_rest():
    batch = torch.arange(64 * 3 * 2 * 2, dtype=torch.float32).view(64, 3, 2, 2)
    flipped = random_flips(batch, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, b.flip(-1)) for f, b in zip(flipped, batch)]
    untouched = [torch.equal(f, b) for f, b in zip(flipped, batch)]
    assert all(m or u for m, u in zip(mirrored, untouched))
    assert 16 < sum(mirrored) < 48  # about half of 64


def test_flip_and_fixed_pairs_change_training_but_stay_deterministic(images):
    plain = run(images, epochs=2)[1]
    flipped = run(images, epochs=2, flip=True)[1]
    assert flipped == run(images, epochs=2, flip=True)[1]
    assert [r.train_l1 for r in flipped] != [r.train_l1 for r in plain]
    fixed = run(images, epochs=2, fresh_pairs=False)[1]
    assert [r.train_l1 for r in fixed] != [r.train_l1 for r in plain]


def lr_after_each_epoch(images, epochs=6, **options) -> list[float]:
    """The optimizer's learning rate after each epoch's last step, from the state handed to on_checkpoint."""
    seen = []
    torch.manual_seed(0)
    config = SetConfig(
        mix="quarter_sum", loss="fixed", epochs=epochs, batch_size=8, lr=1e-3, seed=0, validate_every=1, **options
    )
    hooks = TrainingHooks(
        checkpoint_every=1, on_checkpoint=lambda state: seen.append(state["optimizer"]["param_groups"][0]["lr"])
    )
    train_separator(SeedAutoencoder(), config, loop_images(images), hooks=hooks)
    return seen


def test_onecycle_schedule_anneals_the_learning_rate(images):
    # Reads the rate the optimizer actually used: with `schedule` ignored, it stays at lr.
    assert lr_after_each_epoch(images, epochs=2) == [1e-3] * 2  # constant, the default
    onecycle = lr_after_each_epoch(images, schedule="onecycle")
    assert len(onecycle) == 6
    assert onecycle[0] < max(onecycle) <= 1e-3  # warms up to lr
    peak = onecycle.index(max(onecycle))
    # The last value is OneCycleLR's for a step past the schedule's end (the scheduler steps
    # after every optimizer step), where its cosine rises again; training never uses it.
    annealing = onecycle[peak:-1]
    assert annealing == sorted(annealing, reverse=True) and annealing[-1] < 1e-3 / 20  # anneals to ~0


def test_validation_psnr_is_the_best_assignment_psnr_of_pair_metrics(images):
    from unmix.evaluation.inference import separate
    from unmix.evaluation.metrics import pair_metrics, to_pixel_range
    from unmix.model.mixing import MIXES
    from unmix.model.tensors import normalise

    model, _ = run(images, epochs=1)
    _, psnr = validate(model, images["valid_a"], images["valid_b"], mix="quarter_sum", loss="fixed")
    a, b = normalise(images["valid_a"]), normalise(images["valid_b"])
    pixels = [to_pixel_range(x) for x in (*separate(model, MIXES["quarter_sum"](a, b)), a, b)]
    assert psnr == pytest.approx(float(pair_metrics(*pixels)["best"]["psnr"].mean()), abs=1e-5)


# --- devices and compilation -----------------------------------------------------------------------------


def test_explicit_cpu_device_is_the_default_path(images):
    default_model, default_history = run(images, epochs=1)
    cpu_model, cpu_history = run(images, epochs=1, device="cpu")
    assert cpu_history == default_history
    assert weights_equal(cpu_model, default_model)


def test_compiled_training_matches_eager(images):
    # torch.compile fuses kernels, so the floats may differ in the last bits, no more.
    eager_model, eager_history = run(images, epochs=1, batch_size=16)
    compiled_model, compiled_history = run(images, epochs=1, batch_size=16, compile=True)
    assert compiled_history[0].train_l1 == pytest.approx(eager_history[0].train_l1, rel=1e-5)
    assert compiled_history[0].valid_l1 == pytest.approx(eager_history[0].valid_l1, rel=1e-5)
    for eager, compiled in zip(eager_model.state_dict().values(), compiled_model.state_dict().values()):
        assert torch.allclose(eager, compiled, atol=1e-5)


def test_ema_leaves_training_alone_and_returns_the_hand_computed_average(images):
    # One step per epoch (16 images, batch 16), constant rate: the average after two steps
    # with decay 0.25 is 0.25 * w1 + 0.75 * w2 (the first update copies w1).
    after_epoch = []
    plain_model, plain_history = run(
        images,
        epochs=2,
        batch_size=16,
        on_epoch_end=lambda result, model: after_epoch.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    averaged_model, averaged_history = run(images, epochs=2, batch_size=16, ema=0.25)
    assert [r.train_l1 for r in averaged_history] == [r.train_l1 for r in plain_history]
    first, second = after_epoch
    for name, value in averaged_model.state_dict().items():
        torch.testing.assert_close(value, 0.25 * first[name] + 0.75 * second[name])
    assert not weights_equal(averaged_model, plain_model)


def test_ema_validates_and_shows_the_averaged_weights(images):
    shown = []
    model, history = run(
        images,
        epochs=2,
        batch_size=16,
        ema=0.5,
        mix="mean",
        loss="pit",
        on_epoch_end=lambda result, model: shown.append(model),
    )
    assert shown[0] is shown[1]  # one averaged model, updated in place
    assert weights_equal(shown[-1], model)
    a, b = images["valid_a"], images["valid_b"]
    assert validate(model, a, b, mix="mean", loss="pit") == (history[-1].valid_l1, history[-1].valid_psnr)


def test_bf16_steps_on_the_cpu_are_reproducible_and_near_float32(images):
    fp32_model, fp32_history = run(images, epochs=1, batch_size=16)
    bf16_model, bf16_history = run(images, epochs=1, batch_size=16, precision="bf16")
    again_model, again_history = run(images, epochs=1, batch_size=16, precision="bf16")
    assert bf16_history == again_history and weights_equal(bf16_model, again_model)
    assert bf16_history[0].train_l1 != fp32_history[0].train_l1  # the steps did run in bf16
    assert bf16_history[0].train_l1 == pytest.approx(fp32_history[0].train_l1, rel=2e-2)


def test_training_from_a_channels_first_view_equals_a_contiguous_copy():
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    view = channels_first_view(nhwc)
    assert view.data_ptr() == torch.from_numpy(nhwc).data_ptr()  # shares the array's memory
    valid = {"valid_a": to_channels_first(nhwc[:4]), "valid_b": to_channels_first(nhwc[4:8])}
    view_model, view_history = run({"train": view, **valid})
    copy_model, copy_history = run({"train": to_channels_first(nhwc), **valid})
    assert view_history == copy_history
    assert weights_equal(view_model, copy_model)


def test_merge_mirrored_pairs_each_output_with_its_closer_mirrored_one():
    out_1, out_2 = torch.full((2, 1, 1, 2), 0.8), torch.full((2, 1, 1, 2), -0.4)
    # Pair 0: the mirrored pass ordered its outputs alike; pair 1: the other way round.
    mirrored_1 = torch.tensor([0.6, -0.2]).view(2, 1, 1, 1).expand(2, 1, 1, 2)
    mirrored_2 = torch.tensor([-0.2, 0.6]).view(2, 1, 1, 1).expand(2, 1, 1, 2)
    merged_1, merged_2 = merge_mirrored(out_1, out_2, mirrored_1, mirrored_2)
    assert torch.allclose(merged_1, torch.full((2, 1, 1, 2), 0.7))  # (0.8 + 0.6) / 2 for both pairs
    assert torch.allclose(merged_2, torch.full((2, 1, 1, 2), -0.3))  # (-0.4 - 0.2) / 2


class SwapsOnMirror(nn.Module):
    """Outputs (x, -x) for a picture whose left column is brighter than its right, else (-x, x)."""

    def forward(self, x):
        left_brighter = (x[..., :1].mean((1, 2, 3)) > x[..., -1:].mean((1, 2, 3)))[:, None, None, None]
        return torch.where(left_brighter, x, -x), torch.where(left_brighter, -x, x)


def test_test_time_flips_undo_the_mirror_and_match_the_outputs_order():
    mixture = torch.linspace(-1, 1, 4).repeat(3, 4, 1).unsqueeze(0)  # brighter on the right
    plain = separate_with_flips(SwapsOnMirror(), mixture, flips=False)
    flipped = separate_with_flips(SwapsOnMirror(), mixture, flips=True)
    # Mirrored, the model swaps its outputs; mirrored back and re-paired, they agree with the plain pass.
    for ours, theirs in zip(flipped, plain):
        assert torch.allclose(ours, theirs)
    assert torch.allclose(plain[0], -mixture)


def test_low_res_epochs_train_on_half_size_pairs_then_full_size_and_validate_at_full_size(images):
    torch.manual_seed(0)
    model = UNetSeparator(width=4, depth=3)  # 16 → 8 → 4 → 2
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, tuple(args[0].shape[1:]))))
    config = SetConfig(arch="unet", epochs=3, low_res_epochs=2, batch_size=8, seed=0, schedule="onecycle")
    history = train_separator(model, config, loop_images(images))
    steps = [shape for training, shape in seen if training]
    # 16 images, 4 pairs a step: 2 steps an epoch, as at full size (the one-cycle count holds).
    assert steps == [(3, 16, 16)] * 4 + [(3, 32, 32)] * 2
    assert {shape for training, shape in seen if not training} == {(3, 32, 32)}
    assert len(history) == 3 and all(np.isfinite(r.valid_l1) for r in history)


def test_half_size_is_the_mean_of_each_two_by_two_block():
    batch = torch.arange(16.0).view(1, 1, 4, 4)
    # Blocks (0, 1, 4, 5) → 2.5, (2, 3, 6, 7) → 4.5, (8, 9, 12, 13) → 10.5, (10, 11, 14, 15) → 12.5
    assert torch.equal(half_size(batch), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_muon_and_adam_groups_both_follow_the_onecycle_schedule(images):
    torch.manual_seed(0)
    seen = []
    config = SetConfig(
        arch="unet", optimizer="muon", muon_lr=0.2, lr=1e-3, epochs=6, batch_size=8, seed=0, schedule="onecycle"
    )
    hooks = TrainingHooks(on_checkpoint=lambda state: seen.append(state["optimizer"]["param_groups"]))
    train_separator(UNetSeparator(width=4, depth=1), config, loop_images(images), hooks=hooks)
    muon = [groups[0]["lr"] for groups in seen]
    adam = [groups[1]["lr"] for groups in seen]
    assert [groups[0]["muon"] for groups in seen] == [True] * 6
    assert max(muon) <= 0.2 and muon[-2] < 0.2 / 20  # warms up to its peak, anneals to ~0
    assert muon == pytest.approx([0.2 / 1e-3 * rate for rate in adam])  # one schedule, two peaks
