"""What the benchmark scripts share: the repository, the CIFAR-10 copy, their training subsets."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the scripts run from a checkout, installed or not

from unmix.config import DataConfig
from unmix.data.raw import acquire_images
from unmix.data.subset import Subsets, draw_subsets

DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "cifar10-jpeg" / "train"


def benchmark_subsets(source: str, images: Path, n_train: int, n_valid: int) -> Subsets:
    """Training images and fixed validation pairs from the image folder, or generated shapes."""
    data = DataConfig(
        source=source,
        path=str(images) if source == "imagefolder" else None,
        shapes_train=n_train + n_valid,
        shapes_test=2,
        n_train=n_train,
        n_valid=n_valid,
        n_test=2,
    )
    return draw_subsets(*acquire_images(data, REPO), data.n_train, data.n_valid, data.n_test, data.seed)
