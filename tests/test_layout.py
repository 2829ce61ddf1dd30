"""The layout the README draws holds: no import circles, floors that run one way,
front doors that do not lean on each other, and modules of a readable size.

Imports are read from the source (every `import`, including those inside functions,
since a lazy import that dodges a circle is still a circle in the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chatq", "config", "worker", "tasks", "bench")
#: Floors, lowest first: a module may import its own floor and those below it. The
#: ground floor `chatq` (the error tree and redaction) is raised from everywhere.
FLOORS = {
    "chatq": 0,
    "config": 1,
    "worker": 2,
    "tasks": 3,
    "bench": 4,
}
#: Ways in for users: none imports another, and nothing but themselves imports them.
FRONT_DOORS = ("tasks.cli", "tasks.gateway")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports (the longest module each import names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                targets.add(f"{base}.{alias.name}")
                targets.add(base)
    resolved = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    # Importing a submodule runs its package's __init__, but that is no edge of the
    # design when the importer lives inside that package.
    return {t for t in resolved if not name.startswith(t + ".")}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(name: str) -> int:
    best = max((p for p in FLOORS if name == p or name.startswith(p + ".")), key=len)
    return FLOORS[best]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_reader_finds_the_packages_and_their_imports():
    assert {"tasks.producer", "tasks.cli", "tasks.batch.service", "worker.app"} <= set(MODULES)
    assert "tasks.producer" in GRAPH["tasks.batch.service"]


def test_the_cycle_finder_sees_a_circle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_others():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_down_the_floors_never_back_up(name):
    up = sorted(t for t in GRAPH[name] if _floor(t) > _floor(name))
    assert up == [], f"{name} (floor {_floor(name)}) imports from a higher floor: {up}"


def test_front_doors_never_import_each_other_and_nothing_else_imports_them():
    for name, targets in GRAPH.items():
        own = next((d for d in FRONT_DOORS if name == d or name.startswith(d + ".")), None)
        for target in targets:
            door = next((d for d in FRONT_DOORS if target == d or target.startswith(d + ".")), None)
            assert door is None or door == own, f"{name} imports the front door {target}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_past_the_size_that_asks_to_be_split(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
