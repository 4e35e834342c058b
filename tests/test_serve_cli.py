"""`unmix mix` and `unmix separate` on PNG and JPEG, 32×32 and larger, and every bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO
from unmix.evaluation.inference import separate_pictures
from unmix.model.model_file import save_model
from unmix.model.networks import build_model, model_config
from unmix.serve.cli import main
from unmix.serve.loading import find_project_root, project_tracking_uri
from unmix.serve.pictures import read_picture

UNMIX = Path(sys.executable).parent / "unmix"  # the console script the project installs


def picture(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return read_picture(path)  # what a JPEG decodes to, not what went in


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    made = {}
    for arch, config in (
        ("unet", model_config("unet", 8, 2, True, "mean")),
        ("seed", model_config("seed", 32, 3, False, "quarter_sum")),
    ):
        model = build_model(**config).eval()
        save_model(model, folder / f"{arch}.pt", config, {"set_name": arch})
        made[arch] = (folder / f"{arch}.pt", model)
    return made


def unmix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([str(UNMIX), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # three runs of the installed script, each importing torch
def test_the_script_mixes_and_separates_png_and_jpeg(checkpoints: dict, tmp_path: Path) -> None:
    a = picture(tmp_path / "a.png", 32, 32, 0)
    b = picture(tmp_path / "b.jpg", 32, 32, 1)
    mixed = unmix("mix", "a.png", "b.jpg", "--mix", "mean", "-o", "m.png", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    assert mixed.stdout == "wrote m.png (mean of a.png and b.jpg)\n"
    mixture = read_picture(tmp_path / "m.png")
    by_hand = np.round((a.astype(np.float64) + b) / 2)  # the mean in [-1, 1], back in [0, 255]
    assert np.abs(mixture - by_hand).max() <= 1  # ties (x.5) may round either way in float32

    Image.fromarray(mixture).save(tmp_path / "m2.jpg", quality=95)
    path, model = checkpoints["unet"]
    result = unmix("separate", "m.png", "m2.jpg", "--model", str(path), "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"model: unet, trained on the mean mix (checkpoint {path})"
    assert lines[1:] == [
        f"{name} -> out/{Path(name).stem}_1.png, out/{Path(name).stem}_2.png, out/{Path(name).stem}_panel.png"
        for name in ("m.png", "m2.jpg")
    ]
    for name in ("m.png", "m2.jpg"):
        stem = Path(name).stem
        expected_1, expected_2 = separate_pictures(model, read_picture(tmp_path / name)[None], "unet", 2)
        np.testing.assert_array_equal(read_picture(tmp_path / "out" / f"{stem}_1.png"), expected_1[0])
        np.testing.assert_array_equal(read_picture(tmp_path / "out" / f"{stem}_2.png"), expected_2[0])
        panel = read_picture(tmp_path / "out" / f"{stem}_panel.png")
        assert panel.shape == (14 + 128, 3 * 128 + 2 * 4, 3)  # titles, three 4× images, two gaps
        np.testing.assert_array_equal(panel[14::4, 132::4][:32, :32], expected_1[0])  # enlarged 4×


def test_mix_rules_by_hand(tmp_path: Path) -> None:
    Image.fromarray(np.full((2, 2, 3), 10, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((2, 2, 3), 30, np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.full((2, 2, 3), 31, np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(np.full((2, 2, 3), 255, np.uint8)).save(tmp_path / "white.png")
    expected = {
        ("a.png", "b.png", "mean"): 20,  # ((10/127.5-1) + (30/127.5-1)) / 2 → 20
        ("white.png", "white.png", "quarter_sum"): 191,  # (1 + 1) / 4 = 0.5 → 1.5 * 127.5 = 191.25
        ("c.png", "a.png", "half_difference"): 138,
    }  # (21 / 127.5) / 2 → 10.5 + 127.5 = 138
    for (first, second, mix), value in expected.items():
        mixed = tmp_path / "m.png"
        assert main(["mix", str(tmp_path / first), str(tmp_path / second), "--mix", mix, "-o", str(mixed)]) == 0
        assert (read_picture(tmp_path / "m.png") == value).all(), mix


def test_mix_resizes_the_second_picture_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    picture(tmp_path / "a.png", 32, 32, 0)
    picture(tmp_path / "b.png", 64, 48, 1)
    assert main(["mix", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "m.jpg")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"note: resized {tmp_path / 'b.png'} (48×64) to {tmp_path / 'a.png'}'s 32×32"
    )
    assert Image.open(tmp_path / "m.jpg").format == "JPEG" and read_picture(tmp_path / "m.jpg").shape == (32, 32, 3)


def test_larger_pictures_pad_on_the_unet_and_resize_on_the_seed_model(
    checkpoints: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mixture = picture(tmp_path / "big.png", 50, 70, 2)
    for arch, note in (
        (
            "unet",
            "note: the unet model takes sizes that are multiples of 4: padded 70×50 to 72×52 "
            "and cropped the outputs back",
        ),
        ("seed", "note: the seed model takes 32×32 only: resized 70×50 to 32×32 and the outputs back to 70×50"),
    ):
        path, model = checkpoints[arch]
        out = tmp_path / arch
        assert main(["separate", str(tmp_path / "big.png"), "--model", str(path), "--out", str(out)]) == 0
        assert note in capsys.readouterr().out.splitlines()
        expected_1, expected_2 = separate_pictures(model, mixture[None], arch, 2 if arch == "unet" else 3)
        np.testing.assert_array_equal(read_picture(out / "big_1.png"), expected_1[0])
        np.testing.assert_array_equal(read_picture(out / "big_2.png"), expected_2[0])
        assert read_picture(out / "big_panel.png").shape == (14 + 2 * 50, 3 * 2 * 70 + 2 * 4, 3)  # 2× to reach 128


@pytest.fixture
def project(tmp_path: Path, mlflow_store_template: Path) -> Path:
    """A project root (dvc.yaml) whose store has `unmix-best` registered, without versions."""
    import mlflow

    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    shutil.copy(mlflow_store_template, root / "mlflow.db")
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").create_registered_model("unmix-best")
    return root


def test_the_store_is_the_projects_not_a_stray_one_in_the_current_folder(project: Path) -> None:
    sub = project / "pictures"
    sub.mkdir()
    (sub / "mlflow.db").write_bytes(b"")  # a stray store: never used
    assert find_project_root(sub, {}) == project
    assert project_tracking_uri(sub, {}) == f"sqlite:///{project / 'mlflow.db'}"
    assert project_tracking_uri(sub, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5001"}) == "http://127.0.0.1:5001"
    assert find_project_root(sub, {"DVC_ROOT": str(sub)}) == sub
    write_params_copy(project, "sqlite:////elsewhere/runs.db")
    assert project_tracking_uri(sub, {}) == "sqlite:////elsewhere/runs.db"


def write_params_copy(project: Path, tracking_uri: str) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"]["uri"] = tracking_uri
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def bad(args: list[str], cwd: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert main(args) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_bad_pictures_are_one_line(tmp_path: Path, checkpoints: dict, capsys, monkeypatch) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    good = picture(tmp_path / "good.png", 32, 32, 0)
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:100])
    Image.fromarray(good).save(tmp_path / "other.gif")
    model = str(checkpoints["unet"][0])
    expected = {
        "notes.png": "error: notes.png: not a PNG or JPEG image",
        "missing.png": "error: missing.png: no such file",
        "other.gif": "error: other.gif: a GIF image; expected PNG or JPEG",
    }
    for name, line in expected.items():
        assert bad(["separate", "good.png", name, "--model", model], tmp_path, capsys, monkeypatch) == line
    assert bad(["separate", "cut.png", "--model", model], tmp_path, capsys, monkeypatch).startswith(
        "error: cut.png: cannot read the image ("
    )
    assert bad(["mix", "good.png", "notes.png", "-o", "m.png"], tmp_path, capsys, monkeypatch) == expected["notes.png"]
    assert bad(["mix", "good.png", "good.png", "-o", "m.bmp"], tmp_path, capsys, monkeypatch) == (
        "error: m.bmp: expected a .png, .jpg or .jpeg file name"
    )
    Path(tmp_path / "sub").mkdir()
    picture(tmp_path / "sub" / "good.png", 32, 32, 1)
    assert bad(["separate", "good.png", "sub/good.png", "--model", model], tmp_path, capsys, monkeypatch) == (
        "error: good.png and sub/good.png: both would write good_1.png; rename one or separate them into "
        "different --out folders"
    )
    assert not list(tmp_path.glob("*_1.png"))


def test_bad_models_are_one_line(tmp_path: Path, project: Path, capsys, monkeypatch) -> None:
    picture(project / "m.png", 32, 32, 0)
    (project / "zip.pt").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: torch's container, no checkpoint
    Image.open(project / "m.png").save(project / "picture.pt", format="PNG")
    store = f"sqlite:///{project / 'mlflow.db'}"
    lines = {
        spec: bad(["separate", "m.png", "--model", spec], project, capsys, monkeypatch)
        for spec in (
            "missing.pt",
            "picture.pt",
            "zip.pt",
            "models:/unmix-nothing@champion",
            "models:/unmix-best@champion",
            "models:/unmix-best/7",
        )
    }
    assert lines["missing.pt"] == (
        "error: --model missing.pt: no such file (expected a checkpoint such as "
        "models/best.pt, or a registered model such as models:/unmix-best@champion)"
    )
    assert lines["picture.pt"] == "error: --model picture.pt: not an unmix checkpoint (not a PyTorch file)"
    assert lines["zip.pt"].startswith("error: --model zip.pt: not an unmix checkpoint (")
    for spec, what in (
        ("models:/unmix-nothing@champion", "unmix-nothing"),
        ("models:/unmix-best@champion", "champion"),
        ("models:/unmix-best/7", "7"),
    ):
        assert lines[spec].startswith(f"error: --model {spec}: ") and lines[spec].endswith(f"(MLflow store {store})")
        assert what in lines[spec].removeprefix(f"error: --model {spec}: ")
    outside = tmp_path / "outside"
    outside.mkdir()
    picture(outside / "m.png", 32, 32, 0)
    assert bad(["separate", "m.png"], outside, capsys, monkeypatch).startswith(
        f"error: no unmix project (dvc.yaml) in {outside} or above"
    )
    assert not list(project.glob("m_*.png"))


def test_a_bad_input_through_the_script_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not a picture")
    result = unmix("separate", "notes.jpg", "--model", "missing.pt", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "error: notes.jpg: not a PNG or JPEG image\n")


def test_mix_a_test_pair_writes_the_mixture_and_both_pictures(tmp_path: Path, capsys, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 128, (3, 32, 32, 3), dtype=np.uint8) * 2 for _ in range(2))  # even: exact means
    (tmp_path / "subset").mkdir()
    np.savez(tmp_path / "subset" / "test.npz", a=a, b=b)
    out = tmp_path / "m.png"
    assert main(["mix", "--test-pair", "1", "--data", str(tmp_path / "subset"), "-o", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out} (mean of test pair 1: {tmp_path / 'm_a.png'}, {tmp_path / 'm_b.png'})\n"
    )
    np.testing.assert_array_equal(read_picture(tmp_path / "m_a.png"), a[1])
    np.testing.assert_array_equal(read_picture(tmp_path / "m_b.png"), b[1])
    np.testing.assert_array_equal(read_picture(out), (a[1].astype(int) + b[1]) // 2)
    assert (
        bad(
            ["mix", "--test-pair", "3", "--data", str(tmp_path / "subset"), "-o", "m.png"],
            tmp_path,
            capsys,
            monkeypatch,
        )
        == f"error: --test-pair 3: expected 0 to 2 ({tmp_path / 'subset'} has 3 test pairs)"
    )
    with pytest.raises(SystemExit) as usage:
        main(["mix", "m_a.png", "--test-pair", "1", "-o", "m.png"])
    assert usage.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "unmix: error: mix takes two pictures A B, or --test-pair N alone"
    )
