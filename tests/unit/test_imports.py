"""The rules of import that keep the rooms apart (ARCHITECTURE.md), read from the source.

Layers, lowest first: ``models``; ``pipelines.daq``; ``pipelines.topology``;
``pipelines.simulator`` and ``pipelines.orchestration``; ``pipelines.runcontrol``;
``webui``; ``pipelines.cli`` (its ``web`` and ``up`` serve the page). A module
imports only from its own room or from layers below.
"""
from __future__ import annotations

import ast

from tests.support import ROOT

LAYERS = [
    ("models",),
    ("pipelines.daq",),
    ("pipelines.topology",),
    ("pipelines.simulator", "pipelines.orchestration"),
    ("pipelines.runcontrol",),
    ("webui",),
    ("pipelines.cli",),
]


def layer_of(module: str) -> int | None:
    for level, rooms in enumerate(LAYERS):
        if any(module == room or module.startswith(room + ".") for room in rooms):
            return level
    return None


def room_of(module: str) -> str:
    for rooms in LAYERS:
        for room in rooms:
            if module == room or module.startswith(room + "."):
                return room
    return module


def daqflow_imports():
    """(importing module, imported module, line) for every import of daqflow's own code."""
    for package in ("models", "pipelines", "webui"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(
                ".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                    targets = [node.module] + [n for n in names if layer_of(n) is not None]
                elif isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                else:
                    continue
                for target in targets:
                    if layer_of(target) is not None or target == "pipelines":
                        yield module, target, node.lineno


def test_nothing_imports_upward():
    upward = [f"{module}:{line} imports {target}"
              for module, target, line in daqflow_imports()
              if layer_of(target) is not None and layer_of(module) is not None
              and layer_of(target) > layer_of(module)]
    assert upward == []


def test_models_import_nothing_from_pipelines_or_webui():
    assert [(m, t) for m, t, _ in daqflow_imports()
            if m.startswith("models") and not t.startswith("models")] == []


def test_the_daq_clients_never_import_run_control_or_celery_wiring():
    assert [(m, t) for m, t, _ in daqflow_imports() if m.startswith("pipelines.daq")
            and t.startswith(("pipelines.runcontrol", "pipelines.orchestration"))] == []


def test_rooms_of_one_layer_do_not_import_each_other():
    sideways = [(m, t) for m, t, _ in daqflow_imports()
                if layer_of(m) is not None and layer_of(m) == layer_of(t)
                and room_of(m) != room_of(t)]
    assert sideways == []


def test_migrate_and_db_do_not_import_each_other():
    imports = {(m, t) for m, t, _ in daqflow_imports()}
    assert ("models.db", "models.migrate") not in imports
    assert not any(m == "models.db" and t.startswith("models.migrate") for m, t in imports)


def test_every_module_stays_readable_in_one_sitting():
    long = [f"{path.relative_to(ROOT)}: {n}" for package in ("models", "pipelines", "webui")
            for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts
            and (n := len(path.read_text().splitlines())) > 400]
    assert long == []
