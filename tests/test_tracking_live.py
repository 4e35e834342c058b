"""Tracking while the real train stage runs: how soon metrics arrive, and a server that goes away.

Both tests watch a real stage process from outside, as a person with `mlflow ui` would:
this test process polls the store with MlflowClient and reads the stage's progress lines
as they come, timestamping each.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, run_command, write_params
from unmix.services import free_port

pytestmark = pytest.mark.e2e  # a real train stage through `dvc repro`

EPOCH_LINE = re.compile(r"^train: epoch (\d+)/(\d+)")
ARRIVAL_LIMIT_S = 10.0


def trainable(project: Path, epochs: int, n_train: int = 1000) -> None:
    """The seed set on generated images: with 1,000, epochs of about a second on two cores, as in the default run."""

    def edit(params: dict) -> None:
        params["data"].update(shapes_train=1200, shapes_test=200, n_train=n_train, n_valid=64, n_test=64)
        params["sets"]["seed"].update(epochs=epochs, batch_size=192, log_images_every=5)

    write_params(project, edit)


def stage_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("DVC_ROOT", None)
    if "MLFLOW_TRACKING_URI" not in extra:
        env.pop("MLFLOW_TRACKING_URI", None)
    return env


class Watched:
    """A running process whose stderr lines are kept with the time each one came."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.lines: list[tuple[float, str]] = []
        self.stdout = ""
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.lines.append((time.time(), line.rstrip("\n")))

    def _read_stdout(self) -> None:
        self.stdout = self.process.stdout.read()

    def epoch_ends(self) -> dict[int, float]:
        """When the stage printed the end of each epoch."""
        return {int(m.group(1)): at for at, line in self.lines if (m := EPOCH_LINE.match(line))}

    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    @contextlib.contextmanager
    def paused(self):
        """Training held still (its tracking worker, a child process, runs on), so a test's own slow
        steps, such as a server restart, fall between two epochs however fast the machine trains."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.stderr()}") from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code


def find_run(client, experiment: str = "unmix"):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    return runs[0] if runs else None


def test_each_epochs_metrics_reach_the_store_within_seconds_of_the_epoch(tiny_project: Path) -> None:
    import mlflow

    epochs = 25
    trainable(tiny_project, epochs)
    run_command(["dvc", "repro", "subset"], tiny_project)  # data first: the clock is for training
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tiny_project / 'mlflow.db'}")
    stage = Watched(["dvc", "repro", "train@seed"], tiny_project, stage_env())
    arrived: dict[tuple[str, int], float] = {}
    run = None
    while True:
        running = stage.process.poll() is None
        run = run or find_run(client)
        if run is not None:
            for key in ("train/l1", "valid/l1"):
                for metric in client.get_metric_history(run.info.run_id, key):
                    arrived.setdefault((key, metric.step), time.time())
        if not running:
            break
        time.sleep(0.25)
    assert stage.wait(timeout=60) == 0, stage.stderr()

    ends = stage.epoch_ends()
    assert sorted(ends) == list(range(1, epochs + 1)), stage.stderr()  # visible through `dvc repro`
    delays = {
        (key, epoch): arrived[(key, epoch)] - ends[epoch]
        for key in ("train/l1", "valid/l1")
        for epoch in ends
        if (key, epoch) in arrived
    }
    missing = [(key, epoch) for key in ("train/l1", "valid/l1") for epoch in ends if (key, epoch) not in arrived]
    worst = max(delays.values())
    print(
        f"\narrival after the epoch's end: first epoch {delays[('train/l1', 1)]:.1f} s, "
        f"median {sorted(delays.values())[len(delays) // 2]:.1f} s, worst {worst:.1f} s "
        f"over {len(delays)} metric values; epochs took "
        f"{(ends[epochs] - ends[1]) / (epochs - 1):.2f} s"
    )
    assert not missing
    assert worst <= ARRIVAL_LIMIT_S, sorted(delays.items(), key=lambda item: -item[1])[:5]
    assert "Creating initial MLflow database tables" not in stage.stderr()


class MlflowServer:
    """A real `mlflow server` on a localhost port, stopped and started again at will."""

    def __init__(self, store: Path, artifacts: Path, port: int) -> None:
        self.args = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{store}",
            "--artifacts-destination",
            artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        self.uri = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        # No job runner (as unmix.team.server): seven processes importing mlflow at each start.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"mlflow server did not come up on {self.uri}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and its uvicorn workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture
def mlflow_server(tmp_path: Path, mlflow_store_template: Path):
    store = tmp_path / "server.db"
    shutil.copy(mlflow_store_template, store)
    server = MlflowServer(store, tmp_path / "server-artifacts", free_port())
    server.start()
    yield server
    server.stop()


def wait_for(condition, timeout: float, what: str, stage: Watched) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or stage.process.poll() is not None:
            raise AssertionError(f"no {what}:\n{stage.stderr()}")
        time.sleep(0.25)


@pytest.mark.server  # a real `mlflow server`, stopped and started
def test_a_server_stopped_mid_run_costs_no_training_and_no_metric(tiny_project: Path, mlflow_server) -> None:
    import mlflow

    # Enough epochs for two before the stop, three with the server down and some after the
    # restart; `paused` holds training still while the server stops and starts, so the
    # restart's seconds need no epochs to cover them (30 epochs cost a minute more).
    epochs = 12
    trainable(tiny_project, epochs, n_train=512)
    run_command(["dvc", "repro", "subset"], tiny_project)
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.uri)
    env = stage_env(MLFLOW_TRACKING_URI=mlflow_server.uri)
    train = [
        sys.executable,
        "stages/train.py",
        "--set",
        "seed",
        "--model",
        "models/seed.pt",
        "--history",
        "reports/seed/history.csv",
    ]

    # 1. Stopped after epoch 2, started again while training goes on.
    stage = Watched(train, tiny_project, env)
    wait_for(lambda: 2 in stage.epoch_ends(), 900, "epoch 2", stage)
    with stage.paused():
        mlflow_server.stop()
        down_at = max(stage.epoch_ends())
    wait_for(lambda: max(stage.epoch_ends(), default=0) >= down_at + 3, 900, "epochs with the server down", stage)
    with stage.paused():
        mlflow_server.start()
        up_at = max(stage.epoch_ends())
    assert stage.wait(timeout=1200) == 0, stage.stderr()
    assert up_at < epochs, "the training ended before the server came back: make it longer"
    run = find_run(client)
    steps = {
        key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        for key in ("train/l1", "valid/l1", "valid/psnr")
    }
    print(
        f"\nserver down from epoch {down_at} to {up_at} of {epochs}; delivered "
        + ", ".join(f"{key}: {len(found)}" for key, found in steps.items())
    )
    assert steps == {key: list(range(1, epochs + 1)) for key in steps}  # each epoch once, none lost
    assert run.info.status == "FINISHED"
    assert client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert (tiny_project / "models" / "seed.pt").exists()
    stderr = stage.stderr()
    assert "Traceback" not in stderr
    assert re.search(
        rf"^warning: MLflow store {re.escape(mlflow_server.uri)} unreachable \(.+\); training goes on", stderr, re.M
    ), stderr
    assert re.search(r"^MLflow store .* reachable again: \d+ waiting calls delivered$", stderr, re.M), stderr
    assert not (tiny_project / "mlflow-spool").exists() or not list((tiny_project / "mlflow-spool").iterdir())

    # 2. Stopped after epoch 2 and still down when the stage ends: the rest waits on disk.
    (tiny_project / "models" / "seed.pt").unlink()
    epochs = 8
    trainable(tiny_project, epochs, n_train=512)
    stage = Watched(train, tiny_project, env)
    wait_for(lambda: 2 in stage.epoch_ends(), 900, "epoch 2", stage)
    with stage.paused():
        mlflow_server.stop()
    assert stage.wait(timeout=1200) == 0, stage.stderr()
    assert (tiny_project / "models" / "seed.pt").exists()  # the training is not lost
    stderr = stage.stderr()
    assert "Traceback" not in stderr
    kept = [line for line in stderr.splitlines() if "kept in" in line]
    assert len(kept) == 1 and kept[0].startswith(f"warning: MLflow store {mlflow_server.uri} unreachable ("), stderr
    assert "deliver them later with `python -m unmix.tracking.deliver`" in kept[0]
    spools = list((tiny_project / "mlflow-spool").glob("*.jsonl"))
    assert len(spools) == 1

    mlflow_server.start()
    delivered = run_command([sys.executable, "-m", "unmix.tracking.deliver"], tiny_project)
    second = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run.info.run_id][0]
    assert f"to run {second.info.run_id} at {mlflow_server.uri}" in delivered.stdout
    steps = {
        key: sorted(m.step for m in client.get_metric_history(second.info.run_id, key))
        for key in ("train/l1", "valid/l1", "valid/psnr")
    }
    print(
        f"second run: delivered live then later ({delivered.stdout.strip()}): "
        + ", ".join(f"{key}: {len(found)}" for key, found in steps.items())
    )
    assert steps == {key: list(range(1, epochs + 1)) for key in steps}
    assert second.info.status == "FINISHED" or client.get_run(second.info.run_id).info.status == "FINISHED"
    assert len(client.search_logged_models(experiment_ids=[run.info.experiment_id])) == 2
    assert not list((tiny_project / "mlflow-spool").glob("*.jsonl"))
