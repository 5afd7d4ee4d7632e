"""The floors of bay_salt: a subpackage imports only from the floors below
its own (or from itself), so the import graph has no circle. The crossings
that are still there are listed, each to be removed (issue #27); a new one
fails here, and so does a listed one that is gone (take it off the list)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "bay_salt"

#: lowest first: a subpackage may import from a lower floor
FLOORS = {"util": 0, "model": 1, "kv": 2, "storage": 2, "registry": 3, "scheduling": 3, "host": 3, "metrics": 4, "logs": 4,
          "node": 5, "master": 6, "alerts": 7, "control": 7, "cluster": 8}

#: crossings still there (file -> module it imports), to be removed
KNOWN: set[str] = set()


def crossings() -> set[str]:
    found = set()
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT)
        if len(rel.parts) < 2 or rel.parts[0] not in FLOORS:
            continue
        pkg = rel.parts[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for m in mods:
                parts = m.split(".")
                if parts[0] != "bay_salt" or len(parts) < 2 or parts[1] == pkg or parts[1] not in FLOORS:
                    continue
                if FLOORS[parts[1]] >= FLOORS[pkg]:
                    found.add(f"{rel.as_posix()} -> {m}")
    return found


def test_every_subpackage_has_a_floor():
    subpackages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert subpackages - {"saltext"} <= set(FLOORS), subpackages - set(FLOORS)


def test_no_import_runs_up_the_floors_but_the_listed_ones():
    found = crossings()
    assert found - KNOWN == set(), "new imports up the floors (or across one): " + ", ".join(sorted(found - KNOWN))
    assert KNOWN - found == set(), "gone, take them off KNOWN: " + ", ".join(sorted(KNOWN - found))


def module_imports() -> dict[str, set[str]]:
    """Each module of bay_salt -> the modules of bay_salt it imports (anywhere in it, lazily too)."""
    mods = {}
    for f in ROOT.rglob("*.py"):
        name = "bay_salt." + ".".join(f.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    graph = {}
    for name, f in mods.items():
        out = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bay_salt"):
                out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                        for a in node.names}
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.startswith("bay_salt")}
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def test_no_module_imports_itself_round_a_circle():
    """Within a floor too: no module reaches itself through imports (type-only ones count)."""
    graph = module_imports()
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        for n in sorted(graph[m]):
            visit(n, path + [m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


#: the limits issue #27 set: a class that needs more is two jobs, a function longer is several steps
MAX_METHODS, MAX_LINES = 25, 80


def test_no_class_over_25_methods_and_no_function_over_80_lines():
    over = []
    for f in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ClassDef):
                methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                if len(methods) > MAX_METHODS:
                    over.append(f"{f.relative_to(ROOT)}: class {node.name} has {len(methods)} methods")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    over.append(f"{f.relative_to(ROOT)}: {node.name} is {lines} lines")
    assert not over, "; ".join(over)
