"""Pipeline overhead: a no-op `dvc repro`, and each stage's process start and imports.

    python benchmarks/pipeline_overhead.py        # in an up-to-date checkout (after dvc repro)

Prints the median of `--repeats` runs of
- `dvc repro` with nothing to do (every stage up to date);
- `python stages/<stage>.py --help`: process start plus the entry point's top-level
  imports, which is what every stage pays before its work (and what its MLflow worker
  pays again when it re-imports the entry point);
- a fresh process importing each heavy library a stage loads only when it needs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("download", "subset", "train", "evaluate", "render_figures")
LIBRARIES = {
    "torch": "import torch",
    "mlflow": "import mlflow",
    "matplotlib + pandas": "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot, pandas",
    "numpy + yaml (every stage)": "import numpy, yaml",
}


def seconds(command: list[str], repeats: int) -> float:
    """Median wall time of `command` run `repeats` times in the repository."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    status = subprocess.run(
        ["dvc", "status", "--quiet"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "PATH": path}
    )
    if status.returncode != 0:
        raise SystemExit("the pipeline is not up to date: run `dvc repro` first, then measure the no-op")
    print(f"median of {args.repeats} runs each")
    print(f"no-op dvc repro: {seconds(['dvc', 'repro'], args.repeats):.2f} s")
    print(f"python -c pass (interpreter start): {seconds([sys.executable, '-c', 'pass'], args.repeats):.2f} s")
    for stage in STAGES:
        took = seconds([sys.executable, f"stages/{stage}.py", "--help"], args.repeats)
        print(f"stage {stage:15s} start-up (--help): {took:.2f} s")
    for name, code in LIBRARIES.items():
        print(f"import {name:27s}: {seconds([sys.executable, '-c', code], args.repeats):.2f} s")


if __name__ == "__main__":
    main()
