"""Run the team's MLflow tracking server: PostgreSQL backend store, proxied artifacts.

`make server` runs `python -m unmix.team.server`. With no backend given it keeps a
PostgreSQL cluster of its own in `.mlflow-server/postgres` (created on the first run,
started when needed, stopped on exit if it started it); MLFLOW_BACKEND_STORE_URI or
--backend-store-uri points it at an existing PostgreSQL instead. Either way the schema is
brought to this MLflow's version (`mlflow db upgrade`) before the server starts, and the
server stores artifacts under --artifacts-destination, serving them to clients
(`mlflow-artifacts:/`), so a client needs the server's URL only. Ctrl-C or SIGTERM stops
the server, its workers and the cluster it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from unmix.errors import UnmixError
from unmix.services import stop_process_group, wait_until_answering
from unmix.team import postgres, s3

DEFAULT_DIR = Path(".mlflow-server")
READY_TIMEOUT_S = 180.0  # workers import mlflow on a busy 2-core machine
STOP_TIMEOUT_S = 30.0
READY_LINE = "MLflow server ready:"  # the tests wait for this line


def without_password(uri: str) -> tuple[str, str | None]:
    """(the URI minus its password, the password, decoded): libpq reads it from PGPASSWORD instead."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri, None
    netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), urllib.parse.unquote(parts.password)


def client_url(host: str, port: int) -> str:
    """Where clients on this machine reach a server bound to `host`."""
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{reachable}:{port}"


def schema_revisions(backend_uri: str) -> tuple[str | None, str]:
    """(the database's MLflow schema revision, or None when it has none yet; this MLflow's head)."""
    import sqlalchemy
    from mlflow.store.db import utils

    engine = sqlalchemy.create_engine(backend_uri)
    try:
        current = None if utils._is_empty_database(engine) else utils._get_schema_version(engine)
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = " ".join(str(error.orig or error).split()).split(" (Background on this error")[0]
        raise UnmixError(f"cannot read the database {backend_uri}: {reason}") from None
    finally:
        engine.dispose()
    return current, utils._get_latest_schema_revision()


def mlflow_program() -> str:
    """The `mlflow` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.is_file() else "mlflow"


def upgrade_schema_if_needed(backend_uri: str, env: Mapping[str, str]) -> str:
    """Create or upgrade the MLflow schema when it is not at this MLflow's head; say what was done.

    `backend_uri` holds no password (libpq finds it in PGPASSWORD or PGPASSFILE of `env`).
    """
    current, head = schema_revisions(backend_uri)
    if current == head:
        return f"schema at {head}"
    if current is not None:
        print(
            f"upgrading the MLflow schema of {backend_uri} from {current} to {head} "
            "(migrations are not always transactional: back up a database you care about first)",
            flush=True,
        )
    # `mlflow db upgrade` creates the tables in an empty database and migrates an old one.
    result = subprocess.run(
        [mlflow_program(), "db", "upgrade", backend_uri], env=dict(env), capture_output=True, text=True
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise UnmixError(f"mlflow db upgrade {backend_uri} failed: {last}")
    return f"schema created at {head}" if current is None else f"schema upgraded {current} -> {head}"


def server_command(*, host: str, port: int, artifacts: str, workers: int | None, extra: Sequence[str]) -> list[str]:
    """The `mlflow server` command line; the backend URI goes by environment, keeping a password out of `ps`."""
    command = [
        mlflow_program(),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
    ]
    if workers is not None:
        command += ["--workers", str(workers)]
    return command + list(extra)


def server_env(env: Mapping[str, str], backend_uri: str) -> dict[str, str]:
    """`mlflow server`'s environment: the backend by variable, MLflow's job runner off unless asked for.

    MLflow 3's job runner (GenAI scorers and prompt optimisation, which unmix does not use)
    adds a runner and seven huey consumers, each importing mlflow: 25-31 s of CPU at every
    start against 10-11 s without (measured on a 2-core Xeon). MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true
    in the environment keeps it.
    """
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env, "MLFLOW_BACKEND_STORE_URI": backend_uri}


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Return once GET <url>/health answers OK; raise if the server exits or `timeout_s` passes."""
    problem = wait_until_answering(f"{url}/health", process, timeout_s, probe_timeout_s=2)
    if problem is not None:
        raise UnmixError(f"mlflow server at {url} {problem}")


class _Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def serve(args: argparse.Namespace) -> int:
    """Bring up the backend, the schema and the server; serve until signalled; tear down what we started."""
    env = dict(os.environ)
    cluster, started_cluster, server = None, False, None
    artifacts = args.artifacts_destination
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        artifacts = str(Path(artifacts).resolve())
    elif s3.is_s3(artifacts):
        # The server process inherits the keys and MLFLOW_S3_ENDPOINT_URL; clients need neither.
        print(f"artifacts bucket answers: {s3.check_destination(artifacts, env)}", flush=True)
    try:
        if args.backend_store_uri:
            # The password travels in PGPASSWORD: `mlflow db upgrade URI` would show it to `ps`.
            backend_uri, password = without_password(args.backend_store_uri)
            if password is not None:
                env["PGPASSWORD"] = os.environ["PGPASSWORD"] = password
        else:
            root = Path(args.cluster).resolve()
            cluster = postgres.load_cluster(root)
            if cluster is None:
                cluster = postgres.create_cluster(root, port=args.postgres_port)
                started_cluster = True
                print(
                    f"created a PostgreSQL cluster in {root} (database {cluster.database}, port {cluster.port})",
                    flush=True,
                )
            elif not cluster.is_running():
                cluster.start()
                started_cluster = True
            backend_uri = cluster.uri()
            env = cluster.client_env(env)
            os.environ["PGPASSFILE"] = env["PGPASSFILE"]  # for our own schema check
        schema = upgrade_schema_if_needed(backend_uri, env)
        env = server_env(env, backend_uri)
        command = server_command(
            host=args.host, port=args.port, artifacts=artifacts, workers=args.workers, extra=args.mlflow_args
        )
        # Its own process group: stopping it reaches the workers it forks, whatever signal we got.
        server = subprocess.Popen(command, env=env, start_new_session=True)
        url = client_url(args.host, args.port)
        wait_until_serving(url, server, args.ready_timeout)
        print(
            f"{READY_LINE} {url} (backend {backend_uri}, {schema}; artifacts {artifacts})\n"
            f"clients: export MLFLOW_TRACKING_URI={url}",
            flush=True,
        )
        return server.wait()
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            stop_process_group(server, STOP_TIMEOUT_S)
        if started_cluster and cluster is not None and cluster.is_running():
            cluster.stop()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the MLflow tracking server on PostgreSQL with proxied artifacts (make server).",
        epilog="Arguments after -- go to `mlflow server` unchanged (e.g. -- --allowed-hosts mlflow.example.org).",
    )
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
        help="an existing database, postgresql://USER[:PASSWORD]@HOST:PORT/DB "
        "(default: $MLFLOW_BACKEND_STORE_URI, else a cluster in --cluster)",
    )
    parser.add_argument(
        "--cluster",
        default=str(DEFAULT_DIR / "postgres"),
        help="folder of the project's own PostgreSQL cluster, made on first use (default: %(default)s)",
    )
    parser.add_argument(
        "--postgres-port",
        type=int,
        default=None,
        help="port of a new cluster (default: a free one, kept in its cluster.json)",
    )
    parser.add_argument(
        "--artifacts-destination",
        default=os.environ.get("MLFLOW_ARTIFACTS_DESTINATION", str(DEFAULT_DIR / "artifacts")),
        help="where the server stores artifacts: a folder or s3://, gs://... "
        "(default: $MLFLOW_ARTIFACTS_DESTINATION, else %(default)s)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s, this machine only)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="server worker processes (default: MLflow's)")
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_S, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    args = parser().parse_args(argv)
    args.mlflow_args = extra
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        return serve(args)
    except UnmixError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
