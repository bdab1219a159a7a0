"""Package layering: no import cycles between ddpinn modules, and MPI only in ``parallel/``.

The imports are read from the source with :mod:`ast` (nothing is imported), including imports
inside functions: a lazy import that closes a circle is still a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ddpinn"
PARALLEL_ONLY = ("mpi4py", "horovod", "torch.distributed")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``package/**/*.py`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """Absolute dotted names imported anywhere in the file (module level or in functions),
    with their line numbers; ``from X import a`` yields ``X.a`` (a submodule or a name
    defined in ``X``), ``from X import *`` yields ``X``."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.extend((prefix if alias.name == "*" else
                        f"{prefix}.{alias.name}" if prefix else alias.name, node.lineno)
                       for alias in node.names)
    return out


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """Module -> {imported package module: line}. An imported name resolves to the longest
    known module prefix (``ddpinn.io.plots.new_figure`` -> ``ddpinn.io.plots``). Importing
    ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those edges are left out, as a
    package's ``__init__`` that imports its own submodules would otherwise close a circle with
    every submodule that imports a sibling."""
    modules = module_names(root, package)
    graph: dict[str, dict[str, int]] = {}
    for mod, path in modules.items():
        edges: dict[str, int] = {}
        for name, line in imported_names(mod, path):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                target = ".".join(parts[:i])
                if target in modules:
                    if target != mod:
                        edges.setdefault(target, line)
                    break
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as one
    representative cycle ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, comp) for comp in components]


def _cycle_in(graph: dict[str, dict[str, int]], comp: list[str]) -> list[str]:
    """One shortest cycle through the first module of a strongly connected component."""
    members = set(comp)
    start = comp[0]
    parent = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return list(reversed(path)) + [start]
                if w in members and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp  # unreachable for a strongly connected component


def describe(graph, cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) \
        + f" -> {cycle[-1]}"


def forbidden_imports(root: Path, package: str) -> list[str]:
    """``file:line name`` for each MPI / distributed import outside ``package/parallel/``."""
    allowed = f"{package}.parallel"
    out = []
    for mod, path in module_names(root, package).items():
        if mod == allowed or mod.startswith(allowed + "."):
            continue
        for name, line in imported_names(mod, path):
            if any(name == p or name.startswith(p + ".") for p in PARALLEL_ONLY):
                out.append(f"{path.relative_to(root)}:{line} imports {name}")
    return sorted(set(out))


def test_no_import_cycles():
    graph = import_graph(ROOT, PACKAGE)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between ddpinn modules:\n" + "\n".join(
        describe(graph, c) for c in cycles)


def test_mpi_only_in_parallel():
    bad = forbidden_imports(ROOT, PACKAGE)
    assert not bad, "MPI / distributed imports outside ddpinn/parallel/:\n" + "\n".join(bad)


# --- the walker itself, on a small synthetic package ---------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.fixture
def fake(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from .sub.c import g\n    return g\n",
        "pkg/sub/__init__.py": "from .c import g\n",
        "pkg/sub/c.py": "import os\n\ndef g():\n    from ..a import x\n",
        "pkg/sub/d.py": "from . import c\nimport torch.distributed as dist\n",
        "pkg/parallel/__init__.py": "",
        "pkg/parallel/comm.py": "from mpi4py import MPI\n",
        "pkg/lazy.py": "def h():\n    import mpi4py\n",
    })
    return tmp_path


def test_walker_resolves_relative_and_lazy_imports(fake):
    graph = import_graph(fake, "pkg")
    assert set(graph["pkg.a"]) == {"pkg.b"}
    assert set(graph["pkg.b"]) == {"pkg.sub.c"}  # in a function, relative
    assert set(graph["pkg.sub.c"]) == {"pkg.a"}  # two levels up
    assert set(graph["pkg.sub"]) == {"pkg.sub.c"}  # relative in a package __init__
    assert set(graph["pkg.sub.d"]) == {"pkg.sub.c"}  # "from . import c"


def test_walker_finds_a_cycle_through_lazy_imports(fake):
    graph = import_graph(fake, "pkg")
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert "pkg.b (line 2) -> pkg.sub.c" in describe(graph, cycles[0])


def test_walker_finds_no_cycle_once_broken(fake):
    (fake / "pkg/sub/c.py").write_text("import os\n")
    assert find_cycles(import_graph(fake, "pkg")) == []


def test_walker_flags_mpi_outside_parallel(fake):
    assert forbidden_imports(fake, "pkg") == [
        "pkg/lazy.py:2 imports mpi4py",
        "pkg/sub/d.py:2 imports torch.distributed",
    ]
