"""The optimizer a set trains with: Adam, or Muon for the convolutions that feed a BatchNorm and
Adam for every other parameter, in one `torch.optim.Optimizer`.

Muon as in Keller Jordan's CIFAR-10 speed runs, airbench94_muon.py at
https://github.com/KellerJordan/cifar10-airbench/blob/096d14d9aa92dcc837ab4f1f288dffea2bbe41b7/airbench94_muon.py
(2025-03): Nesterov momentum, then the update orthogonalised by a quintic Newton–Schulz
iteration, the weight rescaled to a fixed norm before each step. torch's own
`torch.optim.Muon` takes 2-D parameters only and keeps its Newton–Schulz private, so this
file has its own, a dozen lines.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.adam import adam

from unmix.config import SetConfig

Tensor = torch.Tensor

# airbench's quintic p(x) = a x + b x³ + c x⁵, applied to each singular value: the largest
# slope at 0 that still lands near 1, not exactly 1 (below: NS_STEPS).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# airbench94_muon's 3 (Muon's own repository takes 5): singular values at least 0.02 of the
# matrix's Frobenius norm end in [0.68, 1.21]; smaller ones (a gradient's weak directions)
# grow but stay below (p∘p∘p(0.0127) = 0.5).
NS_STEPS = 3
NS_EPS = 1e-7  # airbench's: a zero gradient stays zero instead of dividing by 0
# airbench's momentum, with Nesterov, for the Muon weights; fixed: one-cycle's momentum cycle
# moves Adam's beta1 alone (the Muon group carries `betas` it does not read).
MUON_MOMENTUM = 0.6


def newton_schulz(matrix: Tensor, steps: int = NS_STEPS) -> Tensor:
    """`matrix` with its singular values pushed towards 1, its singular vectors kept.

    Each singular value s becomes p(p(…p(s / ‖matrix‖_F))) (`steps` times, p as
    NS_COEFFICIENTS): an approximately orthogonal U S' V^T. In float32, not airbench's bf16:
    the matrices are small next to a training step's convolutions, and float32 keeps the
    CPU's results bit-identical from one run and one machine to the next.
    """
    x = matrix.float()
    x = x / (x.norm() + NS_EPS)  # Frobenius ≥ spectral norm: every singular value now ≤ 1
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T  # the Gram matrix of the shorter side: the cheaper one
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


def as_matrix(weight: Tensor) -> Tensor:
    """A Conv2d weight (out, in, kh, kw) as airbench orthogonalises it: (out, in·kh·kw), one row
    per output channel. (A ConvTranspose2d's weight is (in, out, kh, kw); `muon_weights` takes
    none.)"""
    return weight.reshape(len(weight), -1)


def from_matrix(matrix: Tensor, like: Tensor) -> Tensor:
    """`as_matrix` undone: `matrix` in the shape of the weight `like`."""
    return matrix.reshape(like.shape)


def muon_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the Conv2d layers directly followed by a BatchNorm (in an nn.Sequential).

    Muon rescales each of its weights to a fixed norm every step, as airbench does; only
    where a BatchNorm follows does that change nothing the network computes (BatchNorm
    divides the scale out). In the U-Net that is every 3×3 convolution (about 90% of the
    weights); its upsampling ConvTranspose2d, 1×1 head and attention block stay with Adam,
    as airbench keeps its head and biases off Muon. The seed model has none.
    """
    found = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for layer, after in zip(module, list(module)[1:]):
                if isinstance(layer, nn.Conv2d) and isinstance(after, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                    found.append(layer.weight)
    return found


class MuonAdam(torch.optim.Optimizer):
    """Muon on the param groups marked `muon`, Adam (torch's own arithmetic) on the others.

    One optimizer, so that the learning-rate schedule, the resume checkpoint
    (`state_dict`) and everything else that holds `training.optimizer` see one object. An
    Adam group steps exactly as `torch.optim.Adam` would (no weight decay, no amsgrad). A
    Muon group's `lr` is a step relative to the weight: each weight is rescaled to norm
    √out (airbench), and the orthogonalised update has norm about √min(out, in·k·k) (√out
    for every 3×3 convolution of the U-Net), so no scaling by shape is needed.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "muon": False, "momentum": MUON_MOMENTUM})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            (self._muon_step if group["muon"] else self._adam_step)(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[Tensor]) -> None:
        momentum = group["momentum"]
        for p in params:
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            buffer = state["momentum_buffer"]
            buffer.mul_(momentum).add_(p.grad)
            direction = p.grad.add(buffer, alpha=momentum)  # Nesterov
            p.mul_(len(p) ** 0.5 / p.norm())
            p.add_(from_matrix(newton_schulz(as_matrix(direction)), p), alpha=-group["lr"])

    def _adam_step(self, group: dict, params: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:  # as torch.optim.Adam starts one: the step count on the CPU
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        adam(
            params,
            [p.grad for p in params],
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            [state["step"] for state in states],
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=0.0,
            eps=group["eps"],
            maximize=False,
        )


def build_optimizer(model: nn.Module, config: SetConfig) -> torch.optim.Optimizer:
    """The set's optimizer over `model`'s parameters, each group's `lr` its peak.

    `optimizer` "adam": torch's Adam at `lr`, as every set trained before Muon existed.
    "muon": `muon_weights` on Muon at `muon_lr`, the rest on Adam at `lr`.
    """
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    muon = muon_weights(model)
    if not muon:  # parse_config refuses arch seed with muon first
        raise ValueError("optimizer muon: the model has no convolution followed by a BatchNorm")
    on_muon = {id(p) for p in muon}
    rest = [p for p in model.parameters() if id(p) not in on_muon]
    return MuonAdam([{"params": muon, "muon": True, "lr": config.muon_lr}, {"params": rest}], lr=config.lr)
