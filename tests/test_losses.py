"""Training losses against hand values; PIT against the seed's fixed assignment."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unmix.evaluation.metrics import per_pair_l1
from unmix.training.losses import LOSSES, fixed_assignment_l1, permutation_invariant_l1


def full(value: float, n: int = 1) -> torch.Tensor:
    """n constant images of shape (1, 2, 2)."""
    return torch.full((n, 1, 2, 2), value)


@pytest.fixture
def pair():
    # Two pairs of constant images: pair 0 is (a=1, b=-1), pair 1 is (a=0.5, b=0).
    a = torch.cat([full(1.0), full(0.5)])
    b = torch.cat([full(-1.0), full(0.0)])
    return a, b


def test_per_pair_l1_is_mean_absolute_error_per_image():
    output = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    target = torch.zeros(2, 1, 2, 2)
    # image 0: (0 + 1 + 2 + 3) / 4 = 1.5; image 1: 4 * 1 / 4 = 1
    assert torch.allclose(per_pair_l1(output, target), torch.tensor([1.5, 1.0]))


def test_per_pair_l1_is_symmetric_and_zero_on_identity():
    x = torch.tensor([[[[0.2, -0.4]]]])
    y = torch.tensor([[[[-0.2, 0.4]]]])
    # (0.4 + 0.8) / 2 = 0.6 either way round
    assert torch.allclose(per_pair_l1(x, y), torch.tensor([0.6]))
    assert torch.allclose(per_pair_l1(y, x), torch.tensor([0.6]))
    assert torch.equal(per_pair_l1(x, x), torch.tensor([0.0]))


def test_fixed_assignment_by_hand(pair):
    a, b = pair
    out_1 = torch.cat([full(0.5), full(0.5)])
    out_2 = torch.cat([full(-0.5), full(0.5)])
    # pair 0: |0.5 - 1| + |-0.5 - -1| = 0.5 + 0.5 = 1.0
    # pair 1: |0.5 - 0.5| + |0.5 - 0| = 0 + 0.5 = 0.5
    # mean over pairs: 0.75
    assert fixed_assignment_l1(out_1, out_2, a, b).item() == pytest.approx(0.75)


def test_pit_by_hand_takes_the_cheaper_assignment_per_pair(pair):
    a, b = pair
    out_1 = torch.cat([full(-1.0), full(0.5)])  # pair 0 swapped, pair 1 in order
    out_2 = torch.cat([full(1.0), full(0.25)])
    # pair 0: direct |-1-1| + |1+1| = 4, swapped |-1+1| + |1-1| = 0 -> 0
    # pair 1: direct |0.5-0.5| + |0.25-0| = 0.25, swapped |0.5-0| + |0.25-0.5| = 0.75 -> 0.25
    # mean: (0 + 0.25) / 2 = 0.125; the fixed loss is (4 + 0.25) / 2 = 2.125
    assert permutation_invariant_l1(out_1, out_2, a, b).item() == pytest.approx(0.125)
    assert fixed_assignment_l1(out_1, out_2, a, b).item() == pytest.approx(2.125)


def test_swapped_outputs_make_fixed_large_and_pit_zero(pair):
    a, b = pair
    # outputs are exactly (b, a): fixed pays |b-a| twice per pair, PIT pays nothing.
    # pair 0: 2 + 2 = 4; pair 1: 0.5 + 0.5 = 1 -> fixed mean 2.5
    assert fixed_assignment_l1(b, a, a, b).item() == pytest.approx(2.5)
    assert permutation_invariant_l1(b, a, a, b).item() == 0.0


def test_pit_and_fixed_agree_when_outputs_are_in_order(pair):
    a, b = pair
    out_1, out_2 = a + 0.1, b - 0.1
    # each pair: 0.1 + 0.1 = 0.2 direct; swapped is at least |a-b| - 0.2 >= 0.3 here
    assert fixed_assignment_l1(out_1, out_2, a, b).item() == pytest.approx(0.2)
    assert permutation_invariant_l1(out_1, out_2, a, b).item() == pytest.approx(0.2)


@pytest.mark.parametrize("seed", range(5))
def test_pit_never_exceeds_fixed(seed):
    generator = torch.Generator().manual_seed(seed)
    out_1, out_2, a, b = (torch.rand(6, 3, 4, 4, generator=generator) * 2 - 1 for _ in range(4))
    pit = permutation_invariant_l1(out_1, out_2, a, b)
    fixed = fixed_assignment_l1(out_1, out_2, a, b)
    assert pit <= fixed
    # and PIT is invariant to swapping the outputs, fixed is not (in general)
    assert torch.allclose(permutation_invariant_l1(out_2, out_1, a, b), pit)


@pytest.mark.parametrize("seed", range(3))
def test_fixed_equals_seed_formula_with_nn_l1loss(seed):
    # The seed: loss = L1(decoder1, a) + L1(decoder2, b) with nn.L1Loss (mean over all
    # elements). With every image the same size, mean over elements == mean over pairs of
    # per-image means, so the two agree.
    generator = torch.Generator().manual_seed(seed)
    out_1, out_2, a, b = (torch.rand(5, 3, 8, 8, generator=generator) * 2 - 1 for _ in range(4))
    criterion = nn.L1Loss()
    seed_loss = criterion(out_1, a) + criterion(out_2, b)
    assert torch.allclose(fixed_assignment_l1(out_1, out_2, a, b), seed_loss, atol=1e-6)


def test_losses_are_differentiable_scalars(pair):
    a, b = pair
    out_1 = torch.zeros_like(a, requires_grad=True)
    out_2 = torch.zeros_like(b, requires_grad=True)
    for loss in LOSSES.values():
        value = loss(out_1, out_2, a, b)
        assert value.shape == ()
        value.backward()
        assert out_1.grad is not None and out_1.grad.abs().sum() > 0
        out_1.grad = out_2.grad = None


def test_loss_registry_names():
    assert LOSSES == {"fixed": fixed_assignment_l1, "pit": permutation_invariant_l1}
