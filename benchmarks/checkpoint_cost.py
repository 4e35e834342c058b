"""What resume checkpoints cost: their size, and the train stage's time with them on and off.

    python benchmarks/checkpoint_cost.py --set best --pairs 5

Runs the real `stages/train.py` as a subprocess (process start, imports and MLflow tracking
to a private store included) with `resume.checkpoint_every: 1` (a checkpoint after every
epoch, the default) and `0` (none), alternating which goes first in each pair, and prints
the median of the per-pair ratios on/off. Without --data it first makes the default data
subset with the real download and subset stages in a temporary folder.
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
COST_LINE = re.compile(r"; (\d+) resume checkpoints of ([\d.]+) MiB, ([\d.]+) s$", re.M)


def stage(script: str, *args: str, cwd: Path) -> str:
    """Run one stage entry point; return its stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "UNMIX_TEST_KILL_AT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / script), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"{script} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def timed_train(params: dict, set_name: str, workdir: Path, data: Path) -> tuple[float, str]:
    """Seconds for one train-stage process with these params, and its last line."""
    params_path = workdir / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    started = time.perf_counter()
    out = stage(
        "train.py",
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
        cwd=workdir,
    )
    return time.perf_counter() - started, out.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="set_name", default="best")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--data", type=Path, default=None, help="a data/subset folder (default: make one)")
    parser.add_argument("--pairs", type=int, default=5, help="alternated on/off pairs (>= 5 for the README figure)")
    parser.add_argument("--epochs", type=int, default=None, help="override the set's epochs (a quicker check)")
    parser.add_argument(
        "--no-tracking",
        action="store_true",
        help="MLflow off: on a loaded machine the niced tracking worker's start-up dominates",
    )
    args = parser.parse_args()
    import mlflow

    base = yaml.safe_load(args.params.read_text())
    if args.epochs:
        base["sets"][args.set_name]["epochs"] = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = args.data.resolve() if args.data else None
        if data is None:
            (workdir / "params.yaml").write_text(yaml.safe_dump(base))
            stage("download.py", "--out", "raw", cwd=workdir)
            stage("subset.py", "--raw", "raw", "--out", "subset", cwd=workdir)
            data = workdir / "subset"
        store = workdir / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()  # migrate once
        times: dict[str, list[float]] = {"on": [], "off": []}
        costs = []
        for pair in range(args.pairs):
            for mode in ("on", "off") if pair % 2 == 0 else ("off", "on"):
                tracking = {**base["tracking"], "uri": f"sqlite:///{store}", "enabled": not args.no_tracking}
                params = {**base, "tracking": tracking, "resume": {"checkpoint_every": 1 if mode == "on" else 0}}
                seconds, last = timed_train(params, args.set_name, workdir, data)
                times[mode].append(seconds)
                if mode == "on":
                    found = COST_LINE.search(last)
                    costs.append((int(found.group(1)), float(found.group(2)), float(found.group(3))))
                print(f"pair {pair + 1} checkpoints {mode:3s}: {seconds:6.1f} s", flush=True)
    ratios = [on / off for on, off in zip(times["on"], times["off"])]
    written, size_mib, _ = costs[0]
    inside = statistics.median(seconds for *_, seconds in costs)
    off = statistics.median(times["off"])
    print(
        f"set {args.set_name}: {written} checkpoints per training, {size_mib:.1f} MiB each "
        f"(model, Adam moments, schedule, RNG states, history)"
    )
    print(
        f"writing them inside the stage: median {inside:.2f} s, {100 * inside / off:.2f}% of the median "
        f"train stage without checkpoints ({off:.1f} s)"
    )
    print(
        f"train stage on/off ratio over {len(ratios)} alternated pairs: median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )
    print(f"checkpoint cost: {100 * (statistics.median(ratios) - 1):+.1f}% of the train stage")


if __name__ == "__main__":
    main()
