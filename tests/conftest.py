"""Shared fixtures: a pre-made MLflow store and a tiny temporary copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a temporary copy of the project needs to run `dvc repro` on its own.
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvcignore")

TINY_DATA = {"shapes_train": 120, "shapes_test": 40, "n_train": 32, "n_valid": 8, "n_test": 12}
TINY_SET = {"epochs": 3, "batch_size": 16, "log_images_every": 2}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny models.

    Tiny convolutions gain nothing from intra-op threads, and on a busy 2-core machine
    OpenMP threads waiting on each other can make such tests tens of times slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite store, made once: creating one costs ~8 s."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, mlflow_store_template: Path) -> str:
    """A private copy of the pre-made store, as a tracking URI."""
    path = tmp_path / "mlflow.db"
    shutil.copy(mlflow_store_template, path)
    return f"sqlite:///{path}"


def run_command(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH (dvc runs each stage's `python`)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def git(cwd: Path, *args: str) -> str:
    """Run git with a fixed identity in `cwd`."""
    return run_command(["git", "-c", "user.name=unmix-tests", "-c", "user.email=tests@unmix", *args], cwd).stdout


def write_params(project: Path, edit) -> None:
    """Load the project's params.yaml, let `edit(params)` change it, write it back."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def tiny_project(tmp_path: Path, mlflow_store_template: Path) -> Path:
    """A git + DVC copy of the project with tiny data and epochs, and a pre-made mlflow.db."""
    return make_tiny_project(tmp_path / "project", mlflow_store_template)


def make_tiny_project(project: Path, mlflow_store_template: Path) -> Path:
    """What `tiny_project` makes, at `project` (module-scoped fixtures build theirs with it)."""
    for name in PROJECT_FILES:
        source, target = REPO / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    (project / ".gitignore").write_text("/mlflow.db\n/mlflow.db.lock\n/mlartifacts/\n")

    def shrink(params: dict) -> None:
        params["data"].update(TINY_DATA)
        params["figures"]["n_pairs"] = 3
        for body in params["sets"].values():
            body.update(TINY_SET)

    write_params(project, shrink)
    shutil.copy(mlflow_store_template, project / "mlflow.db")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "tiny project")
    return project
