"""`--model`: a registered model (models:/NAME@ALIAS, models:/NAME/VERSION) or a checkpoint file."""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unmix.errors import UnmixError, first_line

MODEL_URI_SCHEMES = ("models:/", "runs:/")
PROJECT_MARKER = "dvc.yaml"  # the repository root holds it, as DVC itself finds the root

Separate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class ModelError(UnmixError):
    """--model names nothing that loads as a separator."""


@dataclass(frozen=True)
class Separator:
    """A loaded separator: uint8 (B, H, W, 3) mixtures of one size in, both outputs out."""

    separate: Separate
    arch: str
    depth: int
    mix: str | None  # the mixing rule it was trained on, when known
    source: str  # what was loaded, for the user


def find_project_root(cwd: Path, environ: Mapping[str, str]) -> Path | None:
    """DVC_ROOT when set (as the stages), else the nearest folder at or above `cwd` with dvc.yaml."""
    if environ.get("DVC_ROOT"):
        return Path(environ["DVC_ROOT"]).resolve()
    for folder in (cwd.resolve(), *cwd.resolve().parents):
        if (folder / PROJECT_MARKER).is_file():
            return folder
    return None


def project_tracking_uri(cwd: Path, environ: Mapping[str, str]) -> str:
    """The store the stages use: MLFLOW_TRACKING_URI, else the project's tracking.uri, else its mlflow.db.

    Never a stray mlflow.db in the current folder: outside a project, only the variable counts.
    """
    from unmix.tracking.tracker import resolve_tracking_uri

    if environ.get("MLFLOW_TRACKING_URI"):
        return environ["MLFLOW_TRACKING_URI"]
    root = find_project_root(cwd, environ)
    if root is None:
        raise ModelError(
            f"no unmix project ({PROJECT_MARKER}) in {cwd} or above to find the MLflow store in: "
            f"run inside the project, set MLFLOW_TRACKING_URI, or give --model a checkpoint file"
        )
    configured = None
    if (root / "params.yaml").is_file():
        from unmix.config import load_config

        configured = load_config(root / "params.yaml").tracking.uri
    return resolve_tracking_uri(configured, environ, root)


def load_separator(spec: str, cwd: Path, environ: Mapping[str, str]) -> Separator:
    """The separator `spec` names: a model URI in the project's store, or a checkpoint path."""
    if spec.startswith(MODEL_URI_SCHEMES):
        return load_registered(spec, project_tracking_uri(cwd, environ))
    return load_checkpoint_file(Path(spec))


def load_checkpoint_file(path: Path) -> Separator:
    """A `models/<set>.pt` written by the train stage (weights only: nothing is unpickled freely)."""
    if not path.exists():
        raise ModelError(
            f"--model {path}: no such file (expected a checkpoint such as models/best.pt, "
            f"or a registered model such as models:/unmix-best@champion)"
        )
    if not path.is_file():
        raise ModelError(f"--model {path}: a folder; expected a checkpoint file")
    if not zipfile.is_zipfile(path):  # what torch.save writes; anything else is not ours
        raise ModelError(f"--model {path}: not an unmix checkpoint (not a PyTorch file)")
    import torch

    from unmix.evaluation.inference import separate_pictures
    from unmix.model.networks import build_model

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = checkpoint["model_config"]
        model = build_model(**config)
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as error:  # noqa: BLE001 - whatever the file is, it is not one of ours
        why = first_line(error, getattr(error, "message", None))
        raise ModelError(f"--model {path}: not an unmix checkpoint ({why})") from None
    model.eval()
    arch, depth = config["arch"], config["depth"]
    return Separator(
        lambda pictures: separate_pictures(model, pictures, arch, depth),
        arch,
        depth,
        config.get("mix"),
        f"checkpoint {path}",
    )


def load_registered(uri: str, tracking_uri: str) -> Separator:
    """An MLflow model by URI, loaded through pyfunc: the same code path the model server runs."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a few hundred kB, local
    import mlflow
    from mlflow.exceptions import MlflowException

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        why = first_line(error, getattr(error, "message", None))
        raise ModelError(f"--model {uri}: {why} (MLflow store {tracking_uri})") from None
    try:
        config = model.unwrap_python_model().config
    except (AttributeError, MlflowException):
        raise ModelError(f"--model {uri}: not an unmix separator (no separator config)") from None

    def separate(pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = model.predict(pictures)
        return outputs["output_1"], outputs["output_2"]

    return Separator(separate, config["arch"], config["depth"], config.get("mix"), f"{uri} ({tracking_uri})")
