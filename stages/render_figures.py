"""DVC stage `render-figures`: figures and summary.md for all sets, attached to their MLflow runs."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from unmix.cli import run_stage, stage_parser
from unmix.config import load_config
from unmix.reporting import require_report_inputs
from unmix.tracking import open_tracker


def recorded_run_id(outputs: Path) -> str | None:
    """The MLflow run that evaluate wrote into a set's outputs file, if there is one."""
    try:
        with np.load(outputs, allow_pickle=False) as arrays:
            return str(arrays["mlflow_run_id"]) or None
    except Exception:  # noqa: BLE001 - any damage (BadZipFile, EOFError, ...): render_report names the file
        return None


def main(args: argparse.Namespace) -> None:
    config = load_config(args.params)
    require_report_inputs(list(config.sets), args.eval, args.reports)  # before any run is touched
    with contextlib.ExitStack() as runs:
        # Every set's tracking process starts now and opens its run while this one loads
        # matplotlib and torch and draws; an error marks all the runs FAILED.
        trackers = {
            name: runs.enter_context(open_tracker(
                config.tracking.enabled, config.tracking.uri, config.tracking.experiment,
                run_name=name, run_id=recorded_run_id(args.eval / f"{name}.npz")))
            for name in config.sets
        }
        from unmix.report import render_report
        from unmix.subset import load_subsets

        figures_by_set = render_report(config, load_subsets(args.data).test, args.eval, args.reports)
        for name, paths in figures_by_set.items():
            for path in paths:
                trackers[name].log_artifact(path, artifact_path="figures")
    print(f"render-figures: {sum(map(len, figures_by_set.values()))} figures for "
          f"{len(figures_by_set)} sets → {args.reports / 'figures'}, {args.reports / 'summary.md'}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/subset"))
    parser.add_argument("--eval", type=Path, default=Path("data/eval"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    run_stage(main, parser)
