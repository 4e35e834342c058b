"""The train stage on 2 processes (DDP, torchrun's launcher) against 1, alternated in one run.

    python benchmarks/processes_speed.py --set best --pairs 3

Runs the real `stages/train.py` as a subprocess with `distributed.processes` 1 and N on the
existing data/subset, MLflow tracking to a private store, and prints each stage's wall
time, the median of the per-pair speedups (1-process time / N-process time) and both final
train losses. torchrun's rule holds for the N ranks: OMP_NUM_THREADS cores ÷ N each (one
each on 2 cores), while the single process keeps torch's default of one thread per core.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LAST_LINE = re.compile(r"train/l1 ([\d.]+)")


def timed_train(params: dict, set_name: str, workdir: Path, data: Path) -> tuple[float, float]:
    """Wall seconds of one train-stage process tree with these params, and its final train loss."""
    params_path = workdir / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "UNMIX_TEST_KILL_AT", "OMP_NUM_THREADS")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    result = subprocess.run(
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
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"train failed:\n{result.stdout}{result.stderr}")
    return seconds, float(LAST_LINE.search(result.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="set_name", default="best")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "subset")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3, help="alternated 1/N pairs")
    parser.add_argument("--epochs", type=int, default=None, help="override the set's epochs")
    args = parser.parse_args()
    import mlflow

    base = yaml.safe_load(args.params.read_text())
    if args.epochs:
        base["sets"][args.set_name]["epochs"] = args.epochs
    counts = (1, args.processes)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store = workdir / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()  # migrate once
        times: dict[int, list[float]] = {n: [] for n in counts}
        losses: dict[int, float] = {}
        for pair in range(args.pairs):
            for processes in counts if pair % 2 == 0 else counts[::-1]:
                params = {
                    **base,
                    "tracking": {**base["tracking"], "uri": f"sqlite:///{store}"},
                    "distributed": {"processes": processes},
                }
                seconds, losses[processes] = timed_train(params, args.set_name, workdir, args.data.resolve())
                times[processes].append(seconds)
                print(
                    f"pair {pair + 1}, {processes} process{'es' if processes > 1 else ''}: {seconds:6.1f} s", flush=True
                )
    speedups = [one / many for one, many in zip(times[1], times[args.processes])]
    print(
        f"set {args.set_name}, {os.cpu_count()} cores: median train stage 1 process "
        f"{statistics.median(times[1]):.1f} s, {args.processes} processes "
        f"{statistics.median(times[args.processes]):.1f} s"
    )
    print(f"final train/l1: 1 process {losses[1]:.4f}, {args.processes} processes {losses[args.processes]:.4f}")
    print(
        f"speedup of {args.processes} processes over 1, {len(speedups)} alternated pairs: median "
        f"{statistics.median(speedups):.3f} (min {min(speedups):.3f}, max {max(speedups):.3f})"
    )


if __name__ == "__main__":
    main()
