"""The benchmark scripts run end to end on a tiny generated set and print their verdict lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow  # trains or times in a benchmark script subprocess
def test_time_to_quality_prints_both_runs_and_the_speedup():
    out = run_benchmark(
        "time_to_quality.py",
        "--source",
        "shapes",
        "--n-train",
        "48",
        "--n-valid",
        "16",
        "--seed-epochs",
        "2",
        "--fast-epochs",
        "3",
    )
    assert "A (seed, full budget):" in out and "B (best, until A's quality):" in out
    speedup = re.search(r"^time-to-quality speedup: (\d+\.\d)$", out.splitlines()[-1])
    assert speedup and float(speedup.group(1)) > 0


@pytest.mark.slow  # trains or times in a benchmark script subprocess
def test_train_speed_loops_agree_and_ratio_is_printed():
    out = run_benchmark(
        "train_speed.py",
        "--source",
        "shapes",
        "--n-train",
        "48",
        "--n-valid",
        "16",
        "--epochs",
        "2",
        "--pairs",
        "1",
        "--steps",
        "1",
    )
    assert re.search(r"arch seed .* GFLOP/step, .*% of peak", out)
    assert re.search(r"arch unet .*% of peak", out)
    assert re.search(r"loop speed ratio seed/unmix: min \d+\.\d+, median \d+\.\d+, max \d+\.\d+", out)
    losses = re.search(r"final losses: seed loop train (\S+) / valid (\S+); unmix loop train (\S+) / valid (\S+)", out)
    assert losses and losses.group(1) == losses.group(3) and losses.group(2) == losses.group(4)


@pytest.mark.slow  # trains or times in a benchmark script subprocess
def test_precision_speed_times_both_precisions_and_prints_the_speedup():
    out = run_benchmark("precision_speed.py", "--source", "shapes", "--n-train", "48", "--pairs", "2")
    assert re.search(r"^CPU capability: \S+", out, flags=re.M)
    assert len(re.findall(r"^pair \d: fp32 \d+\.\d\d s, bf16 \d+\.\d\d s, speedup \d+\.\d{3}$", out, flags=re.M)) == 2
    losses = re.search(r"final train L1: fp32 (\d+\.\d+), bf16 (\d+\.\d+)", out)
    assert losses and losses.group(1) != losses.group(2)  # the bf16 epoch did run in bf16
    assert re.search(r"^bf16 speedup over fp32, median of 2 alternated pairs: \d+\.\d{3} ", out.splitlines()[-1])


@pytest.mark.slow  # trains or times in a benchmark script subprocess
def test_separation_variants_scores_each_variant_and_names_the_best():
    out = run_benchmark(
        "separation_variants.py",
        "--source",
        "shapes",
        "--n-train",
        "48",
        "--n-valid",
        "16",
        "--minutes",
        "0.005",
        "--variants",
        "unet_l1",
        "shuffle_w64_l1",
    )
    scores = dict(re.findall(r"^(\w+): Variant\(.*PSNR (\d+\.\d+) dB", out, flags=re.M))
    assert set(scores) == {"unet_l1", "shuffle_w64_l1"}
    best = re.search(r"^best variant: (\w+) at (\d+\.\d+) dB; spread of all (\d+\.\d+) dB$", out.splitlines()[-1])
    assert best and scores[best.group(1)] == best.group(2) == max(scores.values(), key=float)


@pytest.mark.slow  # trains or times in a benchmark script subprocess
def test_gpu_train_packs_trains_and_joins_a_loadable_checkpoint(tmp_path: Path):
    """The GPU script's three steps at tiny size on the CPU: the check made before its GPU run."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    subset = tmp_path / "subset"
    subset.mkdir()
    np.savez(subset / "train.npz", images=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))
    np.savez(
        subset / "valid.npz",
        a=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        b=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
    )
    out = run_benchmark(
        "gpu_train.py", "pack", "--subset", str(subset), "--out", str(tmp_path / "packed"), "--n-train", "24"
    )
    assert "pack: 24 training images, 4 validation pairs" in out
    with np.load(tmp_path / "packed" / "gpu_data.npz") as packed:
        assert packed["train"].shape == (24, 32, 32, 3)

    out = run_benchmark(
        "gpu_train.py",
        "train",
        "--data",
        str(tmp_path / "packed"),
        "--out",
        str(tmp_path / "back"),
        "--minutes",
        "0.002",
        "--width",
        "4",
        "--depth",
        "2",
        "--batch-size",
        "8",
        "--no-compile",
        "--warmup-steps",
        "1",
        "--timing-steps",
        "1",
    )
    assert re.search(r"trained \d+ steps in .* training images/s .* of the best bf16 matmul measured here", out)
    assert re.search(r"^gpu_ema: valid/l1 \d\.\d+, valid/psnr \d+\.\d+ dB$", out, flags=re.M)

    out = run_benchmark(
        "gpu_train.py",
        "join",
        "--parts",
        str(tmp_path / "back"),
        "--name",
        "gpu_ema",
        "--out",
        str(tmp_path / "gpu.pt"),
    )
    checkpoint = torch.load(tmp_path / "gpu.pt", weights_only=True)
    assert checkpoint["model_config"] == {"arch": "unet", "width": 4, "depth": 2, "consistency": True, "mix": "mean"}

    sys.path.insert(0, str(REPO / "src"))
    from unmix.model.model_file import load_model

    model, _ = load_model(tmp_path / "gpu.pt")
    out_1, out_2 = model(torch.zeros(1, 3, 32, 32))
    assert out_1.shape == out_2.shape == (1, 3, 32, 32)


@pytest.mark.slow  # trains in a benchmark script subprocess
def test_gpu_train_carries_jpeg_bytes_and_trains_on_their_decoding(tmp_path: Path, monkeypatch):
    """Part of issue 22's GPU run at tiny size: the subset's training images travel as their
    JPEG files' bytes, found by their pixels, and decode back to exactly what Pillow gave."""
    import numpy as np
    from PIL import Image

    monkeypatch.syspath_prepend(str(REPO / "src"))
    from unmix.data.sources import image_folder_train_files, load_image_folder

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for k in range(10):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{k}.jpg", quality=90)
    images = load_image_folder(folder)[0].images
    files = image_folder_train_files(folder)
    chosen = [17, 2, 9, 11, 0, 5, 13, 19]  # a subset's images are a draw, in any order
    subset = tmp_path / "subset"
    subset.mkdir()
    np.savez(subset / "train.npz", images=images[chosen])
    np.savez(subset / "valid.npz", a=images[[1, 3]], b=images[[4, 6]])
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "gpu_data.npz").write_bytes(b"an older uint8 pack")

    out = run_benchmark(
        "gpu_train.py", "pack", "--subset", str(subset), "--out", str(tmp_path / "packed"), "--images", str(folder)
    )
    assert "pack: 8 training images as JPEG" in out
    assert not (tmp_path / "packed" / "gpu_data.npz").exists()  # it would travel too
    with np.load(tmp_path / "packed" / "gpu_jpeg.npz") as packed:
        jpeg, offsets = packed["jpeg"], packed["offsets"]
        assert len(offsets) == 9
        for position, k in enumerate(chosen):
            assert jpeg[offsets[position] : offsets[position + 1]].tobytes() == Path(files[k]).read_bytes()
        np.testing.assert_array_equal(packed["check"], images[chosen])

    out = run_benchmark(
        "gpu_train.py",
        "train",
        *("--data", str(tmp_path / "packed"), "--out", str(tmp_path / "back"), "--minutes", "0.002"),
        *("--width", "4", "--depth", "2", "--batch-size", "4", "--no-compile", "--optimizer", "muon"),
        *("--warmup-steps", "1", "--timing-steps", "1"),
    )
    # torchvision's CPU decoder and Pillow's agree to the bit on these files
    assert re.search(r"^decoded 8 JPEG images on cpu in .*: 0\.00% of values differ, by at most 0$", out, flags=re.M)
    assert re.search(r"^gpu_ema: valid/l1 \d\.\d+, valid/psnr \d+\.\d+ dB$", out, flags=re.M)

    def refused(train_images: np.ndarray, image_folder: Path = folder) -> str:
        """The last line of a pack of these training images that must fail, writing nothing."""
        np.savez(subset / "train.npz", images=train_images)
        failed = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "gpu_train.py"), "pack", "--subset", str(subset)]
            + ["--out", str(tmp_path / "again"), "--images", str(image_folder)],
            capture_output=True,
            text=True,
        )
        assert failed.returncode == 1
        assert not (tmp_path / "again").exists()
        return failed.stderr.strip().splitlines()[-1]

    # an image the folder does not hold; a PNG (the GPU side decodes JPEG only)
    assert refused(np.concatenate([images[chosen], images[:1] ^ 1])) == (
        f"error: --images {folder}: 1 of the subset's 9 training images are not in it"
    )
    Image.fromarray(images[0] ^ 1).save(folder / "cat" / "z.png")
    assert refused(np.concatenate([images[chosen], images[:1] ^ 1])) == (
        f"error: --images {folder}: {folder / 'cat' / 'z.png'} is PNG (32, 32); expected 32x32 JPEG"
    )
    nowhere = tmp_path / "nowhere"
    assert refused(images[chosen], nowhere).startswith(
        f"error: --images {nowhere}: data.path={nowhere}: not a directory"
    )


@pytest.mark.slow  # trains or times in a benchmark script subprocess
def test_checkpoint_cost_prints_size_share_and_ratio(tmp_path):
    import yaml

    from conftest import TINY_DATA

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(TINY_DATA)
    params["figures"]["n_pairs"] = 3
    params["sets"]["seed"].update(epochs=2, batch_size=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = run_benchmark(
        "checkpoint_cost.py", "--set", "seed", "--params", str(tmp_path / "params.yaml"), "--pairs", "1"
    )
    assert re.search(r"^set seed: 2 checkpoints per training, \d+\.\d MiB each", out, flags=re.M)
    assert re.search(r"^writing them inside the stage: median \d+\.\d\d s, \d+\.\d\d% of the median", out, flags=re.M)
    assert re.search(r"^train stage on/off ratio over 1 alternated pairs: median \d+\.\d{3}", out, flags=re.M)
    assert re.search(r"^checkpoint cost: [+-]\d+\.\d% of the train stage$", out.splitlines()[-1])


def test_frontier_reads_every_record_with_its_psnr_and_draws_the_figure(tmp_path: Path):
    import json

    sys.path.insert(0, str(REPO / "benchmarks"))
    import frontier

    reports = tmp_path / "reports"
    for folder, minutes, psnr in (("cifar10_a", 4.1, 17.3), ("cifar10_b", 14.0, 17.7)):
        (reports / folder / "best").mkdir(parents=True)
        (reports / folder / "record.json").write_text(
            json.dumps(
                {
                    "label": folder,
                    "device": "cpu",
                    "protocol": True,
                    "train_minutes": minutes,
                    "series": "s",
                    "metrics": "best/metrics.json",
                }
            )
        )
        (reports / folder / "best" / "metrics.json").write_text(
            json.dumps({"test": {"best": {"psnr": psnr}}, "baseline": {"best": {"psnr": 15.6}}})
        )
    records = frontier.load_records(reports)
    assert [(r["folder"], r["train_minutes"], r["psnr"], r["baseline"]) for r in records] == [
        ("cifar10_a", 4.1, 17.3, 15.6),
        ("cifar10_b", 14.0, 17.7, 15.6),
    ]
    # The repository's own records draw: every one has its metrics file.
    folders = {r["folder"] for r in frontier.load_records(REPO / "reports")}
    assert folders >= {"cifar10_5min", "cifar10_fp32_5min", "cifar10_fp32_15min"}


def test_shapes_speed_alternates_portable_and_numpy_math_and_prints_the_slowdown():
    from unmix.data import shapes

    portable = shapes.sincos
    out = run_benchmark("shapes_speed.py", "--images", "64", "--pairs", "2")
    assert (
        len(re.findall(r"^pair \d: portable \d+\.\d\d s, numpy \d+\.\d\d s, slowdown \d+\.\d{3}$", out, flags=re.M))
        == 2
    )
    assert re.search(r"^portable math costs \d+\.\d{3}x numpy's kernels \(min ", out.splitlines()[-1])
    sys.path.insert(0, str(REPO / "benchmarks"))
    from shapes_speed import numpy_math

    with numpy_math():
        assert shapes.sincos is not portable  # the comparison really runs numpy's kernels
    assert shapes.sincos is portable
