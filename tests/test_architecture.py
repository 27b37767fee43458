"""The shape of the code: no import cycle among ``api``, ``app`` and ``jobs`` modules, no module over 450 lines, and
``jobs`` never importing ``app`` or ``api`` (the public API is built on the engine, never the other way round).

Read with ``ast`` only, nothing is imported. Every import statement counts, the ones inside functions and under
``if TYPE_CHECKING:`` included: such an import hides a cycle from Python's import machinery, not from whoever
changes the code. An import
of ``a.b.c`` is an edge to ``a.b.c`` alone, not to the packages ``a`` and ``a.b`` it runs on the way (otherwise
every package that imports one of its own modules would be a cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"api": "clusterdeck", "app": "clusterdeck.app", "jobs": "clusterdeck.jobs"}
"""Each directory of the checkout and the name it is installed as (setup.py)."""
MAX_LINES = 450


@dataclass(frozen=True)
class Module:
    name: str  # dotted, a package named by its __init__.py
    path: Path
    is_package: bool


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package, installed in PACKAGES.items():
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO / package).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([installed, *parts])  # api/loader.py → clusterdeck.loader
            found[name] = Module(name, path, is_package)
    return found


def _known(dotted: str) -> str | None:
    """``dotted`` if it is a module here, else the longest known module it starts with (``jobs.spec.RunSpec`` →
    ``jobs.spec``); None outside ``api``, ``app`` and ``jobs``."""
    known = modules()
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@cache
def imports() -> dict[str, frozenset[str]]:
    """Each module's imports of other ``app``/``jobs`` modules, top-level and function-local."""
    graph: dict[str, frozenset[str]] = {}
    for module in modules().values():
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(module.path.read_text(), str(module.path))):
            if isinstance(node, ast.Import):
                targets.update(_known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, node)
                # ``from jobs.train import loop`` imports the module jobs.train.loop
                targets.update(_known(f"{source}.{alias.name}") or _known(source) for alias in node.names)
        graph[module.name] = frozenset(t for t in targets if t is not None and t != module.name)
    return graph


def knots(graph: dict[str, frozenset[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): every module of one can reach every
    other, so each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_in(graph: dict[str, frozenset[str]], component: set[str]) -> list[str]:
    """The shortest cycle through the component's first module (breadth-first, inside the component)."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_no_import_cycle() -> None:
    graph = imports()
    found = [f"{' → '.join(cycle_in(graph, knot))}   (the knot: {', '.join(sorted(knot))})" for knot in knots(graph)]
    assert not found, "import cycles (function-local imports count):\n" + "\n".join(found)


def test_no_module_over_the_line_limit() -> None:
    long = {
        name: lines
        for name, module in modules().items()
        if (lines := len(module.path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines, split them by responsibility:\n" + "\n".join(
        f"{name}: {lines}" for name, lines in sorted(long.items())
    )


def test_jobs_never_imports_app_or_api() -> None:
    def in_jobs(name: str) -> bool:
        return name == "clusterdeck.jobs" or name.startswith("clusterdeck.jobs.")

    offending = {
        name: sorted(t for t in targets if not in_jobs(t)) for name, targets in imports().items() if in_jobs(name)
    }
    offending = {name: targets for name, targets in offending.items() if targets}
    assert not offending, "jobs imports app or api:\n" + "\n".join(
        f"{n} → {', '.join(t)}" for n, t in offending.items()
    )


def test_the_api_is_in_the_graph() -> None:
    """api/ is the package ``clusterdeck`` itself: its modules are named as they are imported."""
    assert "clusterdeck.jobs.taskenv" in imports()["clusterdeck.taskview"]
    assert "clusterdeck.taskview" in imports()["clusterdeck"]


def test_the_graph_sees_what_it_must() -> None:
    """The checks above are only as good as the graph: a function-local import, a relative import and a
    ``from package import module`` all become edges, and a planted cycle is found."""
    graph = imports()
    assert "clusterdeck.jobs.dispatch.slurm" in graph["clusterdeck.jobs.dispatch"]  # function-local, in backend_class
    assert "clusterdeck.jobs.errors" in graph["clusterdeck.jobs.export"]
    planted = {"a": frozenset({"b"}), "b": frozenset({"c", "d"}), "c": frozenset({"a"}), "d": frozenset()}
    assert knots(planted) == [{"a", "b", "c"}]
    assert cycle_in(planted, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_relative_imports_resolve() -> None:
    """A relative import counts from the module's package, and a package's ``__init__`` is inside itself."""

    def resolved(module: str, statement: str) -> str:
        node = ast.parse(statement).body[0]
        assert isinstance(node, ast.ImportFrom)
        return _absolute(modules()[module], node)

    assert resolved("clusterdeck.jobs.export.plan", "from . import encode") == "clusterdeck.jobs.export"
    assert resolved("clusterdeck.jobs.export", "from . import encode") == "clusterdeck.jobs.export"
    assert resolved("clusterdeck.jobs.export.plan", "from ..spec import RunSpec") == "clusterdeck.jobs.spec"
    assert resolved("clusterdeck.jobs.spec", "from .export import plan") == "clusterdeck.jobs.export"
