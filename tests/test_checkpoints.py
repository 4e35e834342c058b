"""Resume checkpoints on disk: named by what the result depends on, atomic, read safely."""

from __future__ import annotations

import io
import signal
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import torch

from unmix.config import SetConfig
from unmix.model.model_file import save_model
from unmix.model.networks import SeedAutoencoder
from unmix.training.faults import parse_kill_at
from unmix.training.resume import (
    ResumeCheckpoint,
    checkpoint_folder,
    checkpoint_path,
    has_checkpoints,
    load_resume_checkpoint,
    remove_resume_checkpoint,
    resume_digest,
    save_resume_checkpoint,
)

MODEL = {"arch": "seed", "width": 32, "depth": 3, "consistency": False, "mix": "quarter_sum"}
DIGEST = "ab" * 32


def digest(**changes) -> str:
    args = {
        "set_config": SetConfig(),
        "data_digest": "d1",
        "model_config": MODEL,
        "torch_version": "2.14.1",
        "threads": 2,
    } | changes
    return resume_digest(**args)


def test_digest_changes_with_everything_the_numbers_depend_on():
    base = digest()
    assert base == digest() and len(base) == 64
    variants = [
        digest(set_config=SetConfig(epochs=11)),
        digest(set_config=SetConfig(lr=1e-3)),
        digest(data_digest="d2"),
        digest(model_config=MODEL | {"width": 16}),
        digest(torch_version="2.15.0"),
        digest(threads=1),
        digest(device="cuda"),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_files_live_in_one_folder_at_the_root_named_by_set_and_digest(tmp_path):
    folder = checkpoint_folder(tmp_path)
    assert folder == tmp_path / "checkpoints"
    path = checkpoint_path(folder, "best", DIGEST)
    assert path == folder / f"best-{DIGEST[:16]}.pt"
    assert not has_checkpoints(folder, "best")
    save_resume_checkpoint(path, {"epoch": 1}, DIGEST, None)
    assert has_checkpoints(folder, "best") and not has_checkpoints(folder, "seed")


def state() -> dict:
    return {
        "epoch": 2,
        "history": [{"epoch": 1, "train_l1": 0.5, "valid_l1": None}],
        "model": {"w": torch.ones(3)},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": None,
        "rng": {"torch": torch.get_rng_state(), "python_gauss": None},
    }


def test_round_trip_with_weights_only_keeps_state_digest_and_run(tmp_path):
    path = tmp_path / "c.pt"
    size = save_resume_checkpoint(path, state(), DIGEST, "run123")
    assert size == path.stat().st_size
    loaded = load_resume_checkpoint(path, DIGEST)
    assert loaded["epoch"] == 2 and loaded["mlflow_run_id"] == "run123" and loaded["digest"] == DIGEST
    assert loaded["history"] == [{"epoch": 1, "train_l1": 0.5, "valid_l1": None}]
    assert torch.equal(loaded["model"]["w"], torch.ones(3))
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_the_same_state_gives_the_same_bytes_wherever_it_is_written(tmp_path):
    fixed = state()
    save_resume_checkpoint(tmp_path / "one.pt", fixed, DIGEST, "r")
    save_resume_checkpoint(tmp_path / "two.pt", fixed, DIGEST, "r")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other digest", "not a state"])
def test_an_unusable_checkpoint_is_one_line_naming_it_then_a_fresh_start(tmp_path, capsys, damage):
    path = tmp_path / "c.pt"
    save_resume_checkpoint(path, state(), DIGEST, "r")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not a state":
        torch.save({"digest": DIGEST}, path)
    expected = "cd" * 32 if damage == "other digest" else DIGEST
    assert load_resume_checkpoint(path, expected) is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: {path}: unusable resume checkpoint (") and lines[0].endswith(
        "; training from the start"
    )


def test_a_missing_checkpoint_is_silent(tmp_path, capsys):
    assert load_resume_checkpoint(tmp_path / "none.pt", DIGEST) is None
    assert capsys.readouterr().err == ""


def test_objects_that_are_not_plain_data_are_refused(tmp_path, capsys):
    path = tmp_path / "c.pt"
    torch.save({**state(), "digest": DIGEST, "evil": PurePosixPath("/not/plain/data")}, path)
    assert load_resume_checkpoint(path, DIGEST) is None  # weights_only refuses arbitrary classes
    assert "unusable resume checkpoint" in capsys.readouterr().err


def test_removal_also_clears_temporary_files_a_kill_left(tmp_path):
    path = tmp_path / "best-x.pt"
    save_resume_checkpoint(path, state(), DIGEST, "r")
    leftover = tmp_path / ".best-x.pt.abc123.tmp"
    leftover.write_bytes(b"half")
    other = tmp_path / "seed-y.pt"
    other.write_bytes(b"another training's")
    remove_resume_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-y.pt"]


def test_resume_checkpoint_loads_only_its_own_digest(tmp_path):
    config = SetConfig(epochs=4)
    own = ResumeCheckpoint(tmp_path, "seed", config, "data1")
    assert own.load() is None and own.where(4).startswith("no epoch had finished")
    own.save(state(), "run9")
    assert own.saved_epoch == 2 and own.where(4) == f"epoch 2/4 is saved in {own.path}"
    again = ResumeCheckpoint(tmp_path, "seed", config, "data1")
    assert again.load()["mlflow_run_id"] == "run9" and again.saved_epoch == 2
    assert ResumeCheckpoint(tmp_path, "seed", config, "data2").load() is None  # other data: other file
    assert ResumeCheckpoint(tmp_path, "seed", SetConfig(epochs=5), "data1").load() is None
    own.remove()
    assert not own.path.exists()


def test_signals_wait_until_the_checkpoint_is_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("UNMIX_TEST_KILL_AT", "checkpoint-write@2:INT")
    path = tmp_path / "c.pt"
    # SIGINT sent halfway through the write arrives only once the file is complete.
    with pytest.raises(KeyboardInterrupt):
        save_resume_checkpoint(path, state(), DIGEST, "r")
    assert load_resume_checkpoint(path, DIGEST)["epoch"] == 2


def test_kill_points_parse_and_reject_typos():
    assert parse_kill_at("mid-epoch@2") == ("mid-epoch", 2, signal.SIGKILL, False, None)
    assert parse_kill_at("validation@3:TERM:group") == ("validation", 3, signal.SIGTERM, True, None)
    assert parse_kill_at("checkpoint-write@1:INT") == ("checkpoint-write", 1, signal.SIGINT, False, None)
    assert parse_kill_at("mid-epoch@4:KILL:rank1") == ("mid-epoch", 4, signal.SIGKILL, False, 1)
    for bad in (
        "mid_epoch@2",
        "mid-epoch",
        "mid-epoch@x",
        "validation@2:TERM:everyone",
        "mid-epoch@2:KILL:rank",
        "mid-epoch@2:HUP",
    ):
        with pytest.raises(ValueError, match="UNMIX_TEST_KILL_AT"):
            parse_kill_at(bad)


def test_model_file_bytes_do_not_depend_on_the_temporary_name(tmp_path):
    torch.manual_seed(0)
    model = SeedAutoencoder()
    save_model(model, tmp_path / "a.pt", MODEL, {"set_name": "seed"})
    save_model(model, tmp_path / "b" / "other.pt", MODEL, {"set_name": "seed"})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "other.pt").read_bytes()
    names = zipfile.ZipFile(io.BytesIO((tmp_path / "a.pt").read_bytes())).namelist()
    assert all(name.startswith("archive/") for name in names)


def test_checkpoint_every_lives_outside_the_sets_and_is_checked():
    import yaml

    from unmix.config import ConfigError, parse_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    assert parse_config(raw).resume.checkpoint_every == 1
    assert parse_config({k: v for k, v in raw.items() if k != "resume"}).resume.checkpoint_every == 1
    with pytest.raises(ConfigError, match=r"^params.yaml: resume.checkpoint_every: expected a value >= 0, got -1$"):
        parse_config({**raw, "resume": {"checkpoint_every": -1}})
    with pytest.raises(ConfigError, match=r"^params.yaml: resume.every: unknown key"):
        parse_config({**raw, "resume": {"every": 2}})
