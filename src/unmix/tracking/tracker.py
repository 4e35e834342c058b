"""MLflow runs logged from a worker process, so training never waits on the store."""

from __future__ import annotations

import collections
import copy
import dataclasses
import fcntl
import logging
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unmix.config import DataConfig, SetConfig
from unmix.errors import UnmixError, first_line
from unmix.names import MODEL_TYPE, SET_TAG
from unmix.paths import project_root
from unmix.tracking.courier import DELIVER_EVERY_S, Courier
from unmix.tracking.spool import SPOOL_DIR_NAME, Spool, describe, note_delivered, read_spool, remove_spool
from unmix.tracking.store import check_store, open_experiment

DEFAULT_STORE_NAME = "mlflow.db"
PARENT_CHECK_S = 5.0  # how often an idle tracking worker checks that its parent still lives
ARTIFACTS_DIR_NAME = "mlartifacts"
# MLflow 3 opens an experiment in the view its kind names; without the tag its UI may
# guess the GenAI overview. Ours trains models.
# At the end, a store that is down gets this long (retries with backoff) before what it
# has not taken is left in the spool.
FINISH_GRACE_S = 10.0
# MLflow's HTTP client retries a refused request 7 times over ~2 minutes by default; the
# worker retries itself (with a spool), so each try should fail fast.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# A train run's system metrics (CPU, memory, disk, network; GPU through pynvml when there is
# an NVIDIA GPU): one sample every this many seconds. Each cost the worker 26 ms of CPU, a
# run lookup and a write included: 0.24% of one core (benchmarks/system_metrics_cost.py);
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL wins.
SYSTEM_METRICS_INTERVAL_S = 10.0
# MLflow's tqdm bars for artifact transfers would print on the stage's stderr at every model.
QUIET_DEFAULTS = {"MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


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
        SET_TAG: set_name,
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
    training little, where a thread would contend for the GIL the whole time. Calls are
    queued and reach the store in batches within seconds (unmix.tracking.courier); a store that
    goes away mid-run costs no training: calls wait in a spool on disk and are retried.
    `wait_open` says, before any training, whether the store can be reached at all;
    `finish` waits for everything queued and ends the run with a status. Used as a
    context manager, an exception marks the run FAILED.
    """

    # Twelve keyword-only parameters: each is one field of the opening message sent whole to the
    # worker process (`_serve`); callers name the few they set (open_tracker, the tests).
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
        find_tags: Mapping[str, str] | None = None,
        spool_dir: Path | None = None,
        grace_s: float = FINISH_GRACE_S,
        every_s: float = DELIVER_EVERY_S,
        system_metrics: bool = False,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
        self._uri = uri
        self._calls = context.Queue()
        self._replies = context.Queue()
        spool_dir = spool_dir or project_root(os.environ, Path.cwd()) / SPOOL_DIR_NAME
        opening = {
            "uri": uri,
            "experiment": experiment,
            "run_name": run_name,
            "run_id": run_id,
            "params": {k: str(v) for k, v in (params or {}).items()},
            "tags": dict(tags or {}),
            "logs_model": logs_model,
            "find_tags": dict(find_tags or {}),
            "spool_dir": str(spool_dir),
            "grace_s": grace_s,
            "every_s": every_s,
            "system_metrics": system_metrics,
        }
        self._worker = context.Process(
            target=_serve, args=(opening, self._calls, self._replies), name="mlflow-tracker", daemon=True
        )
        self._worker.start()
        self._run_id: str | None = None
        self._open_error: str | None = None
        self._opened = False
        self._finished = False
        self._link: tuple[str, dict] | None = None  # (key prefix, link): see link_metrics

    @property
    def run_id(self) -> str | None:
        """The run's id, once the worker has opened it (waits for that); None if it could not."""
        if not self._opened:
            self._run_id, self._open_error = self._reply("opened")
            self._opened = True
        return self._run_id

    def wait_open(self) -> str:
        """Wait until the run is open in the store; a store that cannot be reached is a TrackingError.

        Call it before expensive work: a wrong URI or a server that is down then costs one
        line, not a training whose run is nowhere.
        """
        run_id = self.run_id
        if run_id is None:
            raise TrackingError(f"MLflow tracking store {self._uri} cannot be reached: {self._open_error}")
        return run_id

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        """Queue metrics, stamped now unless given; the worker writes what has queued up in one store call.

        The store keeps one copy of a metric logged twice with the same key, step, value and
        timestamp: a resumed training re-logs its checkpoint's epochs that way.
        """
        stamp = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        values = {k: float(v) for k, v in metrics.items()}
        if self._link is not None:
            prefix, link = self._link
            linked = {k: v for k, v in values.items() if k.startswith(prefix)}
            values = {k: v for k, v in values.items() if k not in linked}
            if linked:
                self._put(("metrics", linked, step, stamp, link))
        if values:
            self._put(("metrics", values, step, stamp))

    def link_metrics(self, prefix: str, dataset: Mapping[str, Any]) -> None:
        """From now on, metrics whose key starts with `prefix` are logged against the run's
        logged model (its newest separator) and `dataset` too, as well as on the run: MLflow
        shows them on the model's page and in the Models tab, judged on that dataset."""
        self._link = (prefix, {"dataset": dict(dataset)})

    def log_inputs(self, datasets: list[Mapping[str, Any]]) -> None:
        """Queue the datasets the run reads (unmix.tracking.datasets dicts), each with its context."""
        self._put(("inputs", [dict(d) for d in datasets]))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Queue tags to set on the run."""
        self._put(("tags", dict(tags)))

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """Queue a uint8 (H, W, 3) image under `key` at `step` (MLflow's image history)."""
        self._put(("image", image, key, step))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Queue a file to attach to the run."""
        self._put(("artifact", str(path), artifact_path))

    def log_model(self, model: Any, config: dict, name: str = "model") -> None:
        """Queue a copy of the PyTorch model, to be logged as an MLflow model with `config`, the
        `model_config` that built it (unmix.model.networks.set_model_config)."""
        # A copy: the queue's feeder thread pickles what is put, and torch's reducers move a
        # tensor's storage into shared memory as they do, while this thread may be saving
        # the same weights (seen: torch.save failing with "Bad address" mid-write).
        self._put(("model", copy.deepcopy(model), config, name))

    def _put(self, call: tuple) -> None:
        if self._worker.is_alive():
            self._calls.put(call)
        # else: nothing would read it; finish() reports the dead worker

    def finish(self, status: str = "FINISHED") -> str | None:
        """Wait for everything queued, end the run with `status`, return its id.

        What the store did not take (it went away and is still gone) stays in the spool:
        one line on stderr says where and how to deliver it; that is no error of the stage.
        """
        if self._finished:
            return self._run_id
        self._finished = True
        self._put(("end", status))
        run_id = self.run_id
        error, undelivered = self._reply("finished")
        self._worker.join()
        if error is not None:
            raise TrackingError(f"MLflow tracking at {self._uri} failed: {error}")
        if undelivered is not None:
            print(
                f"warning: MLflow store {self._uri} unreachable ({undelivered['reason']}): "
                f"{undelivered['what']} of run {run_id} kept in {undelivered['spool']}; "
                f"deliver them later with `python -m unmix.tracking.deliver`",
                file=sys.stderr,
                flush=True,
            )
        return run_id

    def _reply(self, expected: str) -> Any:
        while True:
            try:
                kind, *value = self._replies.get(timeout=1.0)
            except queue.Empty:
                if not self._worker.is_alive():
                    # Unread calls would block this process's exit on the queue's feeder.
                    self._calls.cancel_join_thread()
                    raise TrackingError(f"MLflow tracking at {self._uri} failed: the tracking process died") from None
                continue
            if kind == expected:
                return value[0] if len(value) == 1 else value

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish("FINISHED")
            return
        try:
            self.finish("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        except TrackingError:
            pass  # the original exception is the one worth seeing


def _serve(opening: dict, calls: Any, replies: Any) -> None:
    """The worker process: open the run, then deliver queued calls until told to finish."""
    _become_worker(calls)
    mlflow, run_id, error = _start_up(opening, replies)
    # Not niced. Niced, it waited behind every other training on the machine: with two
    # pipelines on one store, stages waited up to 54 s for their worker after their own
    # work, against at most 7.2 s at normal priority (benchmarks/parallel_waits.py), and
    # its start-up crawled at ~2% of a core. Its own work is a send of tens of ms every
    # few seconds, so what it takes from training is small either way.
    spool = Spool.create(Path(opening["spool_dir"]), opening["uri"], run_id or "unopened")
    courier = Courier(
        lambda batch: _send(mlflow, run_id, batch),
        spool,
        every_s=opening["every_s"],
        on_outage=lambda reason: _say(
            f"warning: MLflow store {opening['uri']} unreachable ({reason}); "
            "training goes on, tracking calls wait on disk and are retried"
        ),
        on_recovery=lambda waited: _say(
            f"MLflow store {opening['uri']} reachable again: {waited} waiting calls delivered"
        ),
    )
    status, error = _relay(calls, courier, error)
    undelivered = None
    if run_id is not None:
        courier.add(("end", "FAILED" if error is not None else status))
        if not courier.deliver_until(time.monotonic() + opening["grace_s"]):
            undelivered = {
                "reason": courier.last_error,
                "what": describe(list(courier.pending)),
                "spool": str(spool.path),
            }
    replies.put(("finished", error, undelivered))
    # The run is ended and stored. Skip the interpreter's teardown of torch and mlflow
    # (~1.2 s here), which the caller would wait for in join(); only the reply must get out.
    replies.close()
    replies.join_thread()
    os._exit(0)


def _become_worker(calls: Any) -> None:
    """What sets the worker process apart from the stage that started it."""
    # Ctrl-C, or a SIGTERM sent to the whole process group: the parent decides the run's
    # status (KILLED, after its last checkpoint); a parent that dies ends this worker anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The queue brought the caller's write end along; closed here, a caller that dies in
    # the middle of a message leaves an end of file, not a read that waits forever.
    calls._writer.close()
    # A spawned process inherits spawn as its start method, under which every multiprocessing
    # lock is a named semaphore that the resource tracker is told of and that only the
    # interpreter's teardown unlinks. This worker skips that teardown (os._exit), so the lock
    # tqdm makes for MLflow's artifact bars was reported at every train stage's end
    # ("resource_tracker: … 1 leaked semaphore objects"). Under fork a lock's semaphore is
    # unlinked as it is made; this process starts no processes of its own.
    multiprocessing.set_start_method("fork", force=True)


def _relay(calls: Any, courier: Courier, error: str | None) -> tuple[str, str | None]:
    """Hand queued calls to the courier until the caller says `end`; (status, first error).

    A parent that dies (no `end` will come) ends the run FAILED.
    """
    while True:
        due = courier.due_in()
        try:
            call = calls.get(timeout=PARENT_CHECK_S if due is None else max(due, 0.001))
        except queue.Empty:
            if due is not None:
                courier.deliver()
            elif not multiprocessing.parent_process().is_alive():
                return "FAILED", error or "the training process died"  # killed: no finish will come
            continue
        except (EOFError, OSError):
            return "FAILED", error or "the training process died while sending"
        if call[0] == "end":
            return call[1], error
        if error is None:
            courier.add(call)
            if courier.due_in() == 0:
                courier.deliver()


def _start_up(opening: dict, replies: Any) -> tuple[Any, str | None, str | None]:
    """The worker's start-up: import mlflow, open the store and the run, say so to the caller
    (`opened`), then import what logging the model needs; (mlflow, run id, first error)."""
    # Start-up (imports, store, run) at normal priority: the caller is importing torch and
    # loading data meanwhile, and waits for the run before training (wait_open).
    mlflow, error, run_id = None, None, None
    if opening.get("system_metrics"):
        os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", str(SYSTEM_METRICS_INTERVAL_S))
    try:
        mlflow = _import_mlflow()
        mlflow.set_tracking_uri(opening["uri"])
        run_id = _open_run(mlflow, opening)
    except Exception as caught:  # noqa: BLE001 - reported to the caller by wait_open()/finish()
        error = first_line(caught)
    replies.put(("opened", run_id, error))
    if error is None and opening["logs_model"]:
        try:
            import unmix.tracking.logged_model  # noqa: F401 - imported now, while training runs, not at the end
        except Exception as caught:  # noqa: BLE001
            error = first_line(caught)
        _skip_requirement_check()
    return mlflow, run_id, error


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _import_mlflow() -> Any:
    """mlflow, failing fast on a server that is down, its INFO chatter (store migrations) and
    artifact progress bars kept off stderr."""
    for name, value in (HTTP_DEFAULTS | QUIET_DEFAULTS).items():  # a person's own settings win
        os.environ.setdefault(name, value)
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


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


def _send(mlflow: Any, run_id: str, batch: list[tuple]) -> None:
    """One store round trip: a batch of metrics calls as one log_batch, or one other call."""
    if batch[0][0] == "metrics":
        _log_metric_calls(mlflow, run_id, batch)
    elif batch[0][0] == "inputs":
        from unmix.tracking.datasets import dataset_input

        mlflow.MlflowClient().log_inputs(run_id, datasets=[dataset_input(d) for d in batch[0][1]])
    else:
        (call,) = batch
        _apply(mlflow, call)


def _log_metric_calls(mlflow: Any, run_id: str, metric_calls: list[tuple]) -> None:
    """All these queued metrics calls as one store round trip (several epochs' worth after a wait).

    A call with a link (RunTracker.link_metrics) also logs its metrics against the run's
    logged model and the link's dataset; a run without a logged separator keeps them on the run.
    """
    from mlflow.entities import Metric

    metrics = []
    for _, values, step, timestamp, *link in metric_calls:
        model_id = _logged_model_id(mlflow, run_id) if link and link[0] else None
        dataset = link[0]["dataset"] if model_id else {}
        metrics += [
            Metric(
                key,
                value,
                timestamp,
                step or 0,
                model_id=model_id,
                dataset_name=dataset.get("name"),
                dataset_digest=dataset.get("digest"),
            )
            for key, value in values.items()
        ]
    mlflow.MlflowClient().log_batch(run_id, metrics=metrics, synchronous=True)


def _logged_model_id(mlflow: Any, run_id: str) -> str | None:
    """The newest separator the run logged (its MLflow LoggedModel id), or None."""
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    models = client.search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'")
    separators = [m for m in models if m.model_type == MODEL_TYPE]
    return max(separators, key=lambda m: m.creation_timestamp).model_id if separators else None


def _apply(mlflow: Any, call: tuple) -> None:
    kind, *args = call
    if kind == "tags":
        mlflow.set_tags(args[0])
    elif kind == "image":
        image, key, step = args
        mlflow.log_image(image, key=key, step=step, synchronous=True)
    elif kind == "artifact":
        path, artifact_path = args
        mlflow.log_artifact(path, artifact_path=artifact_path)
    elif kind == "model":
        from unmix.tracking.logged_model import log_separator

        model, config, name = args
        log_separator(model, config, name)  # pickle-free: safetensors weights + the code that rebuilds them
    elif kind == "end":
        (status,) = args
        mlflow.end_run(status=status)
    else:
        raise ValueError(f"unknown tracking call {kind!r}")


def _open_run(mlflow: Any, opening: dict) -> str:
    from mlflow.exceptions import MlflowException

    tags = dict(opening["tags"])
    experiment_id = open_experiment(mlflow, opening["uri"], opening["experiment"], artifact_location(opening["uri"]))
    run_id = opening["run_id"]
    if run_id is None and opening.get("find_tags"):
        run_id = _latest_run_with_tags(mlflow, experiment_id, opening["find_tags"])
        tags |= opening["find_tags"]  # a fresh run is found the same way next time
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except MlflowException:
            # The store that had the training run is gone (deleted mlflow.db, another
            # URI): log to a fresh run rather than lose the results.
            tags["unmix.resumed_from_missing_run"] = run_id
            run_id = None
    if run_id is not None:
        _hold_run_lock(run_id)  # before reopening: a killed stage's worker may still be writing
        run = mlflow.start_run(run_id=run_id, log_system_metrics=opening.get("system_metrics", False))
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=opening["run_name"],
            log_system_metrics=opening.get("system_metrics", False),
        )
        _hold_run_lock(run.info.run_id)
    try:
        if tags:
            mlflow.set_tags(tags)
        if opening["params"]:
            mlflow.log_params(opening["params"])
    except BaseException:
        mlflow.end_run(status="FAILED")  # never leave a half-opened run RUNNING
        raise
    return run.info.run_id


# --- One writer per run -------------------------------------------------------------
# A worker holds an OS lock named by its run id from opening the run until it exits; the
# lock dies with its process. A resumed training's worker takes it before reopening the run,
# so the worker of a killed stage, still draining its queue and then ending the run, can
# never write into the run after the resume reopened it.
RUN_LOCK_WAIT_S = 600.0
_held_run_locks: list[int] = []  # descriptors kept open for this process's life


def run_lock_path(run_id: str) -> Path:
    """The lock file of one run: on this machine, shared by every checkout and temp copy."""
    return Path(tempfile.gettempdir()) / "unmix-run-locks" / f"{run_id}.lock"


def _hold_run_lock(run_id: str, wait_s: float = RUN_LOCK_WAIT_S) -> None:
    path = run_lock_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(descriptor)
                raise TrackingError(
                    f"run {run_id} is still held by another process after {wait_s:.0f} s (lock {path})"
                ) from None
            time.sleep(0.2)
    _held_run_locks.append(descriptor)


def _latest_run_with_tags(mlflow: Any, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The newest run of the experiment carrying all these tags (a rerun makes a newer one)."""
    condition = " and ".join(f"tags.`{key}` = '{value}'" for key, value in sorted(tags.items()))
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=condition, order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0].info.run_id if runs else None


# --- end of one writer per run ------------------------------------------------------


def deliver_spool(path: Path, uri: str | None = None) -> tuple[str, str, list[tuple]]:
    """Deliver a spool's calls, in order, into the run they were made for.

    `uri` overrides the store the spool names (the store moved). Returns the store, the
    run and the calls delivered; deletes the spool when all are in. A failure keeps the
    rest in the spool, marks how far it got, and is a TrackingError.
    """
    from unmix.tracking.courier import next_batch

    header, already, calls = read_spool(path)
    uri, run_id = uri or header["uri"], header["run_id"]
    pending = collections.deque(calls)
    delivered = 0
    try:
        mlflow = _import_mlflow()
        mlflow.set_tracking_uri(uri)
        status_before = mlflow.get_run(run_id).info.status
        mlflow.start_run(run_id=run_id)  # the fluent calls (images, artifacts, model) need it active
        while pending:
            batch = next_batch(pending)
            _send(mlflow, run_id, batch)
            for _ in batch:
                pending.popleft()
            delivered += len(batch)
        if mlflow.active_run() is not None:  # no end in the spool (its process was killed): as it was
            mlflow.end_run(status=status_before if status_before != "RUNNING" else "KILLED")
    except Exception as error:  # noqa: BLE001 - one line for the person running the command
        if delivered:
            note_delivered(path, already + delivered)
        raise TrackingError(
            f"MLflow store {uri} did not take run {run_id}'s calls from {path}: {first_line(error)}"
        ) from None
    remove_spool(path)
    return uri, run_id, calls


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
    check_store(uri, "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking.uri")
    return RunTracker(uri=uri, experiment=experiment, run_name=run_name, **run)
