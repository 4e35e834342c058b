"""The logged separator: pickle-free, self-contained, loads in a fresh process from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unmix.evaluation.inference import example_mixture, separate_pictures
from unmix.model.networks import build_model, model_config
from unmix.tracking.logged_model import log_separator
from unmix.tracking.registry import register_run_model
from unmix.tracking.tracker import _apply as apply_tracking_call

PICKLE_PROTOCOLS = {bytes([0x80, protocol]) for protocol in range(2, 6)}  # PROTO opcode + version


def test_a_model_without_its_config_is_refused_before_anything_is_logged() -> None:
    with pytest.raises(ValueError, match="no model config came with it"):
        log_separator(torch.nn.Linear(2, 2), None)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> dict:
    """A tiny U-Net logged by the tracking worker's model call, as train@<set> logs it.

    The call runs here, not in a worker: a worker is niced, and on a loaded machine it waits.
    """
    import mlflow

    folder = tmp_path_factory.mktemp("logged")
    shutil.copy(mlflow_store_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    torch.manual_seed(0)
    model = build_model("unet", width=8, depth=2, consistency=False, mix="mean").eval()
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("unmix", artifact_location=(folder / "mlartifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment_id) as run:
        apply_tracking_call(mlflow, ("model", model, model_config("unet", 8, 2, False, "mean"), "model"))
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("unmix")
    (logged_model,) = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    artifacts = Path(logged_model.artifact_location.removeprefix("file://"))
    return {
        "uri": uri,
        "folder": folder,
        "model": model,
        "run_id": run.info.run_id,
        "client": client,
        "logged_model": logged_model,
        "artifacts": artifacts,
    }


def test_the_artifact_holds_no_pickle(logged: dict) -> None:
    files = [p for p in logged["artifacts"].rglob("*") if p.is_file()]
    names = {p.relative_to(logged["artifacts"]).as_posix() for p in files}
    assert {
        "MLmodel",
        "model_code.py",
        "artifacts/weights.safetensors",
        "code/unmix/model/networks.py",
        "code/unmix/tracking/logged_model.py",
        "input_example.json",
        "requirements.txt",
    } <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".pt", ".pth", ".pyc"))]
    for path in files:
        head = path.read_bytes()[:2]
        assert head not in PICKLE_PROTOCOLS, f"{path} starts like a pickle"
        assert not zipfile.is_zipfile(path), f"{path} is a zip (torch.save's format holds a pickle)"
    flavor = yaml.safe_load((logged["artifacts"] / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor  # the key a cloudpickled PythonModel would have
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert flavor["config"] == model_config("unet", 8, 2, False, "mean")  # as given, not read from the layers


def test_weights_are_the_state_dict_in_safetensors(logged: dict) -> None:
    from safetensors.torch import load_file

    weights = logged["artifacts"] / "artifacts" / "weights.safetensors"
    header_size = struct.unpack("<Q", weights.read_bytes()[:8])[0]
    header = json.loads(weights.read_bytes()[8 : 8 + header_size])
    state = logged["model"].state_dict()
    assert set(header) - {"__metadata__"} == set(state)
    loaded = load_file(weights)
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_signature_and_input_example(logged: dict) -> None:
    from mlflow.models import Model

    model = Model.load(str(logged["artifacts"]))
    specs = [*model.signature.inputs.inputs, *model.signature.outputs.inputs]
    assert [spec.name for spec in specs] == [None, "output_1", "output_2"]
    assert all(spec.type == np.dtype(np.uint8) and spec.shape == (-1, -1, -1, 3) for spec in specs)
    example = np.asarray(json.loads((logged["artifacts"] / "input_example.json").read_text()))
    np.testing.assert_array_equal(example, example_mixture())
    assert logged["logged_model"].model_type == "unmix-separator"


@pytest.mark.slow  # a fresh process importing mlflow and loading the model twice
def test_loads_in_a_fresh_process_from_another_folder_by_id_and_by_alias(logged: dict, tmp_path: Path) -> None:
    client, run_id = logged["client"], logged["run_id"]
    register_run_model(
        client, run_id=run_id, set_name="best", test_metrics={"test/best/psnr": 20.0}, digest="d" * 64, commit=None
    )
    pictures = np.random.default_rng(1).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    np.save(tmp_path / "pictures.npy", pictures)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = f"""
import json, sys, numpy as np, mlflow
pictures = np.load({str(tmp_path / "pictures.npy")!r})
for name, uri in (("id", "models:/{logged["logged_model"].model_id}"), ("alias", "models:/unmix-best@champion")):
    outputs = mlflow.pyfunc.load_model(uri).predict(pictures)
    np.savez(name + ".npz", **outputs)
import unmix
print(json.dumps({{"unmix": unmix.__file__, "modules": sorted(m for m in sys.modules if m.startswith("unmix"))}}))
"""
    # No PYTHONPATH: unmix comes from the model's own code folder; pickle refused, as by default.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"MLFLOW_TRACKING_URI": logged["uri"], "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "/code/unmix/" in report["unmix"]
    expected_1, expected_2 = separate_pictures(logged["model"], pictures, "unet", 2)
    for name in ("id", "alias"):
        with np.load(elsewhere / f"{name}.npz") as outputs:
            np.testing.assert_array_equal(outputs["output_1"], expected_1)
            np.testing.assert_array_equal(outputs["output_2"], expected_2)
