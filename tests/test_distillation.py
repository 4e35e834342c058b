"""Distillation: the blended loss by hand, the teacher file's errors, and a student that
learns what its teacher outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from unmix.config import SetConfig
from unmix.errors import ConfigError, DataError
from unmix.evaluation.inference import separate
from unmix.model.model_file import save_model
from unmix.model.networks import UNetSeparator, model_config
from unmix.model.tensors import normalise, to_channels_first
from unmix.training.distillation import distilled_loss, load_teacher
from unmix.training.loop import TrainingImages, train_separator
from unmix.training.losses import fixed_assignment_l1, permutation_invariant_l1

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def constant(value: float) -> torch.Tensor:
    return torch.full((1, 3, 2, 2), value)


def test_distilled_loss_blends_the_truths_and_the_teachers_terms_by_hand():
    out_1, out_2 = constant(0.0), constant(1.0)
    a, b = constant(0.0), constant(1.0)  # the truth: both outputs right, 0
    teacher_1, teacher_2 = constant(1.0), constant(0.5)

    # Against the teacher, direct |0 - 1| + |1 - 0.5| = 1.5, swapped |0 - 0.5| + |1 - 1| = 0.5.
    def blended(loss, truth_a, truth_b, weight):
        return distilled_loss(loss, out_1, out_2, loss(out_1, out_2, truth_a, truth_b), teacher_1, teacher_2, weight)

    pit = blended(permutation_invariant_l1, a, b, 0.25)
    assert float(pit) == pytest.approx(0.75 * 0 + 0.25 * 0.5)
    fixed = blended(fixed_assignment_l1, a, b, 0.25)
    assert float(fixed) == pytest.approx(0.25 * 1.5)
    # Weight 1: the truth no longer counts.
    wrong_truth = blended(permutation_invariant_l1, b, b, 1.0)
    assert float(wrong_truth) == pytest.approx(0.5)


def test_a_missing_teacher_file_is_one_line_naming_the_parameter(tmp_path):
    missing = tmp_path / "teacher.pt"
    with pytest.raises(ConfigError) as error:
        load_teacher(str(missing), "sets.best.teacher", "mean")
    assert str(error.value) == (
        f"sets.best.teacher: {missing}: no such model file; expected a models/<set>.pt written by a train stage"
    )
    missing.write_bytes(b"not a model")
    with pytest.raises(DataError, match=f"^{missing}: unreadable"):
        load_teacher(str(missing), "sets.best.teacher", "mean")


def test_a_teacher_comes_back_frozen_and_in_eval_mode(tmp_path):
    torch.manual_seed(0)
    model = UNetSeparator(width=4, depth=1)
    path = tmp_path / "teacher.pt"
    save_model(model, path, model_config("unet", 4, 1, False, "mean", False, None), {"set_name": "long"})
    teacher = load_teacher(str(path), "sets.best.teacher", "mean")
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(x, y) for x, y in zip(teacher.state_dict().values(), model.state_dict().values()))


def test_a_teacher_of_another_mix_is_refused_in_one_line(tmp_path):
    path = tmp_path / "teacher.pt"
    save_model(UNetSeparator(width=4, depth=1), path, model_config("unet", 4, 1, False, "mean", False, None), {})
    with pytest.raises(ConfigError) as error:
        load_teacher(str(path), "sets.seed.teacher", "quarter_sum")
    assert str(error.value) == (
        f"sets.seed.teacher: {path} was trained on mix mean, this set mixes quarter_sum; "
        "expected a teacher of the same mix"
    )


def test_the_loop_refuses_a_teacher_its_config_does_not_name_and_the_reverse():
    images = TrainingImages(*(torch.zeros(n, 3, 32, 32, dtype=torch.uint8) for n in (8, 2, 2)))
    teacher = UNetSeparator(width=4, depth=1)
    with pytest.raises(ValueError, match="teacher given: config.teacher is None"):
        train_separator(UNetSeparator(width=4, depth=1), SetConfig(arch="unet"), images, teacher=teacher)
    with pytest.raises(ValueError, match="teacher missing: config.teacher is 't.pt'"):
        train_separator(UNetSeparator(width=4, depth=1), SetConfig(arch="unet", teacher="t.pt"), images)


def random_images(n: int) -> tuple[torch.Tensor, TrainingImages]:
    """`n` random 32×32 images, and a training set of them (the first 8 validate too)."""
    rng = np.random.default_rng(0)
    train = to_channels_first(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    return train, TrainingImages(train, train[:4], train[4:8])


def frozen_teacher(depth: int) -> UNetSeparator:
    """An untrained U-Net of another seed than the students', frozen as `load_teacher` gives it."""
    torch.manual_seed(1)
    return UNetSeparator(width=4, depth=depth).eval().requires_grad_(False)


def test_a_student_distilled_at_weight_one_learns_its_teachers_outputs_not_the_truth():
    # A teacher that is nothing like the truth (an untrained U-Net of another seed): trained
    # on the teacher's term alone, the student's outputs come closer to the teacher's than
    # the same student's trained on the truth, and the teacher's weights do not move.
    # Measured: 0.16 against 0.47 (PIT L1 to the teacher's outputs on unseen mixtures).
    train, images = random_images(32)
    teacher = frozen_teacher(depth=1)
    before = copy.deepcopy(teacher.state_dict())
    mixture = normalise(train[8:16]) / 2 + normalise(train[16:24]) / 2
    teacher_1, teacher_2 = separate(teacher, mixture)

    def distance_to_teacher(**options) -> float:
        torch.manual_seed(0)
        student = UNetSeparator(width=4, depth=1)
        config = SetConfig(arch="unet", mix="mean", loss="pit", epochs=8, batch_size=8, lr=5e-3, seed=0, **options)
        history = train_separator(student, config, images, teacher=teacher if options else None)
        assert all(np.isfinite(r.train_l1) for r in history)
        out_1, out_2 = separate(student, mixture)
        return float(permutation_invariant_l1(out_1, out_2, teacher_1, teacher_2))

    distilled, plain = distance_to_teacher(teacher="teacher.pt", teacher_weight=1.0), distance_to_teacher()
    assert distilled < 0.5 * plain, (distilled, plain)
    assert all(torch.equal(before[key], value) for key, value in teacher.state_dict().items())


def test_with_low_res_epochs_the_teacher_runs_on_the_full_size_epochs_alone():
    # The teacher saw 32×32 mixtures only: the two 16×16 epochs train on the truth (no
    # teacher forward at all), the 32×32 one calls it once a step.
    _, images = random_images(16)
    teacher = frozen_teacher(depth=3)  # 16 → 8 → 4 → 2
    taught, stepped = [], []
    teacher.register_forward_pre_hook(lambda module, args: taught.append(tuple(args[0].shape[1:])))
    torch.manual_seed(0)
    student = UNetSeparator(width=4, depth=3)
    student.register_forward_pre_hook(
        lambda module, args: stepped.append(tuple(args[0].shape[1:])) if module.training else None
    )
    config = SetConfig(arch="unet", epochs=3, low_res_epochs=2, batch_size=8, seed=0, teacher="t.pt")
    history = train_separator(student, config, images, teacher=teacher)
    # 16 images, 4 pairs a step: 2 steps an epoch.
    assert stepped == [(3, 16, 16)] * 4 + [(3, 32, 32)] * 2
    assert taught == [(3, 32, 32)] * 2
    assert len(history) == 3 and all(np.isfinite(r.train_l1) for r in history)
