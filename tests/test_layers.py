"""The package's layers: no import circle, and no module imports a layer above its own.

core (config, errors, names, paths, atomic, progress, services, cli) < data < model <
evaluation < training < reports, tracking < serve, team. Imports inside functions count:
they run too. Read from the source with `ast`, as tests/test_stage_deps.py does.
"""

from __future__ import annotations

from pathlib import Path

from test_stage_deps import SRC, imported_names, module_file

LAYERS = {"data": 1, "model": 2, "evaluation": 3, "training": 4, "reports": 5, "tracking": 5, "serve": 6, "team": 6}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.glob("unmix/**/*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path) -> set[str]:
    """The unmix modules `path` imports (a `from package import submodule` names the submodule)."""
    names = set()
    for name in imported_names(path):
        if name.startswith("unmix.") and module_file(name) is not None:
            names.add(name)
    return names


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "core"


def layer(module: str) -> int:
    return LAYERS.get(wing(module), 0)


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} → {name}"
        for module, path in modules().items()
        for name in sorted(imports_of(path))
        if layer(name) > layer(module)
    ]
    assert upward == []


def test_no_wing_imports_a_wing_of_its_own_layer():
    # reports and tracking sit side by side, as serve and team do: neither reaches into the other.
    sideways = [
        f"{module} → {name}"
        for module, path in modules().items()
        for name in sorted(imports_of(path))
        if layer(name) == layer(module) and wing(name) != wing(module) and layer(module) > 0
    ]
    assert sideways == []


def test_no_import_circle():
    graph = {module: imports_of(path) - {module} for module, path in modules().items()}
    circles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for name in sorted(graph.get(module, ())):
            if state.get(name) == 1:
                circles.append(" → ".join(path[path.index(name) :] + [name]))
            elif name not in state:
                visit(name, path + [name])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
