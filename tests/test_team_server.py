"""The team's MLflow server on PostgreSQL: the launcher's pieces, the schema, and the real
pipeline logging to it, from two clones at once."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import TINY_SET, TeamServer, command_env, git, write_params
from unmix.services import free_port
from unmix.team import postgres, server

EPOCHS = list(range(1, TINY_SET["epochs"] + 1))


def test_a_password_leaves_the_uri_for_pgpassword_decoded() -> None:
    assert server.without_password("postgresql://ann:s%40cret@db.lan:5432/mlflow") == (
        "postgresql://ann@db.lan:5432/mlflow",
        "s@cret",
    )
    assert server.without_password("postgresql://ann@127.0.0.1/mlflow") == ("postgresql://ann@127.0.0.1/mlflow", None)


def test_clients_reach_a_wildcard_bind_on_loopback() -> None:
    assert server.client_url("0.0.0.0", 5000) == "http://127.0.0.1:5000"
    assert server.client_url("10.1.2.3", 8080) == "http://10.1.2.3:8080"


def test_server_command_serves_artifacts_and_keeps_the_backend_out_of_argv() -> None:
    command = server.server_command(
        host="127.0.0.1", port=5001, artifacts="/srv/art", workers=2, extra=["--allowed-hosts", "mlflow.lan"]
    )
    assert command[1:] == [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "5001",
        "--serve-artifacts",
        "--artifacts-destination",
        "/srv/art",
        "--workers",
        "2",
        "--allowed-hosts",
        "mlflow.lan",
    ]
    assert not any("postgresql" in part for part in command)  # it goes by MLFLOW_BACKEND_STORE_URI


def test_server_env_passes_the_backend_and_leaves_mlflows_job_runner_off_unless_asked() -> None:
    env = server.server_env({"PATH": "/bin"}, "postgresql://u@h:1/db")
    assert env == {
        "PATH": "/bin",
        "MLFLOW_BACKEND_STORE_URI": "postgresql://u@h:1/db",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    asked = server.server_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}, "postgresql://u@h:1/db")
    assert asked["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_server_programs_from_pg_bin_else_a_line_naming_them(tmp_path: Path) -> None:
    for program in postgres.PROGRAMS:
        (tmp_path / program).touch()
    found = postgres.find_server_programs({"PG_BIN": str(tmp_path), "PATH": ""}, debian_glob="/nonexistent/*")
    assert found == tmp_path
    with pytest.raises(postgres.PostgresError, match=r"initdb, pg_ctl, psql\) not found"):
        postgres.find_server_programs({"PATH": str(tmp_path / "none")}, debian_glob="/nonexistent/*")


def test_server_programs_run_as_postgres_only_for_root() -> None:
    assert postgres.server_user_prefix(euid=1000) == []
    try:
        assert postgres.server_user_prefix(euid=0) == ["runuser", "-u", "postgres", "--"]
    except postgres.PostgresError as error:  # a machine without the postgres account
        assert "no `postgres` user" in str(error)


@pytest.mark.server
def test_schema_is_created_then_upgraded_only_when_behind(
    team_server: TeamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy
    from alembic import command
    from alembic.script import ScriptDirectory
    from mlflow.store.db import utils
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    cluster = postgres.load_cluster(team_server.cluster_root)
    env = cluster.client_env()
    monkeypatch.setenv("PGPASSFILE", env["PGPASSFILE"])  # for this process's own connections
    for name in ("fresh", "behind"):
        cluster.superuser_sql(f"CREATE DATABASE {name} OWNER {cluster.role}")
    base = cluster.uri().rsplit("/", 1)[0]
    head = utils._get_latest_schema_revision()

    assert server.upgrade_schema_if_needed(f"{base}/fresh", env) == f"schema created at {head}"
    assert server.schema_revisions(f"{base}/fresh") == (head, head)
    assert server.upgrade_schema_if_needed(f"{base}/fresh", env) == f"schema at {head}"

    # A database one migration behind this MLflow, as an older MLflow would have left it.
    engine = sqlalchemy.create_engine(f"{base}/behind")
    config = utils._get_alembic_config(str(engine.url))
    previous = ScriptDirectory.from_config(config).get_revision(head).down_revision
    InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, previous)
    engine.dispose()
    assert server.schema_revisions(f"{base}/behind") == (previous, head)
    assert server.upgrade_schema_if_needed(f"{base}/behind", env) == f"schema upgraded {previous} -> {head}"
    assert server.schema_revisions(f"{base}/behind") == (head, head)


def one_set_project(project: Path, experiment: str) -> None:
    """Keep the `seed` set alone (the tiny one) and log to `experiment`."""

    def edit(params: dict) -> None:
        params["sets"] = {"seed": params["sets"]["seed"]}
        params["tracking"]["experiment"] = experiment

    write_params(project, edit)
    git(project, "commit", "-qam", "one set")


@pytest.mark.server
@pytest.mark.e2e  # two clones' `dvc repro` at once
def test_two_clones_log_every_run_to_the_server_at_once(
    tiny_project: Path, team_server: TeamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)  # models:/ URIs resolve through it
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", team_server.url)  # not one an earlier test exported
    experiment_name = "unmix-two-clones"
    one_set_project(tiny_project, experiment_name)
    clones = {}
    for seed in (1, 2):  # a different training seed tells the clones' runs apart
        clone = tiny_project.parent / f"clone{seed}"
        git(tiny_project.parent, "clone", "-q", str(tiny_project), str(clone))
        write_params(clone, lambda p, seed=seed: p["sets"]["seed"].update(seed=seed))
        clones[seed] = clone

    # The two ways to name the server: the environment variable, and tracking.uri in params.yaml.
    envs = {1: command_env({"MLFLOW_TRACKING_URI": team_server.url}), 2: command_env()}
    write_params(clones[2], lambda p: p["tracking"].update(uri=team_server.url))
    logs = {seed: (clone / "repro.log").open("w") for seed, clone in clones.items()}
    repros = {
        seed: subprocess.Popen(["dvc", "repro"], cwd=clone, env=envs[seed], stdout=logs[seed], stderr=subprocess.STDOUT)
        for seed, clone in clones.items()
    }
    try:
        codes = {seed: repro.wait(timeout=900) for seed, repro in repros.items()}
    finally:
        for repro in repros.values():
            if repro.poll() is None:
                repro.kill()
        for log in logs.values():
            log.close()
    for seed, code in codes.items():
        assert code == 0, (clones[seed] / "repro.log").read_text()[-3000:]

    client = mlflow.MlflowClient(tracking_uri=team_server.url)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server stores and serves them
    runs = {int(run.data.params["set.seed"]): run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [1, 2]  # one run per clone: none lost, none doubled
    for run in runs.values():
        assert_run_complete(client, run, team_server)

    first, second = runs[1].info, runs[2].info
    overlap_s = (min(first.end_time, second.end_time) - max(first.start_time, second.start_time)) / 1000
    print(f"\ntwo clones: runs {first.run_id} and {second.run_id} overlapped {overlap_s:.1f} s", flush=True)
    assert overlap_s > 0


def assert_run_complete(client, run, team_server: TeamServer) -> None:
    """One set's run as train, evaluate and render-figures leave it: metrics, images, figures, model."""
    import mlflow.pyfunc
    import numpy as np

    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["unmix.set"] == "seed"
    for key in ("train/l1", "valid/l1"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == EPOCHS
    assert {"test/best/psnr", "test/seed_l1", "baseline/best/psnr"} <= set(run.data.metrics)  # evaluate
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    assert {int(s) for p in images for s in re.findall(r"\+step\+(\d+)\+", p)} == {2, 3}
    figures = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}  # render-figures
    assert {"reconstructions_seed.png", "learning_curves_seed.png"} <= figures
    # Proxied artifacts: the server wrote them into its own destination folder.
    assert list(team_server.artifacts.rglob(f"{run_id}/artifacts/figures/reconstructions_seed.png"))

    models = [
        m for m in client.search_logged_models(experiment_ids=[run.info.experiment_id]) if m.source_run_id == run_id
    ]
    assert len(models) == 1
    mlflow.set_tracking_uri(team_server.url)  # models:/ resolves in-process, not by the environment
    model = mlflow.pyfunc.load_model(models[0].model_uri)  # downloaded through the server
    outputs = model.predict(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    assert {key: value.shape for key, value in outputs.items()} == {
        "output_1": (1, 32, 32, 3),
        "output_2": (1, 32, 32, 3),
    }


def test_an_unreachable_database_is_one_line() -> None:
    uri = f"postgresql://mlflow@127.0.0.1:{free_port()}/mlflow"  # nobody listens there
    with pytest.raises(server.UnmixError, match=rf"cannot read the database {uri}: connection failed"):
        server.upgrade_schema_if_needed(uri, {})
