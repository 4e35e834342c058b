"""A wide U-Net trained on a GPU for a fixed wall-clock budget, in plain torch.

The GPU machine has torch but neither DVC nor MLflow, and only the checkout travels, so
the run is split over two machines:

    # here: pack the protocol's training images as their JPEG files' bytes (39,500 in
    # ~40 MiB) and its validation pairs (uint8); without --images, 16,000 of them as uint8
    python benchmarks/gpu_train.py pack --subset data/subset --out gpu_data \
        --images ../shared/datasets/cifar10-jpeg/train
    # on the GPU machine: train for --minutes, print images/s and the share of the bf16 peak
    python benchmarks/gpu_train.py train --data gpu_data --out OUT --minutes 5
    # here: join the weights that came back into a checkpoint the evaluate stage reads
    python benchmarks/gpu_train.py join --parts OUT --name gpu_ema --out models/gpu.pt
    # here: score it on the protocol's test pairs, then draw the record
    python stages/evaluate.py --set best --model models/gpu.pt --data data/subset \
        --metrics reports/cifar10_gpu/gpu/metrics.json --outputs data/eval/gpu.npz
    python benchmarks/gpu_train.py record --subset data/subset --eval data/eval/gpu.npz \
        --reports reports/cifar10_gpu --name gpu

The JPEG bytes are decoded on the GPU machine (torchvision's `decode_jpeg`, nvjpeg on a
GPU) and compared with the first images as Pillow decoded them here. Training uses the
project's own pieces (model, mix, PIT loss, pair cutting, flips, bf16 autocast,
channels-last, Muon with --optimizer muon) with the data on the GPU and `torch.compile`.
The number of steps is sized to the budget by timing steps of the compiled model first;
the weights are then reset, so the timed warm-up and compilation are not training. An
exponential moving average of the weights (EMA) is kept beside them; both are scored on
the validation pairs and both come back. Weights travel in parts of at most 15 MiB (the
trip back takes files of at most 16 MiB).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # runs from a checkout, installed or not

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.flop_counter import FlopCounterMode

from unmix.config import SetConfig
from unmix.model.devices import autocast, memory_format, place_model
from unmix.model.mixing import MIXES
from unmix.model.networks import build_model, model_config
from unmix.model.tensors import normalise, to_channels_first
from unmix.training.loop import random_flips, validate
from unmix.training.losses import LOSSES
from unmix.training.optimizers import build_optimizer

PART_BYTES = 15 * 2**20
JPEG_FILE = "gpu_jpeg.npz"
CHECK_IMAGES = 256  # training images packed decoded too, to compare decoders
DECODE_BATCH = 4096
MIX, LOSS = "mean", "pit"  # the protocol's mix and the `best` set's loss
# Dense bf16 tensor-core peaks from NVIDIA's data sheets (FLOP/s), by device-name fragment.
BF16_PEAKS = {
    "H200": 989.4e12,
    "H100 SXM": 989.4e12,
    "H100 80GB HBM3": 989.4e12,
    "H100 NVL": 835.5e12,
    "H100 PCIe": 756.5e12,
    "H100": 756.5e12,
    "A100": 312e12,
}


def pack(subset: Path, out: Path, n_train: int, seed: int) -> None:
    """A random `n_train` of the subset's training images and all its validation pairs."""
    train = np.load(subset / "train.npz")["images"]
    valid = np.load(subset / "valid.npz")
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), size=n_train, replace=False))
    out.mkdir(parents=True, exist_ok=True)
    (out / JPEG_FILE).unlink(missing_ok=True)  # train prefers a JPEG pack: none may stay beside this one
    np.savez(out / "gpu_data.npz", train=train[chosen], valid_a=valid["a"], valid_b=valid["b"])
    size = (out / "gpu_data.npz").stat().st_size
    print(f"pack: {n_train} training images, {len(valid['a'])} validation pairs, {size / 2**20:.1f} MiB → {out}")


def pack_jpeg(subset: Path, images: Path, out: Path) -> None:
    """All the subset's training images as the bytes of their JPEG files in `images` (the
    image folder the subset was drawn from), the validation pairs as uint8, and the first
    CHECK_IMAGES training images as Pillow decodes them (the far side compares its decoder's)."""
    from PIL import Image

    from unmix.data.sources import image_folder_train_files, load_image_folder
    from unmix.errors import DataError

    train = np.load(subset / "train.npz")["images"]
    valid = np.load(subset / "valid.npz")
    try:
        source, _ = load_image_folder(images)
        files = image_folder_train_files(images)
    except DataError as error:
        sys.exit(f"error: --images {images}: {error}")
    # Image k of the folder is file k; the subset's images are found by their pixels, so no
    # draw is repeated here (duplicates in the folder decode alike: either file serves).
    index = {image.tobytes(): k for k, image in enumerate(source.images)}
    found = [index.get(image.tobytes()) for image in train]
    missing = sum(k is None for k in found)
    if missing:
        sys.exit(f"error: --images {images}: {missing} of the subset's {len(train)} training images are not in it")
    # The far side decodes with decode_jpeg and no resizing: anything else would fail there,
    # on the GPU's time. The folder loader also reads PNG and resizes other sizes.
    raw = [Path(files[k]).read_bytes() for k in found]  # each file read once: checked, then packed
    for k, data in zip(found, raw):
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.size != (32, 32):
                sys.exit(f"error: --images {images}: {files[k]} is {image.format} {image.size}; expected 32x32 JPEG")
    blobs = [np.frombuffer(data, dtype=np.uint8) for data in raw]
    offsets = np.cumsum([0] + [len(blob) for blob in blobs])
    out.mkdir(parents=True, exist_ok=True)
    # a uint8 pack left beside it would travel too: 48 MiB more, over the carry's 64 MiB
    (out / "gpu_data.npz").unlink(missing_ok=True)
    np.savez(
        out / JPEG_FILE,
        jpeg=np.concatenate(blobs),
        offsets=offsets,
        check=train[:CHECK_IMAGES],
        valid_a=valid["a"],
        valid_b=valid["b"],
    )
    size = (out / JPEG_FILE).stat().st_size
    print(
        f"pack: {len(train)} training images as JPEG ({offsets[-1] / 2**20:.1f} MiB), "
        f"{len(valid['a'])} validation pairs, {size / 2**20:.1f} MiB → {out / JPEG_FILE}"
    )


def load_training_images(pack, device: torch.device) -> torch.Tensor:
    """(N, 3, 32, 32) uint8 training images on `device` from a loaded pack: decoded when it is
    the JPEG one (nvjpeg on a GPU), as they are from the uint8 one."""
    if "jpeg" not in pack.files:
        return to_channels_first(pack["train"]).to(device)
    from torchvision.io import ImageReadMode, decode_jpeg

    jpeg, offsets, check = torch.from_numpy(pack["jpeg"]), pack["offsets"], pack["check"]
    blobs = [jpeg[start:end] for start, end in zip(offsets[:-1], offsets[1:])]
    started = time.perf_counter()
    images = torch.empty((len(blobs), 3, 32, 32), dtype=torch.uint8, device=device)
    for start in range(0, len(blobs), DECODE_BATCH):  # nvjpeg's batch: a list per call
        decoded = decode_jpeg(blobs[start : start + DECODE_BATCH], mode=ImageReadMode.RGB, device=device)
        images[start : start + len(decoded)] = torch.stack(decoded)
    sync(device)
    seconds = time.perf_counter() - started
    # nvjpeg and libjpeg may round the colour conversion differently: say by how much.
    difference = (images[: len(check)].int() - to_channels_first(check).to(device).int()).abs()
    print(
        f"decoded {len(blobs)} JPEG images on {device} in {seconds:.1f} s; against Pillow's decoding of the "
        f"first {len(check)}: {(difference > 0).float().mean().item():.2%} of values differ, "
        f"by at most {difference.max().item()}",
        flush=True,
    )
    return images


def full_batches(n_images: int, batch_size: int, generator: torch.Generator):
    """(a, b) index tensors of every full batch of a fresh permutation: one shape, one compile."""
    permutation = torch.randperm(n_images, generator=generator, device=generator.device)
    half = batch_size // 2
    for start in range(0, n_images - batch_size + 1, batch_size):
        yield permutation[start : start + half], permutation[start + half : start + batch_size]


def batches_forever(n_images: int, batch_size: int, generator: torch.Generator):
    while True:
        yield from full_batches(n_images, batch_size, generator)


def bf16_peak(device: torch.device) -> tuple[float | None, float]:
    """The data-sheet bf16 peak for this GPU (None if unknown) and the best bf16 matmul measured."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = next((peak for fragment, peak in BF16_PEAKS.items() if fragment in name), None)
    n = 8192 if device.type == "cuda" else 512
    x = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    torch.mm(x, y)
    best = float("inf")
    for _ in range(5):
        sync(device)
        started = time.perf_counter()
        torch.mm(x, y)
        sync(device)
        best = min(best, time.perf_counter() - started)
    return sheet, 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def save_parts(state: dict, out: Path, name: str) -> list[str]:
    """torch.save `state` into `name.pt.partK` files of at most PART_BYTES each."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    names = []
    for index, start in enumerate(range(0, len(data), PART_BYTES)):
        path = out / f"{name}.pt.part{index}"
        path.write_bytes(data[start : start + PART_BYTES])
        names.append(path.name)
    return names


def join(parts: Path, name: str, out: Path) -> None:
    """Reassemble `name.pt.part*` into one checkpoint file, checked by loading it."""
    pieces = sorted(parts.glob(f"{name}.pt.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not pieces:
        sys.exit(f"error: no {name}.pt.part* files in {parts}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(p.read_bytes() for p in pieces))
    checkpoint = torch.load(out, map_location="cpu", weights_only=True)
    print(f"join: {len(pieces)} parts → {out} ({out.stat().st_size / 2**20:.1f} MiB, {checkpoint['model_config']})")


def record(subset: Path, eval_outputs: Path, reports: Path, name: str, n_pairs: int = 8) -> None:
    """The test pairs' reconstruction grid and the metrics table of a scored GPU model."""
    from unmix.data.subset import PairSet
    from unmix.evaluation.inference import pair_mixture
    from unmix.model.tensors import to_uint8_images
    from unmix.reports import figures
    from unmix.reports.dvc_files import read_metrics

    with np.load(subset / "test.npz") as test, np.load(eval_outputs) as outputs:
        pairs = PairSet(test["a"][:n_pairs], test["b"][:n_pairs])
        output_1, output_2 = outputs["output_1"][:n_pairs], outputs["output_2"][:n_pairs]
    metrics = {name: read_metrics(reports / name / "metrics.json")}
    grid = figures.reconstruction_grid_figure(
        to_uint8_images(pair_mixture(pairs, MIX)),
        pairs.a,
        pairs.b,
        output_1,
        output_2,
        title=f"{name}: test pairs ({MIX} mix)",
    )
    figures.save_figure(grid, reports / "figures" / f"reconstructions_{name}.png")
    (reports / "summary.md").write_text("# unmix: test metrics of the GPU run\n\n" + figures.summary_markdown(metrics))
    print(f"record: {reports / 'figures' / f'reconstructions_{name}.png'}, {reports / 'summary.md'}")


def train(args: argparse.Namespace) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    # pack leaves one of the two files (each mode removes the other's)
    arrays = np.load(args.data / (JPEG_FILE if (args.data / JPEG_FILE).exists() else "gpu_data.npz"))
    images = load_training_images(arrays, device)  # uint8 on the device, once
    valid_a, valid_b = to_channels_first(arrays["valid_a"]), to_channels_first(arrays["valid_b"])
    config = model_config("unet", args.width, args.depth, True, MIX)
    torch.manual_seed(args.seed)
    model = place_model(build_model(**config), device)
    initial = copy.deepcopy(model.state_dict())
    generator = torch.Generator(device=device)
    mix_fn, loss_fn = MIXES[MIX], LOSSES[LOSS]
    step_model = model
    if args.compile:
        step_model = torch.compile(model)

    def make_state(total_steps: int, optimizer_name: str = args.optimizer) -> tuple:
        """Optimizer, one-cycle schedule and weight average: everything a step updates."""
        if optimizer_name == "muon":  # the CPU sets' Muon, built as the train stage builds it
            optimizer = build_optimizer(model, SetConfig(optimizer="muon", lr=args.lr, muon_lr=args.muon_lr))
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=device.type == "cuda")
        peaks = [group["lr"] for group in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps)
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay), use_buffers=True)
        return optimizer, scheduler, ema

    def step(state: tuple, a_index, b_index, forward) -> torch.Tensor:
        optimizer, scheduler, ema = state
        a, b = normalise(images[a_index]), normalise(images[b_index])
        a, b = random_flips(a, generator), random_flips(b, generator)
        with autocast(device):
            out_1, out_2 = forward(mix_fn(a, b).contiguous(memory_format=memory_format(device)))
        loss = loss_fn(out_1.float(), out_2.float(), a, b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update_parameters(model)
        return loss.detach()

    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
        f"torch {torch.__version__}, {len(images)} training images, unet width {args.width} depth {args.depth}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, batch {args.batch_size} images",
        flush=True,
    )

    # FLOPs of one training step (forward + backward), counted eagerly on the real batch shape.
    generator.manual_seed(args.seed)
    batches = batches_forever(len(images), args.batch_size, generator)
    with FlopCounterMode(display=False) as counter:
        # with Adam: the model's work alone, whatever trains. Muon's Newton-Schulz products are
        # matmuls the counter would add; Adam's elementwise arithmetic it never counts.
        step(make_state(10**7, "adam"), *next(batches), model)
    flops_per_step = counter.get_total_flops()

    # Compile and time the whole compiled step (schedule and weight average included); these
    # steps only size the schedule.
    started = time.perf_counter()
    state = make_state(10**7)
    try:
        for _ in range(args.warmup_steps):
            step(state, *next(batches), step_model)
        sync(device)
    except Exception as error:  # noqa: BLE001 - a compiler failure costs speed, not the run
        print(
            f"compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); training eagerly", flush=True
        )
        step_model = model
        for _ in range(args.warmup_steps):
            step(state, *next(batches), step_model)
        sync(device)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.timing_steps):
        step(state, *next(batches), step_model)
    sync(device)
    step_s = (time.perf_counter() - started) / args.timing_steps
    total_steps = max(1, int(args.minutes * 60 / step_s))
    print(
        f"warm-up and compile {compile_s:.1f} s; {step_s * 1e3:.2f} ms per step → {total_steps} steps "
        f"for {args.minutes} min",
        flush=True,
    )

    # The real training: initial weights again, fresh optimizer, schedule and batch stream.
    model.load_state_dict(initial)
    state = make_state(total_steps)
    ema = state[2]
    generator.manual_seed(args.seed)
    batches = batches_forever(len(images), args.batch_size, generator)
    report_every = max(1, total_steps // 10)
    loss_sum, since_report = torch.zeros((), device=device), 0
    sync(device)
    started = time.perf_counter()
    for index in range(1, total_steps + 1):
        loss_sum += step(state, *next(batches), step_model)
        since_report += 1
        if index % report_every == 0 or index == total_steps:
            elapsed = time.perf_counter() - started  # the .item() below syncs, so this is honest
            print(
                f"step {index}/{total_steps}: train/l1 {float(loss_sum) / since_report:.4f}, "
                f"{elapsed:.0f} s, {index * args.batch_size / elapsed:,.0f} images/s",
                flush=True,
            )
            loss_sum.zero_()
            since_report = 0
    sync(device)
    train_s = time.perf_counter() - started

    images_per_s = total_steps * args.batch_size / train_s
    achieved = flops_per_step * total_steps / train_s
    sheet, measured = bf16_peak(device)
    scores = {}
    for name, net in (("gpu_raw", model), ("gpu_ema", ema.module)):
        valid_l1, valid_psnr = validate(net, valid_a, valid_b, mix=MIX, loss=LOSS)
        scores[name] = {"valid/l1": valid_l1, "valid/psnr": valid_psnr}
    args.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, net in (("gpu_raw", model), ("gpu_ema", ema.module)):
        state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in net.state_dict().items()}
        checkpoint = {
            "model_config": config,
            "state_dict": state,
            "metadata": {"set_name": name, "source": "benchmarks/gpu_train.py"},
        }
        files[name] = save_parts(checkpoint, args.out, name)
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "train_images": len(images),
        "width": args.width,
        "depth": args.depth,
        "batch_size_images": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "muon_lr": args.muon_lr if args.optimizer == "muon" else None,
        "train_source": "JPEG bytes" if "jpeg" in arrays.files else "uint8 arrays",
        "ema_decay": args.ema_decay,
        "compiled": step_model is not model,
        "steps": total_steps,
        "train_seconds": train_s,
        "compile_seconds": compile_s,
        "images_per_second": images_per_s,
        "pairs_per_second": images_per_s / 2,
        "flops_per_step": flops_per_step,
        "achieved_flops": achieved,
        "bf16_peak_datasheet": sheet,
        "bf16_matmul_measured": measured,
        "share_of_datasheet_peak": achieved / sheet if sheet else None,
        "share_of_measured_matmul": achieved / measured,
        "validation": scores,
        "files": files,
    }
    (args.out / "gpu_summary.json").write_text(json.dumps(summary, indent=2))
    peak_text = f"{achieved / sheet:.1%} of the data-sheet bf16 peak ({sheet / 1e12:.0f} TFLOP/s), " if sheet else ""
    print(
        f"trained {total_steps} steps in {train_s:.1f} s: {images_per_s:,.0f} training images/s "
        f"({images_per_s / 2:,.0f} pairs/s); {achieved / 1e12:.1f} TFLOP/s = {peak_text}"
        f"{achieved / measured:.1%} of the best bf16 matmul measured here ({measured / 1e12:.0f} TFLOP/s)"
    )
    for name, score in scores.items():
        print(f"{name}: valid/l1 {score['valid/l1']:.4f}, valid/psnr {score['valid/psnr']:.2f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="pack the training images and validation pairs that travel")
    packing.add_argument("--subset", type=Path, required=True, help="the subset stage's output folder")
    packing.add_argument("--out", type=Path, required=True)
    packing.add_argument("--n-train", type=int, default=16000, help="images as uint8 (16,000 are 47 MiB)")
    packing.add_argument(
        "--images", type=Path, help="the image folder the subset was drawn from: carry all its images as JPEG bytes"
    )
    packing.add_argument("--seed", type=int, default=0)
    training = commands.add_parser("train", help="train on the packed data for a wall-clock budget")
    training.add_argument("--data", type=Path, required=True)
    training.add_argument("--out", type=Path, required=True)
    training.add_argument("--minutes", type=float, default=5.0, help="training budget, compilation excluded")
    training.add_argument("--width", type=int, default=64, help="channels at full resolution")
    training.add_argument("--depth", type=int, default=3)
    training.add_argument("--batch-size", type=int, default=2048, help="images per step, two per pair")
    training.add_argument("--lr", type=float, default=4e-3, help="peak of the one-cycle schedule")
    training.add_argument("--optimizer", choices=["adam", "muon"], default="adam")
    training.add_argument("--muon-lr", type=float, default=0.12, help="Muon's one-cycle peak (the Zen 4 rows')")
    training.add_argument("--ema-decay", type=float, default=0.999)
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--warmup-steps", type=int, default=10)
    training.add_argument("--timing-steps", type=int, default=30)
    training.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    joining = commands.add_parser("join", help="join weights that came back into one checkpoint")
    joining.add_argument("--parts", type=Path, required=True)
    joining.add_argument("--name", default="gpu_ema")
    joining.add_argument("--out", type=Path, required=True)
    recording = commands.add_parser("record", help="draw the record of a scored GPU model")
    recording.add_argument("--subset", type=Path, required=True)
    recording.add_argument("--eval", type=Path, required=True, help="the evaluate stage's outputs (.npz)")
    recording.add_argument("--reports", type=Path, required=True, help="holds NAME/metrics.json")
    recording.add_argument("--name", default="gpu")
    args = parser.parse_args()
    if args.command == "record":
        record(args.subset, args.eval, args.reports, args.name)
    elif args.command == "pack" and args.images:
        pack_jpeg(args.subset, args.images, args.out)
    elif args.command == "pack":
        pack(args.subset, args.out, args.n_train, args.seed)
    elif args.command == "train":
        train(args)
    else:
        join(args.parts, args.name, args.out)


if __name__ == "__main__":
    main()
