"""A PostgreSQL cluster of the project's own, run with PostgreSQL's server programs.

Used by `make server` (a cluster in the checkout, kept between runs) and by the tests (a
throwaway one). initdb and postgres refuse to run as root: as root every server program
runs as the `postgres` user, and the cluster folder is handed to that user.

Layout of a cluster folder:
    data/          PGDATA
    socket/        the unix socket (administration only, no password)
    postgres.log   the server's log
    cluster.json   port, database and role, fixed when the cluster is created
    pgpass         the role's password in libpq's PGPASSFILE format (mode 0600)
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from unmix.errors import UnmixError
from unmix.services import free_port

SERVER_USER = "postgres"  # the account server programs run as when we are root
SUPERUSER = "postgres"  # the cluster's superuser role, reachable only over the socket
PROGRAMS = ("initdb", "pg_ctl", "psql")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian keeps the server programs off PATH
START_TIMEOUT_S = 60


class PostgresError(UnmixError):
    """PostgreSQL's server programs are missing or a cluster operation failed."""


def find_server_programs(environ: Mapping[str, str] | None = None, debian_glob: str = DEBIAN_BIN_GLOB) -> Path:
    """The folder holding initdb, pg_ctl and psql: $PG_BIN, else initdb's on PATH, else Debian's newest."""
    environ = os.environ if environ is None else environ
    candidates: list[Path] = []
    if environ.get("PG_BIN"):
        candidates.append(Path(environ["PG_BIN"]))
    on_path = shutil.which("initdb", path=environ.get("PATH"))
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/").glob(debian_glob.lstrip("/")), key=_major_version, reverse=True)
    for folder in candidates:
        if all((folder / program).is_file() for program in PROGRAMS):
            return folder
    raise PostgresError(
        "PostgreSQL server programs (initdb, pg_ctl, psql) not found on PATH, in $PG_BIN or in "
        f"{debian_glob}: install them (Debian: apt-get install postgresql) or point "
        "--backend-store-uri at an existing PostgreSQL"
    )


def _major_version(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else -1


def server_user_prefix(euid: int | None = None) -> list[str]:
    """What runs a command as the server's account: nothing for a normal user, runuser for root."""
    if (os.geteuid() if euid is None else euid) != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, but there is no `{SERVER_USER}` user for PostgreSQL's server programs "
            "(they refuse root): install PostgreSQL from your distribution, which creates it"
        ) from None
    return ["runuser", "-u", SERVER_USER, "--"]


@dataclass(frozen=True)
class Cluster:
    """A cluster folder (see the module's docstring) and how to reach its database."""

    root: Path
    port: int
    database: str
    role: str
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    def uri(self, host: str = "127.0.0.1") -> str:
        """The SQLAlchemy URI of the database, no password in it: libpq reads it from PGPASSFILE."""
        return f"postgresql://{self.role}@{host}:{self.port}/{self.database}"

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment whose libpq clients (psycopg, psql) find the role's password."""
        return {**(os.environ if base is None else base), "PGPASSFILE": str(self.pgpass)}

    def _program(self, name: str, *args: str) -> list[str]:
        return [*server_user_prefix(), str(self.bin / name), *args]

    def _run(self, command: list[str], what: str) -> str:
        # cwd: the server's account may not be allowed into the caller's working directory.
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True)
        if result.returncode != 0:
            detail = " ".join((result.stderr or result.stdout).split()) or f"exit status {result.returncode}"
            raise PostgresError(f"{what} failed ({self.root}): {detail}")
        return result.stdout

    def is_running(self) -> bool:
        """True when this cluster's postmaster is up (pg_ctl status)."""
        if not (self.data / "PG_VERSION").is_file():
            return False
        result = subprocess.run(
            self._program("pg_ctl", "status", "-D", str(self.data)), cwd=self.root, capture_output=True, text=True
        )
        return result.returncode == 0

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            self._program(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_TIMEOUT_S)
            ),
            "pg_ctl start",
        )

    def stop(self) -> None:
        """Stop the server (fast mode: roll back open transactions, then shut down cleanly)."""
        self._run(self._program("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w"), "pg_ctl stop")

    def superuser_sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement as the superuser over the unix socket; return psql's output."""
        return self._run(
            self._program(
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                statement,
            ),
            "psql",
        )


def load_cluster(root: Path, bin: Path | None = None) -> Cluster | None:
    """The cluster made earlier in `root`, or None when there is none."""
    root = root.resolve()  # its programs run with the cluster folder as working directory
    state = root / "cluster.json"
    if not state.is_file():
        return None
    fields = json.loads(state.read_text())
    return Cluster(root=root, bin=bin or find_server_programs(), **fields)


def create_cluster(
    root: Path, *, port: int | None = None, database: str = "mlflow", role: str = "mlflow", bin: Path | None = None
) -> Cluster:
    """initdb a new cluster in `root` (absent or empty) with a database owned by a password role.

    The server listens on 127.0.0.1:`port` (password, scram-sha-256) and on a unix socket in
    the cluster folder (the superuser, no password; the folder is the server account's alone).
    The cluster is left running.
    """
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        raise PostgresError(
            f"{root}: not empty, but holds no cluster.json (an earlier creation stopped "
            "half-way?): remove it, or choose another folder for the new cluster"
        )
    bin = bin or find_server_programs()
    prefix = server_user_prefix()
    root.mkdir(parents=True, exist_ok=True)
    if prefix:
        shutil.chown(root, user=SERVER_USER)
        _check_reachable(root, prefix)
    cluster = Cluster(root=root, port=port or free_port(), database=database, role=role, bin=bin)
    password = secrets.token_hex(16)
    # Any database of this cluster: the role owns the one made here and may be given more.
    # The file stays the caller's, for the caller's clients; libpq ignores one others can read.
    cluster.pgpass.write_text(
        f"127.0.0.1:{cluster.port}:*:{role}:{password}\nlocalhost:{cluster.port}:*:{role}:{password}\n"
    )
    cluster.pgpass.chmod(0o600)
    cluster._run(
        cluster._program(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ),
        "initdb",
    )
    cluster._run([*prefix, "mkdir", "-m", "700", str(cluster.socket_dir)], "mkdir socket")
    settings = (
        f"\n# unmix: {root}\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\n"
        f"unix_socket_directories = '{cluster.socket_dir}'\n"
    )
    _append_as_server_user(cluster, settings)
    cluster.start()
    try:
        cluster.superuser_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        cluster.superuser_sql(f"CREATE DATABASE {database} OWNER {role}")
    except BaseException:
        cluster.stop()  # never leave a half-made cluster running
        raise
    (root / "cluster.json").write_text(json.dumps({"port": cluster.port, "database": database, "role": role}))
    return cluster


def _append_as_server_user(cluster: Cluster, text: str) -> None:
    """Append to postgresql.conf, which belongs to the server's account."""
    conf = cluster.data / "postgresql.conf"
    result = subprocess.run(
        [*server_user_prefix(), "tee", "-a", str(conf)], input=text, text=True, capture_output=True, cwd=cluster.root
    )
    if result.returncode != 0:
        raise PostgresError(f"{conf}: could not write the settings: {result.stderr.strip()}")


def _check_reachable(root: Path, prefix: list[str]) -> None:
    """Fail early when the server's account cannot get into `root` (a parent folder is 0700)."""
    result = subprocess.run([*prefix, "test", "-w", str(root)], capture_output=True, cwd="/")
    if result.returncode != 0:
        raise PostgresError(
            f"{root}: the `{SERVER_USER}` user cannot write here (a parent folder "
            "is closed to it); put the cluster in a folder it can reach"
        )
