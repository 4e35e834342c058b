"""Figures and the markdown summary comparing parameter sets; pure functions, the render stage writes them."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from numbers import Real

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from unmix.atomic import atomic_path

COLUMN_TITLES = ("mixture", "truth a", "truth b", "output 1", "output 2")

# (display name, unit shown in axis labels, True if higher is better); unknown metrics get no hint.
_METRIC_INFO: dict[str, tuple[str, str, bool | None]] = {
    "psnr": ("PSNR", "dB", True),
    "ssim": ("SSIM", "", True),
    "mae": ("MAE", "[0,1] scale", False),
    "mse": ("MSE", "[0,1] scale", False),
    "seed_l1": ("seed L1", "[-1,1] scale", False),
}
_NAME_ORDER = ("psnr", "mae", "mse")
_GROUP_ORDER = ("best", "fixed")

MetricKey = tuple[str | None, str]  # (assignment group such as "best", or None for top level; metric name)


def learning_curves_figure(history: pd.DataFrame, set_name: str, dpi: int = 100) -> Figure:
    """Train and valid L1 per epoch for one set; epochs without validation are skipped, not plotted as gaps."""
    train, valid = _curve(history, "train/l1"), _curve(history, "valid/l1")
    fig = Figure(figsize=(6.4, 4.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(train.index, train.to_numpy(), "--", color="tab:blue", label="train")
    if len(valid):
        best = int(valid.to_numpy().argmin())
        valid_label = f"valid (min {valid.iloc[best]:.4f} at epoch {valid.index[best]})"
    else:
        valid_label = "valid (no validation epochs)"
    # Markers, because validation may run on a few epochs only and a lone point draws no line.
    ax.plot(valid.index, valid.to_numpy(), "-o", color="tab:orange", markersize=3, label=valid_label)
    ax.set(title=f"{set_name}: L1 loss per epoch", xlabel="epoch", ylabel="L1 loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def learning_overlay_figure(histories: Mapping[str, pd.DataFrame], dpi: int = 100) -> Figure:
    """All sets' curves on one chart: one colour per set, valid solid, train dashed."""
    if not histories:
        raise ValueError("learning_overlay_figure needs at least one history")
    colours = _set_colours(list(histories))
    fig = Figure(figsize=(7.5, 4.5), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for name, history in histories.items():
        train, valid = _curve(history, "train/l1"), _curve(history, "valid/l1")
        ax.plot(valid.index, valid.to_numpy(), "-", color=colours[name], marker="o", markersize=2.5, label=name)
        ax.plot(train.index, train.to_numpy(), "--", color=colours[name], alpha=0.7, label="_nolegend_")
    # Proxy handles explain the line styles once instead of doubling every set's legend entry.
    styles = [
        Line2D([], [], color="grey", linestyle="-", marker="o", markersize=2.5, label="valid"),
        Line2D([], [], color="grey", linestyle="--", label="train"),
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + styles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set(title="L1 loss per epoch, all parameter sets", xlabel="epoch", ylabel="L1 loss")
    ax.grid(alpha=0.3)
    return fig


def quality_vs_minutes_figure(histories: Mapping[str, pd.DataFrame], dpi: int = 100) -> Figure:
    """Validation PSNR against training minutes, one line per set: what each budget buys.

    Each history has `minutes` and `valid/psnr` columns: drawn from MLflow's `time/minutes`
    for the pipeline's runs, or a recorded history.csv (reports/cifar10*/).
    """
    if not histories:
        raise ValueError("quality_vs_minutes_figure needs at least one history")
    colours = _set_colours(list(histories))
    fig = Figure(figsize=(7.5, 4.5), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for name, history in histories.items():
        if not {"minutes", "valid/psnr"} <= set(history.columns):
            continue  # histories written before these columns existed
        measured = history.dropna(subset=["valid/psnr"])
        ax.plot(
            measured["minutes"].to_numpy(),
            measured["valid/psnr"].to_numpy(),
            "-o",
            markersize=2.5,
            color=colours[name],
            label=name,
        )
    ax.set(
        title="Validation PSNR (best assignment) against training time",
        xlabel="training time (minutes)",
        ylabel="PSNR (dB), higher is better",
    )
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="lower right", fontsize="small")
    return fig


# Nine parameters: the five image columns, in the order the grid shows them, and keyword-like
# drawing options with defaults; a container for the columns would only rename them.
def reconstruction_grid_figure(
    mixture: np.ndarray,
    truth_a: np.ndarray,
    truth_b: np.ndarray,
    output_1: np.ndarray,
    output_2: np.ndarray,
    title: str,
    row_labels: Sequence[str] | None = None,
    scale: int = 3,
    dpi: int = 100,
) -> Figure:
    """One row per pair (mixture, truth a, truth b, output 1, output 2).

    Each image is drawn at `scale` screen pixels per pixel.
    """
    columns = (mixture, truth_a, truth_b, output_1, output_2)
    shape = np.shape(mixture)
    for name, images in zip(COLUMN_TITLES, columns):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape != shape:
            raise ValueError(
                f"{name} must be uint8 (K, H, W, 3) like mixture {shape}, got {images.dtype} {images.shape}"
            )
    k, h, w = shape[:3]
    if k == 0:
        raise ValueError("reconstruction_grid_figure needs at least one pair")
    if row_labels is None:
        row_labels = [f"pair {i}" for i in range(k)]
    if len(row_labels) != k:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {k} pairs")
    # Lay out in whole device pixels so that each image pixel becomes an exact scale x scale block.
    pt = dpi / 72
    cell_w, cell_h, gap = w * scale, h * scale, max(2, round(4 * pt))
    left, top, bottom = round(22 * pt), round(44 * pt), round(4 * pt)
    width = left + len(columns) * cell_w + (len(columns) - 1) * gap + gap
    height = top + k * cell_h + (k - 1) * gap + bottom
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.suptitle(title, y=1 - round(6 * pt) / height, va="top", fontsize=11)
    for r in range(k):
        for c, images in enumerate(columns):
            x0, y0 = left + c * (cell_w + gap), height - top - (r + 1) * cell_h - r * gap
            ax = fig.add_axes((x0 / width, y0 / height, cell_w / width, cell_h / height))
            ax.imshow(images[r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.75")
            if r == 0:
                ax.set_title(COLUMN_TITLES[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    return fig


def metric_bars_figure(metrics: Mapping[str, Mapping], dpi: int = 100) -> Figure:
    """Test metrics by set, one panel per metric.

    Each model bar stands beside its hatched 'output the mixture' baseline.
    """
    if not metrics:
        raise ValueError("metric_bars_figure needs at least one set")
    names, keys = list(metrics), _metric_keys(metrics)
    colours = _set_colours(names)
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    panel_w = max(3.2, 0.55 * len(names) + 1.2)
    fig = Figure(figsize=(panel_w * ncols, 3.1 * nrows + 0.5), dpi=dpi, layout="constrained")
    x = np.arange(len(names))
    bar_w = 0.38
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        model = [_value(metrics[n], "test", key) for n in names]
        baseline = [_value(metrics[n], "baseline", key) for n in names]
        bars = ax.bar(x - bar_w / 2, model, bar_w, color=[colours[n] for n in names], edgecolor="black", linewidth=0.5)
        base = ax.bar(
            x + bar_w / 2,
            baseline,
            bar_w,
            color="white",
            edgecolor=[colours[n] for n in names],
            hatch="////",
            linewidth=1,
        )
        for container, values in ((bars, model), (base, baseline)):
            ax.bar_label(container, labels=[_format(key, v) for v in values], fontsize=7, padding=1.5, rotation=90)
        ax.margins(y=0.25)  # head room for the rotated value labels
        # Centred, at least two slots wide: a lone set would otherwise get panel-wide bars.
        centre, half = (len(names) - 1) / 2, max(len(names), 2) / 2 + 0.1
        ax.set_xlim(centre - half, centre + half)
        ax.set_title(_column_title(key), fontsize=10)
        ax.set_ylabel(_axis_label(key), fontsize=8)
        rotate = len(names) > 3 or max(len(n) for n in names) > 8
        ax.set_xticks(x, names, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    legend = [
        Patch(facecolor="0.6", edgecolor="black", linewidth=0.5, label="model (colour = set)"),
        Patch(facecolor="white", edgecolor="0.3", hatch="////", label="baseline: output the mixture"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle("Test metrics by parameter set", fontsize=12)
    return fig


def summary_markdown(metrics: Mapping[str, Mapping]) -> str:
    """Markdown table, one row per set in input order, each model value followed by its baseline."""
    keys = _metric_keys(metrics)
    keys = [k for k in keys if k[0] is None] + [k for k in keys if k[0] is not None]  # seed L1 first, as the notebook
    header = ["set", "n pairs"] + [_column_title(k) for k in keys]
    lines = [
        "Test metrics on the fixed test pairs; each cell is `model (baseline value)`, where the baseline outputs "
        "the mixture rescaled (doing nothing). best = better of the two output↔truth assignments per pair, "
        "fixed = output 1↔truth a; MAE, MSE, PSNR (dB) in [0,1] pixel space; seed L1 = sum of both decoders' L1 "
        "on the [-1,1] scale. ↑ higher is better, ↓ lower is better.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name, m in metrics.items():
        n_pairs = m.get("test", {}).get("n_pairs")
        cells = [name.replace("|", "\\|"), "—" if n_pairs is None else str(int(n_pairs))]
        for key in keys:
            value, base = _format(key, _value(m, "test", key)), _format(key, _value(m, "baseline", key))
            cells.append(f"{value or '—'} (baseline {base or '—'})" if value or base else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write `fig` as PNG through a temporary file and a rename, with byte-stable output, then free the figure."""
    try:
        with atomic_path(path) as tmp:
            # The "Software" chunk carries the matplotlib version: dropping it keeps bytes equal across upgrades.
            fig.savefig(tmp, format="png", dpi=fig.dpi, metadata={"Software": None})
    finally:
        _free(fig)


def _free(fig: Figure) -> None:
    # Figures built here are not registered with pyplot, but a caller's pyplot figure would leak otherwise;
    # look pyplot up rather than import it, so this module never picks a GUI backend.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()


def _curve(history: pd.DataFrame, column: str) -> pd.Series:
    """`column` indexed by epoch, sorted, with NaN rows (epochs without that measurement) dropped."""
    missing = {"epoch", column} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {sorted(missing)}; has {list(history.columns)}")
    series = pd.Series(history[column].to_numpy(dtype=float), index=history["epoch"].to_numpy())
    return series[np.isfinite(series.to_numpy())].sort_index()


def _set_colours(names: Sequence[str]) -> dict[str, tuple]:
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _metric_keys(metrics: Mapping[str, Mapping]) -> list[MetricKey]:
    """Every numeric metric in any set's test or baseline block: per-assignment ones first, known names first."""
    nested: dict[str, list[str]] = {}
    top: list[str] = []
    for m in metrics.values():
        for block in (m.get("test", {}), m.get("baseline", {})):
            for key, value in block.items():
                if isinstance(value, Mapping):
                    names = nested.setdefault(key, [])
                    names += [n for n, v in value.items() if _is_number(v) and n not in names]
                elif _is_number(value) and not key.startswith("n_") and key not in top:
                    top.append(key)  # n_* are counts (n_pairs), not scores

    def by_known(order: Sequence[str], items: Sequence[str]) -> list[str]:
        return [x for x in order if x in items] + [x for x in items if x not in order]

    names = by_known(_NAME_ORDER, list(dict.fromkeys(n for ns in nested.values() for n in ns)))
    groups = by_known(_GROUP_ORDER, list(nested))
    keys: list[MetricKey] = [(g, n) for n in names for g in groups if n in nested[g]]
    return keys + [(None, n) for n in top]


def _value(m: Mapping, block: str, key: MetricKey) -> float:
    group, name = key
    source = m.get(block, {})
    if group is not None:
        source = source.get(group, {})
    value = source.get(name)
    return float(value) if _is_number(value) else math.nan


def _format(key: MetricKey, value: float) -> str:
    """Fixed decimals per metric so tables line up; '' for a missing value."""
    if not math.isfinite(value):
        return ""
    return f"{value:.2f}" if key[1] == "psnr" else f"{value:.4f}"


def _column_title(key: MetricKey) -> str:
    group, name = key
    display, unit, higher = _METRIC_INFO.get(name, (name, "", None))
    arrow = {True: " ↑", False: " ↓", None: ""}[higher]
    text = display if group is None else f"{display} {group}"
    return f"{text} (dB){arrow}" if unit == "dB" else f"{text}{arrow}"


def _axis_label(key: MetricKey) -> str:
    display, unit, higher = _METRIC_INFO.get(key[1], (key[1], "", None))
    hint = {True: "higher is better", False: "lower is better", None: ""}[higher]
    return " — ".join(part for part in (unit or display, hint) if part)
