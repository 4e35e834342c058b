"""Mixing rules on hand-made tensors, their symmetry, and the trivial "output the mixture" separator."""

from __future__ import annotations

import pytest
import torch

from unmix.model.mixing import MIXES, half_difference, mean, quarter_sum, trivial_separation


@pytest.fixture
def a() -> torch.Tensor:
    return torch.tensor([[1.0, -1.0], [0.5, 0.0]])


@pytest.fixture
def b() -> torch.Tensor:
    return torch.tensor([[1.0, 1.0], [-0.5, -1.0]])


def test_quarter_sum_is_sum_over_four(a, b):
    # a + b = [[2, 0], [0, -1]]; / 4 = [[0.5, 0], [0, -0.25]]
    expected = torch.tensor([[0.5, 0.0], [0.0, -0.25]])
    assert torch.equal(quarter_sum(a, b), expected)


def test_mean_is_sum_over_two(a, b):
    # a + b = [[2, 0], [0, -1]]; / 2 = [[1, 0], [0, -0.5]]
    expected = torch.tensor([[1.0, 0.0], [0.0, -0.5]])
    assert torch.equal(mean(a, b), expected)


def test_half_difference_is_difference_over_two(a, b):
    # a - b = [[0, -2], [1, 1]]; / 2 = [[0, -1], [0.5, 0.5]]
    expected = torch.tensor([[0.0, -1.0], [0.5, 0.5]])
    assert torch.equal(half_difference(a, b), expected)


def test_mix_registry_names_each_rule():
    assert MIXES == {"quarter_sum": quarter_sum, "mean": mean, "half_difference": half_difference}


@pytest.mark.parametrize("name", ["quarter_sum", "mean"])
def test_sum_mixes_are_symmetric(name, a, b):
    assert torch.equal(MIXES[name](a, b), MIXES[name](b, a))


def test_half_difference_is_antisymmetric_not_symmetric(a, b):
    forward, backward = half_difference(a, b), half_difference(b, a)
    assert not torch.equal(forward, backward)
    assert torch.equal(forward, -backward)


def test_mixes_of_images_in_range_stay_in_range():
    # |a|, |b| <= 1  =>  |(a+b)/4| <= 0.5, |(a+b)/2| <= 1, |(a-b)/2| <= 1
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 8, 8, generator=generator) * 2 - 1
    b = torch.rand(4, 3, 8, 8, generator=generator) * 2 - 1
    assert quarter_sum(a, b).abs().max() <= 0.5
    assert mean(a, b).abs().max() <= 1
    assert half_difference(a, b).abs().max() <= 1


def test_trivial_separation_of_quarter_sum_is_twice_the_mixture_twice():
    mixture = torch.tensor([0.25, -0.5])
    first, second = trivial_separation(mixture, "quarter_sum")
    # 2 * [0.25, -0.5] = [0.5, -1]
    assert torch.equal(first, torch.tensor([0.5, -1.0]))
    assert torch.equal(second, torch.tensor([0.5, -1.0]))


def test_trivial_separation_of_mean_is_the_mixture_twice():
    mixture = torch.tensor([0.25, -0.5])
    first, second = trivial_separation(mixture, "mean")
    assert torch.equal(first, mixture)
    assert torch.equal(second, mixture)


def test_trivial_separation_of_half_difference_is_plus_and_minus_the_mixture():
    mixture = torch.tensor([0.25, -0.5])
    first, second = trivial_separation(mixture, "half_difference")
    assert torch.equal(first, torch.tensor([0.25, -0.5]))
    assert torch.equal(second, torch.tensor([-0.25, 0.5]))


def test_trivial_separation_recovers_identical_images_under_sum_mixes():
    # a == b: (a+a)/4 * 2 = a and (a+a)/2 = a, so "doing nothing" is exact.
    image = torch.tensor([0.5, -1.0, 0.0])
    for name in ("quarter_sum", "mean"):
        first, second = trivial_separation(MIXES[name](image, image), name)
        assert torch.equal(first, image)
        assert torch.equal(second, image)


def test_trivial_separation_rejects_unknown_mix():
    with pytest.raises(ValueError, match="unknown mix 'sum'.*quarter_sum, mean, half_difference"):
        trivial_separation(torch.zeros(1), "sum")


# --- mixture consistency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mix", ["quarter_sum", "mean", "half_difference"])
def test_coefficients_describe_each_mix(mix):
    from unmix.model.mixing import MIX_COEFFICIENTS, MIXES

    alpha, beta = MIX_COEFFICIENTS[mix]
    a, b = torch.tensor([0.6, -0.2]), torch.tensor([0.2, 1.0])
    assert torch.allclose(MIXES[mix](a, b), alpha * a + beta * b)


@pytest.mark.parametrize("mix", ["quarter_sum", "mean", "half_difference"])
def test_projected_outputs_mix_back_to_the_mixture_to_float_precision(mix):
    from unmix.model.mixing import MIXES, mixture_consistent

    generator = torch.Generator().manual_seed(0)
    out_1, out_2, mixture = (torch.rand(4, 3, 8, 8, generator=generator) * 2 - 1 for _ in range(3))
    new_1, new_2 = mixture_consistent(out_1, out_2, mixture, mix)
    assert torch.allclose(MIXES[mix](new_1, new_2), mixture, atol=1e-6)


def test_projection_by_hand_for_the_mean_and_the_difference():
    from unmix.model.mixing import mixture_consistent

    # mean: residual r = 0.5 - (0.2 + 0.4) / 2 = 0.2; both outputs move by r / (2 * 0.25) * 0.5 = r
    out_1, out_2 = mixture_consistent(torch.tensor([0.2]), torch.tensor([0.4]), torch.tensor([0.5]), "mean")
    assert torch.allclose(out_1, torch.tensor([0.4])) and torch.allclose(out_2, torch.tensor([0.6]))
    # half_difference: r = 0.5 - (0.2 - 0.4) / 2 = 0.6; out_1 += r, out_2 -= r
    out_1, out_2 = mixture_consistent(torch.tensor([0.2]), torch.tensor([0.4]), torch.tensor([0.5]), "half_difference")
    assert torch.allclose(out_1, torch.tensor([0.8])) and torch.allclose(out_2, torch.tensor([-0.2]))


def test_consistent_outputs_are_left_alone():
    from unmix.model.mixing import mixture_consistent

    a, b = torch.tensor([0.3, -0.5]), torch.tensor([0.1, 0.9])
    out_1, out_2 = mixture_consistent(a, b, (a + b) / 4, "quarter_sum")
    assert torch.allclose(out_1, a) and torch.allclose(out_2, b)
