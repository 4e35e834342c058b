"""MLflow runs logged from a background thread, so training never waits on the store."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from unmix.errors import UnmixError
from unmix.paths import project_root

DEFAULT_STORE_NAME = "mlflow.db"
GIL_SWITCH_INTERVAL_S = 0.0002
ARTIFACTS_DIR_NAME = "mlartifacts"


class TrackingError(UnmixError):
    """The MLflow store refused or failed a call."""


def resolve_tracking_uri(configured: str | None, environ: Mapping[str, str], root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else tracking.uri, else sqlite mlflow.db at `root`."""
    return environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{root / DEFAULT_STORE_NAME}"


def artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside the .db file, not under a transient cwd."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides where artifacts go
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.parent / ARTIFACTS_DIR_NAME).resolve().as_uri()


def git_commit(directory: Path) -> str | None:
    """HEAD's commit hash, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


class RunTracker:
    """One MLflow run, new or resumed, fed through a queue that a worker thread drains.

    The worker imports mlflow, opens (or creates) the store and the run while the caller
    goes on training; `finish` waits for everything queued and ends the run with a status.
    Used as a context manager, an exception marks the run FAILED.
    """

    _STOP = object()

    def __init__(
        self,
        *,
        uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._uri, self._experiment, self._run_name = uri, experiment, run_name
        self._requested_run_id = run_id
        self._params, self._tags = dict(params or {}), dict(tags or {})
        self._queue: queue.Queue = queue.Queue()
        self._run_id: str | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._status = "FINISHED"
        self._finished = False
        # The worker's Python (importing mlflow, SQL) holds the GIL; at the default 5 ms
        # switch interval every torch op of the training thread waits that long to get it
        # back, which tripled short trainings. A short interval hands it back promptly.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._work, name="mlflow-tracker", daemon=True)
        self._thread.start()

    @property
    def run_id(self) -> str | None:
        """The run's id, once the worker has opened it (waits for that)."""
        self._ready.wait()
        return self._run_id

    def submit(self, call: Callable[[Any], None]) -> None:
        """Queue `call(mlflow)`, run in the worker with this run active."""
        self._queue.put(call)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queue one batched metrics call (one store round trip, however many metrics)."""
        values = {k: float(v) for k, v in metrics.items()}
        self.submit(lambda mlflow: mlflow.log_metrics(values, step=step))

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """Queue a uint8 (H, W, 3) image under `key` at `step` (MLflow's image history)."""
        self.submit(lambda mlflow: mlflow.log_image(image, key=key, step=step, synchronous=True))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Queue a file to attach to the run."""
        self.submit(lambda mlflow: mlflow.log_artifact(str(path), artifact_path=artifact_path))

    def log_model(self, model: Any, name: str = "model") -> None:
        """Queue the PyTorch model as an MLflow model; pinned requirements skip slow inference."""

        def log(mlflow: Any) -> None:
            import mlflow.pytorch
            import torch

            requirements = [f"torch=={torch.__version__.split('+')[0]}"]
            # Pickle, not the traced pt2 format: the model returns a pair of tensors.
            mlflow.pytorch.log_model(model, name=name, pip_requirements=requirements, serialization_format="pickle")

        self.submit(log)

    def finish(self, status: str = "FINISHED") -> str | None:
        """Wait for the queue to drain, end the run with `status`, return its id."""
        if self._finished:
            return self._run_id
        self._finished = True
        self._status = status
        self._queue.put(self._STOP)
        self._thread.join()
        if self._error is not None:
            raise TrackingError(f"MLflow tracking at {self._uri} failed: {_one_line(self._error)}") from self._error
        return self._run_id

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish("FINISHED")
            return
        try:
            self.finish("KILLED" if exc_type is KeyboardInterrupt else "FAILED")
        except TrackingError:
            pass  # the original exception is the one worth seeing

    def _work(self) -> None:
        mlflow = None
        try:
            import mlflow

            mlflow.set_tracking_uri(self._uri)
            self._open_run(mlflow)
        except BaseException as error:  # noqa: BLE001 - reported by finish()
            self._error = error
        finally:
            self._ready.set()
        while (call := self._queue.get()) is not self._STOP:
            if self._error is None:
                try:
                    call(mlflow)
                except BaseException as error:  # noqa: BLE001 - reported by finish()
                    self._error = error
        if self._run_id is not None:
            status = "FAILED" if self._error is not None else self._status
            try:
                mlflow.end_run(status=status)
            except BaseException as error:  # noqa: BLE001
                self._error = self._error or error

    def _open_run(self, mlflow: Any) -> None:
        from mlflow.exceptions import MlflowException

        experiment_id = _experiment_id(mlflow, self._experiment, artifact_location(self._uri))
        run_id = self._requested_run_id
        if run_id is not None:
            try:
                mlflow.get_run(run_id)
            except MlflowException:
                # The store that had the training run is gone (deleted mlflow.db, another
                # URI): log to a fresh run rather than lose the results.
                self._tags["unmix.resumed_from_missing_run"] = run_id
                run_id = None
        if run_id is not None:
            run = mlflow.start_run(run_id=run_id)
        else:
            run = mlflow.start_run(experiment_id=experiment_id, run_name=self._run_name)
        self._run_id = run.info.run_id
        if self._tags:
            mlflow.set_tags(self._tags)
        if self._params:
            mlflow.log_params({k: str(v) for k, v in self._params.items()})


def _experiment_id(mlflow: Any, name: str, artifact_root: str | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_root)
    except MlflowException:
        # Another process (a parallel dvc queue worker) created it first.
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class NullTracker:
    """Stands in for RunTracker when tracking is off: accepts every call, does nothing."""

    run_id = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def open_tracker(
    enabled: bool, configured_uri: str | None, experiment: str, run_name: str, **run: Any
) -> RunTracker | NullTracker:
    """A RunTracker on the resolved store, or a NullTracker when tracking is disabled."""
    if not enabled:
        return NullTracker()
    root = project_root(os.environ, Path.cwd())
    uri = resolve_tracking_uri(configured_uri, os.environ, root)
    return RunTracker(uri=uri, experiment=experiment, run_name=run_name, **run)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
