"""What a train run's system metrics cost: the sampling thread's CPU against the stage's time.

    python benchmarks/system_metrics_cost.py --seconds 120

Opens an MLflow run with system metrics on a scratch SQLite store, as the tracking worker
does (`log_system_metrics=True`, one sample every `--interval` seconds, by default the
worker's SYSTEM_METRICS_INTERVAL_S), while this process's main thread keeps the cores busy
the way training does (matrix products that release the GIL). Measured in one run: the CPU
time of MLflow's SystemMetricsMonitor thread (sampling psutil and pynvml, the run lookup it
makes after each sample, and its writes) over the wall time, i.e. the share of one core it
takes, and over the process's CPU time in the same window. CPU time, unlike a difference of
wall times, is not blurred by other work on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from unmix.tracking.tracker import SYSTEM_METRICS_INTERVAL_S  # noqa: E402 - after the path


def thread_cpu_seconds(name: str) -> float:
    """User + system CPU seconds of this process's thread called `name` (0 if it is gone)."""
    wanted = {t.native_id for t in threading.enumerate() if t.name == name}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in wanted)


def busy(until: float) -> None:
    """Keep the cores busy until `until` (monotonic), as a training does."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256), dtype=np.float32)
    while time.monotonic() < until:
        a = np.tanh(a @ a.T / 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the stand-in stage runs")
    parser.add_argument("--interval", type=float, default=SYSTEM_METRICS_INTERVAL_S, help="seconds between samples")
    args = parser.parse_args()
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = str(args.interval)
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        mlflow.set_experiment("system-metrics-cost")
        process = psutil.Process()
        with mlflow.start_run(log_system_metrics=True) as run:
            time.sleep(0.5)  # the monitor thread starts
            cpu_before, started = process.cpu_times(), time.monotonic()
            monitor_before = thread_cpu_seconds("SystemMetricsMonitor")
            busy(started + args.seconds)
            monitor = thread_cpu_seconds("SystemMetricsMonitor") - monitor_before
            wall, cpu_after = time.monotonic() - started, process.cpu_times()
        process_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        client = mlflow.MlflowClient()
        samples = len(client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage"))
        keys = sorted(k for k in client.get_run(run.info.run_id).data.metrics if k.startswith("system/"))
    print(
        f"interval {args.interval:g} s, {wall:.1f} s of busy stand-in stage, {samples} samples of {len(keys)} metrics"
    )
    print(f"metrics: {', '.join(keys)}")
    print(f"sampling thread: {monitor:.3f} s CPU, {1000 * monitor / max(samples, 1):.1f} ms per sample")
    print(f"share of the process's CPU: {100 * monitor / process_cpu:.3f}% of {process_cpu:.1f} s")
    print(f"system metrics cost: {100 * monitor / wall:.3f}% of one core over the stage's wall time")


if __name__ == "__main__":
    main()
