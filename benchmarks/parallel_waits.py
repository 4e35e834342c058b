"""What each stage waits for after its own work, with two pipelines running at once on one store.

    python benchmarks/parallel_waits.py --set seed --epochs 20

Two lanes, as two `dvc queue` workers would run them, each run the real `train`,
`evaluate` and `render-figures` entry points one after the other as subprocesses, both
lanes at the same time, logging to one shared SQLite store. For every stage it prints the
wall time and the wait: from the moment its last output file was written to the moment
the process exited, i.e. the time spent handing the run to MLflow (queued metrics,
images, the model, figures) and shutting down. The goal is under 10 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def stage(script: str, *args: str | Path) -> list[str]:
    return [sys.executable, str(REPO / "stages" / script), *map(str, args)]


def run_lane(lane: Path, params: Path, data: Path, set_name: str, results: dict) -> None:
    """train → evaluate → render-figures in `lane`; results[stage] = (wall s, wait s)."""
    reports, model, eval_dir = lane / "reports", lane / "models" / f"{set_name}.pt", lane / "eval"
    steps = [
        (
            "train",
            stage(
                "train.py",
                "--params",
                params,
                "--set",
                set_name,
                "--data",
                data,
                "--model",
                model,
                "--history",
                reports / set_name / "history.csv",
            ),
            reports / set_name / "history.csv",
        ),
        (
            "evaluate",
            stage(
                "evaluate.py",
                "--params",
                params,
                "--set",
                set_name,
                "--model",
                model,
                "--data",
                data,
                "--metrics",
                reports / set_name / "metrics.json",
                "--outputs",
                eval_dir / f"{set_name}.npz",
            ),
            reports / set_name / "metrics.json",
        ),
        (
            "render-figures",
            stage("render_figures.py", "--params", params, "--data", data, "--eval", eval_dir, "--reports", reports),
            reports / "summary.md",
        ),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    for name, command, last_output in steps:
        started = time.time()
        subprocess.run(command, check=True, cwd=lane, env=env, stdout=subprocess.DEVNULL)
        ended = time.time()
        results[name] = (ended - started, ended - last_output.stat().st_mtime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="set_name", default="seed")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lanes", type=int, default=2)
    args = parser.parse_args()
    import mlflow

    base = yaml.safe_load((REPO / "params.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()  # an existing store
        params = {
            **base,
            "tracking": {**base["tracking"], "uri": f"sqlite:///{store}"},
            "sets": {args.set_name: {**base["sets"][args.set_name], "epochs": args.epochs}},
        }
        params_path = root / "params.yaml"
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        data = root / "subset"
        subprocess.run(
            stage("download.py", "--params", params_path, "--out", root / "raw"),
            check=True,
            cwd=root,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            stage("subset.py", "--params", params_path, "--raw", root / "raw", "--out", data),
            check=True,
            cwd=root,
            stdout=subprocess.DEVNULL,
        )
        results: list[dict] = [{} for _ in range(args.lanes)]
        lanes = [
            threading.Thread(target=run_lane, args=(root / f"lane{i}", params_path, data, args.set_name, results[i]))
            for i in range(args.lanes)
        ]
        for i, lane in enumerate(lanes):
            (root / f"lane{i}").mkdir(exist_ok=True)
            lane.start()
        for lane in lanes:
            lane.join()
    print(f"{args.lanes} lanes at once, set {args.set_name}, {args.epochs} epochs, {os.cpu_count()} CPUs")
    for i, result in enumerate(results):
        print(
            f"lane {i}: "
            + ", ".join(f"{name} {wall:.1f} s (waits {wait:.1f} s)" for name, (wall, wait) in result.items())
        )
    worst = max(wait for result in results for _, wait in result.values())
    print(f"longest wait after a stage's own work: {worst:.1f} s (goal < 10 s)")


if __name__ == "__main__":
    main()
