"""Turn every set's history, metrics and test outputs into the figures and summary people read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unmix.atomic import atomic_directory, write_text_atomically
from unmix.config import Config
from unmix.data.subset import PairSet
from unmix.errors import reading
from unmix.evaluation.inference import pair_mixture
from unmix.model.tensors import to_uint8_images
from unmix.reports import figures
from unmix.reports.dvc_files import read_history, read_metrics, require_report_inputs


def mixtures(pairs: PairSet, mix: str) -> np.ndarray:
    """The uint8 pictures the network saw for these pairs."""
    return to_uint8_images(pair_mixture(pairs, mix))


def render_report(config: Config, test: PairSet, eval_dir: Path, reports_dir: Path) -> dict[str, list[Path]]:
    """Write reports/figures/*.png and reports/summary.md; return each set's figure paths."""
    eval_dir, reports_dir = Path(eval_dir), Path(reports_dir)
    require_report_inputs(list(config.sets), eval_dir, reports_dir)
    histories = {name: read_history(reports_dir / name / "history.csv") for name in config.sets}
    metrics = {name: read_metrics(reports_dir / name / "metrics.json") for name in config.sets}
    dpi, shown = config.figures.dpi, config.figures.n_pairs
    pairs = PairSet(test.a[:shown], test.b[:shown])
    per_set: dict[str, list[str]] = {}
    final_dir = reports_dir / "figures"
    with atomic_directory(final_dir) as out:
        for name, set_config in config.sets.items():
            with (
                reading(eval_dir / f"{name}.npz", "evaluate"),
                np.load(eval_dir / f"{name}.npz", allow_pickle=False) as outputs,
            ):
                output_1, output_2 = outputs["output_1"][:shown], outputs["output_2"][:shown]
            figures.save_figure(
                figures.learning_curves_figure(histories[name], name, dpi=dpi), out / f"learning_curves_{name}.png"
            )
            grid = figures.reconstruction_grid_figure(
                mixtures(pairs, set_config.mix),
                pairs.a,
                pairs.b,
                output_1,
                output_2,
                title=f"{name}: test pairs ({set_config.mix} mix)",
                dpi=dpi,
            )
            figures.save_figure(grid, out / f"reconstructions_{name}.png")
            per_set[name] = [f"learning_curves_{name}.png", f"reconstructions_{name}.png"]
        shared = ["learning_curves_all.png", "test_metrics.png"]
        figures.save_figure(figures.learning_overlay_figure(histories, dpi=dpi), out / shared[0])
        figures.save_figure(figures.metric_bars_figure(metrics, dpi=dpi), out / shared[1])
    write_text_atomically(
        reports_dir / "summary.md", "# unmix: test metrics by parameter set\n\n" + figures.summary_markdown(metrics)
    )
    return {name: [final_dir / f for f in own + shared] for name, own in per_set.items()}


def render_wall_time_figure(histories: dict, path: Path, dpi: int) -> Path:
    """Validation PSNR against training minutes (histories from MLflow), outside DVC's outputs:
    wall time differs on every run, so a tracked figure of it would never stay unchanged."""
    figures.save_figure(figures.quality_vs_minutes_figure(histories, dpi=dpi), path)
    return Path(path)
