"""Scale: training throughput at 50,000 images against 1,000, and the train stage's peak memory.

    python benchmarks/scale.py

1. Throughput: unmix's training loop (the `seed` set's model and batch; validation only at
   the end, tracking off) in this process on 1,000 and on 50,000 generated training
   images, for about the same number of steps, alternated 1k, 50k, 1k, 50k; pairs/s each
   and the ratio.
2. Memory: the real `stages/train.py` as a subprocess on a 50,000-image subset (one
   epoch, MLflow on, a private store): the peak resident memory of the stage process
   (VmHWM), and the peak of the stage and its tracking worker together, sampled every
   50 ms as proportional set size (PSS: pages the two share, torch's libraries above
   all, counted once, not twice as a sum of RSS would).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO  # also puts src/ on the path

import yaml

from unmix.config import DataConfig, load_config
from unmix.data.raw import acquire_images
from unmix.data.subset import draw_subsets, save_subsets


def throughput(set_config, subsets, epochs: int) -> float:
    """Training pairs per second of unmix's loop over `epochs` epochs."""
    import torch

    from unmix.tracking.tracker import NullTracker
    from unmix.training.sets import train_set

    config = dataclasses.replace(set_config, epochs=epochs, validate_every=epochs, log_images_every=0, device="cpu")
    started = time.perf_counter()
    train_set(config, subsets, NullTracker(), device=torch.device("cpu"))
    seconds = time.perf_counter() - started
    pairs = epochs * (len(subsets.train) // 2)
    return pairs / seconds


def kib(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def stage_peak_memory(workdir: Path, subset: Path, set_name: str) -> tuple[float, float, float]:
    """(stage process VmHWM MiB, peak PSS MiB of stage + tracking worker, seconds) of one train stage."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "stages" / "train.py"),
            "--params",
            str(workdir / "params.yaml"),
            "--set",
            set_name,
            "--data",
            str(subset),
            "--model",
            str(workdir / "model.pt"),
            "--history",
            str(workdir / "history.csv"),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak_total, stage_hwm = 0, 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_total, stage_hwm
        while not done.is_set():
            total = 0
            for pid in process_tree(process.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                if pid == process.pid:
                    stage_hwm = max(stage_hwm, kib(status, "VmHWM"))
                try:
                    total += kib(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss")
                except OSError:
                    continue
            peak_total = max(peak_total, total)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"train stage failed:\n{output}")
    print("  " + output.strip().splitlines()[-1])
    return stage_hwm / 1024, peak_total / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--set", dest="set_name", default="seed")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--large-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    config = load_config(args.params)
    set_config = config.set(args.set_name)
    n_valid = config.data.n_valid
    data = DataConfig(
        source="shapes",
        shapes_train=args.large + n_valid,
        shapes_test=config.data.n_test,
        n_train=args.large,
        n_valid=n_valid,
        n_test=config.data.n_test,
    )
    train_split, test_split = acquire_images(data, REPO)
    large = draw_subsets(train_split, test_split, args.large, n_valid, data.n_test, data.seed)
    small = draw_subsets(train_split, test_split, args.small, n_valid, data.n_test, data.seed)
    # About the same number of steps at both sizes.
    small_epochs = max(1, round(args.large_epochs * args.large / args.small))
    print(
        f"set {args.set_name}: {args.small} images x {small_epochs} epochs vs {args.large} images x "
        f"{args.large_epochs} epochs (shapes), batch {set_config.batch_size}",
        flush=True,
    )
    rates: dict[int, list[float]] = {args.small: [], args.large: []}
    for _ in range(args.repeats):
        for size, subsets, epochs in ((args.small, small, small_epochs), (args.large, large, args.large_epochs)):
            rates[size].append(throughput(set_config, subsets, epochs))
            print(f"  {size:6d} images: {rates[size][-1]:.1f} pairs/s", flush=True)
    best_small, best_large = max(rates[args.small]), max(rates[args.large])
    print(
        f"throughput (best of {args.repeats}): {best_small:.1f} pairs/s at {args.small}, {best_large:.1f} at "
        f"{args.large}; ratio large/small {best_large / best_small:.3f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        subset_dir = workdir / "subset"
        save_subsets(large, subset_dir, "shapes")
        import mlflow

        store = workdir / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
        params = yaml.safe_load(args.params.read_text())
        params["tracking"] = {**params.get("tracking", {}), "enabled": True, "uri": f"sqlite:///{store}"}
        params["sets"][args.set_name]["epochs"] = args.large_epochs
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
        shutil.rmtree(workdir / "mlartifacts", ignore_errors=True)
        stage_mib, total_mib, seconds = stage_peak_memory(workdir, subset_dir, args.set_name)
    print(
        f"train stage at {args.large} images ({args.large_epochs} epoch, MLflow on): {seconds:.1f} s, "
        f"peak memory {stage_mib:.0f} MiB (stage process VmHWM), {total_mib:.0f} MiB PSS with its tracking worker"
    )


if __name__ == "__main__":
    main()
