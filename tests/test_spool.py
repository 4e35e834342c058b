"""The spool: every kind of tracking call survives a trip to disk and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unmix.tracking.spool import Spool, SpoolError, count_metric_values, describe, read_spool, spool_files


def test_every_kind_of_call_comes_back_as_it_went(tmp_path: Path) -> None:
    import torch

    figure = tmp_path / "figure.png"
    figure.write_bytes(b"png bytes")
    image = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    from unmix.model.networks import build_model, model_config

    config = model_config("unet", 8, 2, True, "mean")
    model = build_model(**config)
    spool = Spool.create(tmp_path / "spool", "http://127.0.0.1:5000", "abc")
    calls = [
        ("metrics", {"train/l1": 0.5, "valid/l1": 0.25}, 3, 1234),
        ("image", image, "reconstructions/valid", 3),
        ("artifact", str(figure), "figures"),
        ("model", model, config, "model"),
        ("tags", {"unmix.model_digest": "ab12"}),
        ("end", "FINISHED"),
    ]
    for call in calls:
        spool.append(call)
    figure.write_bytes(b"rewritten later")  # the spool kept a copy of the file as it was

    (path,) = spool_files(tmp_path / "spool")
    assert path == spool.path and path.name.startswith("abc-")
    header, delivered, back = read_spool(path)
    assert header == {"spool": 1, "uri": "http://127.0.0.1:5000", "run_id": "abc"} and delivered == 0
    assert back[0] == calls[0]
    assert back[1][0] == "image" and np.array_equal(back[1][1], image) and back[1][2:] == ("reconstructions/valid", 3)
    assert back[2][0] == "artifact" and Path(back[2][1]).read_bytes() == b"png bytes" and back[2][2] == "figures"
    assert back[3][0] == "model" and back[3][2:] == (config, "model")
    rebuilt = back[3][1].state_dict()
    assert rebuilt.keys() == model.state_dict().keys()
    assert all(torch.equal(rebuilt[key], value) for key, value in model.state_dict().items())
    assert not list(spool.blobs.glob("*.pt"))  # safetensors, no pickle
    assert back[4] == ("tags", {"unmix.model_digest": "ab12"})
    assert back[5] == ("end", "FINISHED")


def test_marking_delivered_skips_those_calls_and_all_of_them_deletes_the_spool(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "u", "run")
    for step in (1, 2, 3):
        spool.append(("metrics", {"a": float(step)}, step, 0))
    spool.mark_delivered(2)
    assert read_spool(spool.path)[1:] == (2, [("metrics", {"a": 3.0}, 3, 0)])
    spool.mark_delivered(3)
    assert spool_files(tmp_path) == []


def test_a_file_that_is_no_spool_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"call": "metrics"}\n')
    with pytest.raises(SpoolError, match="not an unmix spool file"):
        read_spool(path)
    path.write_text("{broken\n")
    with pytest.raises(SpoolError, match="cannot read"):
        read_spool(path)


def test_describe_counts_what_a_person_would() -> None:
    calls = [
        ("metrics", {"a": 1.0, "b": 2.0}, 1, 0),
        ("metrics", {"a": 1.5}, 2, 0),
        ("image", None, "k", 2),
        ("model", None, None, "model"),
        ("end", "FINISHED"),
    ]
    assert count_metric_values(calls) == 3
    assert describe(calls) == "3 metric values, 1 image, the model, the run's end"
    assert describe([]) == "nothing"


def test_a_spool_whose_writer_still_runs_is_not_ours_to_deliver(tmp_path: Path) -> None:
    import subprocess
    import sys

    from unmix.tracking.spool import writer_alive

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert writer_alive(tmp_path / f"run-20261126T000000-{sleeper.pid}.jsonl")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not writer_alive(tmp_path / f"run-20261126T000000-{sleeper.pid}.jsonl")
    assert not writer_alive(tmp_path / "odd-name.jsonl")


def test_a_pickled_model_from_an_older_spool_is_refused_in_one_line(tmp_path: Path) -> None:
    import torch

    spool = Spool.create(tmp_path, "u", "run")
    spool.append(("metrics", {"train/l1": 0.5}, 1, 1))
    spool.blobs.mkdir(parents=True, exist_ok=True)
    torch.save(torch.nn.Linear(2, 1), spool.blobs / "model-00001.pt")  # what older versions wrote
    with open(spool.path, "a", encoding="utf-8") as f:
        f.write('{"call": "model", "file": "model-00001.pt", "config": {"arch": "seed"}, "name": "model"}\n')
    with pytest.raises(SpoolError, match="older unmix.*unpickling can run code"):
        read_spool(spool.path)
