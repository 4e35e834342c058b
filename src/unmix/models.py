"""Separator networks: one mixture in, two images out, all in [-1, 1]."""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


class SeedAutoencoder(nn.Module):
    """The seed notebook's `Autoencoder1`, layer for layer: one encoder, two decoders."""

    def __init__(self) -> None:
        super().__init__()
        act = nn.LeakyReLU
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2, padding=1), act(),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, 4, stride=1, padding=1), act(),  # (B, 64, 15, 15)
            nn.Conv2d(64, 64, 4, stride=1, padding=1), act(),  # (B, 64, 14, 14)
            nn.Conv2d(64, 64, 4, stride=2, padding=1), act(),  # (B, 64, 7, 7)
            nn.Conv2d(64, 128, 6),  # (B, 128, 2, 2): the latent
        )
        # The seed puts its only dropout after the second layer of decoder 1 and after the
        # third of decoder 2.
        self.decoder_1 = _seed_decoder(dropout_after=2)
        self.decoder_2 = _seed_decoder(dropout_after=3)

    def forward(self, mixture: Tensor) -> tuple[Tensor, Tensor]:
        latent = self.encoder(mixture)
        return self.decoder_1(latent), self.decoder_2(latent)


def _seed_decoder(dropout_after: int) -> nn.Sequential:
    act = nn.LeakyReLU
    transposed = [
        nn.ConvTranspose2d(128, 64, 2, stride=1),  # (B, 64, 3, 3)
        nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1, output_padding=1),  # (B, 64, 7, 7)
        nn.ConvTranspose2d(64, 64, 4, stride=1),  # (B, 64, 10, 10)
        nn.ConvTranspose2d(64, 32, 4, stride=1),  # (B, 32, 13, 13)
        nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1, output_padding=1),  # (B, 3, 27, 27)
    ]
    layers: list[nn.Module] = []
    for index, layer in enumerate(transposed, start=1):
        layers.append(layer)
        if index < len(transposed):
            layers.append(act())
        if index == dropout_after:
            layers.append(nn.Dropout2d(p=0.3))
    layers += [nn.UpsamplingNearest2d(scale_factor=32 / 27), nn.Tanh()]  # (B, 3, 32, 32)
    return nn.Sequential(*layers)


ARCHITECTURES = {"seed": SeedAutoencoder}


def build_model(arch: str) -> nn.Module:
    """A freshly initialised separator of architecture `arch`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]()


def save_checkpoint(model: nn.Module, path, arch: str, metadata: dict) -> None:
    """Weights plus what rebuilds the model (`arch`) and where it came from, written atomically."""
    from unmix.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"arch": arch, "state_dict": model.state_dict(), "metadata": metadata}, tmp)


def load_checkpoint(path) -> tuple[nn.Module, dict]:
    """The model (eval mode) and metadata saved by `save_checkpoint`."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(checkpoint["arch"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model, checkpoint["metadata"]
