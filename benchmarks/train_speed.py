"""Training efficiency: FLOP rate against the matmul peak, and the seed's loop against unmix's.

    python benchmarks/train_speed.py                 # CIFAR-10 copy, 1000 images, 40 epochs x 5 pairs
    python benchmarks/train_speed.py --device cuda   # the same on a GPU

In one run it measures
1. this machine's float32 matmul peak: the best of several large `torch.mm` calls;
2. for each architecture (the sets of params.yaml, one per arch), one training step's
   FLOPs (forward + backward, `torch.utils.flop_counter`) and the rate its steps reach,
   as a fraction of that peak, and where its time goes by kind of operator
   (`torch.profiler`): what limits it;
3. a faithful re-implementation of the seed notebook's loop (a `DataLoader` over a float32
   tensor, `nn.L1Loss`, a Python float of the loss every step, validation with the
   same loss) against unmix's loop (`experiment.train_set`: uint8 batches cut from a
   permutation, validation with PSNR, image mosaics and per-epoch metrics to a real
   MLflow run, the model logged at the end), on the same model, initial weights, data and
   steps, alternating A, B, A, B ...; it prints the time ratio A / B (min, median, max)
   and the final losses of both, which must agree: the batches are the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import DEFAULT_IMAGES, REPO, benchmark_subsets  # also puts src/ on the path

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from unmix.config import SetConfig, load_config
from unmix.data.subset import Subsets
from unmix.model.devices import autocast, memory_format, place_model, resolve_device
from unmix.model.mixing import MIXES
from unmix.model.networks import build_model, set_model_config
from unmix.model.tensors import normalise, to_channels_first
from unmix.tracking.tracker import RunTracker
from unmix.training.losses import LOSSES
from unmix.training.sets import train_set


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of `repeats` (n x n) @ (n x n) products on `device`."""
    x, y = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(x, y)  # warm-up: thread pool, caches, kernels
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        torch.mm(x, y)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def training_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, mix: str, loss: str
) -> None:
    """One step of unmix's loop on a float batch: mix halves, forward, loss, backward, update."""
    half = len(images) // 2
    a, b = images[:half], images[half : 2 * half]
    device = images.device
    with autocast(device):
        out_1, out_2 = model(MIXES[mix](a, b).contiguous(memory_format=memory_format(device)))
    step_loss = LOSSES[loss](out_1.float(), out_2.float(), a, b)
    optimizer.zero_grad(set_to_none=True)
    step_loss.backward()
    optimizer.step()


def step_rate(set_config: SetConfig, images: torch.Tensor, steps: int, device: torch.device) -> tuple[float, float]:
    """(GFLOP per training step, seconds per step) of one set's model at its batch size."""
    torch.manual_seed(0)
    model = place_model(build_model(**set_model_config(set_config)), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=set_config.lr)
    batch = normalise(images[: set_config.batch_size].to(device))
    with FlopCounterMode(display=False) as counter:
        training_step(model, optimizer, batch, set_config.mix, set_config.loss)
    for _ in range(3):  # warm-up
        training_step(model, optimizer, batch, set_config.mix, set_config.loss)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        training_step(model, optimizer, batch, set_config.mix, set_config.loss)
    synchronize(device)
    return counter.get_total_flops() / 1e9, (time.perf_counter() - started) / steps


class EpochPermutation(Sampler[int]):
    """One `randperm` per epoch from a seeded generator: the order unmix's loop draws.

    (RandomSampler draws a second, empty-sliced permutation at the end of every epoch,
    which would shift every later epoch's order.)
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def operator_shares(
    set_config: SetConfig, images: torch.Tensor, device: torch.device, steps: int = 5
) -> dict[str, float]:
    """Share of the training step's self time by kind of operator (torch.profiler, `steps` steps)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = place_model(build_model(**set_model_config(set_config)), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=set_config.lr)
    batch = normalise(images[: set_config.batch_size].to(device))
    training_step(model, optimizer, batch, set_config.mix, set_config.loss)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            training_step(model, optimizer, batch, set_config.mix, set_config.loss)
        synchronize(device)
    kinds = {
        "convolution": ("conv", "mkldnn"),
        "batch norm": ("batch_norm",),
        "optimizer": ("adam", "_foreach", "addcmul", "addcdiv", "lerp", "sqrt"),
    }
    shares: dict[str, float] = {}
    for event in profiler.key_averages():
        spent = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        kind = next(
            (k for k, marks in kinds.items() if any(m in event.key for m in marks)), "elementwise, copies, other"
        )
        shares[kind] = shares.get(kind, 0.0) + spent
    total = sum(shares.values()) or 1.0
    return {kind: spent / total for kind, spent in sorted(shares.items(), key=lambda item: -item[1])}


def seed_loop(set_config: SetConfig, subsets: Subsets, device: torch.device) -> tuple[float, float]:
    """The notebook's loop, re-implemented: (last epoch's mean train loss, last validation loss).

    On CUDA it does what such a notebook does: the float32 data stays in host memory and
    every batch is copied over.
    """
    torch.manual_seed(set_config.seed)  # the same initial weights as unmix's train_set
    model = place_model(build_model(**set_model_config(set_config)), device)
    train = normalise(to_channels_first(subsets.train.images))  # float32 [-1, 1], all in memory
    valid_a = normalise(to_channels_first(subsets.valid.a)).to(device)
    valid_b = normalise(to_channels_first(subsets.valid.b)).to(device)
    torch.manual_seed(set_config.seed)  # dropout, as unmix's loop seeds it
    # The sampler's own generator draws each epoch's permutation exactly as unmix's loop
    # does; the loader's generator is separate, so its per-epoch seed draw changes neither.
    sampler = EpochPermutation(len(train), torch.Generator().manual_seed(set_config.seed))
    loader = DataLoader(
        TensorDataset(train), batch_size=set_config.batch_size, sampler=sampler, generator=torch.Generator()
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=set_config.lr)
    criterion = nn.L1Loss()
    mix = MIXES[set_config.mix]
    epoch_losses: list[float] = []
    valid_loss = float("nan")
    for epoch in range(1, set_config.epochs + 1):
        model.train()
        losses, sizes = [], []
        for (batch,) in loader:
            half = len(batch) // 2
            if half == 0:
                continue
            batch = batch.to(device)
            a, b = batch[:half], batch[half : 2 * half]
            with autocast(device):
                out_1, out_2 = model(mix(a, b).contiguous(memory_format=memory_format(device)))
            loss = criterion(out_1.float(), a) + criterion(out_2.float(), b)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # the notebook's host sync every step
            sizes.append(half)
        epoch_losses.append(sum(x * n for x, n in zip(losses, sizes)) / sum(sizes))
        if epoch % set_config.validate_every == 0 or epoch == set_config.epochs:
            model.eval()
            with torch.no_grad(), autocast(device):
                out_1, out_2 = model(mix(valid_a, valid_b).contiguous(memory_format=memory_format(device)))
            valid_loss = (criterion(out_1.float(), valid_a) + criterion(out_2.float(), valid_b)).item()
    return epoch_losses[-1], valid_loss


def ready_tracker(store: Path) -> RunTracker:
    """A tracking worker with its run open on `store`: the stage starts it while importing torch."""
    tracker = RunTracker(uri=f"sqlite:///{store}", experiment="train-speed", run_name="unmix-loop", logs_model=True)
    _ = tracker.run_id  # waits until the worker has imported everything and opened the run
    return tracker


def unmix_loop(
    set_config: SetConfig, subsets: Subsets, tracker: RunTracker, device: torch.device
) -> tuple[float, float]:
    """unmix's loop as the train stage runs it, until its MLflow run is finished and stored."""
    with tracker:
        _, history = train_set(set_config, subsets, tracker, device=device)
    return history[-1].train_l1, history[-1].valid_l1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--source", default="imagefolder", choices=("imagefolder", "shapes"))
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image-folder root")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-valid", type=int, default=256, help="validation images, as the seed")
    parser.add_argument("--set", dest="set_name", default="seed", help="the set whose loop is compared")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per loop run")
    parser.add_argument("--pairs", type=int, default=5, help="A, B pairs of loop runs")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per architecture")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    device = resolve_device(args.device, name="--device")

    config = load_config(args.params)
    subsets = benchmark_subsets(args.source, args.images, args.n_train, args.n_valid)
    images = to_channels_first(subsets.train.images)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__} on {where}; {len(images)} train images "
        f"({args.source}), {len(subsets.valid)} validation pairs",
        flush=True,
    )

    peak = matmul_peak(device)
    print(f"float32 matmul peak (4096^3 torch.mm, best of 5): {peak:.1f} GFLOP/s", flush=True)
    if device.type == "cuda":  # training runs under bf16 autocast there: that is its ceiling
        peak = matmul_peak(device, torch.bfloat16)
        print(
            f"bf16 matmul peak (4096^3 torch.mm, best of 5): {peak:.1f} GFLOP/s; fractions below are of it", flush=True
        )
    by_arch: dict[str, tuple[str, SetConfig]] = {}
    for name, set_config in config.sets.items():
        by_arch.setdefault(set_config.arch, (name, set_config))
    for arch, (name, set_config) in by_arch.items():
        gflop, seconds = step_rate(set_config, images, args.steps, device)
        rate = gflop / seconds
        print(
            f"arch {arch:5s} (set {name}, batch {set_config.batch_size}): {gflop:.2f} GFLOP/step, "
            f"{1 / seconds:.2f} steps/s, {rate:.1f} GFLOP/s = {100 * rate / peak:.0f}% of peak",
            flush=True,
        )
        shares = operator_shares(set_config, images, device)
        print(
            "  time by operator: " + ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in shares.items()),
            flush=True,
        )

    loop_set = dataclasses.replace(config.set(args.set_name), epochs=args.epochs, device=device.type)
    times: dict[str, list[float]] = {"seed": [], "unmix": []}
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.db"
        import mlflow

        mlflow.MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # migrate once
        for index in range(args.pairs):
            for loop in ("seed", "unmix"):
                if loop == "seed":
                    started = time.perf_counter()
                    results[loop] = seed_loop(loop_set, subsets, device)
                else:
                    store = Path(tmp) / f"run-{index}.db"
                    shutil.copy(template, store)
                    tracker = ready_tracker(store)  # set-up, like the seed loop's imports: not timed
                    started = time.perf_counter()
                    results[loop] = unmix_loop(loop_set, subsets, tracker, device)
                times[loop].append(time.perf_counter() - started)
                print(
                    f"  {loop:5s} loop: {times[loop][-1]:6.1f} s  (train loss {results[loop][0]:.5f}, "
                    f"valid loss {results[loop][1]:.5f})",
                    flush=True,
                )
    ratios = [seed / ours for seed, ours in zip(times["seed"], times["unmix"])]
    print(
        f"set {args.set_name}, {args.epochs} epochs x {args.pairs} pairs: seed loop median "
        f"{statistics.median(times['seed']):.1f} s, unmix loop median {statistics.median(times['unmix']):.1f} s"
    )
    print(
        f"final losses: seed loop train {results['seed'][0]:.5f} / valid {results['seed'][1]:.5f}; "
        f"unmix loop train {results['unmix'][0]:.5f} / valid {results['unmix'][1]:.5f}"
    )
    print(
        f"loop speed ratio seed/unmix: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, "
        f"max {max(ratios):.3f}"
    )
    # Same batches, weights and math: only summation order may differ (nn.L1Loss vs per pair).
    tolerance = 1e-4 if device.type == "cpu" else 2e-2  # bf16 on CUDA
    for name, seed_value, unmix_value in zip(("train", "valid"), results["seed"], results["unmix"]):
        if abs(seed_value - unmix_value) > tolerance * abs(seed_value):
            raise SystemExit(f"the loops disagree: {name} loss {seed_value:.6f} (seed) vs {unmix_value:.6f} (unmix)")


if __name__ == "__main__":
    main()
