"""The DVC metrics and plots files: per-epoch history CSV and test metrics JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from unmix.atomic import write_text_atomically
from unmix.errors import DataError, reading

if TYPE_CHECKING:  # annotations only: importing training would load torch
    from unmix.training.state import EpochResult

HISTORY_COLUMNS = ("epoch", "train/l1", "valid/l1", "valid/psnr")


def history_csv(history: Sequence[EpochResult]) -> str:
    """CSV text, one row per epoch; valid columns are empty on epochs without validation.

    No wall time: a DVC output must stay the same bytes when the numbers do (a rerun, a
    resumed run). Training minutes go to MLflow as `time/minutes`.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for row in history:
        valid = ["", ""] if row.valid_l1 is None else [f"{row.valid_l1:.6f}", f"{row.valid_psnr:.4f}"]
        writer.writerow([row.epoch, f"{row.train_l1:.6f}", *valid])
    return out.getvalue()


def write_history(history: Sequence[EpochResult], path: Path) -> None:
    """Write the history CSV atomically."""
    write_text_atomically(path, history_csv(history))


class LiveHistory:
    """The history CSV kept current while a run trains, for `dvc plots show` and DVC's VS Code view.

    Rewritten whole after every validated epoch (`on_epoch_end`, a `TrainingHooks` hook),
    atomically, so a reader never sees half a file. Each write is a prefix of the file the
    end of training writes (same rows, same bytes), ending on a row that has the plotted
    valid/psnr: an epoch without validation has blank valid cells, a gap in the curve, not
    a point, so it goes out with the next validated epoch (the last epoch always validates).
    A resumed run's earlier epochs (`resumed`) are written at once: DVC removed the file
    before the stage ran.
    """

    def __init__(self, path: Path, resumed: Sequence[EpochResult] = ()) -> None:
        self.path = Path(path)
        self.rows = list(resumed)
        if self.rows:
            write_history(self.rows, self.path)

    def on_epoch_end(self, result: EpochResult, model: object = None) -> None:
        self.rows.append(result)
        if result.valid_l1 is not None:
            write_history(self.rows, self.path)


def read_history(path: Path):
    """The history CSV as a pandas DataFrame (valid/l1 NaN where not measured)."""
    import pandas as pd

    with reading(path, "train"):
        history = pd.read_csv(path)
        missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
        if missing:
            raise ValueError(f"no {missing[0]!r} column")
        return history


def write_metrics(metrics: dict, path: Path) -> None:
    """Write metrics JSON atomically, keys in a stable order for readable diffs."""
    write_text_atomically(path, json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_metrics(path: Path) -> dict:
    """Read a metrics JSON written by `write_metrics`."""
    with reading(path, "evaluate"):
        metrics = json.loads(Path(path).read_text())
        if not isinstance(metrics, dict) or not {"test", "baseline"} <= set(metrics):
            raise ValueError("no 'test' and 'baseline' metrics")
        return metrics


def require_report_inputs(set_names: Sequence[str], eval_dir: Path, reports_dir: Path) -> None:
    """One line naming the first missing history, metrics or outputs file of any set."""
    needed = [Path(reports_dir) / name / f for name in set_names for f in ("history.csv", "metrics.json")]
    needed += [Path(eval_dir) / f"{name}.npz" for name in set_names]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]}: missing; run train and evaluate for every set first (dvc repro)")
