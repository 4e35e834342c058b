"""Shared fixtures: a pre-made MLflow store, a tiny temporary copy of the project (also reproduced
once per session), a team MLflow server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a temporary copy of the project needs to run `dvc repro` on its own.
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvcignore")

# A shell starts a background job (`make test &`, `nohup`) with SIGINT ignored, and Python
# then never raises KeyboardInterrupt, nor do the stages the tests start, which inherit the
# ignored signal through exec. The tests that press Ctrl-C need it as a terminal gives it.
signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_DATA = {"shapes_train": 120, "shapes_test": 40, "n_train": 32, "n_valid": 8, "n_test": 12}
# validate_every 1: the tests follow each epoch's validation (`best` validates every fifth
# epoch by default, with test-time flips, to save time); no flips: one pass.
TINY_SET = {"epochs": 3, "batch_size": 16, "log_images_every": 2, "validate_every": 1, "test_flips": False}


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


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the venv's bin first on PATH (dvc runs each stage's `python`).

    MLFLOW_TRACKING_URI and DVC_ROOT are dropped, so a command sees the project it runs in;
    `extra` adds variables on top (a test's own tracking server, say).
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    return env | (extra or {})


def run_command(
    args: list[str],
    cwd: Path,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run a command in `command_env(env)`; fail with its output when it fails and `check`.

    With `timeout`, a command still running then is killed (subprocess.TimeoutExpired)."""
    env = command_env(env)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
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
    """What `tiny_project` makes, at `project` (for fixtures of a wider scope)."""
    for name in PROJECT_FILES:
        source, target = REPO / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    (project / ".gitignore").write_text(
        "/mlflow.db\n/mlflow.db.lock\n/mlartifacts/\n/checkpoints/\n/reports/wall_time/\n/mlflow-spool/\n"
    )

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


SEED_ONLY = {"seed"}  # the set `reproduced_seed_project` keeps


@pytest.fixture(scope="session")
def reproduced_seed_project(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> Path:
    """`tiny_project` with the `seed` set alone, committed, then `dvc repro`: made once per session.

    For the `e2e` tests that need every stage's outputs (about a minute and a half on 2
    cores). Never change it: copy it with `copy_project` and work on the copy. A copy's
    MLflow experiment still keeps its artifacts in this project's mlartifacts/ (the
    location is absolute in mlflow.db), so a test that reads artifacts back should
    reproduce its own project instead.
    """
    project = make_tiny_project(tmp_path_factory.mktemp("reproduced") / "project", mlflow_store_template)
    write_params(project, lambda p: p.update(sets={name: p["sets"][name] for name in SEED_ONLY}))
    git(project, "commit", "-qam", "the seed set alone")
    run_command(["dvc", "repro"], project)
    return project


def copy_project(source: Path, target: Path) -> Path:
    """A private copy of a (reproduced) project: git, DVC cache, outputs and mlflow.db."""
    shutil.copytree(source, target, symlinks=True)
    return target


@dataclass(frozen=True)
class TeamServer:
    """A running `python -m unmix.team.server`: MLflow on a throwaway PostgreSQL cluster."""

    url: str
    artifacts: Path
    cluster_root: Path
    log: Path


def require_postgres() -> None:
    """Skip without PostgreSQL's server programs; in CI (CI=true), fail instead: CI must have them."""
    from unmix.team import postgres

    try:
        postgres.find_server_programs()
        postgres.server_user_prefix()
    except postgres.PostgresError as error:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs PostgreSQL (.ci/run installs it): {error}")
        pytest.skip(f"no PostgreSQL here: {error}")


SERVER_READY_TIMEOUT_S = 300  # initdb, schema, two workers importing mlflow, on a busy 2-core machine
SERVER_STOP_TIMEOUT_S = 90


@pytest.fixture(scope="session")
def team_server() -> Iterator[TeamServer]:
    """`python -m unmix.team.server` (what `make server` runs) on a new cluster and free ports.

    The cluster lives under /tmp, not in pytest's 0700 folders: its server programs run as
    the postgres user when the tests run as root. Teardown stops the launcher the way Ctrl-C
    does and fails if it left a process (server, worker, postmaster) running.
    """
    import psutil

    from unmix.services import free_port
    from unmix.team import postgres, server

    require_postgres()
    root = Path(tempfile.mkdtemp(prefix="unmix-team-"))
    root.chmod(0o755)  # the postgres user must get into the cluster folder inside
    log = root / "launcher.log"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "unmix.team.server",
        "--cluster",
        str(root / "postgres"),
        "--artifacts-destination",
        str(root / "artifacts"),
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    with log.open("w") as out:
        launcher = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=command_env()
        )
    descendants: list = []
    try:
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while server.READY_LINE not in log.read_text():
            if launcher.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the MLflow server launcher did not get ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        descendants = psutil.Process(launcher.pid).children(recursive=True)
        yield TeamServer(
            url=server.client_url("127.0.0.1", port),
            artifacts=root / "artifacts",
            cluster_root=root / "postgres",
            log=log,
        )
    finally:
        _stop_launcher(launcher)
        left = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for process in left:
            process.kill()
        cluster = postgres.load_cluster(root / "postgres")
        cluster_running = cluster is not None and cluster.is_running()
        if cluster_running:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left and not cluster_running, (
            f"left running after the launcher stopped: {[p.pid for p in left]}, cluster: {cluster_running}"
        )


def _stop_launcher(launcher: subprocess.Popen) -> None:
    """SIGTERM, as `kill` or a CI runner does; SIGKILL the group if it has not stopped in time."""
    if launcher.poll() is not None:
        return
    os.killpg(launcher.pid, signal.SIGTERM)
    try:
        launcher.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
