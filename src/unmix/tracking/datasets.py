"""What a run trained and was judged on, as MLflow datasets, and the run's description.

MLflow's Runs table fills its Dataset column, and its Datasets filter, from the datasets a
run logged as inputs (`mlflow.log_input`). Each subset split (train, valid, test) is one
dataset: named `<source>-<split>`, its digest the SHA-256 of that split's arrays (the same
recipe as the subset's own digest, `unmix.data.subset.Subsets.digest`, over one split), its
source the .npz file, its schema the arrays' dtypes and shapes, and its profile the counts
and the whole subset's digest (the run's `unmix.data_digest` tag).

The datasets are plain JSON-able dicts: they travel through the tracking queue and the
spool; the worker turns them into MLflow entities (`dataset_entity`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from unmix.config import DataConfig, SetConfig
from unmix.data.subset import Subsets

# MLflow stores a dataset's digest in a 36-character column (PostgreSQL, the team server's
# store, enforces it): the first 16 hex digits (64 bits) name a split; the full SHA-256 is
# in the profile.
DIGEST_CHARS = 16
# Split, MLflow's context for it (the `mlflow.data.context` input tag the UI shows).
CONTEXTS = {"train": "training", "valid": "validation", "test": "test"}
CONTEXT_TAG = "mlflow.data.context"
DESCRIPTION_TAG = "mlflow.note.content"  # the run page's Description


def split_digest(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 (hex) of the arrays' bytes, in order: the same pixels, the same digest."""
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def _split_arrays(subsets: Subsets) -> dict[str, dict[str, np.ndarray]]:
    return {
        "train": {"images": subsets.train.images, "labels": subsets.train.labels},
        "valid": {"a": subsets.valid.a, "b": subsets.valid.b},
        "test": {"a": subsets.test.a, "b": subsets.test.b},
    }


def subset_datasets(
    subsets: Subsets, meta: Mapping[str, Any], source_dir: str, splits: Iterable[str] = tuple(CONTEXTS)
) -> list[dict]:
    """The `splits` as dataset dicts: name, digest, source, context, features, profile.

    `source_dir` is the subset folder as the run should name it (as the stage was given it,
    relative to the repository: a stage may run in a temporary copy).
    """
    datasets = []
    for split in splits:
        arrays = _split_arrays(subsets)[split]
        sha256 = split_digest(arrays.values())
        first = next(iter(arrays.values()))
        datasets.append(
            {
                "name": f"{meta['source']}-{split}",
                "digest": sha256[:DIGEST_CHARS],
                "source": f"{source_dir.rstrip('/')}/{split}.npz",
                "context": CONTEXTS[split],
                # dtype and shape per array, the batch axis free (-1), as MLflow's tensor specs.
                "features": {name: [str(a.dtype), [-1, *a.shape[1:]]] for name, a in arrays.items()},
                "profile": {
                    ("images" if split == "train" else "pairs"): len(first),
                    "sha256": sha256,
                    "subset_digest": meta["digest"],
                },
            }
        )
    return datasets


def dataset_in(datasets: Iterable[Mapping[str, Any]], context: str) -> dict:
    """The dataset logged in `context` (training, validation, test)."""
    for dataset in datasets:
        if dataset["context"] == context:
            return dict(dataset)
    raise KeyError(f"no dataset in context {context!r}")


def dataset_entity(dataset: Mapping[str, Any]) -> Any:
    """The MLflow entity of a dataset dict, its schema as MLflow's own numpy datasets write it."""
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.entities import Dataset
    from mlflow.types import Schema, TensorSpec

    features = Schema(
        [TensorSpec(np.dtype(dtype), tuple(shape), name) for name, (dtype, shape) in dataset["features"].items()]
    )
    return Dataset(
        name=dataset["name"],
        digest=dataset["digest"],
        source_type="local",
        source=json.dumps({"uri": dataset["source"]}),
        schema=json.dumps(TensorDatasetSchema(features=features).to_dict()),
        profile=json.dumps(dataset["profile"]),
    )


def dataset_input(dataset: Mapping[str, Any]) -> Any:
    """A run input: the dataset with its context tag."""
    from mlflow.entities import DatasetInput, InputTag

    return DatasetInput(dataset_entity(dataset), tags=[InputTag(CONTEXT_TAG, dataset["context"])])


def differences(value: Any, default: Any) -> list[str]:
    """`name value (default d)` for each field of a dataclass that differs from `default`'s."""
    return [
        f"{field.name} {getattr(value, field.name)!r} (default {getattr(default, field.name)!r})"
        for field in dataclasses.fields(value)
        if getattr(value, field.name) != getattr(default, field.name)
    ]


def run_description(set_name: str, set_config: SetConfig, data: DataConfig, meta: Mapping[str, Any]) -> str:
    """The run page's description (Markdown): which set on which data, and what differs from
    the defaults (unmix.config's SetConfig and DataConfig)."""
    lines = [
        f"Parameter set `{set_name}` trained on `{data.source}` data: {meta.get('n_train', '?')} "
        f"training images, {meta.get('n_valid_pairs', '?')} validation pairs, "
        f"{meta.get('n_test_pairs', '?')} test pairs (test from the {meta.get('test_from', '?')}).",
        "",
    ]
    changed = differences(set_config, SetConfig()) + [f"data.{d}" for d in differences(data, DataConfig())]
    if changed:
        lines.append("Differs from the defaults in:")
        lines += [f"- {line}" for line in changed]
    else:
        lines.append("Every parameter at its default.")
    return "\n".join(lines)
