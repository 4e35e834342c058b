"""Separator networks: one mixture in, two images out, all in [-1, 1]."""

from __future__ import annotations

import torch
from torch import nn

from unmix.config import ATTENTION_HEADS, SetConfig
from unmix.model.mixing import mixture_consistent

Tensor = torch.Tensor


class SeedAutoencoder(nn.Module):
    """The seed notebook's `Autoencoder1`, layer for layer: one encoder, two decoders."""

    def __init__(self) -> None:
        super().__init__()
        act = nn.LeakyReLU
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2, padding=1),
            act(),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, 4, stride=1, padding=1),
            act(),  # (B, 64, 15, 15)
            nn.Conv2d(64, 64, 4, stride=1, padding=1),
            act(),  # (B, 64, 14, 14)
            nn.Conv2d(64, 64, 4, stride=2, padding=1),
            act(),  # (B, 64, 7, 7)
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


class UNetSeparator(nn.Module):
    """An encoder-decoder with a skip connection at every scale and a two-image head.

    `width` channels at full resolution, doubling at each of `depth` stride-2 steps; the
    decoder upsamples back, concatenating the encoder's features of the same scale.
    `top_width`, when given, replaces `width` at full resolution alone: there a convolution
    costs four times what it costs one scale down. With `attention`, the coarsest features
    pass through a `GlobalContext` block.
    """

    def __init__(self, width: int = 32, depth: int = 3, attention: bool = False, top_width: int | None = None) -> None:
        super().__init__()
        channels = [top_width or width] + [width * 2**level for level in range(1, depth + 1)]
        self.stem = _conv_block(3, channels[0])
        self.down = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(c_in, c_out, stride=2), _conv_bn_relu(c_out, c_out))
            for c_in, c_out in zip(channels, channels[1:])
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(c_out, c_in, 2, stride=2) for c_in, c_out in zip(channels, channels[1:])
        )
        self.fuse = nn.ModuleList(_conv_block(2 * c, c) for c in channels[:-1])
        self.head = nn.Conv2d(channels[0], 6, 1)  # two RGB images
        self.context = GlobalContext(channels[-1]) if attention else None

    def forward(self, mixture: Tensor) -> tuple[Tensor, Tensor]:
        features = self.stem(mixture)  # (B, w, 32, 32)
        skips = []
        for down in self.down:
            skips.append(features)
            features = down(features)  # (B, 2c, H/2, W/2)
        if self.context is not None:
            features = self.context(features)  # (B, c, 32/2^depth, 32/2^depth)
        for up, fuse in zip(reversed(self.up), reversed(self.fuse)):
            features = fuse(torch.cat([up(features), skips.pop()], dim=1))  # (B, c, 2H, 2W)
        out = self.head(features)  # (B, 6, 32, 32)
        return out[:, :3], out[:, 3:]


class GlobalContext(nn.Module):
    """A transformer block over every position of a coarse feature map.

    Which edges and colours belong to which image is a whole-picture question; at 4×4 a
    convolution sees a neighbourhood, attention the whole picture, for little arithmetic
    (16 positions). No position embedding: the convolutions around it carry where things
    are, and the block works at any input size.
    """

    def __init__(self, channels: int, heads: int = ATTENTION_HEADS) -> None:
        super().__init__()
        self.attention_norm = nn.GroupNorm(1, channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.GroupNorm(1, channels),
            nn.Conv2d(channels, 2 * channels, 1),
            nn.GELU(),
            nn.Conv2d(2 * channels, channels, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        batch, channels, height, width = features.shape
        tokens = self.attention_norm(features).flatten(2).transpose(1, 2)  # (B, HW, C)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        features = features + attended.transpose(1, 2).reshape(batch, channels, height, width)
        return features + self.mlp(features)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    # No conv bias: BatchNorm's shift makes it redundant.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn_relu(c_in, c_out), _conv_bn_relu(c_out, c_out))


class ConsistentSeparator(nn.Module):
    """Wraps a separator so its outputs always mix back to the input (mixture consistency)."""

    def __init__(self, separator: nn.Module, mix: str) -> None:
        super().__init__()
        self.separator, self.mix = separator, mix

    def forward(self, mixture: Tensor) -> tuple[Tensor, Tensor]:
        out_1, out_2 = self.separator(mixture)
        return mixture_consistent(out_1, out_2, mixture, self.mix)


ARCHITECTURES = {"seed": SeedAutoencoder, "unet": UNetSeparator}


def build_model(
    arch: str,
    *,
    width: int = 32,
    depth: int = 3,
    consistency: bool = False,
    mix: str = "mean",
    attention: bool = False,
    top_width: int | None = None,
) -> nn.Module:
    """A freshly initialised separator; `width`, `depth`, `attention` and `top_width` shape the
    unet only."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    separator = UNetSeparator(width, depth, attention, top_width) if arch == "unet" else SeedAutoencoder()
    return ConsistentSeparator(separator, mix) if consistency else separator


def model_config(
    arch: str,
    width: int,
    depth: int,
    consistency: bool,
    mix: str,
    attention: bool = False,
    top_width: int | None = None,
) -> dict:
    """The keyword arguments of `build_model` that rebuild a trained model.

    `attention` and `top_width` are written only when set, so a model without them keeps the
    config (and the checkpoint bytes) it had before the options existed."""
    config = {"arch": arch, "width": width, "depth": depth, "consistency": consistency, "mix": mix}
    if attention:
        config["attention"] = True
    if top_width is not None:
        config["top_width"] = top_width
    return config


def set_model_config(set_config: SetConfig) -> dict:
    """What rebuilds this set's model, written here alone: stored in its model file beside the
    weights, logged with its MLflow model, and part of its resume checkpoints' digest."""
    return model_config(
        set_config.arch,
        set_config.width,
        set_config.depth,
        set_config.consistency,
        set_config.mix,
        set_config.attention,
        set_config.top_width,
    )
