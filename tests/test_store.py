"""The MLflow store: up-front checks, creation by racing processes, retries on a locked database."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from unmix.tracking.store import StoreError, check_store, lock_path, open_experiment, retry_when_locked, sqlite_path


def test_sqlite_path_of_local_stores_only() -> None:
    assert sqlite_path("sqlite:////repo/mlflow.db") == Path("/repo/mlflow.db")
    assert sqlite_path("sqlite:///mlflow.db?timeout=5") == Path("mlflow.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("http://server:5000") is None
    assert lock_path(Path("/repo/mlflow.db")) == Path("/repo/mlflow.db.lock")


@pytest.mark.parametrize("uri", ["mlflow.db", "./mlruns", "ftp://host/x", "sqlite3:///x.db"])
def test_unknown_kind_of_store_is_named(uri: str) -> None:
    with pytest.raises(StoreError, match=rf"^tracking.uri={uri}: not a tracking store; expected sqlite:///<file>"):
        check_store(uri, "tracking.uri")


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "postgresql+psycopg2://u@h/db", "databricks"])
def test_servers_and_databases_are_not_opened_here(uri: str) -> None:
    check_store(uri, "MLFLOW_TRACKING_URI")  # no connection attempted: nothing raised


def test_a_store_yet_to_be_created_is_created_here_in_a_writable_folder(tmp_path: Path) -> None:
    store = tmp_path / "new" / "mlflow.db"
    check_store(f"sqlite:///{store}", "tracking.uri")
    with sqlite3.connect(store) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        StoreError, match=r"mlflow.db: cannot be written \(.*file is a file\); expected a writable folder"
    ):
        check_store(f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}", "tracking.uri")


def test_an_existing_store_is_opened_and_written_back_unchanged(tmp_path: Path, mlflow_store_template: Path) -> None:
    before = mlflow_store_template.read_bytes()
    check_store(f"sqlite:///{mlflow_store_template}", "tracking.uri")
    assert mlflow_store_template.read_bytes() == before
    assert not Path(f"{mlflow_store_template}-journal").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not a database at all" * 100, "file is not a database"),
        (b"SQLite format 3\0" + b"\xff" * 84, "not a usable MLflow SQLite store"),
    ],
)
def test_a_corrupt_store_is_named(tmp_path: Path, content: bytes, problem: str) -> None:
    store = tmp_path / "mlflow.db"
    store.write_bytes(content)
    with pytest.raises(
        StoreError, match=rf"^{store}: not a usable MLflow SQLite store \(.*\); move it aside"
    ) as caught:
        check_store(f"sqlite:///{store}", "tracking.uri")
    assert problem in str(caught.value)


def test_retry_when_locked_retries_only_a_locked_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("unmix.tracking.store.time.sleep", lambda seconds: None)
    attempts = []

    def locked_twice() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert retry_when_locked(locked_twice) == "done" and len(attempts) == 3
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_when_locked(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("no such table: runs")))
    always = []
    with pytest.raises(sqlite3.OperationalError):
        locked = sqlite3.OperationalError("database is locked")
        retry_when_locked(lambda: always.append(1) or (_ for _ in ()).throw(locked), retries=2)
    assert len(always) == 3


def _open(uri: str, barrier, results) -> None:
    import mlflow

    barrier.wait()  # all processes open the fresh store at the same instant
    try:
        results.put(open_experiment(mlflow, uri, "unmix", None))
    except Exception as error:  # noqa: BLE001 - reported to the test
        results.put(f"error: {error}")


@pytest.mark.slow  # processes racing to create a store, each importing mlflow
def test_racing_processes_create_one_store_and_one_experiment(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=_open, args=(uri, barrier, results)) for _ in range(3)]
    for process in processes:
        process.start()
    ids = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert len(set(ids)) == 1 and not ids[0].startswith("error"), ids
    import mlflow

    experiments = mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    assert sorted(e.name for e in experiments) == ["Default", "unmix"]


def test_a_deleted_experiment_is_named(mlflow_uri: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    client.delete_experiment(client.create_experiment("unmix"))
    with pytest.raises(StoreError, match=r"^tracking.experiment=unmix: deleted in .*mlflow experiments restore"):
        open_experiment(mlflow, mlflow_uri, "unmix", None)
