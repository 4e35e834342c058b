"""Resume checkpoints: where a killed `train@<set>` left off, kept outside DVC's outputs.

DVC deletes or replaces its outputs, and a queued experiment's temporary copy disappears,
so checkpoints live in one gitignored folder under the repository root (from DVC_ROOT),
named by a digest of everything the result depends on: two parallel experiments never
share one, and a changed parameter never resumes a stale one. torch is imported inside
the functions that need it, so a stage can look for a checkpoint before loading torch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unmix.atomic import atomic_path
from unmix.config import SetConfig
from unmix.errors import first_line
from unmix.training.faults import kill_point

FOLDER_NAME = "checkpoints"
FORMAT = 1  # bump when the stored state changes shape: an old file then starts afresh


def checkpoint_folder(root: Path) -> Path:
    """The one folder of resume checkpoints, at the repository root."""
    return Path(root) / FOLDER_NAME


def resume_digest(
    set_config: SetConfig,
    data_digest: str,
    model_config: dict,
    torch_version: str,
    threads: int,
    device: str = "cpu",
    processes: int = 1,
) -> str:
    """SHA-256 of what a training's numbers depend on: the set, the data, the model, torch.

    Torch's thread count, the device `auto` resolved to and the number of processes are
    part of it because they change how sums round: a run resumed on another would not give
    the same bytes.
    """
    key = {
        "format": FORMAT,
        "set": dataclasses.asdict(set_config),
        "data_digest": data_digest,
        "model_config": model_config,
        "torch": torch_version,
        "threads": threads,
        "device": device,
    }
    if processes > 1:  # one process keeps the digests it always had
        key["processes"] = processes
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def checkpoint_path(folder: Path, set_name: str, digest: str) -> Path:
    """`<folder>/<set>-<digest prefix>.pt`: the set name for people, the digest for uniqueness
    (the file holds the whole digest and is checked against it)."""
    return Path(folder) / f"{set_name}-{digest[:16]}.pt"


def has_checkpoints(folder: Path, set_name: str) -> bool:
    """Whether any checkpoint of this set is there: cheap, no torch, no digest."""
    return any(Path(folder).glob(f"{set_name}-*.pt"))


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a checkpoint is written; they take effect right after.

    Python-level handlers, not a signal mask: torch's worker threads would still take a
    masked signal for the process. Off the main thread (no handlers there) nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[tuple[int, Any]] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda *received: arrived.append(received)) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number, frame in arrived[:1]:
            handler = previous[number]
            if callable(handler):
                handler(number, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


def save_resume_checkpoint(path: Path, state: dict, digest: str, run_id: str | None) -> int:
    """Write `state` with its digest and MLflow run id, atomically and durably; return its size.

    Durable: the file is fsynced before the rename and the folder after it, so once this
    returns, a power cut still finds the checkpoint (and the epoch's metrics may be logged).
    """
    import torch

    buffer = io.BytesIO()
    # A file object, not a path: torch names the archive after the file, which here would
    # be the temporary name.
    torch.save({**state, "digest": digest, "mlflow_run_id": run_id or ""}, buffer)
    data = buffer.getbuffer()
    with signals_held(), atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            file.write(data[: len(data) // 2])
            file.flush()
            kill_point("checkpoint-write", state["epoch"])
            file.write(data[len(data) // 2 :])
            file.flush()
            os.fsync(file.fileno())
    _fsync_folder(path.parent)
    return len(data)


def load_resume_checkpoint(path: Path, digest: str) -> dict | None:
    """The state saved at `path`, or None when there is none or it is unusable.

    A truncated, corrupt or foreign file is one line naming it on stderr, then a fresh start:
    losing a checkpoint costs time, never a wrong result.
    """
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("digest") != digest:
            raise ValueError("made for other parameters, data or torch")
        for key in ("epoch", "history", "model", "optimizer", "scheduler", "rng"):
            if key not in state:
                raise ValueError(f"no {key!r} in it")
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint means starting afresh
        detail = first_line(error)
        print(f"warning: {path}: unusable resume checkpoint ({detail}); training from the start", file=sys.stderr)
        return None
    return state


def remove_resume_checkpoint(path: Path) -> None:
    """Delete a finished training's checkpoint and any temporary file a kill left beside it."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ResumeCheckpoint:
    """One training's checkpoint: found, read, written every few epochs, removed at the end.

    Looking for one costs a directory listing; the digest (which loads torch, for its
    version and thread count) is computed only when one is read or written.
    """

    def __init__(
        self, folder: Path, set_name: str, set_config: SetConfig, data_digest: str, processes: int = 1
    ) -> None:
        self.folder, self.set_name, self.set_config, self.data_digest = Path(folder), set_name, set_config, data_digest
        self.processes = processes
        self.saved_epoch = 0  # the last finished epoch on disk
        self.written, self.size, self.seconds = 0, 0, 0.0  # what checkpointing cost this process

    @functools.cached_property
    def digest(self) -> str:
        import torch

        from unmix.errors import ConfigError
        from unmix.model.devices import resolve_device
        from unmix.model.networks import set_model_config

        c = self.set_config
        try:
            device = resolve_device(c.device).type
        except ConfigError:  # cuda without a GPU: the stage says so before any training
            device = c.device
        return resume_digest(
            c, self.data_digest, set_model_config(c), torch.__version__, torch.get_num_threads(), device, self.processes
        )

    @property
    def path(self) -> Path:
        return checkpoint_path(self.folder, self.set_name, self.digest)

    def load(self) -> dict | None:
        """The state to resume from, or None; nothing is read when this set has no checkpoint."""
        if not has_checkpoints(self.folder, self.set_name):
            return None
        state = load_resume_checkpoint(self.path, self.digest)
        if state is not None:
            self.saved_epoch = int(state["epoch"])
        return state

    def save(self, state: dict, run_id: str | None) -> None:
        started = time.perf_counter()
        self.size = save_resume_checkpoint(self.path, state, self.digest, run_id)
        self.seconds += time.perf_counter() - started
        self.written += 1
        self.saved_epoch = int(state["epoch"])

    def remove(self) -> None:
        remove_resume_checkpoint(self.path)

    def cost(self) -> str:
        """How many checkpoints were written, their size and the time they took, for the stage's last line."""
        return f"{self.written} resume checkpoints of {self.size / 2**20:.1f} MiB, {self.seconds:.2f} s"

    def where(self, epochs: int) -> str:
        """What an interruption leaves, for the one line that says how to resume."""
        if not self.saved_epoch:
            return "no epoch had finished, so the next run starts from the beginning"
        return f"epoch {self.saved_epoch}/{epochs} is saved in {self.path}"
