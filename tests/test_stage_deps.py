"""Every `unmix` module a stage runs is one of its DVC dependencies, so the deps cannot drift.

For each entry point stages/<name>.py this follows its `unmix` imports transitively, those
inside functions too (they run when the stage does), by reading the source with `ast`, and
checks that each module file is a dependency of that stage in dvc.yaml: the file itself or
a package folder holding it. The only exceptions are named below, each with the reason it
cannot change a stage's outputs; a module added to the pipeline without either fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Modules that run in a stage but cannot change its outputs (DVC outputs: files under
# data/, models/, reports/), with why. Changing one reruns nothing, by design.
NOT_AN_OUTPUT_DEP = {
    "unmix/__init__.py": "the package's docstring and version string, read by nothing that writes an output",
    "unmix/errors.py": "exception types and how a failure reads; a failed stage writes no output",
    "unmix/cli.py": "argument parsing and the one-line error of a failed stage",
    "unmix/progress.py": "progress lines on stderr",
    "unmix/services.py": "starting and stopping helper processes (the tracking worker's server checks)",
    "unmix/tracking/": "MLflow runs, their store, spool and registry: logged beside the outputs, never into them",
    "unmix/team/": "the team's tracking server and sweeps, outside the pipeline",
}
# A subpackage's __init__.py holds its docstring alone (test_package_inits_hold_only_a_docstring):
# importing it runs nothing.
PACKAGE_DOCSTRING = "__init__.py"

# Stage name in dvc.yaml → its entry point.
ENTRY_POINTS = {
    "download": "stages/download.py",
    "subset": "stages/subset.py",
    "train": "stages/train.py",
    "evaluate": "stages/evaluate.py",
    "render-figures": "stages/render_figures.py",
}


def module_file(name: str) -> Path | None:
    """The source file of `unmix...` module `name`, or None when no such module exists."""
    base = SRC.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported_names(path: Path) -> set[str]:
    """Every module name `path` imports anywhere (functions too), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if path.is_relative_to(SRC) else ""
    names: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .y import z
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            # `from unmix import figures`: the names may be submodules themselves.
            names |= {f"{module}.{alias.name}" for alias in node.names}
        stack.extend(ast.iter_child_nodes(node))
    return names


def unmix_modules(entry_point: Path) -> set[str]:
    """The `unmix` module files (relative to src/) that running `entry_point` can import.

    The walk does not go on through a module of NOT_AN_OUTPUT_DEP: what only it imports
    works on its behalf (the tracking worker's imports log to MLflow)."""
    seen: set[Path] = set()
    todo = [entry_point]
    while todo:
        path = todo.pop()
        if path.is_relative_to(SRC) and exempt(path.relative_to(SRC).as_posix()):
            continue
        for name in imported_names(path):
            if name != "unmix" and not name.startswith("unmix."):
                continue
            parts = name.split(".")
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
            for end in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:end]))
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append(found)
    return {path.relative_to(SRC).as_posix() for path in seen}


def stage_deps(stage: str) -> list[str]:
    definition = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    return [str(dep) for dep in definition.get("do", definition)["deps"]]


def covered(module: str, deps: list[str]) -> bool:
    path = f"src/{module}"
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def exempt(module: str) -> bool:
    if module.count("/") > 1 and module.endswith("/" + PACKAGE_DOCSTRING):
        return True
    return any(module == name or (name.endswith("/") and module.startswith(name)) for name in NOT_AN_OUTPUT_DEP)


@pytest.mark.parametrize("stage", list(ENTRY_POINTS))
def test_every_module_a_stage_runs_is_its_dependency(stage):
    entry_point = ENTRY_POINTS[stage]
    deps = stage_deps(stage)
    assert entry_point in deps
    missing = sorted(m for m in unmix_modules(REPO / entry_point) if not covered(m, deps) and not exempt(m))
    assert missing == [], f"{stage}: add to its deps in dvc.yaml (or name in NOT_AN_OUTPUT_DEP, with why): {missing}"


def test_every_stage_has_its_entry_point_checked():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(ENTRY_POINTS)


def test_the_import_walk_sees_imports_inside_functions():
    # evaluate imports experiment inside main(): the walk must reach it.
    assert any(m.startswith("unmix/") for m in unmix_modules(REPO / "stages/evaluate.py") - {"unmix/__init__.py"})
    assert "unmix/__init__.py" in unmix_modules(REPO / "stages/subset.py")


def test_package_inits_hold_only_a_docstring():
    for init in SRC.glob("unmix/*/__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) <= 1 and all(
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
        ), f"{init}: code in a package's __init__.py runs in every stage"
