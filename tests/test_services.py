"""Local services as process groups: waited for within a bound, stopped with their children."""

from __future__ import annotations

import os
import subprocess
import sys

from unmix.services import free_port, stop_process_group, wait_until_answering


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_a_server_that_answers_is_ready_and_stops_with_its_children(tmp_path):
    port = free_port()
    # A leader that forks a worker (like a server with workers), then serves.
    server = start(
        "-c",
        f"import subprocess, sys, http.server, functools; "
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"http.server.test(functools.partial(http.server.SimpleHTTPRequestHandler, "
        f"directory={str(tmp_path)!r}), port={port}, bind='127.0.0.1')",
    )
    try:
        assert wait_until_answering(f"http://127.0.0.1:{port}/", server, timeout_s=60) is None
    finally:
        stop_process_group(server, timeout_s=10)
    assert server.poll() is not None
    assert not alive_in_group(server.pid)  # the forked worker went with its group


def alive_in_group(group: int) -> list[int]:
    """Processes of the group still running (a killed orphan may linger as a zombie until reaped)."""
    import psutil

    alive = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def test_a_server_that_exits_or_stays_silent_is_said_in_words():
    exits = start("-c", "raise SystemExit(3)")
    assert wait_until_answering(f"http://127.0.0.1:{free_port()}/", exits, timeout_s=30) == "exited with status 3"
    silent = start("-c", "import time; time.sleep(600)")
    url = f"http://127.0.0.1:{free_port()}/"
    try:
        assert wait_until_answering(url, silent, timeout_s=1.5) == f"did not answer {url} within 2 s"
    finally:
        stop_process_group(silent, timeout_s=10)
    assert silent.poll() is not None
