"""Each CIFAR-10 record's command, run today, trains what the record measured.

A record (`reports/cifar10*/record.json`) keeps the params file it ran with and the `dvc exp
run -S …` command a reader types to run it again. The command applies its overrides to
today's params.yaml, so every later change of `best`'s defaults (Muon, batch 64, test-time
flips) silently changes what an old command trains unless the command pins the old value.
This test applies each command's `-S` overrides to params.yaml and compares the validated
result with the record's own params file: the data section and the `best` set.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import yaml

from unmix.config import Config, SetConfig, load_config
from unmix.model.devices import uses_bf16

REPO = Path(__file__).resolve().parents[1]
RECORDS = sorted(p for p in (REPO / "reports").glob("cifar10*/record.json") if (p.parent / "params.yaml").exists())


def overrides(command: str) -> dict[str, object]:
    """The `-S key=value` pairs of a `dvc exp run` command, values read as YAML (as DVC does)."""
    words = shlex.split(command)
    pairs = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-S"]
    return {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def apply(params: dict, key: str, value: object) -> None:
    *path, last = key.split(".")
    for part in path:
        params = params[part]
    params[last] = value


def best_set(config: Config, device: str) -> SetConfig:
    """The `best` set with its precision as it ran on `device` (`auto` is float32 on a CPU)."""
    best = config.set("best")
    return replace(best, precision="bf16" if uses_bf16(torch.device(device), best.precision) else "fp32")


def test_overrides_are_read_as_dvc_reads_them():
    command = "dvc exp run evaluate@best -S data.n_train=39500 -S sets.best.test_flips=false -S 'data.path=a b/c'"
    assert overrides(command) == {"data.n_train": 39500, "sets.best.test_flips": False, "data.path": "a b/c"}


def test_there_are_records_to_check():
    assert len(RECORDS) >= 10


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.parent.name)
def test_a_records_command_trains_with_the_records_parameters(record: Path, tmp_path: Path):
    fields = json.loads(record.read_text())
    command = fields["command"]
    assert "dvc exp run" in command
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in overrides(command).items():
        apply(params, key, value)
    today = tmp_path / "params.yaml"
    today.write_text(yaml.safe_dump(params))
    ran, recorded = load_config(today), load_config(record.parent / "params.yaml")
    ran_best, recorded_best = best_set(ran, fields["device"]), best_set(recorded, fields["device"])
    differences = {
        f"{section}.{key}": (value, getattr(recorded_part, key))  # (the command's, the record's)
        for section, ran_part, recorded_part in (
            ("data", ran.data, recorded.data),
            ("sets.best", ran_best, recorded_best),
        )
        for key, value in asdict(ran_part).items()
        if value != getattr(recorded_part, key)
    }
    if ran_best.optimizer == recorded_best.optimizer == "adam":
        differences.pop("sets.best.muon_lr", None)  # Adam never reads it
    assert differences == {}, "pin these with -S in the record's command"
