"""No import cycle in the package: every import of every module of jtln/ and reproduce/, at any depth (a function's own
imports too), read with ast, makes a graph without a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("jtln", "reproduce")


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path, known):
    """The modules of ``known`` that the file at ``path`` imports, anywhere in it."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name imported from a module counts as that module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph():
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imports(p, known) for p in files}


def cycles(edges):
    """Every cycle found by a depth-first search, as a list of modules (each reported once per its smallest rotation)."""
    found, state = set(), {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [node] if target in path else [target, node]
                cycle = cycle if cycle[-1] != cycle[0] else cycle[:-1]
                k = cycle.index(min(cycle))
                found.add(tuple(cycle[k:] + cycle[:k]))
            elif target not in state:
                visit(target, path + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return sorted(found)


def test_no_module_imports_itself_through_others():
    edges = graph()
    assert len(edges) > 40 and "reproduce.rehearsal" in edges
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []
