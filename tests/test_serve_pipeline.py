"""End to end: `dvc repro evaluate@best` registers the model; `unmix separate` and the model server use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_project, run_command
from unmix.serve.pictures import read_picture, write_picture
from unmix.serve.server import invoke, served_model

pytestmark = pytest.mark.e2e  # `dvc repro evaluate@best`, then the served model

UNMIX = Path(sys.executable).parent / "unmix"
CHAMPION_URI = "models:/unmix-best@champion"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> Path:
    """conftest's tiny project, once for this module, with `best` trained and evaluated."""
    project = make_tiny_project(tmp_path_factory.mktemp("serve") / "project", mlflow_store_template)
    first = run_command(["dvc", "repro", "evaluate@best"], project)
    assert "evaluate@best: registered as unmix-best version 1; champion: version 1" in first.stdout
    return project


def store(project: Path):
    import mlflow

    uri = f"sqlite:///{project / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_evaluate_registers_the_run_once_with_metrics_digest_and_commit(project: Path) -> None:
    client = store(project)
    (version,) = client.search_model_versions("name = 'unmix-best'")
    (run,) = client.search_runs([client.get_experiment_by_name("unmix").experiment_id])
    metrics = json.loads((project / "reports" / "best" / "metrics.json").read_text())
    meta = json.loads((project / "data" / "subset" / "meta.json").read_text())
    assert version.run_id == run.info.run_id
    assert float(version.tags["test/best/psnr"]) == pytest.approx(metrics["test"]["best"]["psnr"], rel=1e-12)
    assert float(version.tags["test/seed_l1"]) == pytest.approx(metrics["test"]["seed_l1"], rel=1e-12)
    assert version.tags["unmix.data_digest"] == meta["digest"]
    assert version.tags["git_commit"] == run.data.tags["mlflow.source.git.commit"]
    assert int(client.get_model_version_by_alias("unmix-best", "champion").version) == 1

    again = run_command(["dvc", "repro", "--single-item", "--force", "evaluate@best"], project)
    assert "evaluate@best: already registered as unmix-best version 1; champion: version 1" in again.stdout
    assert len(client.search_model_versions("name = 'unmix-best'")) == 1


def test_separate_by_alias_from_a_subfolder_and_the_served_model_agree(project: Path) -> None:
    with np.load(project / "data" / "subset" / "test.npz") as test:
        a, b = test["a"][0], test["b"][0]
    folder = project / "tryout"
    folder.mkdir()
    (folder / "mlflow.db").write_bytes(b"")  # a stray store in the current folder: never read
    write_picture(folder / "a.png", a)
    write_picture(folder / "b.png", b)
    run_command([str(UNMIX), "mix", "a.png", "b.png", "-o", "mixture.png"], folder)
    separated = run_command([str(UNMIX), "separate", "mixture.png", "--out", "out"], folder)
    assert separated.stdout.splitlines()[0] == (
        f"model: unet, trained on the mean mix ({CHAMPION_URI} (sqlite:///{project / 'mlflow.db'}))"
    )
    mixture = read_picture(folder / "mixture.png")
    outputs = [read_picture(folder / "out" / f"mixture_{i}.png") for i in (1, 2)]

    with served_model(CHAMPION_URI, f"sqlite:///{project / 'mlflow.db'}") as url:
        served_1, served_2 = invoke(url, mixture[None])
    np.testing.assert_array_equal(served_1[0], outputs[0])
    np.testing.assert_array_equal(served_2[0], outputs[1])
    leftover = subprocess.run(["pgrep", "-f", url.rsplit(":", 1)[1]], capture_output=True, text=True)
    assert leftover.stdout == ""  # the server and its workers are gone
