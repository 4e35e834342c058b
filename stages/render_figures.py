"""DVC stage `render-figures`: figures and summary.md for all sets, attached to their MLflow runs."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

import numpy as np

from unmix.cli import run_stage, stage_parser
from unmix.config import load_config
from unmix.paths import project_root
from unmix.reports.dvc_files import require_report_inputs
from unmix.tracking.run_lookup import run_tags_for
from unmix.tracking.tracker import open_tracker, resolve_tracking_uri


def recorded_model_digest(outputs: Path) -> str | None:
    """The digest of the model that evaluate scored, kept in a set's outputs file, if there is one."""
    try:
        with np.load(outputs, allow_pickle=False) as arrays:
            return str(arrays["model_digest"]) or None
    except Exception:  # noqa: BLE001 - any damage (BadZipFile, EOFError, ...): render_report names the file
        return None


def main(args: argparse.Namespace) -> None:
    config = load_config(args.params)
    require_report_inputs(list(config.sets), args.eval, args.reports)  # before any run is touched
    digests = {name: recorded_model_digest(args.eval / f"{name}.npz") for name in config.sets}
    with contextlib.ExitStack() as runs:
        # Every set's tracking process starts now and opens its run (found by the model's
        # digest) while this one loads matplotlib and torch and draws; an error marks all
        # the runs FAILED.
        trackers = {
            name: runs.enter_context(
                open_tracker(
                    config.tracking.enabled,
                    config.tracking.uri,
                    config.tracking.experiment,
                    run_name=name,
                    find_tags=run_tags_for(name, digests[name]) if digests[name] else None,
                )
            )
            for name in config.sets
        }
        from unmix.data.subset import load_subsets
        from unmix.reports.render import render_report, render_wall_time_figure

        for tracker in trackers.values():
            tracker.wait_open()  # an unreachable store: one line now, not after the drawing

        figures_by_set = render_report(config, load_subsets(args.data).test, args.eval, args.reports)
        for name, paths in figures_by_set.items():
            for path in paths:
                trackers[name].log_artifact(path, artifact_path="figures")
        wall_time = "tracking is off"
        if config.tracking.enabled:
            from unmix.tracking.run_lookup import wall_time_histories

            uri = resolve_tracking_uri(config.tracking.uri, os.environ, project_root(os.environ, Path.cwd()))
            histories = wall_time_histories(uri, config.tracking.experiment, digests)
            wall_time = "no run with training minutes found"
            if histories:
                figure = render_wall_time_figure(histories, args.wall_time_figure, config.figures.dpi)
                for name in histories:
                    trackers[name].log_artifact(figure, artifact_path="figures")
                wall_time = str(figure)
    print(
        f"render-figures: {sum(map(len, figures_by_set.values()))} figures for "
        f"{len(figures_by_set)} sets → {args.reports / 'figures'}, {args.reports / 'summary.md'}; "
        f"quality against minutes (from MLflow, not a DVC output): {wall_time}"
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/subset"))
    parser.add_argument("--eval", type=Path, default=Path("data/eval"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument(
        "--wall-time-figure",
        type=Path,
        default=Path("reports/wall_time/quality_vs_minutes.png"),
        help="where the quality-against-minutes figure goes (untracked: wall time varies)",
    )
    run_stage(main, parser)
