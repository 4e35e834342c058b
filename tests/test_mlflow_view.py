"""What MLflow's model-training view shows of a run: its datasets, system metrics, description,
the model's test metrics; and that a stage's tracking worker leaves no semaphore behind."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_command, write_params
from unmix.config import DataConfig, SetConfig
from unmix.data.imageset import ImageSet
from unmix.data.subset import PairSet, Subsets
from unmix.tracking.datasets import (
    CONTEXT_TAG,
    DESCRIPTION_TAG,
    DIGEST_CHARS,
    dataset_entity,
    dataset_in,
    dataset_input,
    run_description,
    split_digest,
    subset_datasets,
)
from unmix.tracking.spool import Spool, describe, read_spool

TRAINING_VIEW = "?workflowType=machine_learning"


def tiny_subsets(shift: int = 0) -> Subsets:
    pixels = (np.arange(4 * 32 * 32 * 3) % 251).astype(np.uint8).reshape(4, 32, 32, 3)
    train = ImageSet(pixels, np.array([0, 1, 0, 1]), ("a", "b"))
    valid = PairSet(pixels[:1], pixels[1:2])
    test = PairSet(pixels[2:3] + shift, pixels[3:4])
    return Subsets(train, valid, test, "test split")


META = {"source": "shapes", "digest": "f" * 64, "n_train": 4, "n_valid_pairs": 1, "n_test_pairs": 1, "test_from": "x"}


def test_split_digest_is_the_sha256_of_the_arrays_bytes_in_order() -> None:
    a, b = np.array([1, 2], np.uint8), np.array([[3]], np.int64)
    assert split_digest([a, b]) == hashlib.sha256(b"\x01\x02" + (3).to_bytes(8, "little")).hexdigest()
    assert split_digest([b, a]) != split_digest([a, b])


def test_each_split_is_a_dataset_named_by_source_and_digested_by_its_own_pixels() -> None:
    subsets = tiny_subsets()
    datasets = subset_datasets(subsets, META, "data/subset")
    assert [(d["name"], d["context"], d["source"]) for d in datasets] == [
        ("shapes-train", "training", "data/subset/train.npz"),
        ("shapes-valid", "validation", "data/subset/valid.npz"),
        ("shapes-test", "test", "data/subset/test.npz"),
    ]
    test = dataset_in(datasets, "test")
    full = split_digest([subsets.test.a, subsets.test.b])
    assert test["digest"] == full[:DIGEST_CHARS] and len(test["digest"]) <= 36  # MLflow's column
    assert test["profile"] == {"pairs": 1, "sha256": full, "subset_digest": META["digest"]}
    assert dataset_in(datasets, "training")["features"] == {
        "images": ["uint8", [-1, 32, 32, 3]],
        "labels": [str(subsets.train.labels.dtype), [-1]],
    }
    # Other test pixels: only the test dataset changes.
    other = subset_datasets(tiny_subsets(shift=1), META, "data/subset")
    assert [d["digest"] == o["digest"] for d, o in zip(datasets, other, strict=True)] == [True, True, False]
    assert subset_datasets(subsets, META, "data/subset", splits=["test"]) == [test]
    json.dumps(datasets)  # travels through the queue and the spool as JSON


def test_a_dataset_becomes_an_mlflow_input_with_a_tensor_schema_and_its_context() -> None:
    dataset = dataset_in(subset_datasets(tiny_subsets(), META, "data/subset"), "validation")
    entity = dataset_entity(dataset)
    assert (entity.name, entity.digest, entity.source_type) == ("shapes-valid", dataset["digest"], "local")
    assert json.loads(entity.source) == {"uri": "data/subset/valid.npz"}
    features = json.loads(json.loads(entity.schema)["mlflow_tensorspec"]["features"])
    assert [(f["name"], f["tensor-spec"]["shape"]) for f in features] == [
        ("a", [-1, 32, 32, 3]),
        ("b", [-1, 32, 32, 3]),
    ]
    tags = {t.key: t.value for t in dataset_input(dataset).tags}
    assert tags == {CONTEXT_TAG: "validation"}


def test_the_description_names_the_set_and_what_differs_from_the_defaults() -> None:
    default = run_description("plain", SetConfig(), DataConfig(), META)
    assert default.startswith("Parameter set `plain` trained on `shapes` data: 4 training images")
    assert "Every parameter at its default." in default
    changed = run_description("wide", SetConfig(width=64), DataConfig(n_train=500), META)
    assert "- width 64 (default 32)" in changed and "- data.n_train 500 (default 1000)" in changed
    assert changed.count("\n- ") == 2


def test_inputs_and_linked_metrics_survive_the_spool(tmp_path: Path) -> None:
    dataset = dataset_in(subset_datasets(tiny_subsets(), META, "data/subset"), "test")
    spool = Spool.create(tmp_path, "sqlite:///x.db", "run")
    calls = [
        ("inputs", [dataset]),
        ("metrics", {"test/best/psnr": 20.5}, None, 123, {"dataset": dataset}),
        ("metrics", {"baseline/best/psnr": 10.0}, None, 123),
    ]
    for call in calls:
        spool.append(call)
    assert read_spool(spool.path)[2] == calls
    assert describe(calls) == "2 metric values, 1 dataset list"


# --- the leaked semaphore ---------------------------------------------------------------
# The tracking worker is spawned and ends with os._exit. A lock it makes (tqdm makes one for
# MLflow's artifact bars) was a named semaphore the resource tracker reported at exit.
LEAK_SCRIPT = """
import multiprocessing, os, sys
from unmix.tracking.tracker import _become_worker

def worker(calls, fixed):
    if fixed:
        _become_worker(calls)
    lock = multiprocessing.RLock()  # what tqdm does for its bars, kept for the process's life
    os._exit(0 if lock else 1)

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    calls = context.Queue()
    process = context.Process(target=worker, args=(calls, sys.argv[1] == "fixed"))
    process.start()
    process.join()
    calls.close()
"""


@pytest.mark.parametrize("worker", ["fixed", "as-before"])
def test_a_worker_that_exits_at_once_leaves_no_semaphore_behind(worker: str, tmp_path: Path) -> None:
    script = tmp_path / "leak.py"
    script.write_text(LEAK_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), worker], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    leaked = "leaked semaphore" in result.stderr
    assert leaked == (worker == "as-before"), result.stderr  # the check can fail: it sees the old leak


# --- what a new user is told ----------------------------------------------------------------


def test_readme_opens_the_model_training_view() -> None:
    readme = (REPO / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if "mlflow ui" in line]
    assert TRAINING_VIEW in line
    assert TRAINING_VIEW in (REPO / "docs" / "tracking.md").read_text()


def test_what_the_project_says_of_pickles_is_what_mlflow_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    monkeypatch.delenv(MLFLOW_ALLOW_PICKLE_DESERIALIZATION.name, raising=False)
    allowed_by_default = MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get()
    texts = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "src" / "unmix").rglob("*.py")]
    refusal = re.compile(r"refus\w*[^.]{0,40}by default|default\W+refus", re.IGNORECASE)
    claims = [
        f"{path.relative_to(REPO)}: {' '.join(sentence.split())}"
        for path in texts
        for sentence in path.read_text().split(". ")
        if "pickl" in sentence and refusal.search(sentence)
    ]
    assert allowed_by_default and claims == []  # MLflow loads pickles unless told not to


# --- the whole view, from a real pipeline ------------------------------------------------------


@pytest.mark.e2e  # a tiny `dvc repro` of one set's train and evaluate (~1 min on 2 cores)
def test_a_run_shows_datasets_system_metrics_description_and_the_models_test_metrics(tiny_project: Path) -> None:
    import mlflow

    write_params(tiny_project, lambda p: p.update(sets={"seed": p["sets"]["seed"]}))
    run_command(["git", "commit", "-qam", "seed alone"], tiny_project)
    # A tiny training lasts seconds: sample every second so the run has system metrics.
    result = run_command(
        ["dvc", "repro", "evaluate@seed"], tiny_project, env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    )
    assert "leaked semaphore" not in result.stderr + result.stdout
    assert "Downloading artifacts" not in result.stderr

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tiny_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("unmix")
    (run,) = client.search_runs([experiment.experiment_id])
    meta = json.loads((tiny_project / "data" / "subset" / "meta.json").read_text())

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"shapes-train", "shapes-valid", "shapes-test"}  # evaluate's test input: the same one
    contexts = {name: {t.key: t.value for t in d.tags}[CONTEXT_TAG] for name, d in inputs.items()}
    assert contexts == {"shapes-train": "training", "shapes-valid": "validation", "shapes-test": "test"}
    for name, dataset_input_ in inputs.items():
        profile = json.loads(dataset_input_.dataset.profile)
        assert profile["subset_digest"] == meta["digest"] == run.data.tags["unmix.data_digest"]
        assert dataset_input_.dataset.digest == profile["sha256"][:DIGEST_CHARS]
        assert json.loads(dataset_input_.dataset.source) == {"uri": f"data/subset/{name.split('-')[1]}.npz"}

    assert run.data.tags[DESCRIPTION_TAG].startswith("Parameter set `seed` trained on `shapes` data")
    system = [key for key in run.data.metrics if key.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system
    assert not any("gpu" in key for key in system)  # no GPU here: nothing of it logged

    (model,) = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    on_model = {m.key: m for m in model.metrics}
    assert on_model["test/best/psnr"].value == run.data.metrics["test/best/psnr"]
    assert (on_model["test/best/psnr"].dataset_name, on_model["test/best/psnr"].dataset_digest) == (
        "shapes-test",
        inputs["shapes-test"].dataset.digest,
    )
    assert not any(key.startswith("baseline/") for key in on_model)  # the baseline is no model's score
    assert not any(key.startswith("system/") for key in on_model)  # nor is the machine's load
    # Each test metric once in the run's history: linked, not logged twice.
    assert len(client.get_metric_history(run.info.run_id, "test/best/psnr")) == 1


@pytest.mark.slow  # samples system metrics for a few seconds in a subprocess, into a new store (~15 s)
def test_the_system_metrics_benchmark_prints_its_share_of_a_core() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "system_metrics_cost.py"), "--seconds", "3", "--interval", "0.5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    samples = int(re.search(r"(\d+) samples of (\d+) metrics", result.stdout).group(1))
    assert samples >= 2
    assert "system/cpu_utilization_percentage" in result.stdout
    share = re.search(r"^system metrics cost: (\d+\.\d+)% of one core", result.stdout.splitlines()[-1], re.M)
    assert share and 0 < float(share.group(1)) < 100
