"""Finding a set's MLflow run without a run id in DVC outputs, and one writer per run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from unmix.tracking.run_lookup import model_digest, run_tags_for, wall_time_histories
from unmix.tracking.tracker import RunTracker, run_lock_path


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def test_model_digest_is_the_sha256_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"abc")
    # sha256("abc"), FIPS 180-2 appendix B.1
    assert model_digest(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_evaluate_finds_the_newest_run_that_trained_the_file(mlflow_uri: str) -> None:
    tags = run_tags_for("seed", "d" * 64)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", tags=tags) as older:
        pass
    time.sleep(0.05)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", tags=tags) as newer:
        newer.log_metrics({"train/l1": 0.5}, step=1)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", tags=run_tags_for("seed", "e" * 64)):
        pass  # another model of the same set
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", find_tags=tags) as evaluate:
        evaluate.log_metrics({"test/best/psnr": 17.5})
    assert evaluate.run_id == newer.run_id != older.run_id
    assert client(mlflow_uri).get_run(newer.run_id).data.metrics == {"train/l1": 0.5, "test/best/psnr": 17.5}


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_without_a_matching_run_a_fresh_one_carries_the_tags(mlflow_uri: str) -> None:
    tags = run_tags_for("best", "f" * 64)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="best", find_tags=tags) as first:
        pass
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="best", find_tags=tags) as second:
        pass
    assert second.run_id == first.run_id
    assert client(mlflow_uri).get_run(first.run_id).data.tags["unmix.model_digest"] == "f" * 64


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_relogging_an_epoch_with_its_first_timestamp_keeps_one_value(mlflow_uri: str) -> None:
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="r") as tracker:
        tracker.log_metrics({"train/l1": 0.25, "time/minutes": 0.5}, step=1, timestamp_ms=1_700_000_000_000)
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="r", run_id=tracker.run_id) as resumed:
        # A resumed training re-logs its checkpoint's epochs (its killed worker may not have).
        resumed.log_metrics({"train/l1": 0.25, "time/minutes": 0.5}, step=1, timestamp_ms=1_700_000_000_000)
        resumed.log_metrics({"train/l1": 0.125, "time/minutes": 1.0}, step=2, timestamp_ms=1_700_000_060_000)
    for key, values in {"train/l1": [(1, 0.25), (2, 0.125)], "time/minutes": [(1, 0.5), (2, 1.0)]}.items():
        history = client(mlflow_uri).get_metric_history(tracker.run_id, key)
        assert sorted((m.step, m.value) for m in history) == values


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_a_reopening_worker_waits_until_the_old_one_has_let_go_of_the_run(mlflow_uri: str) -> None:
    old = RunTracker(uri=mlflow_uri, experiment="e", run_name="r")
    old.log_metrics({"train/l1": 1.0}, step=1)
    run_id = old.run_id
    assert run_lock_path(run_id).exists()
    resumed = RunTracker(uri=mlflow_uri, experiment="e", run_name="r", run_id=run_id)
    time.sleep(3.0)  # ample for a worker to start up; it must still be waiting for the lock
    assert resumed._replies.empty(), "the resumed worker opened the run while the old one held it"
    old.finish("FAILED")  # as a killed stage's worker ends its run once its queue is drained
    assert resumed.run_id == run_id
    resumed.log_metrics({"train/l1": 0.5}, step=2)
    resumed.finish()
    run = client(mlflow_uri).get_run(run_id)
    assert run.info.status == "FINISHED"  # the old worker's FAILED came first, not last
    assert sorted(m.step for m in client(mlflow_uri).get_metric_history(run_id, "train/l1")) == [1, 2]


@pytest.mark.slow  # starts MLflow tracking worker processes (each imports mlflow)
def test_wall_time_histories_come_from_the_runs_found_by_digest(mlflow_uri: str) -> None:
    with RunTracker(uri=mlflow_uri, experiment="e", run_name="seed", tags=run_tags_for("seed", "a" * 64)) as run:
        for epoch in (1, 2):
            run.log_metrics({"time/minutes": 0.5 * epoch, "valid/psnr": 10.0 + epoch}, step=epoch)
    histories = wall_time_histories(mlflow_uri, "e", {"seed": "a" * 64, "best": "b" * 64})
    assert list(histories) == ["seed"]  # no run for best's model
    assert histories["seed"].to_dict("list") == {"epoch": [1, 2], "minutes": [0.5, 1.0], "valid/psnr": [11.0, 12.0]}
    assert wall_time_histories(mlflow_uri, "no such experiment", {"seed": "a" * 64}) == {}
