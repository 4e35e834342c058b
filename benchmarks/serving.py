"""What using a trained separator costs: load by alias, separate 1 and 1,000 pictures, serve one request.

    python benchmarks/serving.py                     # an untrained `best`-shaped model in a temporary store
    python benchmarks/serving.py --model-uri models:/unmix-best@champion --tracking-uri sqlite:///$PWD/mlflow.db

Without --model-uri the script logs and registers a freshly initialised model of the set
`--set` (its architecture from params.yaml) in a temporary store: the timings do not depend
on the weights. Loading is timed in fresh processes (imports included, and without); the
server is the real `mlflow models serve --env-manager local` on a free localhost port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LOAD_SCRIPT = """
import time, json
started = time.perf_counter()
import mlflow
imported = time.perf_counter()
model = mlflow.pyfunc.load_model({uri!r})
loaded = time.perf_counter()
print(json.dumps({{"imports": imported - started, "load": loaded - imported}}))
"""


def register_fresh_model(set_name: str, params: Path, folder: Path) -> tuple[str, str]:
    """Log and register an initialised model of `set_name` in a new store; its alias URI and the store."""
    import mlflow
    import torch

    from unmix.config import load_config
    from unmix.model.networks import build_model, set_model_config
    from unmix.tracking.logged_model import log_separator
    from unmix.tracking.registry import register_run_model

    set_config = load_config(params).set(set_name)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # not one inherited from the caller's environment
    experiment = mlflow.create_experiment("unmix", artifact_location=(folder / "mlartifacts").as_uri())
    torch.manual_seed(0)
    model = build_model(**set_model_config(set_config)).eval()
    with mlflow.start_run(experiment_id=experiment) as run:
        log_separator(model, set_model_config(set_config))
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    register_run_model(
        client,
        run_id=run.info.run_id,
        set_name=set_name,
        test_metrics={"test/best/psnr": 0.0},
        digest="benchmark",
        commit=None,
    )
    return f"models:/unmix-{set_name}@champion", uri


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def describe(times: list[float], unit: float = 1.0, name: str = "s") -> str:
    scaled = [t * unit for t in times]
    return (
        f"median {statistics.median(scaled):.1f} {name} (min {min(scaled):.1f}, max {max(scaled):.1f}, n={len(scaled)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", help="an existing model (default: register a fresh one)")
    parser.add_argument("--tracking-uri", help="the store of --model-uri")
    parser.add_argument("--set", dest="set_name", default="best")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--loads", type=int, default=3, help="fresh processes that load the model")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of one picture, and requests")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from unmix.serve.server import invoke, served_model

    with tempfile.TemporaryDirectory() as tmp:
        if args.model_uri:
            uri, store = args.model_uri, args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        else:
            uri, store = register_fresh_model(args.set_name, args.params, Path(tmp))
        print(f"model {uri} in {store}")
        # Both URIs: a registry URI in the caller's environment would resolve models:/ elsewhere.
        env = {**os.environ, "MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store}
        loads = []
        for _ in range(args.loads):
            loaded = subprocess.run(
                [sys.executable, "-c", LOAD_SCRIPT.format(uri=uri)], env=env, cwd=tmp, capture_output=True, text=True
            )
            if loaded.returncode != 0:
                sys.exit(f"loading {uri} in a fresh process failed:\n{loaded.stderr[-3000:]}")
            loads.append(json.loads(loaded.stdout.strip().splitlines()[-1]))
        print(
            f"load by alias, fresh process: import mlflow {describe([load['imports'] for load in loads])}; "
            f"load_model {describe([load['load'] for load in loads])}"
        )

        mlflow.set_tracking_uri(store)
        model = mlflow.pyfunc.load_model(uri)
        rng = np.random.default_rng(0)
        one = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
        batch = rng.integers(0, 256, (args.batch, 32, 32, 3), dtype=np.uint8)
        model.predict(one)  # first call: allocator and kernel selection
        one_times = timed(lambda: model.predict(one), args.repeats)
        print(f"separate one 32×32 picture (predict): {describe(one_times, 1e3, 'ms')}")
        batch_times = timed(lambda: model.predict(batch), 3)
        print(
            f"separate {args.batch} 32×32 pictures (predict): {describe(batch_times)}; "
            f"{args.batch / statistics.median(batch_times):.0f} pictures/s"
        )

        with served_model(uri, store) as url:
            invoke(url, one)  # the server's first request
            latencies = timed(lambda: invoke(url, one), args.repeats)
        print(f"served model, one 32×32 request: {describe(latencies, 1e3, 'ms')}")


if __name__ == "__main__":
    main()
