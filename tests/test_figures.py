"""Figures return the expected artists with the input data; save_figure writes stable PNGs; the summary reads right."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from unmix.reports import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_history(epochs: int = 6, valid_every: int = 2, offset: float = 0.0) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    train = 1.0 / epoch + offset
    valid = np.where(epoch % valid_every == 0, train + 0.1, np.nan)
    return pd.DataFrame({"epoch": epoch, "train/l1": train, "valid/l1": valid})


def make_metrics(psnr_best: float = 16.1, extra: dict | None = None) -> dict:
    metrics = {
        "test": {
            "n_pairs": 500,
            "seed_l1": 0.61,
            "fixed": {"mae": 0.15, "mse": 0.04, "psnr": 14.9},
            "best": {"mae": 0.12, "mse": 0.03, "psnr": psnr_best},
        },
        "baseline": {
            "seed_l1": 0.57,
            "fixed": {"mae": 0.16, "mse": 0.045, "psnr": 15.0},
            "best": {"mae": 0.155, "mse": 0.0425, "psnr": 15.6},
        },
    }
    if extra:
        metrics["test"]["best"].update(extra["test"])
        metrics["baseline"]["best"].update(extra["baseline"])
    return metrics


def images(k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, 32, 32, 3), dtype=np.uint8)


# --- learning curves -------------------------------------------------------------------------------------


def test_learning_curves_plots_train_and_valid_without_nan_points() -> None:
    history = make_history(epochs=6, valid_every=2)
    fig = figures.learning_curves_figure(history, "alpha")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    train, valid = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(train.get_ydata(), 1.0 / np.arange(1, 7))
    # Only the validated epochs, so no NaN reaches the plot and the points join into a line.
    np.testing.assert_array_equal(valid.get_xdata(), [2, 4, 6])
    assert np.isfinite(valid.get_ydata()).all()
    assert "alpha" in ax.get_title()
    assert ax.get_xlabel() == "epoch"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "train"
    assert labels[1].startswith("valid (min 0.2667 at epoch 6)")


def test_learning_curves_sorts_epochs_and_survives_all_nan_valid() -> None:
    history = make_history(epochs=4).iloc[::-1]
    history["valid/l1"] = np.nan
    fig = figures.learning_curves_figure(history, "beta")
    train, valid = fig.axes[0].get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
    assert len(valid.get_xdata()) == 0
    fig.canvas.draw()  # must not raise on an empty line


def test_history_without_a_column_names_it() -> None:
    with pytest.raises(ValueError, match="valid/l1"):
        figures.learning_curves_figure(pd.DataFrame({"epoch": [1], "train/l1": [0.5]}), "x")


# --- overlay ---------------------------------------------------------------------------------------------


def test_overlay_has_two_lines_per_set_one_colour_each() -> None:
    histories = {"zeta": make_history(), "alpha": make_history(valid_every=3, offset=0.2), "mid": make_history(8)}
    fig = figures.learning_overlay_figure(histories)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2 * len(histories)
    colours = []
    for i, name in enumerate(histories):
        valid, train = lines[2 * i], lines[2 * i + 1]
        assert valid.get_linestyle() == "-" and train.get_linestyle() == "--"
        assert valid.get_color() == train.get_color()
        assert valid.get_label() == name
        assert np.isfinite(valid.get_ydata()).all()
        colours.append(valid.get_color())
    assert len(set(map(str, colours))) == len(histories)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["zeta", "alpha", "mid", "valid", "train"]
    np.testing.assert_array_equal(lines[2].get_xdata(), [3, 6])  # alpha validated every 3rd epoch


def test_overlay_rejects_no_sets() -> None:
    with pytest.raises(ValueError):
        figures.learning_overlay_figure({})


# --- reconstruction grid ---------------------------------------------------------------------------------


def test_grid_has_k_by_5_image_axes_with_exact_pixels() -> None:
    k = 3
    columns = [images(k, seed) for seed in range(5)]
    fig = figures.reconstruction_grid_figure(*columns, title="alpha: test pairs")
    assert len(fig.axes) == k * 5
    for r in range(k):
        for c in range(5):
            ax = fig.axes[r * 5 + c]
            (image,) = ax.get_images()
            np.testing.assert_array_equal(np.asarray(image.get_array()), columns[c][r])
            assert image.get_interpolation() == "nearest"
            assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    assert [ax.get_title() for ax in fig.axes[:5]] == list(figures.COLUMN_TITLES)
    assert all(ax.get_title() == "" for ax in fig.axes[5:])
    assert [fig.axes[r * 5].get_ylabel() for r in range(k)] == ["pair 0", "pair 1", "pair 2"]
    assert fig.get_suptitle() == "alpha: test pairs"


def test_grid_rows_run_top_to_bottom() -> None:
    fig = figures.reconstruction_grid_figure(*[images(2, s) for s in range(5)], title="t", row_labels=["#7", "#9"])
    first, second = fig.axes[0], fig.axes[5]
    assert first.get_position().y0 > second.get_position().y0
    assert second.get_ylabel() == "#9"


def test_grid_rejects_mismatched_or_non_uint8_input() -> None:
    good = [images(2, s) for s in range(5)]
    with pytest.raises(ValueError, match="output 2"):
        figures.reconstruction_grid_figure(*good[:4], images(3, 9), title="t")
    with pytest.raises(ValueError, match="truth a"):
        figures.reconstruction_grid_figure(good[0], good[1].astype(np.float32), *good[2:], title="t")


# --- metric bars -----------------------------------------------------------------------------------------


def test_metric_bars_one_panel_per_metric_model_beside_baseline() -> None:
    metrics = {"zeta": make_metrics(16.1), "alpha": make_metrics(17.25)}
    fig = figures.metric_bars_figure(metrics)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "PSNR best (dB) ↑", "PSNR fixed (dB) ↑", "MAE best ↓", "MAE fixed ↓", "MSE best ↓", "MSE fixed ↓", "seed L1 ↓",
    ]  # fmt: skip
    for ax in fig.axes:
        model, baseline = ax.containers
        assert len(model) == len(baseline) == 2
        assert all(p.get_hatch() for p in baseline) and not any(p.get_hatch() for p in model)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["zeta", "alpha"]
    psnr_best = fig.axes[0]
    assert [p.get_height() for p in psnr_best.containers[0]] == [16.1, 17.25]
    assert [p.get_height() for p in psnr_best.containers[1]] == [15.6, 15.6]
    seed = fig.axes[-1]
    assert [p.get_height() for p in seed.containers[0]] == [0.61, 0.61]
    assert [p.get_height() for p in seed.containers[1]] == [0.57, 0.57]
    # A model bar and its baseline sit side by side, model on the left.
    assert psnr_best.containers[0][0].get_x() < psnr_best.containers[1][0].get_x() < psnr_best.containers[0][1].get_x()


def test_metric_bars_show_extra_metrics_even_when_some_sets_lack_them() -> None:
    metrics = {"a": make_metrics(), "b": make_metrics(extra={"test": {"ssim": 0.8}, "baseline": {"ssim": 0.5}})}
    fig = figures.metric_bars_figure(metrics)
    (ssim,) = [ax for ax in fig.axes if ax.get_title().startswith("SSIM best")]
    heights = [p.get_height() for p in ssim.containers[0]]
    assert math.isnan(heights[0]) and heights[1] == 0.8
    fig.canvas.draw()  # a NaN bar must render


# --- summary markdown ------------------------------------------------------------------------------------


def test_summary_markdown_worked_by_hand() -> None:
    metrics = {"zeta": make_metrics(16.1), "alpha|b": make_metrics(17.256)}
    text = figures.summary_markdown(metrics)
    lines = text.splitlines()
    assert "baseline" in lines[0] and "mixture" in lines[0]
    assert lines[2] == (
        "| set | n pairs | seed L1 ↓ | PSNR best (dB) ↑ | PSNR fixed (dB) ↑ | MAE best ↓ | MAE fixed ↓ "
        "| MSE best ↓ | MSE fixed ↓ |"
    )
    assert lines[3] == "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[4] == (
        "| zeta | 500 | 0.6100 (baseline 0.5700) | 16.10 (baseline 15.60) | 14.90 (baseline 15.00) "
        "| 0.1200 (baseline 0.1550) | 0.1500 (baseline 0.1600) | 0.0300 (baseline 0.0425) "
        "| 0.0400 (baseline 0.0450) |"
    )
    assert lines[5].startswith(r"| alpha\|b | 500 | 0.6100 (baseline 0.5700) | 17.26 (baseline 15.60) |")
    assert len(lines) == 6 and text.endswith("\n")
    assert figures.summary_markdown(metrics) == text


def test_summary_markdown_extra_and_missing_values() -> None:
    metrics = {"b": make_metrics(extra={"test": {"ssim": 0.8}, "baseline": {"ssim": 0.5}}), "a": make_metrics()}
    metrics["a"]["baseline"]["fixed"].pop("mae")
    lines = figures.summary_markdown(metrics).splitlines()
    assert lines[2].endswith("| SSIM best ↑ |")
    assert lines[4].startswith("| b |") and lines[5].startswith("| a |")  # input order, not sorted
    assert lines[4].endswith("| 0.8000 (baseline 0.5000) |")
    assert lines[5].endswith("| — |")
    assert "| 0.1500 (baseline —) |" in lines[5]


# --- save_figure -----------------------------------------------------------------------------------------


def test_save_figure_writes_identical_png_bytes_and_no_temp_file(tmp_path) -> None:
    def build() -> Figure:
        return figures.metric_bars_figure({"a": make_metrics(), "b": make_metrics(17.0)})

    first, second = tmp_path / "one.png", tmp_path / "sub" / "two.png"
    figures.save_figure(build(), first)
    figures.save_figure(build(), second)
    data = first.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data == second.read_bytes()
    assert b"Matplotlib" not in data  # no version stamp that would change the bytes on upgrade
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["one.png", "two.png"]
    assert first.stat().st_mode & 0o777 == 0o644


def test_save_figure_frees_the_figure(tmp_path) -> None:
    fig = figures.learning_curves_figure(make_history(), "a")
    figures.save_figure(fig, tmp_path / "c.png")
    assert fig.axes == []


def test_save_figure_failure_leaves_old_file_and_no_temp(tmp_path) -> None:
    target = tmp_path / "f.png"
    target.write_bytes(b"old")
    fig = figures.learning_curves_figure(make_history(), "a")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="disk full"):
        figures.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
