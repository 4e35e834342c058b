"""Nothing lost, through the real `dvc repro` on a tiny copy: a training killed at a named
point resumes to the same bytes as one never killed, in the same MLflow run; and a rerun of
an unchanged commit leaves the tree clean."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import BIN, TINY_SET, copy_project, git, make_tiny_project, run_command, write_params
from unmix.reports.pull_request import changed_figures

pytestmark = pytest.mark.e2e  # `dvc repro`, killed and rerun

SET = "best"  # BatchNorm, one-cycle schedule, flips, fresh pairs: the most state to restore
OUTPUTS = (f"models/{SET}.pt", f"reports/{SET}/history.csv", f"reports/{SET}/metrics.json")
METRIC_KEYS = ("train/l1", "valid/l1", "valid/psnr", "time/minutes")


def repro(project: Path, target: str, kill_at: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`dvc repro target` in its own process group (a group kill must not reach pytest)."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
    }  # a crash of the stage shows where it happened
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "UNMIX_TEST_KILL_AT"):
        env.pop(name, None)
    if kill_at:
        env["UNMIX_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        ["dvc", "repro", target],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> Path:
    """A tiny project with its data subset made, ready to train."""
    project = make_tiny_project(tmp_path_factory.mktemp("resume") / "project", mlflow_store_template)
    run_command(["dvc", "repro", "subset"], project)
    return project


def copy_of(prepared: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(prepared, project, symlinks=True)
    return project


@pytest.fixture(scope="module")
def uninterrupted(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    project = copy_of(prepared, tmp_path_factory.mktemp("uninterrupted"))
    result = repro(project, f"evaluate@{SET}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list((project / "checkpoints").iterdir()), "a finished training leaves no checkpoint"
    return {name: (project / name).read_bytes() for name in OUTPUTS}


def the_run(project: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("unmix").experiment_id], filter_string=f"tags.`unmix.set` = '{SET}'"
    )
    assert len(runs) == 1, "the resumed training must continue the same MLflow run"
    return client, runs[0]


def saved_epoch(project: Path) -> int:
    (path,) = (project / "checkpoints").glob(f"{SET}-*.pt")
    return int(torch.load(path, weights_only=True)["epoch"])


# SIGKILL at each named point, to the stage alone (no suffix) or its whole process group, dvc
# and the tracking worker too (":group"). Only the first runs evaluate as well: the model's
# bytes settle what evaluate writes, and each `dvc repro` costs tens of seconds here.
KILLS = ["mid-epoch@2:KILL", "validation@2:KILL:group", "checkpoint-write@2:KILL", "checkpoint-write@2:KILL:group"]


@pytest.mark.parametrize("kill_at", KILLS)
def test_a_killed_training_resumes_to_the_same_bytes_in_the_same_run(prepared, uninterrupted, tmp_path, kill_at):
    project = copy_of(prepared, tmp_path)
    evaluated = kill_at == KILLS[0]
    target = f"evaluate@{SET}" if evaluated else f"train@{SET}"
    killed = repro(project, target, kill_at=kill_at)
    assert killed.returncode != 0
    assert saved_epoch(project) == 1  # killed in epoch 2, before its checkpoint was complete

    resumed = repro(project, target)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming train@{SET} from epoch 1/{TINY_SET['epochs']} (" in resumed.stdout
    for name in OUTPUTS[: 3 if evaluated else 2]:
        assert (project / name).read_bytes() == uninterrupted[name], f"{name} differs from the uninterrupted run's"
    assert not list((project / "checkpoints").glob(f"{SET}-*")), "the checkpoint outlived its training"
    check_one_finished_run(project, evaluated)


def check_one_finished_run(project: Path, evaluated: bool) -> None:
    client, run = the_run(project)
    assert run.info.status == "FINISHED"
    epochs = list(range(1, TINY_SET["epochs"] + 1))
    for key in METRIC_KEYS:  # each epoch exactly once per key
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == epochs, key
    if not evaluated:
        return
    assert "test/best/psnr" in run.data.metrics  # evaluate found the resumed run
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == [2, 3]  # every 2 epochs, and the last


@pytest.mark.parametrize("kill_at", ["mid-epoch@2:INT", "validation@2:TERM:group"])
def test_ctrl_c_or_sigterm_saves_the_last_epoch_ends_the_run_killed_and_says_how_to_resume(
    prepared, uninterrupted, tmp_path, kill_at
):
    project = copy_of(prepared, tmp_path)
    # Checkpoints every 2 epochs: epoch 1 is not due, so the interruption itself must write it.
    write_params(project, lambda params: params["resume"].update(checkpoint_every=2))
    interrupted = repro(project, f"evaluate@{SET}", kill_at=kill_at)
    assert interrupted.returncode != 0
    lines = [line for line in interrupted.stderr.splitlines() if line.startswith(f"train@{SET}: interrupted")]
    assert len(lines) == 1 and f"epoch 1/{TINY_SET['epochs']} is saved in " in lines[0] and "dvc repro" in lines[0]
    assert saved_epoch(project) == 1
    client, run = the_run(project)
    assert run.info.status == "KILLED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/l1")) == [1]

    resumed = repro(project, f"evaluate@{SET}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming train@{SET} from epoch 1/" in resumed.stdout
    for name in OUTPUTS:
        assert (project / name).read_bytes() == uninterrupted[name], f"{name} differs from the uninterrupted run's"
    check_one_finished_run(project, evaluated=True)


def test_a_corrupt_checkpoint_is_named_and_training_starts_over(prepared, uninterrupted, tmp_path):
    project = copy_of(prepared, tmp_path)
    assert repro(project, f"train@{SET}", kill_at="mid-epoch@3").returncode != 0
    (path,) = (project / "checkpoints").glob(f"{SET}-*.pt")
    path.write_bytes(path.read_bytes()[:1000])
    again = repro(project, f"evaluate@{SET}")
    assert again.returncode == 0, again.stdout + again.stderr
    warnings = [line for line in again.stderr.splitlines() if "unusable resume checkpoint" in line]
    assert len(warnings) == 1 and str(path.relative_to(project)) in warnings[0]
    assert "resuming" not in again.stdout
    for name in OUTPUTS:
        assert (project / name).read_bytes() == uninterrupted[name]


def test_rerunning_an_unchanged_commit_leaves_the_tree_clean(tmp_path: Path, reproduced_seed_project: Path) -> None:
    # conftest's one-set project after its first `dvc repro` (every stage ran), copied.
    project = copy_project(reproduced_seed_project, tmp_path / "project")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first run")
    forced = run_command(["dvc", "repro", "-f"], project)
    assert "Running stage 'train@seed'" in forced.stdout and "Running stage 'render-figures'" in forced.stdout
    assert git(project, "status", "--porcelain") == "", "a rerun changed tracked files (dvc.lock included)"
    assert changed_figures("HEAD", project) == []  # the pull-request report lists no changed figure
    # Wall time is kept, outside DVC: in MLflow, and drawn from there.
    assert (project / "reports" / "wall_time" / "quality_vs_minutes.png").exists()
