"""Mixing rules on hand-made tensors, their symmetry, and the trivial "output the mixture" separator."""

from __future__ import annotations

import pytest
import torch

from unmix.mixing import MIXES, half_difference, mean, quarter_sum, trivial_separation


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
