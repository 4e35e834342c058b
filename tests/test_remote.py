"""Data, models and experiments travel between clones through a DVC remote and a git remote."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import TeamServer, copy_project, git, run_command, write_params

pytestmark = pytest.mark.e2e  # `dvc repro`, push, pull


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def object_files(folder: Path) -> set[str]:
    """The content-addressed objects under a DVC cache or remote folder, as relative paths."""
    return {p.relative_to(folder).as_posix() for p in (folder / "files").rglob("*") if p.is_file()}


def one_set(project: Path, **tracking: object) -> None:
    """Keep the tiny `seed` set alone, change the tracking section, commit."""

    def edit(params: dict) -> None:
        params["sets"] = {"seed": params["sets"]["seed"]}
        params["tracking"].update(tracking)

    write_params(project, edit)
    git(project, "commit", "-qam", "one set")


def test_push_sends_every_cached_output_and_a_pulled_clone_runs_no_stage(
    reproduced_seed_project: Path, tmp_path: Path
) -> None:
    # The session's reproduced one-set project, copied: its own `dvc repro` cost ~40 s here.
    project = copy_project(reproduced_seed_project, tmp_path / "project")
    remote = tmp_path / "dvc-remote"  # a local or network folder; SSH and S3 remotes differ in the URL only
    run_command(["dvc", "remote", "add", "-d", "storage", str(remote)], project)
    run_command(["dvc", "push"], project)
    cached = object_files(project / ".dvc" / "cache")
    # Every cached output is there (DVC's own check), and nothing the cache lacks; the cache
    # also holds the run cache's copies of uncached outputs, which `dvc push` leaves home.
    assert "in sync" in run_command(["dvc", "status", "--cloud"], project).stdout
    pushed = object_files(remote)
    assert pushed and pushed <= cached
    git(project, "add", "-A")
    git(project, "commit", "-qm", "pipeline outputs")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "models" / "seed.pt").exists()
    run_command(["dvc", "pull"], clone)
    again = run_command(["dvc", "repro"], clone)
    assert ran_stages(again.stdout) == []
    assert (clone / "models" / "seed.pt").read_bytes() == (project / "models" / "seed.pt").read_bytes()
    assert "up to date" in run_command(["dvc", "status"], clone).stdout


@pytest.mark.server  # team_server: PostgreSQL and MLflow
def test_sweep_pushes_an_experiment_another_clone_pulls_with_its_runs(
    tiny_project: Path, tmp_path: Path, team_server: TeamServer
) -> None:
    import mlflow

    one_set(tiny_project, experiment="unmix-sweep")
    run_command(["dvc", "remote", "add", "-d", "storage", str(tmp_path / "dvc-remote")], tiny_project)
    git(tiny_project, "commit", "-qam", "DVC remote")
    origin = tmp_path / "origin.git"  # the team's shared git remote
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(tiny_project, "remote", "add", "origin", str(origin))
    git(tiny_project, "push", "-q", "origin", "HEAD")

    # A runner: a fresh checkout that runs one experiment of the sweep and pushes it.
    runner = tmp_path / "runner"
    git(tmp_path, "clone", "-q", str(origin), str(runner))
    name = "sweep-7-1-0"
    summary = tmp_path / "summary.md"
    sweep = run_command(
        [
            sys.executable,
            "-m",
            "unmix.team.sweep",
            "run",
            "--name",
            name,
            "--overrides",
            "sets.seed.lr=0.001 sets.seed.epochs=2",
            "--git-remote",
            "origin",
            "--require-server",
            "--summary",
            str(summary),
        ],
        runner,
        env={"MLFLOW_TRACKING_URI": team_server.url},
    )
    assert "refs/exps/" in git(runner, "ls-remote", "origin") and name in git(runner, "ls-remote", "origin")

    client = mlflow.MlflowClient(tracking_uri=team_server.url)
    experiment = client.get_experiment_by_name("unmix-sweep")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`dvc.exp_name` = '{name}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert (run.data.params["set.lr"], run.data.params["set.epochs"]) == ("0.001", "2")
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "valid/l1")) == [1, 2]
    link = f"{team_server.url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    assert link in summary.read_text() and link in sweep.stdout

    # A teammate's clone: pull the experiment by name, apply it, nothing left to run.
    teammate = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", str(origin), str(teammate))
    run_command(["dvc", "exp", "pull", "origin", name], teammate)
    listed = json.loads(run_command(["dvc", "exp", "show", "--json"], teammate).stdout)
    assert name in json.dumps(listed)
    run_command(["dvc", "exp", "apply", name], teammate)
    assert "up to date" in run_command(["dvc", "status"], teammate).stdout
    assert (teammate / "models" / "seed.pt").read_bytes() == (runner / "models" / "seed.pt").read_bytes()
    assert "lr: 0.001" in (teammate / "params.yaml").read_text()
