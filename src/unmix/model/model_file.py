"""The model file, models/<set>.pt: a trained separator's weights with the config that rebuilds
them (not a resume checkpoint: those are unmix.training.resume's)."""

from __future__ import annotations

import torch
from torch import nn

from unmix.model.networks import build_model


def save_model(model: nn.Module, path, config: dict, metadata: dict) -> None:
    """Weights plus the `model_config` that rebuilds them and where they came from, atomically.

    The same weights and metadata give the same bytes: a DVC output must not change when
    nothing did. Hence a file object, since torch names the archive inside after a path it is
    given (here the temporary one), and no run id or time in `metadata`.
    """
    from unmix.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save({"model_config": config, "state_dict": model.state_dict(), "metadata": metadata}, file)


def load_model(path) -> tuple[nn.Module, dict]:
    """The model (eval mode) and metadata saved by `save_model`; a damaged file is one line."""
    from unmix.errors import reading

    with reading(path, "train"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["state_dict"])
        metadata = checkpoint["metadata"]
    model.eval()
    return model, metadata
