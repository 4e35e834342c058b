"""Train-stage wall time with MLflow tracking on and off, alternated in one run.

    python benchmarks/tracking_overhead.py --set seed --repeats 5

Runs the real `stages/train.py` as a subprocess (process start and imports included) on
the existing data/subset, with a private copy of a migrated MLflow store, and prints the
overhead of tracking as a fraction of the untracked train-stage time (medians), the
median of the pairs' ratios, and the CPU seconds the stage and its worker used: CPU time
is far less noisy than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def children_cpu_seconds() -> float:
    """User + system CPU of every waited-for descendant so far (the stage and its worker)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_train(params: dict, set_name: str, workdir: Path, data: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one `stages/train.py` process with these params."""
    params_path = workdir / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    cpu_before, started = children_cpu_seconds(), time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "train.py"),
            "--params",
            str(params_path),
            "--set",
            set_name,
            "--data",
            str(data),
            "--model",
            str(workdir / "model.pt"),
            "--history",
            str(workdir / "history.csv"),
        ],
        check=True,
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, children_cpu_seconds() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="set_name", default="seed")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "subset")
    parser.add_argument("--repeats", type=int, default=5, help="alternated on/off pairs (default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="override the set's epochs")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # the store migration's INFO lines
    import mlflow

    base = yaml.safe_load(args.params.read_text())
    if args.epochs is not None:
        base["sets"][args.set_name]["epochs"] = args.epochs
    wall: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store = workdir / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()  # migrate once
        for pair in range(args.repeats):
            # Which goes first alternates: a machine that slows down or speeds up during the
            # run then weighs on both sides alike.
            for mode in ("on", "off") if pair % 2 == 0 else ("off", "on"):
                params = {
                    **base,
                    "tracking": {**base["tracking"], "enabled": mode == "on", "uri": f"sqlite:///{store}"},
                }
                seconds, cpu_seconds = timed_train(params, args.set_name, workdir, args.data.resolve())
                wall[mode].append(seconds)
                cpu[mode].append(cpu_seconds)
                print(f"tracking {mode:3s}: {seconds:6.1f} s wall, {cpu_seconds:6.1f} s CPU", flush=True)
            print(f"  pair {len(wall['on'])}: on/off {wall['on'][-1] / wall['off'][-1]:.3f}", flush=True)
    on, off = statistics.median(wall["on"]), statistics.median(wall["off"])
    pair_ratios = [a / b for a, b in zip(wall["on"], wall["off"])]
    cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    print(f"median train-stage time: tracking on {on:.1f} s, off {off:.1f} s")
    print(
        f"median CPU time (stage and worker): tracking on {cpu_on:.1f} s, off {cpu_off:.1f} s "
        f"({100 * (cpu_on - cpu_off) / cpu_off:+.1f}%)"
    )
    print(
        f"pair ratios on/off: {' '.join(f'{r:.3f}' for r in pair_ratios)}; median {statistics.median(pair_ratios):.3f}"
    )
    print(f"tracking overhead: {100 * (on - off) / off:+.1f}% of the untracked train-stage time")


if __name__ == "__main__":
    main()
