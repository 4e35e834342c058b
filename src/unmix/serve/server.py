"""`mlflow models serve` as a child process on a free localhost port, and its /invocations call.

What the tests and the serving benchmark share: start the real server, wait for it within a
bound, ask it to separate, and always stop it (its whole process group) afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from unmix.errors import UnmixError
from unmix.services import free_port, stop_process_group, wait_until_answering

START_TIMEOUT_S = 300.0  # imports of mlflow and torch, the model's load: slow on a busy CPU
STOP_TIMEOUT_S = 30.0


class ServerError(UnmixError):
    """The model server did not start, or answered with an error."""


@contextmanager
def served_model(
    model_uri: str, tracking_uri: str, environ: Mapping[str, str] | None = None, timeout_s: float = START_TIMEOUT_S
) -> Iterator[str]:
    """Yield the base URL of `mlflow models serve -m model_uri --env-manager local`, ready to answer."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Both URIs: a registry URI inherited from the caller (mlflow.set_registry_uri exports it)
    # would resolve models:/ names in another store.
    env = {
        **(environ if environ is not None else os.environ),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
    }
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_ready(url, server, log, timeout_s)
            yield url
        finally:
            stop_process_group(server, STOP_TIMEOUT_S)


def invoke(url: str, mixtures: np.ndarray, timeout_s: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """POST uint8 mixtures (B, H, W, 3) to /invocations; both outputs as uint8 arrays."""
    body = json.dumps({"inputs": mixtures.tolist()}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            predictions = json.load(response)["predictions"]
    except urllib.error.HTTPError as error:
        raise ServerError(f"{url}/invocations answered {error.code}: {error.read()[:300]!r}") from None
    return (np.asarray(predictions["output_1"], dtype=np.uint8), np.asarray(predictions["output_2"], dtype=np.uint8))


def _wait_until_ready(url: str, server: subprocess.Popen, log, timeout_s: float) -> None:
    problem = wait_until_answering(f"{url}/ping", server, timeout_s)
    if problem is not None:
        raise ServerError(f"the model server {problem}: {_tail(log)}")


def _tail(log, lines: int = 5) -> str:
    log.flush()
    log.seek(0)
    return " | ".join(log.read().strip().splitlines()[-lines:])
