"""The MLflow Model Registry: each evaluated model a version of `unmix-<set>`, the best one `champion`.

`evaluate@<set>` registers the run's logged model once per run, tagged with its test
metrics, the digest of the data it was judged on and the git commit. The alias `champion`
marks the version with the best test PSNR (best assignment) among the versions judged on
the champion's test pairs (same data digest): scores on other pairs are not comparable, so
such a version never takes it. Only when no version holds the alias does the newest
version's data decide which pairs count. Move the alias by hand to switch to other pairs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unmix.errors import UnmixError, first_line
from unmix.names import MODEL_TYPE, SET_TAG

CHAMPION = "champion"
RANK_METRIC = "test/best/psnr"  # dB, higher is better
DIGEST_TAG = "unmix.data_digest"
COMMIT_TAG = "git_commit"
# Each round re-reads every version after setting the alias; two evaluations racing settle
# within a round or two, so this bound is only a guard against a store that never agrees.
SETTLE_ROUNDS = 10


class RegistryError(UnmixError):
    """The Model Registry refused or failed a call."""


class NothingToRegister(RegistryError):
    """The run logged no separator that the registry takes."""


def registered_model_name(set_name: str) -> str:
    """One registered model per parameter set."""
    return f"unmix-{set_name}"


def version_tags(test_metrics: Mapping[str, float], digest: str, commit: str | None, set_name: str) -> dict[str, str]:
    """What a version carries: its test metrics (`test/...`), the data digest, commit and set."""
    tags = {name: repr(float(value)) for name, value in test_metrics.items()}
    tags |= {DIGEST_TAG: digest, SET_TAG: set_name}
    if commit:
        tags[COMMIT_TAG] = commit
    return tags


@dataclass(frozen=True)
class Candidate:
    """A registered version as the champion rule sees it."""

    version: int
    digest: str | None
    psnr: float | None


def choose_champion(candidates: Iterable[Candidate], current: int | None) -> int | None:
    """The version that should hold `champion`, given the one that holds it now (or None).

    The pool is the versions judged on the current champion's data (the newest version's
    when there is no champion); the best PSNR wins, and a tie keeps the current champion,
    else the oldest of the tied.
    """
    scored = [c for c in candidates if c.digest is not None and c.psnr is not None]
    by_version = {c.version: c for c in scored}
    if current in by_version:
        reference = by_version[current].digest
    elif scored:
        reference = max(scored, key=lambda c: c.version).digest
    else:
        return current
    pool = [c for c in scored if c.digest == reference]
    best = max(c.psnr for c in pool)
    if current in by_version and by_version[current].digest == reference and by_version[current].psnr == best:
        return current
    return min(c.version for c in pool if c.psnr == best)


def candidate(version: Any) -> Candidate:
    """A Candidate from an MLflow ModelVersion (its tags as written by `version_tags`)."""
    psnr = version.tags.get(RANK_METRIC)
    return Candidate(int(version.version), version.tags.get(DIGEST_TAG), float(psnr) if psnr is not None else None)


@dataclass(frozen=True)
class Registration:
    name: str
    version: int
    created: bool  # False: the run was registered already, its tags refreshed
    champion: int | None


def register_run_model(
    client: Any, *, run_id: str, set_name: str, test_metrics: Mapping[str, float], digest: str, commit: str | None
) -> Registration:
    """Register the run's logged separator as a version of `unmix-<set>` (once), then settle `champion`."""
    name = registered_model_name(set_name)
    tags = version_tags(test_metrics, digest, commit, set_name)
    existing = _versions(client, f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = min(int(v.version) for v in existing)
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
        created = False
    else:
        logged = _logged_separator(client, run_id)
        _ensure_registered_model(client, name, set_name)
        # models:/<id>, as mlflow.register_model writes it (the UI links the logged model);
        # the SQL registry resolves it through the global tracking URI, so that is the client's here.
        with _global_tracking_uri(client.tracking_uri):
            version = int(
                client.create_model_version(
                    name, source=f"models:/{logged.model_id}", run_id=run_id, tags=tags, model_id=logged.model_id
                ).version
            )
        created = True
    return Registration(name, version, created, settle_champion(client, name))


def settle_champion(client: Any, name: str) -> int | None:
    """Point `champion` at the best version, re-reading after each move until a read agrees.

    Another evaluation may register a better version between our read and our write; the
    read after the write sees it (it was registered before that evaluation's own read), so
    whichever process writes last has checked against every version.
    """
    current = None
    for _ in range(SETTLE_ROUNDS):
        current = _alias_version(client, name)
        best = choose_champion((candidate(v) for v in _versions(client, f"name = '{name}'")), current)
        if best is None or best == current:
            return current
        client.set_registered_model_alias(name, CHAMPION, str(best))
    return current


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _versions(client: Any, filter_string: str) -> list[Any]:
    versions, token = [], None
    while True:
        page = client.search_model_versions(filter_string, page_token=token)
        versions += list(page)
        token = page.token
        if not token:
            return versions


def _alias_version(client: Any, name: str) -> int | None:
    version = client.get_registered_model(name).aliases.get(CHAMPION)
    return int(version) if version is not None else None


def _ensure_registered_model(client: Any, name: str, set_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description=f"Separators trained with parameter set `{set_name}`; `{CHAMPION}`: best test PSNR."
        )
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise  # else: another evaluation created it first


def _logged_separator(client: Any, run_id: str) -> Any:
    """The newest pickle-free separator the run logged (an MLflow LoggedModel)."""
    run = client.get_run(run_id)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    separators = [m for m in models if m.model_type == MODEL_TYPE]
    if not separators:
        raise NothingToRegister(
            f"run {run_id} logged no unmix separator model (trained before models were "
            f"logged pickle-free?): retrain the set to register it"
        )
    return max(separators, key=lambda m: m.creation_timestamp)


def register_evaluation(
    tracking: Any, set_name: str, run_id: str | None, metrics: Mapping[str, Any], data_dir: Path
) -> Registration | None:
    """What `evaluate@<set>` calls: register its run's model in the project's store, print the outcome.

    Nothing happens with tracking off or without a run. A run with no separator to
    register is one line on stderr, not a failure: its metrics are already written. A
    registry that fails is one line and a failed stage (DVC runs it again next time).
    """
    if not tracking.enabled or not run_id:
        return None
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    from unmix.data.subset import load_subset_meta
    from unmix.evaluation.scoring import flatten_metrics
    from unmix.paths import project_root
    from unmix.tracking.tracker import git_commit, resolve_tracking_uri

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    root = project_root(os.environ, Path.cwd())
    uri = resolve_tracking_uri(tracking.uri, os.environ, root)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    test_metrics = flatten_metrics(metrics["test"], "test/")
    try:
        commit = client.get_run(run_id).data.tags.get("mlflow.source.git.commit") or git_commit(root)
        registration = register_run_model(
            client,
            run_id=run_id,
            set_name=set_name,
            test_metrics=test_metrics,
            digest=load_subset_meta(data_dir)["digest"],
            commit=commit,
        )
    except NothingToRegister as error:
        print(f"warning: nothing registered: {error}", file=sys.stderr)
        return None
    except MlflowException as error:
        raise RegistryError(f"Model Registry at {uri}: {first_line(error, error.message)}") from None
    what = "registered as" if registration.created else "already registered as"
    print(
        f"evaluate@{set_name}: {what} {registration.name} version {registration.version}; "
        f"{CHAMPION}: version {registration.champion}"
    )
    return registration
