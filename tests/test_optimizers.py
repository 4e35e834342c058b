"""Muon and Adam in one optimizer: the Newton–Schulz map against the scalar polynomial worked by
hand, the conv weight as a matrix, which weights each group gets, and Adam's bytes unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unmix.config import SetConfig
from unmix.model.networks import SeedAutoencoder, UNetSeparator, build_model
from unmix.training.optimizers import (
    NS_COEFFICIENTS,
    MuonAdam,
    as_matrix,
    build_optimizer,
    from_matrix,
    muon_weights,
    newton_schulz,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quintic(x: float, steps: int = 3) -> float:
    """What Newton–Schulz does to one singular value (relative to the Frobenius norm)."""
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


def test_one_step_of_the_quintic_by_hand():
    # p(0.6) = 3.4445 * 0.6 - 4.7750 * 0.216 + 2.0315 * 0.07776 = 2.0667 - 1.0314 + 0.15796944
    assert quintic(0.6, steps=1) == pytest.approx(1.19326944)
    diagonal = torch.diag(torch.tensor([3.0, 4.0]))  # Frobenius norm 5: singular values 0.6, 0.8
    one_step = newton_schulz(diagonal, steps=1)
    assert torch.allclose(one_step, torch.diag(torch.tensor([1.19326944, quintic(0.8, steps=1)])), atol=1e-6)


def test_singular_values_follow_the_quintic_and_vectors_stay():
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6))
    v, _ = torch.linalg.qr(torch.randn(10, 10))
    s = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    matrix = u @ torch.diag(s) @ v[:6]  # (6, 10), singular values s
    relative = s / s.norm()
    expected = u @ torch.diag(torch.tensor([quintic(float(x)) for x in relative])) @ v[:6]
    assert torch.allclose(newton_schulz(matrix), expected, atol=1e-5)
    assert torch.allclose(newton_schulz(matrix.T), expected.T, atol=1e-5)  # a tall one: the same map


@pytest.mark.parametrize("n", [4, 64, 576])
def test_an_orthogonal_matrix_stays_near_orthogonal_within_the_guaranteed_range(n):
    # Each singular value of an orthogonal n×n is 1/√n of the Frobenius norm, at least 0.02 up
    # to n = 2500; three steps map [0.02, 1] into [0.68, 1.21] (the quintic does not reach 1).
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n))
    singular = torch.linalg.svdvals(newton_schulz(q))
    assert singular.min() > 0.68 and singular.max() < 1.21
    assert torch.allclose(singular, torch.full((n,), quintic(n**-0.5)), atol=1e-4)


def test_a_zero_gradient_gives_a_zero_update():
    assert torch.equal(newton_schulz(torch.zeros(3, 5)), torch.zeros(3, 5))


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (32, 3, 3, 3), (6, 16, 1, 1)])
def test_a_conv_weight_round_trips_through_its_matrix(shape):
    weight = torch.randn(shape)
    matrix = as_matrix(weight)
    assert matrix.shape == (shape[0], shape[1] * shape[2] * shape[3])
    assert torch.equal(matrix[1], weight[1].flatten())  # one row per output channel
    assert torch.equal(from_matrix(matrix, weight), weight)
    channels_last = weight.contiguous(memory_format=torch.channels_last)  # as bf16 training keeps it
    assert torch.equal(as_matrix(channels_last), matrix)


def group_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[set[str], set[str]]:
    name = {id(p): n for n, p in model.named_parameters()}
    muon, adam = (
        {name[id(p)] for group in optimizer.param_groups if group["muon"] is flag for p in group["params"]}
        for flag in (True, False)
    )
    return muon, adam


def test_muon_takes_the_convolutions_before_a_batchnorm_and_adam_the_rest():
    model = build_model("unet", width=4, depth=2, consistency=True, mix="mean", attention=True)
    optimizer = build_optimizer(model, SetConfig(arch="unet", optimizer="muon", lr=1e-3, muon_lr=0.1))
    muon, adam = group_names(model, optimizer)
    assert muon and all(name.endswith(".0.weight") for name in muon)  # the Conv2d of each conv-bn-relu
    # 2 stem + 2 per down step + 2 per fuse: every 3×3 convolution.
    assert len(muon) == 2 + 2 * 2 + 2 * 2
    assert all(model.get_parameter(name).shape[2:] == (3, 3) for name in muon)
    assert muon | adam == {name for name, _ in model.named_parameters()} and not muon & adam
    for name in ("separator.up.0.weight", "separator.up.0.bias", "separator.head.weight", "separator.head.bias"):
        assert name in adam  # transposed convs and the head: not scale-invariant
    assert any(".1.weight" in name for name in adam)  # BatchNorm's scales
    assert any(name.startswith("separator.context.") for name in adam)
    lrs = {group["muon"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == {True: 0.1, False: 1e-3}


def test_adam_is_torch_adam_and_the_seed_has_no_muon_weights():
    assert muon_weights(SeedAutoencoder()) == []
    assert type(build_optimizer(SeedAutoencoder(), SetConfig())) is torch.optim.Adam
    with pytest.raises(ValueError, match="no convolution followed by a BatchNorm"):
        build_optimizer(SeedAutoencoder(), SetConfig(optimizer="muon"))


def steps(model: nn.Module, optimizer: torch.optim.Optimizer, n: int = 3) -> None:
    torch.manual_seed(1)
    for _ in range(n):
        optimizer.zero_grad()
        out_1, out_2 = model(torch.randn(2, 3, 8, 8))
        (out_1.square().mean() + out_2.abs().mean()).backward()
        optimizer.step()


def test_an_adam_group_steps_to_torch_adams_bytes():
    torch.manual_seed(0)
    first = UNetSeparator(width=4, depth=1)
    second = UNetSeparator(width=4, depth=1)
    second.load_state_dict(first.state_dict())
    steps(first, torch.optim.Adam(first.parameters(), lr=1e-2))
    steps(second, MuonAdam(second.parameters(), lr=1e-2))
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))


def test_one_muon_step_by_hand():
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(6.0).view(3, 2, 1, 1) + 1)
    weight = conv.weight.detach().clone()
    optimizer = MuonAdam([{"params": [conv.weight], "muon": True, "lr": 0.24}])
    grad = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]).view(3, 2, 1, 1)
    conv.weight.grad = grad.clone()
    optimizer.step()
    # Nesterov from a zero buffer: buffer = g, direction = g + 0.6 g = 1.6 g; the weight
    # rescaled to norm √3 (3 output channels), then moved by 0.24 of the orthogonalised direction.
    expected = weight * 3**0.5 / weight.norm() - 0.24 * from_matrix(newton_schulz(as_matrix(1.6 * grad)), weight)
    assert torch.allclose(conv.weight, expected, atol=1e-6)
    assert torch.equal(optimizer.state[conv.weight]["momentum_buffer"], grad)


def test_state_dict_round_trip_continues_to_the_same_bytes():
    torch.manual_seed(0)
    model = build_model("unet", width=4, depth=1, consistency=False, mix="mean")
    config = SetConfig(arch="unet", optimizer="muon", lr=1e-3)
    optimizer = build_optimizer(model, config)
    steps(model, optimizer, 2)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_optimizer = copy.deepcopy(optimizer.state_dict())  # its tensors are the live ones
    steps(model, optimizer, 2)
    torch.manual_seed(0)
    again = build_model("unet", width=4, depth=1, consistency=False, mix="mean")
    again.load_state_dict(saved_model)
    restored = build_optimizer(again, config)
    restored.load_state_dict(saved_optimizer)
    steps(again, restored, 2)
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), again.state_dict().values()))
