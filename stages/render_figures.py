"""DVC stage `render-figures`: figures and summary.md for all sets, attached to their MLflow runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unmix.cli import run_stage, stage_parser
from unmix.config import load_config
from unmix.report import render_report
from unmix.subset import load_subsets
from unmix.tracking import open_tracker


def main(args: argparse.Namespace) -> None:
    config = load_config(args.params)
    test = load_subsets(args.data).test
    figures_by_set = render_report(config, test, args.eval, args.reports)
    for name, paths in figures_by_set.items():
        with np.load(args.eval / f"{name}.npz", allow_pickle=False) as outputs:
            run_id = str(outputs["mlflow_run_id"]) or None
        with open_tracker(config.tracking.enabled, config.tracking.uri, config.tracking.experiment,
                          run_name=name, run_id=run_id) as tracker:
            for path in paths:
                tracker.log_artifact(path, artifact_path="figures")
    print(f"render-figures: {sum(map(len, figures_by_set.values()))} figures for "
          f"{len(figures_by_set)} sets → {args.reports / 'figures'}, {args.reports / 'summary.md'}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/subset"))
    parser.add_argument("--eval", type=Path, default=Path("data/eval"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    run_stage(main, parser)
