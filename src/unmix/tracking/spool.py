"""Tracking calls the MLflow store has not taken yet, kept on disk until it does.

One spool is one JSON-lines file, `<run id>-<start>-<pid>.jsonl` in the spool folder (the
repository's `mlflow-spool/`, gitignored): a header naming the store and the run, then one
record per call in the order they were made, and `{"delivered": n}` records saying that
the first n calls are in the store. Arrays, files and models go beside it, in a folder of
the same name. A spool with nothing left to deliver is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from unmix.errors import UnmixError

SPOOL_DIR_NAME = "mlflow-spool"
SPOOL_SUFFIX = ".jsonl"


class SpoolError(UnmixError):
    """A spool file that cannot be read back."""


class Spool:
    """An append-only journal of one tracking worker's undelivered calls to one run.

    Calls are the worker's tuples: ("metrics", {key: value}, step, timestamp_ms[, link]),
    ("inputs", [dataset dict]),
    ("image", uint8 array, key, step), ("artifact", path, artifact_path),
    ("model", module, model_config, name), ("tags", {key: value}), ("end", status).
    """

    def __init__(self, path: Path, header: dict) -> None:
        self.path = Path(path)
        self.blobs = self.path.with_suffix("")
        self._header = header
        self._count = 0  # call records in the file

    @classmethod
    def create(cls, directory: Path, uri: str, run_id: str) -> Spool:
        """A new, empty spool for `run_id` on `uri` (the file appears with its first call)."""
        name = f"{run_id}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}{SPOOL_SUFFIX}"
        return cls(Path(directory) / name, {"spool": 1, "uri": uri, "run_id": run_id})

    def append(self, call: tuple) -> None:
        """Write one call to disk (flushed and synced: it must outlive this process)."""
        new = not self.path.exists()
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        record = self._record(call, self._count)
        with open(self.path, "a", encoding="utf-8") as f:
            if new:
                f.write(json.dumps(self._header) + "\n")
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._count += 1

    def mark_delivered(self, total: int) -> None:
        """The first `total` calls of this spool are in the store; all of them: delete it."""
        if total >= self._count:
            self.remove()
            self._count = 0
            return
        note_delivered(self.path, total)

    def remove(self) -> None:
        remove_spool(self.path)

    def _record(self, call: tuple, index: int) -> dict:
        kind, *args = call
        if kind == "metrics":
            metrics, step, timestamp, *link = args
            record = {"call": kind, "metrics": metrics, "step": step, "timestamp": timestamp}
            return record | ({"link": link[0]} if link else {})
        if kind == "inputs":
            return {"call": kind, "datasets": args[0]}
        if kind == "image":
            image, key, step = args
            file = self._blob(f"image-{index:05d}.npy")
            np.save(file, image, allow_pickle=False)
            return {"call": kind, "file": file.name, "key": key, "step": step}
        if kind == "artifact":
            source, artifact_path = args
            # A copy: the file may be rewritten (or gone) by the time the store is back.
            folder = self._blob(f"artifact-{index:05d}")
            folder.mkdir()
            shutil.copy2(source, folder / Path(source).name)
            return {"call": kind, "file": f"{folder.name}/{Path(source).name}", "artifact_path": artifact_path}
        if kind == "model":
            from safetensors.torch import save_model

            # The weights as safetensors and the config that rebuilds the network: reading a
            # spool back never unpickles anything (a pickle can run any code).
            model, config, name = args
            file = self._blob(f"model-{index:05d}.safetensors")
            save_model(model, str(file))
            return {"call": kind, "file": file.name, "config": config, "name": name}
        if kind == "tags":
            return {"call": kind, "tags": dict(args[0])}
        if kind == "end":
            return {"call": kind, "status": args[0]}
        raise ValueError(f"unknown tracking call {kind!r}")

    def _blob(self, name: str) -> Path:
        self.blobs.mkdir(parents=True, exist_ok=True)
        return self.blobs / name


def read_spool(path: Path) -> tuple[dict, int, list[tuple]]:
    """The header, how many calls are already delivered, and the undelivered calls, in order."""
    path = Path(path)
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise SpoolError(f"{path}: cannot read ({error})") from None
    if not lines or lines[0].get("spool") != 1:
        raise SpoolError(f"{path}: not an unmix spool file (its first line should be its header)")
    header, records = lines[0], [line for line in lines[1:] if "call" in line]
    delivered = max((line["delivered"] for line in lines[1:] if "delivered" in line), default=0)
    blobs = path.with_suffix("")
    return header, delivered, [_call(record, blobs) for record in records[delivered:]]


def note_delivered(path: Path, total: int) -> None:
    """Record that the first `total` calls of the spool at `path` are in the store."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"delivered": total}) + "\n")


def remove_spool(path: Path) -> None:
    Path(path).unlink(missing_ok=True)
    shutil.rmtree(Path(path).with_suffix(""), ignore_errors=True)


def _call(record: dict, blobs: Path) -> tuple:
    kind = record["call"]
    if kind == "metrics":
        link = (record["link"],) if "link" in record else ()
        return ("metrics", record["metrics"], record["step"], record["timestamp"], *link)
    if kind == "inputs":
        return ("inputs", record["datasets"])
    if kind == "image":
        return ("image", np.load(blobs / record["file"], allow_pickle=False), record["key"], record["step"])
    if kind == "artifact":
        return ("artifact", str(blobs / record["file"]), record["artifact_path"])
    if kind == "model":
        return ("model", _model(record, blobs), record.get("config"), record["name"])
    if kind == "tags":
        return ("tags", record["tags"])
    if kind == "end":
        return ("end", record["status"])
    raise ValueError(f"unknown tracking call {kind!r}")


def _model(record: dict, blobs: Path):
    """The spooled network, rebuilt from its config and loaded with its safetensors weights."""
    from safetensors.torch import load_model

    from unmix.model.networks import build_model
    from unmix.tracking.logged_model import build_arguments

    file = blobs / record["file"]
    if file.suffix != ".safetensors" or not record.get("config"):
        raise SpoolError(
            f"{file}: a model spooled by an older unmix (a pickle, or no model config); "
            "not read, since unpickling can run code: deliver it with that version or delete the spool"
        )
    model = build_model(**build_arguments(record["config"]))
    load_model(model, str(file))
    return model


def spool_files(directory: Path) -> list[Path]:
    """Every spool file in `directory`, oldest first within each run."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"*{SPOOL_SUFFIX}"))


def writer_alive(path: Path) -> bool:
    """Whether the worker that writes this spool (its pid ends the name) still runs: not yet ours to deliver."""
    try:
        pid = int(Path(path).stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def count_metric_values(calls: list[tuple]) -> int:
    """How many metric values these calls hold (what a person counts as "metrics")."""
    return sum(len(call[1]) for call in calls if call[0] == "metrics")


def describe(calls: list[tuple]) -> str:
    """`12 metric values, 1 image, the model, the run's end`: what a spool still holds."""
    counts: dict[str, int] = {}
    for call in calls:
        counts[call[0]] = counts.get(call[0], 0) + 1
    parts = []
    if counts.get("metrics"):
        parts.append(f"{count_metric_values(calls)} metric values")
    for kind, word in (("image", "image"), ("artifact", "artifact"), ("inputs", "dataset list")):
        if counts.get(kind):
            parts.append(f"{counts[kind]} {word}{'s' if counts[kind] > 1 else ''}")
    if counts.get("model"):
        parts.append("the model")
    if counts.get("end"):
        parts.append("the run's end")
    return ", ".join(parts) or "nothing"
