"""One experiment of a sweep, as a CI runner (or any machine) runs it: `.github/workflows/sweep.yml`.

    python -m unmix.team.sweep run --name NAME --overrides "sets.best.lr=0.001 sets.best.epochs=40" \
        --git-remote origin --summary "$GITHUB_STEP_SUMMARY" [TARGET ...]

pulls what the DVC remote already holds (so stages the overrides leave alone are not
re-run), runs `dvc exp run -n NAME -S ...`, pushes the experiment (its git ref to the git
remote, its outputs to the DVC remote) and writes a Markdown summary linking the
experiment's MLflow runs, found by their `dvc.exp_name` tag. `remote-extra` prints the
`dvc[...]` extra the default DVC remote needs (s3, ssh, ...), for the runner to install.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from unmix.errors import UnmixError
from unmix.names import SET_TAG
from unmix.reports.pull_request import find_dvc

EXP_NAME_TAG = "dvc.exp_name"
SUMMARY_METRICS = ("test/best/psnr", "test/best/ssim", "test/best/seed_l1")
# URL scheme of a DVC remote -> the dvc extra that installs its plugin (local folders need none).
REMOTE_EXTRAS = {
    "s3": "s3",
    "ssh": "ssh",
    "gs": "gs",
    "azure": "azure",
    "gdrive": "gdrive",
    "hdfs": "hdfs",
    "webhdfs": "webhdfs",
    "oss": "oss",
    "webdav": "webdav",
    "webdavs": "webdav",
}
OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=.*$")


@dataclass(frozen=True)
class RunSummary:
    """What the summary shows of one MLflow run."""

    set_name: str
    run_id: str
    experiment_id: str
    status: str
    metrics: Mapping[str, float]


def parse_overrides(text: str) -> list[str]:
    """Split one matrix entry, "key=value key=value", into the `-S` overrides it holds."""
    overrides = text.split()
    for override in overrides:
        if not OVERRIDE.match(override):
            raise UnmixError(f"--overrides: {override!r} is not key=value (e.g. sets.best.lr=0.001)")
    return overrides


def remote_extra(url: str) -> str:
    """The dvc extra a remote URL needs ('' for a local or network folder)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if len(scheme) <= 1:  # none, or a Windows drive letter
        return ""
    if scheme not in REMOTE_EXTRAS:
        raise UnmixError(f"DVC remote {url!r}: unknown scheme {scheme!r} (known: {', '.join(sorted(REMOTE_EXTRAS))})")
    return REMOTE_EXTRAS[scheme]


def run_url(tracking_uri: str, run: RunSummary) -> str | None:
    """The run's page on a tracking server; None for a local store, which has no pages."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def summary_markdown(name: str, overrides: Sequence[str], runs: Sequence[RunSummary], tracking_uri: str) -> str:
    """A Markdown section: the experiment, its overrides, and a table of its MLflow runs."""
    shown = " ".join(f"`{o}`" for o in overrides) if overrides else "none (the committed params)"
    lines = [f"### Experiment `{name}`", "", "Overrides: " + shown, ""]
    if not runs:
        lines.append(f"No MLflow run tagged `{EXP_NAME_TAG}={name}` at {tracking_uri}.")
        return "\n".join(lines) + "\n"
    lines += [
        "| set | run | status | " + " | ".join(SUMMARY_METRICS) + " |",
        "|---|---|---|" + "---:|" * len(SUMMARY_METRICS),
    ]
    for run in sorted(runs, key=lambda r: r.set_name):
        url = run_url(tracking_uri, run)
        link = f"[{run.run_id[:8]}]({url})" if url else f"`{run.run_id}`"
        values = [f"{run.metrics[key]:.4f}" if key in run.metrics else "–" for key in SUMMARY_METRICS]
        lines.append(f"| {run.set_name} | {link} | {run.status} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def find_runs(tracking_uri: str, name: str) -> list[RunSummary]:
    """Every run, in any experiment of the store, tagged with this DVC experiment name."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    runs = client.search_runs(experiment_ids, filter_string=f"tags.`{EXP_NAME_TAG}` = '{name}'")
    return [
        RunSummary(
            set_name=run.data.tags.get(SET_TAG, run.info.run_name),
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            metrics=run.data.metrics,
        )
        for run in runs
    ]


def _dvc(args: Sequence[str], cwd: Path) -> None:
    """Run dvc with its output shown as it comes (a runner's log); one line on failure."""
    command = [find_dvc(), *args]
    print(f"$ dvc {' '.join(args)}", flush=True)
    if subprocess.run(command, cwd=cwd).returncode != 0:
        raise UnmixError(f"`dvc {' '.join(args)}` failed")


def default_remote_url(cwd: Path) -> str:
    """The URL of the default DVC remote; an error naming the fix when there is none."""
    dvc = find_dvc()
    name = subprocess.run([dvc, "remote", "default"], cwd=cwd, capture_output=True, text=True).stdout.strip()
    # `dvc config`, not `dvc remote list`: the list is a table that wraps a long URL.
    url = (
        subprocess.run([dvc, "config", f"remote.{name}.url"], cwd=cwd, capture_output=True, text=True).stdout.strip()
        if name
        else ""
    )
    if url:
        return url
    raise UnmixError("no default DVC remote: add one with `dvc remote add -d NAME URL` (README, Running as a team)")


def run_experiment(args: argparse.Namespace, cwd: Path, environ: Mapping[str, str]) -> str:
    """Pull, run, push one experiment; return its summary."""
    overrides = parse_overrides(args.overrides)
    tracking_uri = environ.get("MLFLOW_TRACKING_URI", "")
    if args.require_server and not tracking_uri.startswith(("http://", "https://")):
        raise UnmixError(
            "MLFLOW_TRACKING_URI is not a tracking server's URL: the experiment's runs would stay "
            "on this machine (set the MLFLOW_TRACKING_URI secret)"
        )
    default_remote_url(cwd)  # fail before the work, not after it
    if args.pull:
        # What the remote has of the committed outputs: the stages the overrides leave alone stay cached.
        _dvc(["pull", "--allow-missing"], cwd)
    _dvc(["exp", "run", "--name", args.name, *(f"--set-param={o}" for o in overrides), *args.targets], cwd)
    if args.git_remote:
        _dvc(["exp", "push", args.git_remote, args.name], cwd)
    runs = find_runs(tracking_uri, args.name) if tracking_uri else []
    return summary_markdown(args.name, overrides, runs, tracking_uri or "the local store")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run one experiment of a sweep and push it (sweep workflow).")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="pull, dvc exp run, dvc exp push, summarise the MLflow runs")
    run.add_argument("targets", nargs="*", help="stages to reproduce (default: the whole pipeline)")
    run.add_argument("--name", required=True, help="experiment name (a git ref name: letters, digits, - _ .)")
    run.add_argument("--overrides", default="", help='space-separated key=value params, e.g. "sets.best.lr=0.001"')
    run.add_argument("--git-remote", default=None, help="git remote to push the experiment to (default: no push)")
    run.add_argument("--no-pull", dest="pull", action="store_false", help="skip `dvc pull` before the run")
    run.add_argument(
        "--require-server",
        action="store_true",
        help="refuse to run unless MLFLOW_TRACKING_URI is an http(s) tracking server",
    )
    run.add_argument("--summary", type=Path, default=None, help="append the Markdown summary to this file")
    commands.add_parser("remote-extra", help="print the dvc extra the default remote needs ('' for a folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cwd = Path.cwd()
    try:
        if args.command == "remote-extra":
            print(remote_extra(default_remote_url(cwd)))
            return 0
        summary = run_experiment(args, cwd, os.environ)
    except UnmixError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary)
    if args.summary is not None:
        with args.summary.open("a") as out:
            out.write(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
