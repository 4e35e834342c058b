"""What DVC's own views show: the figures as image plots in `dvc plots diff`, a history.csv
that grows while a run trains, test PSNR and SSIM beside the params in `dvc exp show`."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, copy_project, git, run_command
from unmix.config import SetConfig
from unmix.model.networks import SeedAutoencoder
from unmix.model.tensors import to_channels_first
from unmix.reports.dvc_files import LiveHistory, history_csv
from unmix.training.loop import TrainingHooks, TrainingImages, train_separator
from unmix.training.state import EpochResult

FIGURES = "reports/figures"


# --- history.csv while training ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> TrainingImages:
    rng = np.random.default_rng(0)
    train, valid_a, valid_b = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (16, 4, 4))
    return TrainingImages(to_channels_first(train), to_channels_first(valid_a), to_channels_first(valid_b))


def train(images: TrainingImages, hooks: TrainingHooks, epochs: int = 5, validate_every: int = 2):
    torch.manual_seed(0)
    config = SetConfig(epochs=epochs, batch_size=8, validate_every=validate_every)
    return train_separator(SeedAutoencoder(), config, images, hooks=hooks)


def rows_of(path: Path) -> int | None:
    """Data rows in the CSV at `path`; None when there is no file."""
    return len(path.read_text().splitlines()) - 1 if path.exists() else None


@pytest.mark.usefixtures("one_torch_thread")
def test_history_is_rewritten_after_every_validated_epoch_and_ends_as_the_final_write(
    images: TrainingImages, tmp_path: Path
) -> None:
    path = tmp_path / "reports" / "seed" / "history.csv"
    live = LiveHistory(path)
    seen: list[tuple[int | None, str | None]] = []

    def on_epoch_end(result: EpochResult, model) -> None:
        live.on_epoch_end(result, model)
        seen.append((rows_of(path), path.read_text() if path.exists() else None))

    history = train(images, TrainingHooks(on_epoch_end=on_epoch_end))
    # validate_every 2 of 5 epochs: epochs 2, 4 and the last validate; epochs 1 and 3 write
    # nothing (their rows have blank valid cells) and go out with the next validated epoch.
    assert [rows for rows, _ in seen] == [None, 2, 2, 4, 5]
    final = history_csv(history)
    assert path.read_text() == final  # the bytes the end-of-training write_history gives
    for _, text in seen[1:]:
        assert final.startswith(text)  # each live file is a prefix of the final one
        assert text.splitlines()[-1].split(",")[-1] != ""  # ending on a validated row
    assert not list(path.parent.glob("*.tmp"))  # written through a temporary file and a rename


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resumed_run_writes_its_earlier_epochs_at_once_and_ends_as_an_uninterrupted_one(
    images: TrainingImages, tmp_path: Path
) -> None:
    saved: list[dict] = []
    hooks = TrainingHooks(on_checkpoint=lambda state: saved.append(copy.deepcopy(state)), checkpoint_every=2)
    uninterrupted = train(images, hooks, validate_every=1)
    state = saved[0]  # after epoch 2, as a checkpoint holds it
    assert state["epoch"] == 2

    path = tmp_path / "history.csv"
    live = LiveHistory(path, [EpochResult(**row) for row in state["history"]])
    assert rows_of(path) == 2  # before training goes on: DVC removed the file before the stage ran
    resumed = train(images, TrainingHooks(on_epoch_end=live.on_epoch_end, resume=state), validate_every=1)
    assert resumed == uninterrupted
    assert path.read_text() == history_csv(uninterrupted)


def test_no_file_until_an_epoch_validates(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    live = LiveHistory(path)
    live.on_epoch_end(EpochResult(1, 0.5, None))
    assert not path.exists()
    live.on_epoch_end(EpochResult(2, 0.4, 0.45, 12.5))
    assert path.read_text() == "epoch,train/l1,valid/l1,valid/psnr\n1,0.500000,,\n2,0.400000,0.450000,12.5000\n"


@pytest.mark.e2e  # the train stage, killed and resumed, on the reproduced tiny project
def test_the_train_stage_writes_history_while_it_trains(reproduced_seed_project: Path, tmp_path: Path) -> None:
    project = copy_project(reproduced_seed_project, tmp_path / "project")
    history = project / "reports" / "seed" / "history.csv"
    final = history.read_text()  # what `dvc repro` wrote: 3 epochs, each validated
    history.unlink()
    stage = [
        "python",
        "stages/train.py",
        "--set",
        "seed",
        "--data",
        "data/subset",
        "--model",
        "models/seed.pt",
        "--history",
        str(history.relative_to(project)),
    ]
    killed = run_command(stage, project, check=False, env={"UNMIX_TEST_KILL_AT": "validation@3:KILL"})
    assert killed.returncode != 0, killed.stdout
    # Killed before epoch 3's validation: epochs 1 and 2 are on disk, as the full run wrote them.
    assert history.read_text() == "".join(final.splitlines(keepends=True)[:3])
    history.unlink()  # as DVC removes it before rerunning the stage
    resumed = run_command(stage, project)
    assert "resuming train@seed from epoch 2/3" in resumed.stdout
    assert history.read_text() == final


# --- figures as DVC image plots ---------------------------------------------------------------------


def dvc_repo(tmp_path: Path) -> Path:
    """A git + DVC repository with the project's dvc.yaml and params.yaml and nothing else."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    git(repo, "init", "-q")
    run_command(["dvc", "init", "-q"], repo)
    run_command(["dvc", "config", "core.analytics", "false"], repo)
    return repo


def committed_figures() -> list[str]:
    """The PNGs render-figures last wrote and the repository keeps: every figure of a run."""
    listing = run_command(["git", "ls-files", "-z", "--", FIGURES], REPO).stdout
    return sorted(p for p in listing.split("\0") if p.endswith(".png"))


def tinted(png: bytes, value: int) -> bytes:
    """Other PNG bytes of the same size: the figure with its top-left pixel changed."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.putpixel((0, 0), (value, value, value))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.e2e  # dvc, four seconds
def test_plots_diff_shows_every_figure_of_both_revisions(tmp_path: Path) -> None:
    figures = committed_figures()
    assert any(Path(p).name.startswith("reconstructions_") for p in figures)
    repo = dvc_repo(tmp_path)
    before = {p: (REPO / p).read_bytes() for p in figures}
    after = {p: tinted(data, 7) for p, data in before.items()}
    for rev, contents in (("before", before), ("after", after)):
        for path, data in contents.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_bytes(data)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", rev)
        git(repo, "tag", rev)

    run_command(["dvc", "plots", "diff", "before", "after", "--out", "diff"], repo)

    html = (repo / "diff" / "index.html").read_text()
    shown = re.findall(r'<img src="([^"]+)"', html)
    for path in figures:
        for rev, contents in (("before", before), ("after", after)):
            src = f"static/{rev}_{path.replace('/', '_')}"
            assert src in shown, f"{path} of {rev} not in the plots diff page"
            assert (repo / "diff" / src).read_bytes() == contents[path]  # that revision's image
    # Side by side: each figure's two revisions one after the other.
    names = [src.split("_", 1)[1] for src in shown]
    assert all(names[i] == names[i + 1] for i in range(0, len(names), 2))


@pytest.mark.e2e  # dvc plots show on the reproduced tiny project
def test_every_picture_a_run_writes_is_a_dvc_image_plot(reproduced_seed_project: Path, tmp_path: Path) -> None:
    project = copy_project(reproduced_seed_project, tmp_path / "project")
    # reports/wall_time/ is left out on purpose: it plots wall time, which no two runs share,
    # and git ignores it (.gitignore); everything else a run draws must be a DVC plot.
    pictures = sorted(
        p.relative_to(project).as_posix()
        for p in (project / "reports").rglob("*")
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".svg", ".gif")
        and not p.relative_to(project).as_posix().startswith("reports/wall_time/")
    )
    assert any(p.startswith(f"{FIGURES}/reconstructions_") for p in pictures)
    shown = json.loads(run_command(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    for picture in pictures:
        assert [entry["type"] for entry in shown.get(picture, [])] == ["image"], f"{picture} is no DVC image plot"


# --- dvc exp show -----------------------------------------------------------------------------------


@pytest.mark.e2e  # dvc exp show on the reproduced tiny project
def test_exp_show_has_test_psnr_and_ssim_beside_the_params(reproduced_seed_project: Path, tmp_path: Path) -> None:
    project = copy_project(reproduced_seed_project, tmp_path / "project")
    metrics = json.loads((project / "reports" / "seed" / "metrics.json").read_text())
    params = yaml.safe_load((project / "params.yaml").read_text())
    # --json is what DVC's VS Code extension reads: the workspace row's metrics and params.
    rows = json.loads(run_command(["dvc", "exp", "show", "--json"], project).stdout)
    workspace = next(row["data"] for row in rows if row["rev"] == "workspace")
    shown = workspace["metrics"]["reports/seed/metrics.json"]["data"]["test"]["best"]
    assert {name: shown[name] for name in ("psnr", "ssim")} == {
        name: metrics["test"]["best"][name] for name in ("psnr", "ssim")
    }
    assert workspace["params"]["params.yaml"]["data"]["sets"]["seed"] == params["sets"]["seed"]
    # The table: one row, test PSNR and SSIM columns beside the set's params. With one metrics
    # file and one params file, DVC leaves the file names out of the column names.
    table = list(csv.DictReader(io.StringIO(run_command(["dvc", "exp", "show", "--csv"], project).stdout)))
    row = next(row for row in table if row["rev"] == "workspace")
    for name in ("psnr", "ssim"):
        [column] = [c for c in row if c.endswith(f"test.best.{name}")]
        assert float(row[column]) == pytest.approx(metrics["test"]["best"][name])
    [lr] = [c for c in row if c.endswith("sets.seed.lr")]
    assert float(row[lr]) == params["sets"]["seed"]["lr"]
