"""MLflow runs logged from a worker process, so training never waits on the store."""

from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from unmix.config import DataConfig, SetConfig
from unmix.errors import UnmixError
from unmix.paths import project_root

DEFAULT_STORE_NAME = "mlflow.db"
PARENT_CHECK_S = 5.0  # how often an idle tracking worker checks that its parent still lives
ARTIFACTS_DIR_NAME = "mlartifacts"
WORKER_NICENESS = 19


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


def run_params(set_config: SetConfig, data: DataConfig) -> dict[str, Any]:
    """Everything that defines a run, flat, as MLflow params: the set's fields and data."""
    params = {f"set.{k}": v for k, v in dataclasses.asdict(set_config).items()}
    params |= {f"data.{k}": v for k, v in dataclasses.asdict(data).items()}
    return params


def run_tags(set_name: str, data: DataConfig, subset_meta: dict, root: Path) -> dict[str, str]:
    """Tags that find a run again: set, commit, data source and digest, DVC experiment."""
    tags = {
        "unmix.set": set_name,
        "unmix.data_source": data.source,
        "unmix.data_digest": subset_meta["digest"],
    }
    commit = git_commit(root)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


class RunTracker:
    """One MLflow run, new or resumed, logged by a separate worker process.

    The worker imports mlflow (and torch, for the model) and opens the store and the run
    while the caller imports torch and loads data: on two cores that start-up costs the
    training nothing, where a thread would contend for the GIL the whole time. Calls are
    queued; `finish` waits for all of them and ends the run with a status. Used as a
    context manager, an exception marks the run FAILED.
    """

    def __init__(
        self,
        *,
        uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        logs_model: bool = False,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
        self._uri = uri
        self._calls = context.Queue()
        self._replies = context.Queue()
        opening = {"uri": uri, "experiment": experiment, "run_name": run_name, "run_id": run_id,
                   "params": {k: str(v) for k, v in (params or {}).items()}, "tags": dict(tags or {}),
                   "logs_model": logs_model}
        self._worker = context.Process(target=_serve, args=(opening, self._calls, self._replies),
                                       name="mlflow-tracker", daemon=True)
        self._worker.start()
        self._run_id: str | None = None
        self._opened = False
        self._finished = False

    @property
    def run_id(self) -> str | None:
        """The run's id, once the worker has opened it (waits for that)."""
        if not self._opened:
            self._run_id = self._reply("opened")
            self._opened = True
        return self._run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queue metrics, stamped now; the worker writes whatever has queued up in one store call."""
        self._put(("metrics", {k: float(v) for k, v in metrics.items()}, step, int(time.time() * 1000)))

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """Queue a uint8 (H, W, 3) image under `key` at `step` (MLflow's image history)."""
        self._put(("image", image, key, step))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Queue a file to attach to the run."""
        self._put(("artifact", str(path), artifact_path))

    def log_model(self, model: Any, name: str = "model") -> None:
        """Queue the PyTorch model as an MLflow model; do not change it until `finish`."""
        self._put(("model", model, name))

    def _put(self, call: tuple) -> None:
        if self._worker.is_alive():
            self._calls.put(call)
        # else: nothing would read it; finish() reports the dead worker

    def finish(self, status: str = "FINISHED") -> str | None:
        """Wait for everything queued, end the run with `status`, return its id."""
        if self._finished:
            return self._run_id
        self._finished = True
        self._put(("finish", status))
        run_id = self.run_id
        error = self._reply("finished")
        self._worker.join()
        if error is not None:
            raise TrackingError(f"MLflow tracking at {self._uri} failed: {error}")
        return run_id

    def _reply(self, expected: str) -> Any:
        while True:
            try:
                kind, value = self._replies.get(timeout=1.0)
            except queue.Empty:
                if not self._worker.is_alive():
                    # Unread calls would block this process's exit on the queue's feeder.
                    self._calls.cancel_join_thread()
                    raise TrackingError(f"MLflow tracking at {self._uri} failed: the tracking process died") from None
                continue
            if kind == expected:
                return value

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


def _serve(opening: dict, calls: Any, replies: Any) -> None:
    """The worker process: open the run, then apply queued calls until told to finish."""
    # Ctrl-C goes to the whole process group: the parent decides the run's status.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The queue brought the caller's write end along; closed here, a caller that dies in
    # the middle of a message leaves an end of file, not a read that waits forever.
    calls._writer.close()
    # Training keeps both cores busy in OpenMP regions that wait for their slowest thread:
    # at normal priority every slice this process takes stalls both. Niced, it runs in the
    # gaps; when the caller waits in finish() it has the machine to itself anyway.
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass
    mlflow, error, run_id = None, None, None
    try:
        import mlflow

        mlflow.set_tracking_uri(opening["uri"])
        run_id = _open_run(mlflow, opening)
    except Exception as caught:  # noqa: BLE001 - reported to the caller by finish()
        error = _one_line(caught)
    if error is None and opening["logs_model"]:
        try:
            import mlflow.pytorch  # noqa: F401 - imported now, while the caller is still starting up
        except Exception as caught:  # noqa: BLE001
            error = _one_line(caught)
        _skip_requirement_check()
    replies.put(("opened", run_id))  # ready: nothing left to import
    status = "FAILED"
    backlog: collections.deque = collections.deque()
    while True:
        try:
            call = backlog.popleft() if backlog else calls.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if multiprocessing.parent_process().is_alive():
                continue
            error = "the training process died"  # killed: no finish will come
            break
        except (EOFError, OSError):
            error = "the training process died while sending"
            break
        if call[0] == "finish":
            status = call[1]
            break
        if error is None:
            try:
                if call[0] == "metrics":
                    _log_metric_calls(mlflow, run_id, [call, *_queued_metric_calls(calls, backlog)])
                else:
                    _apply(mlflow, call)
            except BaseException as caught:  # noqa: BLE001 - reported to the caller by finish()
                error = _one_line(caught)
    if run_id is not None:
        try:
            mlflow.end_run(status="FAILED" if error is not None else status)
        except Exception as caught:  # noqa: BLE001
            error = error or _one_line(caught)
    replies.put(("finished", error))
    # The run is ended and stored. Skip the interpreter's teardown of torch and mlflow
    # (~1.2 s here), which the caller would wait for in join(); only the reply must get out.
    replies.close()
    replies.join_thread()
    os._exit(0)


def _skip_requirement_check() -> None:
    """Turn off log_model's check of the model's pip requirements against the environment.

    It scans every installed distribution (~1.3 s of CPU here) only to warn about a
    mismatch, and ours cannot mismatch: torch's pin is read from this very environment and
    MLflow pins itself. Best effort: a private MLflow function that may move.
    """
    try:
        from mlflow.utils import environment

        environment.warn_dependency_requirement_mismatches = lambda requirements: None
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


def _queued_metric_calls(calls: Any, backlog: collections.deque) -> list[tuple]:
    """Take every call already waiting; return the metrics calls at its head, keep the rest in order."""
    while True:
        try:
            backlog.append(calls.get_nowait())
        except queue.Empty:
            break
    taken = []
    while backlog and backlog[0][0] == "metrics":
        taken.append(backlog.popleft())
    return taken


def _log_metric_calls(mlflow: Any, run_id: str, metric_calls: list[tuple]) -> None:
    """All these queued metrics calls as one store round trip.

    The niced worker falls behind while training has the cores and catches up with one
    batch instead of one write per epoch.
    """
    from mlflow.entities import Metric

    metrics = [Metric(key, value, timestamp, step or 0)
               for _, values, step, timestamp in metric_calls for key, value in values.items()]
    mlflow.MlflowClient().log_batch(run_id, metrics=metrics, synchronous=True)


def _apply(mlflow: Any, call: tuple) -> None:
    kind, *args = call
    if kind == "image":
        image, key, step = args
        mlflow.log_image(image, key=key, step=step, synchronous=True)
    elif kind == "artifact":
        path, artifact_path = args
        mlflow.log_artifact(path, artifact_path=artifact_path)
    elif kind == "model":
        from unmix.serve.mlflow_model import log_separator

        model, name = args
        log_separator(model, name)  # pickle-free: safetensors weights + the code that rebuilds them
    else:
        raise ValueError(f"unknown tracking call {kind!r}")


def _open_run(mlflow: Any, opening: dict) -> str:
    from mlflow.exceptions import MlflowException

    tags = dict(opening["tags"])
    experiment_id = _experiment_id(mlflow, opening["experiment"], artifact_location(opening["uri"]))
    run_id = opening["run_id"]
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except MlflowException:
            # The store that had the training run is gone (deleted mlflow.db, another
            # URI): log to a fresh run rather than lose the results.
            tags["unmix.resumed_from_missing_run"] = run_id
            run_id = None
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=opening["run_name"])
    try:
        if tags:
            mlflow.set_tags(tags)
        if opening["params"]:
            mlflow.log_params(opening["params"])
    except BaseException:
        mlflow.end_run(status="FAILED")  # never leave a half-opened run RUNNING
        raise
    return run.info.run_id


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
