"""Deliver tracking calls an MLflow store did not take into their runs, now that it is back.

    python -m unmix.tracking.deliver                 # every spool under <repo>/mlflow-spool/
    python -m unmix.tracking.deliver --uri URI       # the store moved: deliver there instead

A stage whose store went away and stayed away leaves its metrics, images and model in
`mlflow-spool/` and says so in one line; this puts them into the same run, in order.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from unmix.cli import run_stage
from unmix.paths import project_root
from unmix.tracking.spool import SPOOL_DIR_NAME, describe, spool_files, writer_alive
from unmix.tracking.tracker import deliver_spool


def main(args: argparse.Namespace) -> None:
    spool_dir = args.spool or project_root(os.environ, Path.cwd()) / SPOOL_DIR_NAME
    files = spool_files(spool_dir)
    if not files:
        print(f"nothing to deliver: no spool in {spool_dir}")
        return
    for path in files:
        if writer_alive(path):
            print(f"skipped {path}: its stage is still running and delivers it itself when the store is back")
            continue
        uri, run_id, calls = deliver_spool(path, args.uri)
        print(f"delivered {describe(calls)} to run {run_id} at {uri}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spool", type=Path, default=None, help=f"spool folder (default: <repo>/{SPOOL_DIR_NAME})")
    parser.add_argument("--uri", default=None, help="deliver to this tracking URI instead of the one each spool names")
    run_stage(main, parser)
