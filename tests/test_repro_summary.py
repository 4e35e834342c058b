"""The lines `make repro` ends with: byte-identical, or what changed and how far the metrics moved."""

from __future__ import annotations

from unmix.reports.repro_summary import changed_files, metric_moves, summary


def test_changed_files_from_git_porcelain():
    assert changed_files(" M dvc.lock\n M reports/seed/metrics.json\n") == ["dvc.lock", "reports/seed/metrics.json"]
    assert changed_files("") == []


def test_metric_moves_by_hand():
    diff = {
        "reports/seed/metrics.json": {
            "test.best.psnr": {"old": 14.004, "new": 14.025, "diff": 0.021},
            "test.best.ssim": {"old": 0.239, "new": 0.238, "diff": -0.001},
            "test.fixed.mae": {"old": 0.17, "new": 0.169, "diff": -0.001},
        },
        "reports/best/metrics.json": {"test.best.psnr": {"old": None, "new": 16.7, "diff": None}},
    }
    assert metric_moves(diff) == ["  seed: PSNR 14.004 → 14.025 dB (+0.021), SSIM 0.239 → 0.238 (-0.001)"]


def test_summary_says_byte_identical_or_what_moved():
    assert "byte-identical" in summary([], [])
    text = summary(["dvc.lock", "a", "b", "c"], ["  seed: PSNR 1 → 2"])
    assert text.startswith("make repro: 4 committed files changed (dvc.lock, a, b, …).")
    assert "  seed: PSNR 1 → 2" in text and "docs/reproducibility.md" in text
    assert summary(["dvc.lock"], []).endswith("No test metric moved.")
