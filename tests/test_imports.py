"""The mlx_flux package has no import cycles (read statically from the sources, nothing imported).

A cycle makes the import order matter, hides which module is the lower layer, and breaks
as soon as one of its imports moves to module level. Imports inside functions count too:
they are the usual way such a cycle is papered over.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mlx_flux"


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted names relative to the package ("cli", "tokenizers.clip", "tokenizers") -> file."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its source.

    The package root (`mlx_flux/__init__.py`) is left out: Python imports it before any of
    its modules anyway, so an edge to it (`from . import __version__`) adds no order, and
    its lazy `__getattr__` import of the pipeline is what keeps `import mlx_flux` light.
    """
    modules = module_names(package)
    graph: dict[str, set[str]] = {name: set() for name in modules if name}
    for name in graph:
        path = modules[name]
        is_package = path.name == "__init__.py"
        # the package a relative import of level 1 starts from, as a list of parts
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name.removeprefix("mlx_flux.") for a in node.names if a.name.startswith("mlx_flux.")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                    if node.module:
                        base = base + node.module.split(".")
                elif node.module == "mlx_flux" or (node.module or "").startswith("mlx_flux."):
                    base = node.module.split(".")[1:]
                else:
                    continue
                module = ".".join(base)
                targets.append(module)
                # `from .pkg import mod` imports the module mod too
                targets += [f"{module}.{a.name}" if module else a.name for a in node.names]
            graph[name].update(t for t in targets if t in graph and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]], ignored: set[tuple[str, str]] = frozenset()) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, edges in `ignored` skipped)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if (node, nxt) in ignored:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "loader" in graph["transformer"]          # from .loader import ...  (module level)
    assert "distributed" in graph["cli"]             # from .distributed import ...  (inside a function)
    assert "hub" in graph["loading"]                 # from . import hub
    assert "weights" in graph["tokenizers.clip"]     # from mlx_flux.weights import ...
    assert "tokenizers" in graph["pipeline"]         # a sub-package


def test_find_cycle_reports_the_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle(graph, ignored={("c", "a")}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in mlx_flux: " + " -> ".join(cycle)
