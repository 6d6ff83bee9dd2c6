"""The package's layers hold: no module imports a higher layer, no modules import each
other in a circle.

Layers, bottom to top (docs/development.rst, "Layout"; each imports only its own layer and the
ones below it):

1. base: the top-level modules (``errors``, ``settings``, ``network``, ``secret``,
   ``redact``, ``version`` and any other ``deployhook/<name>.py`` not named below)
2. ``forges/``
3. ``git/``
4. ``record/``
5. ``report/``
6. ``service/`` and ``fleet/`` (fleet mode, a part of the service: either imports the
   other's modules, never in a circle)
7. ``web/``
8. ``embed.py`` (``daemon/server.py`` runs a ``DeployHook``)
9. ``daemon/``
10. ``cli/``
11. ``deployhook/__init__.py`` (its public names, imported lazily) and ``__main__.py``

Every import counts, wherever it sits: at module level, inside a function, under
``TYPE_CHECKING``.  ``from deployhook import forges`` imports the module
``deployhook.forges`` (not the package's ``__init__``, which only names things lazily);
``from deployhook.forges import Push`` imports ``deployhook.forges``.  Read from the
source with :mod:`ast`: nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deployhook"
LAYERS = ("base", "forges", "git", "record", "report", "service", "web", "embed",
          "daemon", "cli", "top")
TOP = {"deployhook", "deployhook.__main__"}
SAME_LAYER = {"fleet": "service"}  # a package that stands in another's layer
Edge = tuple[str, str, int]  # importer, imported module, line


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module``; ``None`` for a subpackage not in one."""
    if module in TOP:
        return LAYERS.index("top")
    parts = module.split(".")
    name = SAME_LAYER.get(parts[1], parts[1])
    if name in LAYERS[1:-1]:
        return LAYERS.index(name)
    return LAYERS.index("base") if len(parts) == 2 else None


def imported(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """The package's modules ``module`` imports anywhere in ``source``, with lines:
    ``from X import name`` is the module ``X.name`` when there is one, else ``X``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(_nearest(alias.name, known), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found += [(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known
                       else _nearest(base, known), node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name in known]


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _nearest(name: str, known: set[str]) -> str:
    """``name``, or the closest package above it that is a module we know."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def edges(package: Path = PACKAGE) -> list[Edge]:
    """Every import between two modules of the package (importer, imported, line)."""
    found = modules(package)
    known = set(found)
    return sorted({(name, target, line)
                   for name, path in found.items()
                   for target, line in imported(path.read_text(), name,
                                                path.name == "__init__.py", known)
                   if target != name})


def upward(graph: list[Edge]) -> list[str]:
    """The imports of a module from a higher layer, as ``importer:line -> imported``."""
    return [f"{a}:{line} ({LAYERS[layer(a)]}) -> {b} ({LAYERS[layer(b)]})"
            for a, b, line in graph
            if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)]


def circles(graph: list[Edge]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others
    (strongly connected components of more than one module, Tarjan's algorithm)."""
    after: dict[str, set[str]] = {}
    for a, b, _ in graph:
        after.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(after.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(after):
        if node not in index:
            visit(node)
    return groups


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from deployhook import forges", "deployhook.cli.send", ["deployhook.forges"]),
    ("from deployhook import settings, __version__", "deployhook.cli.main",
     ["deployhook.settings", "deployhook"]),
    ("from deployhook.forges import Push", "deployhook.git.checkout", ["deployhook.forges"]),
    ("import deployhook.git.steps", "deployhook.record.store", ["deployhook.git.steps"]),
    ("from .steps import Step", "deployhook.git.checkout", ["deployhook.git.steps"]),
    ("from . import steps", "deployhook.git", ["deployhook.git.steps"]),
    ("if TYPE_CHECKING:\n    from deployhook.service.hub import Hub", "deployhook.fleet.agent",
     ["deployhook.service.hub"]),
    ("def f():\n    from deployhook.web import app", "deployhook.service.hub",
     ["deployhook.web.app"]),
    ("import tornado.web\nfrom collections import abc", "deployhook.web.app", []),
])
def test_imports_are_read_wherever_they_sit(source: str, module: str,
                                            expected: list[str]) -> None:
    known = set(modules())
    found = imported(source, module, module == "deployhook.git", known)
    assert [name for name, _ in found] == expected


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if layer(m) is None] == []


def test_no_module_imports_a_higher_layer() -> None:
    found = upward(edges())
    assert not found, "imports of a higher layer:\n" + "\n".join(found)


def test_no_modules_import_each_other_in_a_circle() -> None:
    found = circles(edges())
    assert not found, "circles:\n" + "\n".join(" <-> ".join(group) for group in found)
