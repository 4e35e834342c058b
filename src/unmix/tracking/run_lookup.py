"""How a stage finds its set's MLflow run without a run id in any DVC output.

A run id (or a time) in models/<set>.pt or data/eval/<set>.npz would change those files on
every rerun and leave the tree dirty. Instead train tags its run with the set name and the
SHA-256 of the model file it wrote; evaluate and render-figures look the run up by those
tags (the newest, when reruns made several). Wall time stays in MLflow (`time/minutes`),
and the quality-against-minutes figure is drawn from there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unmix.names import SET_TAG

MODEL_TAG = "unmix.model_digest"


def model_digest(path: Path) -> str:
    """SHA-256 of a model file: the same weights, the same digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_tags_for(set_name: str, digest: str) -> dict[str, str]:
    """The tags that identify the run which trained this model file."""
    return {SET_TAG: set_name, MODEL_TAG: digest}


def wall_time_histories(uri: str, experiment: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """Per set: a DataFrame of epoch, `minutes` and `valid/psnr` from its MLflow run.

    Sets whose run is not in the store are left out.
    """
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    histories = {}
    for name, digest in digests.items():
        if found is None or not digest:
            continue
        condition = " and ".join(f"tags.`{k}` = '{v}'" for k, v in sorted(run_tags_for(name, digest).items()))
        runs = client.search_runs(
            [found.experiment_id], filter_string=condition, order_by=["attributes.start_time DESC"], max_results=1
        )
        if not runs:
            continue
        run_id = runs[0].info.run_id
        minutes = {m.step: m.value for m in client.get_metric_history(run_id, "time/minutes")}
        psnr = {m.step: m.value for m in client.get_metric_history(run_id, "valid/psnr")}
        epochs = sorted(set(minutes) & set(psnr))
        if epochs:
            histories[name] = pd.DataFrame(
                {"epoch": epochs, "minutes": [minutes[e] for e in epochs], "valid/psnr": [psnr[e] for e in epochs]}
            )
    return histories
