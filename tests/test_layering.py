"""Import layering (an AST test over every import statement, function-level ones included):

    cli  →  pipeline / audit / simulation / verify  →  attacks / bounds / defenses / training /
    evaluation / exporters (compiler, NIR) / sims / scale / efficiency  →  models / neurons /
    encoding / classifier / data / trace / plan + profiles  →  errors / runtime / registry /
    jsonable / atomicio

A module may import its own layer or a lower one. Registries (neurodeploy.registry) are the one
place that imports modules by name, and they import *providers* (upward by design: the neuron
registry in ``neurons`` loads the defense modules that register ``talif`` / ``noisy``).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"neurodeploy": REPO / "neurodeploy", "neurodeploy.exporters": REPO / "exporters",
         "neurodeploy.sims": REPO / "sims"}

#: Layer of a module: the longest prefix listed wins.
LAYERS: dict[str, int] = {
    "neurodeploy": 0, "neurodeploy.errors": 0, "neurodeploy.runtime": 0,
    "neurodeploy.registry": 0, "neurodeploy.jsonable": 0, "neurodeploy.atomicio": 0,
    "neurodeploy.architecture": 1, "neurodeploy.surrogates": 1, "neurodeploy.neurons": 1,
    "neurodeploy.encoding": 1, "neurodeploy.models": 1, "neurodeploy.classifier": 1,
    "neurodeploy.trace": 1, "neurodeploy.data": 1, "neurodeploy.exporters.plan": 1,
    "neurodeploy.exporters.profiles": 1, "neurodeploy.hardware_profiles": 1,
    "neurodeploy.attacks": 2, "neurodeploy.bounds": 2, "neurodeploy.defenses": 2,
    "neurodeploy.training": 2, "neurodeploy.evaluation": 2, "neurodeploy.exporters": 2,
    "neurodeploy.sims": 2, "neurodeploy.scale": 2, "neurodeploy.efficiency": 2,
    "neurodeploy.pipeline": 3, "neurodeploy.pipeline_config": 3, "neurodeploy.audit": 3,
    "neurodeploy.simulation": 3,
    "neurodeploy.verify": 3,
    "neurodeploy.cli": 4, "neurodeploy.__main__": 4,
}
NAMES = {0: "errors/runtime", 1: "models/neurons/encoding", 2: "attacks/bounds/defenses/training",
         3: "pipeline/audit", 4: "cli"}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return LAYERS[key]
    return None


@functools.cache
def library_modules() -> dict[str, Path]:
    mods = {}
    for pkg, root in ROOTS.items():
        for p in root.rglob("*.py"):
            rel = p.relative_to(root).with_suffix("")
            parts = [x for x in rel.parts if x != "__init__"]
            mods[".".join([pkg, *parts])] = p
    return mods


def imports_of(path: Path) -> list[tuple[int, str]]:
    known = library_modules()
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                    if f"{node.module}.{a.name}" in known]
    return [(n, m) for n, m in out if m == "neurodeploy" or m.startswith("neurodeploy.")]


def test_every_library_module_has_a_layer():
    missing = [m for m in library_modules() if layer_of(m) is None]
    assert not missing, f"modules without a layer in tests/test_layering.py: {missing}"


def test_imports_point_down_the_layers():
    bad = []
    for mod, path in sorted(library_modules().items()):
        own = layer_of(mod)
        for line, target in imports_of(path):
            tl = layer_of(target)
            if tl is not None and own is not None and tl > own:
                bad.append(f"{path.relative_to(REPO)}:{line}: {mod} ({NAMES[own]}) imports "
                           f"{target} ({NAMES[tl]})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_library_module_imports_the_cli():
    bad = [f"{mod}: {t}" for mod, path in library_modules().items()
           if not mod.startswith(("neurodeploy.cli", "neurodeploy.__main__"))
           for _, t in imports_of(path) if t.startswith("neurodeploy.cli")]
    assert not bad, bad


def test_modules_are_imported_by_name_only_in_the_registry():
    """``importlib.import_module`` lives in neurodeploy.registry (and the CLI's sub-command
    table); models.py and training/defense.py no longer load modules from strings."""
    allowed = {"neurodeploy.registry", "neurodeploy.cli"}
    bad = []
    for mod, path in library_modules().items():
        if mod in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("import_module", "__import__"):
                bad.append(f"{mod}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id == "__import__":
                bad.append(f"{mod}:{node.lineno}")
    assert not bad, bad


def test_the_checker_catches_an_upward_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from neurodeploy.cli.common import resolve_device\n")
    (line, target), = imports_of(p)
    assert line == 2 and layer_of(target) == 4 > layer_of("neurodeploy.training.trainer")


@pytest.mark.parametrize("registry, name, provider", [
    ("neurodeploy.neurons:NEURON_KINDS", "talif", "neurodeploy.defenses.hosnn"),
    ("neurodeploy.training.defense:DEFENSES", "tgo", "neurodeploy.defenses.tgo"),
    ("neurodeploy.attacks.base:ATTACKS", "square", "neurodeploy.attacks.square"),
    ("neurodeploy.pipeline:STAGES", "audit", "neurodeploy.audit.stages"),
])
def test_registries_name_their_providers_and_fill_on_lookup(registry, name, provider):
    import importlib

    from neurodeploy.registry import Registry

    mod, attr = registry.split(":")
    reg = getattr(importlib.import_module(mod), attr)
    assert isinstance(reg, Registry) and provider in reg.modules
    assert name in reg and reg.names() == sorted(reg)


def test_registry_lookup_loads_providers_once_and_names_unknowns(tmp_path, monkeypatch):
    import sys

    from neurodeploy.errors import ConfigError
    from neurodeploy.registry import Registry

    reg: Registry[int] = Registry("widget", modules=("_harch_widgets",))
    (tmp_path / "_harch_widgets.py").write_text(
        "import sys\nREG = sys.modules['__reg__']\nREG.register('b', 2)\nLOADS = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "__reg__", reg)
    reg.register("a", 1)
    assert reg.get_entry("a") == 1 and "_harch_widgets" not in sys.modules  # no load needed
    assert reg.get_entry("b") == 2 and "_harch_widgets" in sys.modules
    with pytest.raises(ConfigError, match=r"unknown widget 'c'; known: \['a', 'b'\]"):
        reg.get_entry("c")
    monkeypatch.delitem(sys.modules, "_harch_widgets")
