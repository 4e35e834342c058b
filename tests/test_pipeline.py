"""End to end: the real `dvc repro` on a tiny copy of the project, and what it leaves behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY_SET, copy_project, run_command, write_params

pytestmark = pytest.mark.e2e  # the real `dvc repro`

SETS = ("seed", "mean_pit", "best")


def ran_stages(output: str) -> list[str]:
    """Names of the stages a `dvc repro` output says it ran."""
    return re.findall(r"Running stage '([^']+)'", output)


def repro(project: Path, check: bool = True):
    return run_command(["dvc", "repro"], project, check=check)


def test_dvc_repro_end_to_end(tiny_project: Path) -> None:
    first = repro(tiny_project)
    assert set(ran_stages(first.stdout)) == {
        "download",
        "subset",
        "render-figures",
        *(f"{stage}@{name}" for stage in ("train", "evaluate") for name in SETS),
    }

    for name in SETS:
        assert (tiny_project / "models" / f"{name}.pt").stat().st_size > 1_000_000
        history = pd.read_csv(tiny_project / "reports" / name / "history.csv")
        assert list(history.columns) == ["epoch", "train/l1", "valid/l1", "valid/psnr"]  # no wall time
        assert history["epoch"].tolist() == list(range(1, TINY_SET["epochs"] + 1))
        assert history["valid/l1"].notna().all()
        metrics = json.loads((tiny_project / "reports" / name / "metrics.json").read_text())
        assert metrics["test"]["n_pairs"] == 6  # n_test 12 images → 6 fixed pairs
        for block in ("test", "baseline"):
            assert set(metrics[block]["fixed"]) == {"mae", "mse", "psnr", "ssim"}
            assert set(metrics[block]["best"]) == {"mae", "mse", "psnr", "ssim", "seed_l1"}
            # "best" is the assignment with the lower squared error, per pair: its MSE can only
            # be lower. Not its PSNR, a mean of logs (on 6 pairs of the dim-ground data one set
            # scored 11.60 dB best against 11.63 fixed).
            assert metrics[block]["best"]["mse"] <= metrics[block]["fixed"]["mse"]
    figures = {p.name for p in (tiny_project / "reports" / "figures").iterdir()}
    assert figures == {"learning_curves_all.png", "test_metrics.png"} | {
        f"{kind}_{name}.png" for kind in ("learning_curves", "reconstructions") for name in SETS
    }
    # Drawn from MLflow's time/minutes, outside DVC's outputs.
    assert (tiny_project / "reports" / "wall_time" / "quality_vs_minutes.png").stat().st_size > 10_000
    summary = (tiny_project / "reports" / "summary.md").read_text()
    assert all(f"| {name} |" in summary for name in SETS)

    check_mlflow_runs(tiny_project)

    again = repro(tiny_project)
    assert ran_stages(again.stdout) == []

    write_params(tiny_project, lambda p: p["figures"].update(dpi=80))
    figure_only = repro(tiny_project)
    assert ran_stages(figure_only.stdout) == ["render-figures"]


def check_mlflow_runs(project: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("unmix")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["unmix.set"] for run in runs) == sorted(SETS)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["set.epochs"] == str(TINY_SET["epochs"])
        assert run.data.params["data.source"] == "shapes"
        assert len(run.data.tags["unmix.data_digest"]) == 64
        assert len(run.data.tags["mlflow.source.git.commit"]) == 40
        train = client.get_metric_history(run.info.run_id, "train/l1")
        valid = client.get_metric_history(run.info.run_id, "valid/l1")
        minutes = client.get_metric_history(run.info.run_id, "time/minutes")
        assert sorted(m.step for m in train) == sorted(m.step for m in valid) == [1, 2, 3]
        assert [m.step for m in sorted(minutes, key=lambda m: m.step)] == [1, 2, 3]
        assert sorted(m.value for m in minutes) == [m.value for m in sorted(minutes, key=lambda m: m.step)]
        # evaluate adds the test metrics to the training run
        assert {"test/best/psnr", "test/seed_l1", "baseline/best/psnr"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "figures" in artifacts and "images" in artifacts
        images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
        steps = {int(m) for p in images for m in re.findall(r"\+step\+(\d+)\+", p)}
        assert steps == {2, 3}  # every log_images_every=2 epochs, and the last
        figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
        assert {f"reconstructions_{run.data.tags['unmix.set']}.png", "quality_vs_minutes.png"} <= figures
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert len(models) == len(SETS)


def test_bad_parameter_stops_with_one_line_and_the_outputs_come_back(
    reproduced_seed_project: Path, tmp_path: Path
) -> None:
    # The session's reproduced project, copied: its own `dvc repro` cost about 90 s here.
    project = copy_project(reproduced_seed_project, tmp_path / "project")
    model = (project / "models" / "seed.pt").read_bytes()
    metrics = (project / "reports" / "seed" / "metrics.json").read_text()

    write_params(project, lambda p: p["sets"]["seed"].update(epochs=0))
    failed = repro(project, check=False)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: params.yaml: sets.seed.epochs: expected a value >= 1, got 0"]
    # Outputs are not `persist` (the run cache needs that): DVC removed the failed stage's
    # outputs, and its cache gives the last good ones back, as README says.
    assert not (project / "models" / "seed.pt").exists()
    run_command(["dvc", "checkout", "train@seed"], project)
    assert (project / "models" / "seed.pt").read_bytes() == model

    # Back to the parameters that ran: the run cache restores every output, trains nothing.
    write_params(project, lambda p: p["sets"]["seed"].update(epochs=TINY_SET["epochs"]))
    again = repro(project)
    assert ran_stages(again.stdout) == []
    assert (project / "models" / "seed.pt").read_bytes() == model
    assert (project / "reports" / "seed" / "metrics.json").read_text() == metrics


def test_going_back_to_parameters_that_ran_restores_from_the_run_cache(tiny_project: Path) -> None:
    # lr A, lr B, lr A again: the third run restores A's outputs from DVC's run cache
    # instead of training (the outputs are not `persist`, which the run cache skips).
    def exp_run(lr: float) -> tuple[str, bytes, str]:
        result = run_command(["dvc", "exp", "run", "train@best", "-S", f"sets.best.lr={lr}"], tiny_project)
        return (
            result.stdout,
            (tiny_project / "models" / "best.pt").read_bytes(),
            (tiny_project / "reports" / "best" / "history.csv").read_text(),
        )

    first_out, first_model, first_history = exp_run(0.001)
    assert "train@best" in ran_stages(first_out)
    second_out, second_model, _ = exp_run(0.003)
    assert ran_stages(second_out) == ["train@best"] and second_model != first_model
    third_out, third_model, third_history = exp_run(0.001)
    assert ran_stages(third_out) == []
    assert "Stage 'train@best' is cached - skipping run, checking out outputs" in third_out
    assert third_model == first_model and third_history == first_history


def test_cuda_requested_without_a_gpu_stops_before_training(tiny_project: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: device cuda is valid here")
    write_params(tiny_project, lambda p: p["sets"]["seed"].update(device="cuda"))
    failed = run_command(["dvc", "repro", "train@seed"], tiny_project, check=False)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: sets.seed.device: cuda requested, but torch")
    assert not (tiny_project / "models" / "seed.pt").exists()
