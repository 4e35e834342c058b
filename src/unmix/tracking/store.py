"""The MLflow store: checked before a stage starts work, created by one process at a time.

MLflow creates a SQLite store on first use by running its schema migrations, outside any
lock: two `dvc queue` workers starting on a fresh clone both migrate and one fails
("duplicate column name"). MLflow itself checks only whether every table exists, so a
process arriving halfway through another's migration starts migrating too. Every opening
of a local SQLite store here therefore takes an exclusive file lock beside the .db
(`<db>.lock`, released by the kernel if its holder dies); once the store is complete the
lock is held for the few milliseconds an opening takes. A store that does not exist yet is
created by the stage's own process before its work, not by its low-priority tracking worker.

After that SQLite serialises writers itself: MLflow's sessions wait up to 20 s for a lock
(`PRAGMA busy_timeout`), and connections opened outside a session (engine creation, schema
checks) wait `BUSY_TIMEOUT_S` here instead of pysqlite's 5 s. An operation that still finds
the database locked is retried.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from unmix.atomic import check_writable
from unmix.errors import OutputError, UnmixError

T = TypeVar("T")

# MLflow's own migrations of a fresh store take ~9 s on an idle 2-core machine; a niced
# worker creating it while two trainings hold both cores needs many times that.
STORE_LOCK_TIMEOUT_S = 900.0
BUSY_TIMEOUT_S = 60.0
LOCKED_RETRIES = 5
# Schemes MLflow 3 opens as a tracking store (a database dialect may add "+driver").
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


class StoreError(UnmixError):
    """The tracking store cannot be used: corrupt, read-only, or an unknown kind of URI."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a local `sqlite:///<path>` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def lock_path(database: Path) -> Path:
    """The lock file that serialises openings of `database`: beside it, on the same disk."""
    return database.with_name(database.name + ".lock")


def check_store(uri: str, named: str) -> None:
    """One line naming the store and what is wrong with it, before the stage does any work.

    `named` says where the URI came from (MLFLOW_TRACKING_URI or tracking.uri). Cheap when
    the store exists (no mlflow import, one SQLite connection); a store that does not exist
    yet is created here (`create_store`).
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in TRACKING_SCHEMES:
        raise StoreError(
            f"{named}={uri}: not a tracking store; expected sqlite:///<file>, http(s)://<server> "
            "or a database URL (postgresql://, mysql://, mssql://)"
        )
    database = sqlite_path(uri)
    if database is None:
        return
    if not database.exists() or database.stat().st_size == 0:
        try:
            check_writable(database)  # SQLite creates it, and a journal beside it
        except OutputError as error:
            raise StoreError(str(error)) from None
        create_store(uri, database)
        return
    if not database.is_file():
        raise StoreError(f"{database}: not a file; expected an MLflow SQLite store ({named})")
    from filelock import FileLock, Timeout

    try:
        with FileLock(lock_path(database), timeout=STORE_LOCK_TIMEOUT_S):  # not while another creates it
            _check_database(database)
    except Timeout:
        raise StoreError(
            f"{lock_path(database)}: held by another process for {STORE_LOCK_TIMEOUT_S:.0f} s; "
            "expected it free once the store exists"
        ) from None
    except OSError as error:  # the lock file cannot be made: the folder is read-only
        raise StoreError(
            f"{database}: the MLflow store is read-only (cannot create {lock_path(database).name} beside it: "
            f"{error.strerror or error}); expected a writable file in a writable folder"
        ) from None


def _check_database(database: Path) -> None:
    try:
        connection = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError(f"{database}: cannot open the MLflow store ({error})") from None
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header
        # One write, rolled back: a lock alone succeeds on a file this process cannot write.
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            connection.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            connection.execute("ROLLBACK")
    except sqlite3.DatabaseError as error:
        if "readonly" in str(error) or "read-only" in str(error):
            raise StoreError(
                f"{database}: the MLflow store is read-only ({error}); expected a writable file in a "
                "writable folder (SQLite writes a journal beside it)"
            ) from None
        raise StoreError(
            f"{database}: not a usable MLflow SQLite store ({error}); move it aside to start a "
            "new one, or restore it from a backup"
        ) from None
    finally:
        connection.close()


def create_store(uri: str, database: Path) -> None:
    """Create the SQLite store now, in the stage's own process, under the lock.

    Left to the tracking worker, MLflow's migrations (~9 s of CPU) would run at the
    worker's low priority: with two trainings holding both cores that took over a minute,
    which the stage then waited for after its training. Here they cost ~10 s once, before
    the training starts; a second process arriving meanwhile waits for them on the lock.
    """
    import mlflow
    from filelock import FileLock

    _wait_longer_for_sqlite_locks()
    try:
        with FileLock(lock_path(database), timeout=STORE_LOCK_TIMEOUT_S):
            retry_when_locked(lambda: mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1))
    except Exception as error:  # noqa: BLE001 - MLflow and SQLAlchemy raise many types
        text = str(error).strip()
        why = text.splitlines()[0] if text else repr(error)
        raise StoreError(f"{database}: cannot create the MLflow store ({why})") from None


# MLflow 3 opens an experiment in the view this tag names; ours is model training, not GenAI.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def open_experiment(mlflow: Any, uri: str, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name` in the store at `uri`, creating store and experiment if need be.

    Call it before any other use of the store in this process: the store opens under the
    lock, and MLflow keeps the opened store for every later call.
    """
    database = sqlite_path(uri)
    if database is None:
        return retry_when_locked(lambda: _get_or_create_experiment(mlflow, uri, name, artifact_location))
    from filelock import FileLock

    _wait_longer_for_sqlite_locks()
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(database), timeout=STORE_LOCK_TIMEOUT_S):
        return retry_when_locked(lambda: _get_or_create_experiment(mlflow, uri, name, artifact_location))


def _get_or_create_experiment(mlflow: Any, uri: str, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise StoreError(
                f"tracking.experiment={name}: deleted in {uri}; expected a live experiment "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) "
                "or another name"
            )
    else:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:
            # Another process on the same server or database created it first.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before unmix set it; a user's choice stays
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def retry_when_locked(call: Callable[[], T], retries: int = LOCKED_RETRIES) -> T:
    """`call()`, tried again after a pause when SQLite still reports the database locked."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as error:  # MlflowException and SQLAlchemy's OperationalError both say it
            if attempt == retries or "database is locked" not in str(error):
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


_busy_timeout_installed = False


def _wait_longer_for_sqlite_locks() -> None:
    """Every SQLite connection this process opens waits BUSY_TIMEOUT_S for a lock, not 5 s."""
    global _busy_timeout_installed
    if _busy_timeout_installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def set_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    event.listen(Engine, "connect", set_busy_timeout)
    _busy_timeout_installed = True
