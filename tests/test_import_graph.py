"""No import cycle between visiontasks' rooms (its first-level packages and modules: ``data``,
``tasks``, ``cli``, ``preprocessing``, ...), read from the source with :mod:`ast`.

Counted: every ``import`` / ``from ... import`` statement of a module, at module level and inside
functions alike (a lazy import inside a function still makes the two rooms need each other; the
old ``cli`` <-> ``lightning_cli`` circle was one module-level and one function-level import), and
those under ``if TYPE_CHECKING:``. Not counted: the PEP 562 ``_LAZY`` tables and
``importlib.import_module`` strings (names, not import statements), and the package root
``visiontasks`` itself, which is not a room. :func:`room_graph` with ``module_level_only=True``
gives the graph of what runs at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import visiontasks

ROOT = Path(visiontasks.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run at import time (module level, through ``if``/``try``/``with``; not
    under ``if TYPE_CHECKING:``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            todo += node.orelse if _is_type_checking(node.test) else node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, ast.With):
            todo += node.body
    return found


def _room(module: str) -> str | None:
    """``visiontasks.data.io`` -> ``data``; the root package and outside modules -> ``None``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "visiontasks" and len(parts) > 1 else None


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The visiontasks modules an import statement names (``from pkg import sub`` names ``pkg.sub``
    when ``sub`` is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = [target]
    for a in node.names:
        sub = f"{target}.{a.name}"
        rel = Path(*sub.split("."))
        if (ROOT.parent / rel).is_dir() or (ROOT.parent / rel).with_suffix(".py").is_file():
            out.append(sub)
    return out


def room_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    """``{room: rooms it imports}`` (every import statement, or those run at import time)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        room = _room(module)
        if room is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nodes = _module_level_imports(tree) if module_level_only else [
            n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in nodes:
            for target in _targets(node, module, path.name == "__init__.py"):
                other = _room(target)
                if other is not None and other != room:
                    graph.setdefault(room, set()).add(other)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_between_rooms() -> None:
    for module_level_only in (False, True):
        graph = room_graph(module_level_only)
        assert "cli" in graph and "data" in graph  # the graph is read at all
        cycle = _cycle(graph)
        assert cycle is None, "import cycle between visiontasks' rooms: " + " -> ".join(cycle or [])


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = room_graph()
    assert "lightning_cli" in graph["cli"]  # build_cli's import inside a function
    assert "preprocessing" in graph["data"] and "errors" in graph["data"]  # absolute and ``from ..``
    assert "lightning_cli" not in room_graph(module_level_only=True)["cli"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
