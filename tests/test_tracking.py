"""MLflow tracking: where the store is, and what a run holds after success and failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unmix.services import free_port
from unmix.tracking.tracker import (
    NullTracker,
    RunTracker,
    TrackingError,
    artifact_location,
    open_tracker,
    resolve_tracking_uri,
)


def test_tracking_uri_precedence_env_then_params_then_repo_store() -> None:
    root = Path("/repo")
    assert resolve_tracking_uri(None, {}, root) == "sqlite:////repo/mlflow.db"
    assert resolve_tracking_uri("http://server:5000", {}, root) == "http://server:5000"
    env = {"MLFLOW_TRACKING_URI": "postgresql://db/mlflow"}
    assert resolve_tracking_uri("http://server:5000", env, root) == "postgresql://db/mlflow"


def test_sqlite_artifacts_live_beside_the_database() -> None:
    assert artifact_location("sqlite:////repo/mlflow.db") == "file:///repo/mlartifacts"
    assert artifact_location("http://server:5000") is None


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_run_logs_params_tags_epoch_metrics_and_images(mlflow_uri: str) -> None:
    with RunTracker(
        uri=mlflow_uri, experiment="e", run_name="seed", params={"set.epochs": 2}, tags={"unmix.set": "seed"}
    ) as tracker:
        for epoch in (1, 2):
            tracker.log_metrics({"train/l1": 1.0 / epoch, "valid/l1": 2.0 / epoch}, step=epoch)
        tracker.log_image(np.zeros((8, 8, 3), np.uint8), key="reconstructions/valid", step=2)
    run = client(mlflow_uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"set.epochs": "2"}
    assert run.data.tags["unmix.set"] == "seed"
    history = client(mlflow_uri).get_metric_history(tracker.run_id, "valid/l1")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0)]
    assert [a.path for a in client(mlflow_uri).list_artifacts(tracker.run_id)] == ["images"]


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_failure_inside_the_run_marks_it_failed(mlflow_uri: str) -> None:
    tracker = RunTracker(uri=mlflow_uri, experiment="e", run_name="boom")
    with pytest.raises(RuntimeError, match="diverged"):
        with tracker:
            tracker.log_metrics({"train/l1": 1.0}, step=1)
            raise RuntimeError("diverged")
    assert client(mlflow_uri).get_run(tracker.run_id).info.status == "FAILED"


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_second_tracker_adds_to_the_same_run(mlflow_uri: str) -> None:
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed") as train:
        train.log_metrics({"train/l1": 0.5}, step=1)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", run_id=train.run_id) as evaluate:
        evaluate.log_metrics({"test/best/psnr": 17.5})
    assert evaluate.run_id == train.run_id
    run = client(mlflow_uri).get_run(train.run_id)
    assert run.data.metrics == {"train/l1": 0.5, "test/best/psnr": 17.5}
    assert run.info.status == "FINISHED"


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_run_missing_from_the_store_gets_a_fresh_run(mlflow_uri: str) -> None:
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", run_id="0" * 32) as tracker:
        tracker.log_metrics({"test/best/psnr": 17.5})
    run = client(mlflow_uri).get_run(tracker.run_id)
    assert tracker.run_id != "0" * 32
    assert run.data.tags["unmix.resumed_from_missing_run"] == "0" * 32


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_store_that_cannot_be_opened_is_one_line_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    tracker = RunTracker(uri=uri, experiment="e", run_name="x", spool_dir=tmp_path / "spool")
    with pytest.raises(TrackingError) as error:
        tracker.wait_open()
    assert str(error.value).startswith(f"MLflow tracking store {uri} cannot be reached: ")
    assert "\n" not in str(error.value)
    with pytest.raises(TrackingError, match=f"MLflow tracking at {uri} failed: "):
        tracker.finish()
    assert not (tmp_path / "spool").exists()


def test_tracking_disabled_gives_a_tracker_that_does_nothing() -> None:
    tracker = open_tracker(False, None, "e", run_name="x")
    assert isinstance(tracker, NullTracker)
    with tracker:
        tracker.log_metrics({"a": 1.0}, step=1)
    assert tracker.finish() is None and tracker.run_id is None


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_backlog_of_epochs_arrives_complete_and_in_order(mlflow_uri: str) -> None:
    before_ms = int(time.time() * 1000)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="many") as tracker:
        for epoch in range(1, 41):  # queued far faster than one store write per call
            tracker.log_metrics({"train/l1": 1.0 / epoch}, step=epoch)
            if epoch == 20:
                tracker.log_image(np.zeros((8, 8, 3), np.uint8), key="reconstructions/valid", step=epoch)
    history = client(mlflow_uri).get_metric_history(tracker.run_id, "train/l1")
    assert sorted((m.step, m.value) for m in history) == [(e, 1.0 / e) for e in range(1, 41)]
    assert all(before_ms <= m.timestamp <= int(time.time() * 1000) for m in history)
    assert [a.path for a in client(mlflow_uri).list_artifacts(tracker.run_id)] == ["images"]


DYING_CALLER = """
import os, sys
from unmix.tracking.tracker import RunTracker

if __name__ == "__main__":
    tracker = RunTracker(uri=sys.argv[1], experiment="e", run_name="dies")
    print(tracker.run_id, tracker._worker.pid, flush=True)
    # The start of a 1 MB message (multiprocessing's 4-byte length header, then a few
    # bytes), as when the caller dies while its queue's feeder thread is still writing.
    os.write(tracker._calls._writer.fileno(), (1 << 20).to_bytes(4, "big", signed=True) + b"partial")
    os._exit(1)
"""


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_caller_killed_mid_message_leaves_no_worker_behind(mlflow_uri: str, tmp_path: Path) -> None:
    script = tmp_path / "dying_caller.py"
    script.write_text(DYING_CALLER)
    printed = tmp_path / "printed.txt"  # a file, not a pipe: a stuck worker would hold a pipe open
    with printed.open("w") as out:
        subprocess.run([sys.executable, str(script), mlflow_uri], stdout=out, timeout=120)
    run_id, worker_pid = printed.read_text().split()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker_pid}").exists(), "the tracking worker outlived its caller"
    assert client(mlflow_uri).get_run(run_id).info.status == "FAILED"


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "htp://nowhere/{port}"])
def test_a_server_that_is_down_or_a_bad_uri_is_one_line_within_seconds(uri: str, tmp_path: Path) -> None:
    uri = uri.format(port=free_port())  # nothing listens there
    started = time.monotonic()
    tracker = RunTracker(uri=uri, experiment="e", run_name="x", spool_dir=tmp_path)
    with pytest.raises(TrackingError) as error:
        tracker.wait_open()
    assert time.monotonic() - started < 60  # MLflow's own retries would take minutes
    message = str(error.value)
    assert message.startswith(f"MLflow tracking store {uri} cannot be reached: ") and "\n" not in message
    with pytest.raises(TrackingError):
        tracker.finish()


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_the_experiment_opens_in_the_model_training_view(mlflow_uri: str) -> None:
    from unmix.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    with RunTracker(uri=mlflow_uri, experiment="new", run_name="x"):
        pass
    assert client(mlflow_uri).get_experiment_by_name("new").tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    # An experiment made before unmix tagged it gets the tag; one a person set stays theirs.
    old = client(mlflow_uri).create_experiment("old")
    mine = client(mlflow_uri).create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("old", "mine"):
        with RunTracker(uri=mlflow_uri, experiment=name, run_name="x"):
            pass
    assert client(mlflow_uri).get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert client(mlflow_uri).get_experiment(mine).tags[EXPERIMENT_KIND_TAG] == "genai_development"


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_creating_a_store_keeps_mlflow_chatter_off_stderr(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # not migrated yet: MLflow logs "Creating initial ..." at INFO
    with RunTracker(uri=uri, experiment="e", run_name="x") as tracker:
        tracker.log_metrics({"a": 1.0}, step=1)
    err = capfd.readouterr().err
    assert "Creating initial MLflow database tables" not in err and "INFO" not in err, err
    assert client(uri).get_run(tracker.run_id).data.metrics == {"a": 1.0}


def left_by_a_dead_worker(spool):
    """The spool as a worker that has exited leaves it (this test process wrote it, and lives)."""
    from unmix.tracking.spool import Spool

    dead = spool.path.with_name(spool.path.name.replace(f"-{os.getpid()}.", f"-{2**22 + 1}."))
    spool.path.rename(dead)
    if spool.blobs.exists():
        spool.blobs.rename(dead.with_suffix(""))
    return Spool(dead, {})


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_spool_is_delivered_later_into_the_same_run(mlflow_uri: str, tmp_path: Path) -> None:
    from unmix.tracking.spool import Spool

    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed") as tracker:
        tracker.log_metrics({"train/l1": 1.0}, step=1)
    run_id = tracker.run_id
    # What a worker leaves when the store went away after epoch 1 and stayed away.
    spool = Spool.create(tmp_path / "spool", mlflow_uri, run_id)
    for epoch in (2, 3):
        spool.append(("metrics", {"train/l1": 1.0 / epoch}, epoch, 1000 + epoch))
    spool.append(("image", np.zeros((8, 8, 3), np.uint8), "reconstructions/valid", 3))
    spool.append(("end", "FINISHED"))
    left_by_a_dead_worker(spool)
    result = subprocess.run(
        [sys.executable, "-m", "unmix.tracking.deliver", "--spool", str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"delivered 2 metric values, 1 image, the run's end to run {run_id} at {mlflow_uri}"
    )
    history = client(mlflow_uri).get_metric_history(run_id, "train/l1")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert client(mlflow_uri).get_run(run_id).info.status == "FINISHED"
    assert [a.path for a in client(mlflow_uri).list_artifacts(run_id)] == ["images"]
    assert not list((tmp_path / "spool").iterdir())
    again = subprocess.run(
        [sys.executable, "-m", "unmix.tracking.deliver", "--spool", str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.stdout.startswith("nothing to deliver")


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_delivering_to_a_store_still_down_is_one_line_and_keeps_the_spool(tmp_path: Path) -> None:
    from unmix.tracking.spool import Spool, spool_files

    uri = f"http://127.0.0.1:{free_port()}"
    spool = Spool.create(tmp_path, uri, "0" * 32)
    spool.append(("metrics", {"train/l1": 0.5}, 1, 1000))
    spool = left_by_a_dead_worker(spool)
    result = subprocess.run(
        [sys.executable, "-m", "unmix.tracking.deliver", "--spool", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: MLflow store {uri} did not take run {'0' * 32}'s calls from ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert spool_files(tmp_path) == [spool.path]
