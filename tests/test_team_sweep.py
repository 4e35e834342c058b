"""The sweep runner's pieces: overrides, remote plugins, the summary (the whole of it runs in
test_remote.py against a real server, git remote and DVC remote)."""

from __future__ import annotations

import pytest

from unmix.errors import UnmixError
from unmix.team import sweep


def test_overrides_split_on_spaces_and_each_must_be_key_equals_value() -> None:
    assert sweep.parse_overrides(" sets.best.lr=0.001  sets.best.epochs=40 ") == [
        "sets.best.lr=0.001",
        "sets.best.epochs=40",
    ]
    assert sweep.parse_overrides("") == []
    with pytest.raises(UnmixError, match=r"--overrides: 'sets.best.lr' is not key=value"):
        sweep.parse_overrides("sets.best.lr 0.001")


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("s3://team-bucket/unmix", "s3"),
        ("ssh://ann@nas.lan/srv/dvc", "ssh"),
        ("gs://b/unmix", "gs"),
        ("/mnt/shared/dvc", ""),
        ("../dvc-store", ""),
        ("webdavs://host/dav", "webdav"),
    ],
)
def test_remote_extra_follows_the_url_scheme(url: str, extra: str) -> None:
    assert sweep.remote_extra(url) == extra


def test_unknown_remote_scheme_is_one_line() -> None:
    with pytest.raises(UnmixError, match=r"DVC remote 'ftp://x/y': unknown scheme 'ftp'"):
        sweep.remote_extra("ftp://x/y")


def test_summary_links_each_run_on_a_server_and_shows_its_metrics() -> None:
    runs = [
        sweep.RunSummary(
            "seed",
            "0123456789abcdef",
            "4",
            "FINISHED",
            {"test/best/psnr": 17.25, "test/best/ssim": 0.61234, "train/l1": 0.5},
        )
    ]
    text = sweep.summary_markdown("sweep-9-1-0", ["sets.seed.lr=0.001"], runs, "https://mlflow.lan/")
    assert "### Experiment `sweep-9-1-0`" in text
    assert "Overrides: `sets.seed.lr=0.001`" in text
    assert (
        "| seed | [01234567](https://mlflow.lan/#/experiments/4/runs/0123456789abcdef) | FINISHED | "
        "17.2500 | 0.6123 | – |" in text
    )


def test_summary_without_server_or_runs_says_so() -> None:
    local = sweep.summary_markdown("e", [], [sweep.RunSummary("seed", "abc", "0", "FAILED", {})], "sqlite:///x.db")
    assert "| seed | `abc` | FAILED |" in local and "none (the committed params)" in local
    empty = sweep.summary_markdown("e", [], [], "http://127.0.0.1:5000")
    assert "No MLflow run tagged `dvc.exp_name=e` at http://127.0.0.1:5000." in empty


def test_a_sweep_without_a_tracking_server_stops_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no repository here: it must stop on the URI first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    code = sweep.main(["run", "--name", "e", "--require-server"])
    assert code == 1
    assert capsys.readouterr().err.startswith("error: MLFLOW_TRACKING_URI is not a tracking server's URL")
