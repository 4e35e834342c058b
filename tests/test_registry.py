"""The Model Registry: one version per evaluated run, tags, and every move of `champion`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from unmix.tracking.registry import (
    CHAMPION,
    MODEL_TYPE,
    Candidate,
    NothingToRegister,
    RegistryError,
    choose_champion,
    register_evaluation,
    register_run_model,
    registered_model_name,
    settle_champion,
    version_tags,
)

DIGEST, OTHER_DIGEST = "a" * 64, "b" * 64


def test_one_registered_model_per_set() -> None:
    assert registered_model_name("best") == "unmix-best"


def test_version_tags_hold_metrics_digest_commit_and_set() -> None:
    tags = version_tags({"test/best/psnr": 17.5, "test/n_pairs": 500}, DIGEST, "c" * 40, "best")
    assert tags == {
        "test/best/psnr": "17.5",
        "test/n_pairs": "500.0",
        "unmix.data_digest": DIGEST,
        "git_commit": "c" * 40,
        "unmix.set": "best",
    }
    assert "git_commit" not in version_tags({}, DIGEST, None, "best")


@pytest.mark.parametrize(
    ("candidates", "current", "expected"),
    [
        ([], None, None),
        ([(1, DIGEST, 15.0)], None, 1),  # the first version takes it
        ([(1, DIGEST, 15.0), (2, DIGEST, 16.0)], 1, 2),  # a better one takes it
        ([(1, DIGEST, 15.0), (2, DIGEST, 14.0)], 1, 1),  # a worse one leaves it
        ([(1, DIGEST, 15.0), (2, OTHER_DIGEST, 30.0)], 1, 1),  # other pairs never take it
        ([(1, DIGEST, 15.0), (2, DIGEST, 15.0)], 1, 1),  # a tie keeps the champion
        ([(1, DIGEST, 15.0), (2, DIGEST, 15.0), (3, DIGEST, 15.0)], None, 1),  # else the oldest of the tied
        ([(1, DIGEST, 15.0), (2, OTHER_DIGEST, 16.0), (3, OTHER_DIGEST, 14.0)], None, 2),  # newest's pairs decide
        ([(1, DIGEST, 15.0), (2, DIGEST, 16.0)], 7, 2),  # the alias on a deleted version: as if none
        ([(1, None, 15.0), (2, DIGEST, None)], None, None),  # versions without scores never compete
    ],
)
def test_choose_champion(candidates: list[tuple], current: int | None, expected: int | None) -> None:
    assert choose_champion([Candidate(*c) for c in candidates], current) == expected


@pytest.fixture
def store(mlflow_uri: str, tmp_path: Path) -> SimpleNamespace:
    """A store with an experiment, and a factory of finished runs that logged a separator."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    experiment_id = client.create_experiment("unmix", artifact_location=(tmp_path / "mlartifacts").as_uri())

    def run_with_model(model_type: str = MODEL_TYPE) -> str:
        run_id = client.create_run(experiment_id).info.run_id
        # The registry needs the logged model entity only, not its files.
        client.create_logged_model(experiment_id, name="model", source_run_id=run_id, model_type=model_type)
        client.set_terminated(run_id)
        return run_id

    return SimpleNamespace(client=client, run_with_model=run_with_model, uri=mlflow_uri)


def register(store: SimpleNamespace, run_id: str, psnr: float, digest: str = DIGEST):
    return register_run_model(
        store.client,
        run_id=run_id,
        set_name="best",
        test_metrics={"test/best/psnr": psnr},
        digest=digest,
        commit="c" * 40,
    )


def champion(store: SimpleNamespace) -> int:
    return int(store.client.get_model_version_by_alias("unmix-best", CHAMPION).version)


def test_registration_tags_the_version_and_the_first_becomes_champion(store: SimpleNamespace) -> None:
    run_id = store.run_with_model()
    registration = register(store, run_id, 15.0)
    assert (registration.name, registration.version, registration.created, registration.champion) == (
        "unmix-best",
        1,
        True,
        1,
    )
    version = store.client.get_model_version("unmix-best", "1")
    assert version.run_id == run_id
    assert version.tags == {
        "test/best/psnr": "15.0",
        "unmix.data_digest": DIGEST,
        "git_commit": "c" * 40,
        "unmix.set": "best",
    }
    (logged,) = store.client.search_logged_models([store.client.get_run(run_id).info.experiment_id])
    assert version.source == f"models:/{logged.model_id}"
    assert champion(store) == 1


def test_evaluating_the_same_run_again_adds_no_version_and_refreshes_its_tags(store: SimpleNamespace) -> None:
    run_id = store.run_with_model()
    register(store, run_id, 15.0)
    again = register(store, run_id, 15.5)
    assert (again.version, again.created) == (1, False)
    versions = store.client.search_model_versions("name = 'unmix-best'")
    assert len(versions) == 1 and versions[0].tags["test/best/psnr"] == "15.5"


def test_champion_moves_to_a_better_version_only_on_the_same_pairs(store: SimpleNamespace) -> None:
    register(store, store.run_with_model(), 15.0)
    assert register(store, store.run_with_model(), 16.0).champion == 2  # better: takes it
    assert register(store, store.run_with_model(), 15.5).champion == 2  # worse: leaves it
    assert register(store, store.run_with_model(), 30.0, OTHER_DIGEST).champion == 2  # other pairs: never
    assert champion(store) == 2
    assert len(store.client.search_model_versions("name = 'unmix-best'")) == 4


def test_a_run_without_a_separator_is_refused_by_name(store: SimpleNamespace) -> None:
    run_id = store.run_with_model(model_type="pytorch")  # e.g. the pickled model of an older run
    with pytest.raises(NothingToRegister, match=f"run {run_id} logged no unmix separator model"):
        register(store, run_id, 15.0)


class RacingClient:
    """A client through which another evaluation registers a better version between our read and write."""

    def __init__(self, client, race) -> None:
        self._client, self._race, self.alias_writes = client, race, []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if self._race is not None:
            race, self._race = self._race, None
            race()  # the other evaluation registers and settles while we hold a stale read
        self.alias_writes.append(int(version))
        self._client.set_registered_model_alias(name, alias, version)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def test_two_racing_evaluations_end_on_the_best(store: SimpleNamespace) -> None:
    register(store, store.run_with_model(), 15.0)  # version 1, champion
    worse_run, better_run = store.run_with_model(), store.run_with_model()
    racing = RacingClient(store.client, race=lambda: register(store, better_run, 17.0))
    # Ours (16.0) reads versions 1-2 and decides on 2; before it writes, version 3 (17.0)
    # registers and takes the alias; our write then puts it on 2, and our re-read moves it back.
    register_run_model(
        racing, run_id=worse_run, set_name="best", test_metrics={"test/best/psnr": 16.0}, digest=DIGEST, commit=None
    )
    assert racing.alias_writes == [2, 3]
    assert champion(store) == 3


def test_settle_champion_without_versions_leaves_no_alias(store: SimpleNamespace) -> None:
    store.client.create_registered_model("unmix-best")
    assert settle_champion(store.client, "unmix-best") is None


def test_register_evaluation_does_nothing_with_tracking_off_or_without_a_run(tmp_path: Path) -> None:
    metrics = {"test": {"best": {"psnr": 15.0}}}
    assert register_evaluation(SimpleNamespace(enabled=False, uri=None), "best", "r" * 32, metrics, tmp_path) is None
    assert register_evaluation(SimpleNamespace(enabled=True, uri=None), "best", None, metrics, tmp_path) is None


def test_register_evaluation_warns_for_a_run_without_a_separator_and_fails_on_a_broken_store(
    store: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "subset").mkdir()
    (tmp_path / "subset" / "meta.json").write_text(
        f'{{"source": "shapes", "test_from": "test split", "class_names": [], "digest": "{DIGEST}"}}'
    )
    metrics = {"test": {"best": {"psnr": 15.0}}}
    run_id = store.run_with_model(model_type="pytorch")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    tracking = SimpleNamespace(enabled=True, uri=None)
    assert register_evaluation(tracking, "best", run_id, metrics, tmp_path / "subset") is None
    assert (
        capsys.readouterr().err == f"warning: nothing registered: run {run_id} logged no unmix separator model "
        "(trained before models were logged pickle-free?): retrain the set to register it\n"
    )
    with pytest.raises(RegistryError, match=f"^Model Registry at {store.uri}: Run .*not found"):
        register_evaluation(tracking, "best", "0" * 32, metrics, tmp_path / "subset")
