"""Paths that must not depend on the folder DVC runs a stage in."""

from pathlib import Path

from unmix.paths import project_root, resolve_data_path


def test_dvc_root_wins_over_the_working_directory(tmp_path: Path) -> None:
    assert project_root({"DVC_ROOT": str(tmp_path)}, Path("/tmp/exps/abc")) == tmp_path.resolve()
    assert project_root({}, tmp_path) == tmp_path.resolve()


def test_data_path_absolute_as_given_relative_from_root() -> None:
    assert resolve_data_path("/data/cifar", Path("/repo")) == Path("/data/cifar")
    assert resolve_data_path("../shared/x", Path("/repo")) == Path("/repo/../shared/x")
