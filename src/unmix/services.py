"""Local HTTP services run as child process groups (the team's `mlflow server`, a model
server, PostgreSQL): a free port for one, wait until it answers, stop it with every worker
it forked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_until_answering(
    url: str, process: subprocess.Popen, timeout_s: float, probe_timeout_s: float = 5.0
) -> str | None:
    """Poll GET `url` until it answers 200. None once it does; otherwise why not, in words:
    the process exited (with its status) or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=probe_timeout_s) as response:
                if response.status == 200:
                    return None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    return f"did not answer {url} within {timeout_s:.0f} s"


def stop_process_group(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the process's whole group (a server forks workers), SIGKILL it if the leader
    outlives `timeout_s`, and SIGKILL workers a leader that exited left behind."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
