"""A trained separator as a pickle-free MLflow model (MLflow's models-from-code).

The logged model holds the weights as safetensors, `model_code.py` (which names the
`SeparatorModel` class below), the `unmix` package as it was at training time, and the
`model_config` that rebuilds the network (arch, width, depth, consistency, mix) in the
MLmodel file, with a signature and an input example. Loading reads the config, builds the
network with `unmix.model.networks.build_model` and loads the state dict: nothing is unpickled.

Why models-from-code rather than a pickled PythonModel or `mlflow.pytorch`: both of those
store a cloudpickle of Python objects, which runs arbitrary code when loaded, which MLflow
refuses to load where MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false (its default in 3.17 is true:
pickles load unless a person or a platform turns them off), and which breaks as soon as a
class moves. Models-from-code is
MLflow's own pickle-free route for custom models; the weights go through safetensors, a
format that holds tensors and nothing else.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import LoggedModelOutput
from torch import nn

from unmix.names import MODEL_TYPE  # the logged model's type: what the registry accepts

WEIGHTS = "weights"  # the artifact key of the safetensors state dict
MODEL_CODE = Path(__file__).with_name("model_code.py")
# Logged beside torch: what the model needs at load time, pinned to this environment.
REQUIREMENTS = ("torch", "safetensors", "numpy")


class SeparatorModel(mlflow.pyfunc.PythonModel):
    """uint8 mixtures (batch, height, width, 3) in; {"output_1", "output_2"}, same shape, out."""

    # The logged signature validates inputs. Without this, MLflow inspects `predict` for type
    # hints as the class is defined and warns on every train stage's stderr that it has none
    # (under its own "once" filter, which a filter of ours cannot override).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from safetensors.torch import load_file

        from unmix.model.networks import build_model

        self.config = dict(context.model_config)
        model = build_model(**build_arguments(self.config))
        model.load_state_dict(load_file(context.artifacts[WEIGHTS]))
        self.model = model.eval()

    # No type hints: MLflow would read them as a schema of its own, beside the signature.
    def predict(self, context, model_input, params=None):
        from unmix.evaluation.inference import separate_pictures

        out_1, out_2 = separate_pictures(self.model, np.asarray(model_input), self.config["arch"], self.config["depth"])
        return {"output_1": out_1, "output_2": out_2}


def build_arguments(config: dict) -> dict:
    """`build_model` keywords from a stored config (a mix of None: the model never uses it)."""
    return {**config, "mix": config.get("mix") or "mean"}


def signature() -> Any:
    """uint8 (batch, height, width, 3) in; two named tensors of the same shape out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    pictures = (-1, -1, -1, 3)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), pictures)]),
        outputs=Schema(
            [TensorSpec(np.dtype(np.uint8), pictures, "output_1"), TensorSpec(np.dtype(np.uint8), pictures, "output_2")]
        ),
    )


def requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_separator(model: nn.Module, config: dict | None, name: str = "model") -> str:
    """Log `model` (on the CPU) to the active run as MLflow model `name`; return its model id.

    `config` is the `model_config` that built it (unmix.model.networks.set_model_config),
    stored beside the weights: what rebuilds the network, and its `mix` tells a user how to
    make a mixture for it. Never read back from the layers.
    """
    if config is None:
        raise ValueError(
            f"MLflow model {name!r}: no model config came with it (a spool from an older "
            f"unmix?); log it again from its model file"
        )
    from safetensors.torch import save_file

    import unmix
    from unmix.evaluation.inference import example_mixture

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.safetensors"
        save_file({key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, weights)
        # The package as it is now: the model loads with the code that trained it, in any
        # environment that has torch, wherever (or whether) unmix is installed.
        package = Path(tmp) / "unmix"
        shutil.copytree(Path(unmix.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
        run_id = mlflow.active_run().info.run_id
        model_id = _new_logged_model(name, run_id)
        _outside_the_run(
            lambda: mlflow.pyfunc.log_model(
                name=name,
                python_model=MODEL_CODE,
                artifacts={WEIGHTS: str(weights)},
                model_config=config,
                code_paths=[str(package)],
                signature=signature(),
                input_example=example_mixture(),
                pip_requirements=requirements(),
                model_type=MODEL_TYPE,
                model_id=model_id,
            )
        )
    mlflow.MlflowClient().log_outputs(run_id, models=[LoggedModelOutput(model_id, step=0)])
    return model_id


def _outside_the_run(log: Callable[[], Any]) -> Any:
    """`log()` in a thread of its own, where no run is active (MLflow's runs are per thread).

    Inside the run, `log_model` copies every run metric logged at the model's step (0) onto
    the model: the run's first system metrics sample (CPU, memory, disk) showed on the
    model's page beside its test metrics. Outside it, the model (created for the run
    beforehand, `_new_logged_model`) gets only what it is given; the run's output link is
    then logged by hand.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = log()
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="log-model")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _new_logged_model(name: str, run_id: str) -> str:
    """A pending LoggedModel of the run, with the run's params and our type (as `log_model`
    would make it inside the run)."""
    params = mlflow.MlflowClient().get_run(run_id).data.params
    return mlflow.initialize_logged_model(
        name=name, source_run_id=run_id, params=params, model_type=MODEL_TYPE
    ).model_id
