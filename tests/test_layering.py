"""The package layering, checked from the source with `ast`, so it cannot rot silently.

Imports point down only: ``chordcast`` -> ``mcast`` -> ``chord``. The generated messages in
``chordcast.v1`` are the one shared vocabulary every layer may use. The rules:

1. Nothing under ``chord/`` imports ``mcast`` or ``chordcast``; nothing under ``mcast/``
   imports ``chordcast`` (``chordcast.v1`` excepted in both).
2. No import cycles among the project's modules.
3. Protocol modules (``chord/`` and ``mcast/``, except the simulators ``chord/sim/`` and
   ``mcast/sim.py`` and the port definitions ``chord/ports.py``) do no I/O: they import no
   networking, threading or process modules.

Every import counts: module level, inside functions, under ``if TYPE_CHECKING:``. The
checker functions take a mapping of module name -> source text, so the self-tests at the
bottom can feed them a synthetic project and prove that each rule actually fires.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chord", "mcast", "chordcast")
GENERATED = "chordcast.v1"

# Rule 1: the top-level packages each layer must not import.
FORBIDDEN_UP: dict[str, frozenset[str]] = {
    "chord": frozenset({"mcast", "chordcast"}),
    "mcast": frozenset({"chordcast"}),
}

# Rule 3: top-level modules that mean I/O (``grpc_*`` is matched by prefix, below).
IO_MODULES = frozenset({
    "grpc", "socket", "select", "selectors", "threading", "subprocess", "http", "urllib", "ssl",
})
IO_SUBMODULES = frozenset({"asyncio.subprocess"})
IO_ALLOWED = ("chord.sim", "mcast.sim", "chord.ports")  # modules, and packages with their tree


@dataclass(frozen=True)
class Project:
    """Module name -> source text, and which of those modules are packages (``__init__.py``),
    which relative imports need to resolve."""

    sources: Mapping[str, str]
    packages: frozenset[str] = frozenset()

    @classmethod
    def from_tree(cls, root: Path = ROOT) -> Project:
        sources: dict[str, str] = {}
        packages: set[str] = set()
        for top in PACKAGES:
            for path in sorted((root / top).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                    packages.add(".".join(parts))
                name = ".".join(parts)
                if _within(name, GENERATED):
                    continue
                sources[name] = path.read_text(encoding="utf-8")
        return cls(sources, frozenset(packages))


@dataclass(frozen=True)
class Import:
    importer: str  # the module doing the import
    target: str    # absolute dotted name of the module (or, failing that, the name) imported
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


def _within(name: str, prefix: str) -> bool:
    """`name` is the module `prefix` or lies inside the package `prefix`."""
    return name == prefix or name.startswith(prefix + ".")


def _resolve_relative(project: Project, importer: str, module: str | None, level: int) -> str:
    package = importer if importer in project.packages else importer.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level - 1 >= len(parts):
        raise ValueError(f"{importer}: relative import beyond the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports_of(project: Project, module: str) -> Iterator[Import]:
    """Every import in `module`, anywhere in its body, resolved to absolute names. For
    ``from pkg import name`` the target is ``pkg.name`` when that is one of the project's
    modules (or an I/O submodule such as ``asyncio.subprocess``), otherwise ``pkg``."""
    tree = ast.parse(project.sources[module], filename=module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(project, module, node.module, node.level)
                    if node.level else node.module or "")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and (sub in project.sources or sub in IO_SUBMODULES
                                          or _within(sub, GENERATED)):
                    yield Import(module, sub, node.lineno)
                else:
                    yield Import(module, base, node.lineno)


def all_imports(project: Project) -> list[Import]:
    return [imp for module in sorted(project.sources) for imp in imports_of(project, module)]


# ---------------------------------------------------------------------------- rule 1
def upward_imports(project: Project) -> list[str]:
    """Imports from a lower layer into a higher one."""
    violations = []
    for imp in all_imports(project):
        layer = imp.importer.split(".")[0]
        forbidden = FORBIDDEN_UP.get(layer, frozenset())
        if imp.target.split(".")[0] in forbidden and not _within(imp.target, GENERATED):
            violations.append(f"{imp}: `{layer}` must not import "
                              f"{' or '.join(sorted(forbidden))} (only {GENERATED})")
    return violations


# ---------------------------------------------------------------------------- rule 2
def import_graph(project: Project) -> dict[str, dict[str, int]]:
    """Module -> {imported project module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {m: {} for m in project.sources}
    for imp in all_imports(project):
        if imp.target in project.sources and imp.target != imp.importer:
            edges = graph[imp.importer]
            edges[imp.target] = min(edges.get(imp.target, imp.line), imp.line)
    return graph


def _strongly_connected(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in a deterministic order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components)


def _cycle_in(graph: Mapping[str, Mapping[str, int]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module (breadth-first, so short)."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in came_from:
                    came_from[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle in strongly connected component {component}")


def import_cycles(project: Project) -> list[str]:
    """Each strongly connected set of modules, with one cycle through it spelled out."""
    graph = import_graph(project)
    violations = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue  # self-imports are dropped from the graph
        cycle = _cycle_in(graph, component)
        steps = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle))
        violations.append(f"import cycle among {{{', '.join(component)}}}: "
                          f"{steps} -> {cycle[-1]}")
    return violations


# ---------------------------------------------------------------------------- rule 3
def is_protocol_module(module: str) -> bool:
    layer = module.split(".")[0]
    return layer in FORBIDDEN_UP and not any(_within(module, ok) for ok in IO_ALLOWED)


def _is_io(target: str) -> bool:
    top = target.split(".")[0]
    return (top in IO_MODULES or top.startswith("grpc_")
            or any(_within(target, sub) for sub in IO_SUBMODULES)
            # The generated gRPC stubs are grpc by another name (they `import grpc`).
            or (_within(target, GENERATED) and target.endswith("_pb2_grpc")))


def io_imports(project: Project) -> list[str]:
    """Protocol modules that import networking, threading or process modules."""
    return [f"{imp}: protocol modules do no I/O"
            for imp in all_imports(project)
            if is_protocol_module(imp.importer) and _is_io(imp.target)]


def _report(title: str, violations: list[str]) -> str:
    return f"{len(violations)} {title}:\n  " + "\n  ".join(violations)


# ============================================================================ the real tree
def _real_project() -> Project:
    project = Project.from_tree()
    assert {"chord.node", "mcast.tree", "chordcast.server"} <= set(project.sources), \
        "the module scan found nothing: has the tree moved?"
    return project


def test_lower_layers_do_not_import_upper_layers() -> None:
    violations = upward_imports(_real_project())
    assert not violations, _report("upward imports (chordcast -> mcast -> chord only)",
                                   violations)


def test_no_import_cycles() -> None:
    violations = import_cycles(_real_project())
    assert not violations, _report("import cycles", violations)


def test_protocol_modules_do_no_io() -> None:
    violations = io_imports(_real_project())
    assert not violations, _report("I/O imports in protocol modules", violations)


# ============================================================================ the checker itself
SYNTHETIC = Project(
    sources={
        "chord": "",
        "chord.ids": "import hashlib\n",
        "chord.node": (
            "from typing import TYPE_CHECKING\n"
            "from . import ids\n"
            "from chordcast.v1 import chord_pb2\n"        # allowed: the generated messages
            "if TYPE_CHECKING:\n"
            "    from mcast.scribe import Scribe\n"       # upward, hidden under TYPE_CHECKING
            "def connect():\n"
            "    import socket\n"                         # I/O, hidden in a function
        ),
        "chord.sim": "",
        "chord.sim.memnet": "import socket\nimport threading\nfrom .. import ids\n",  # sim may
        "chord.ports": "import asyncio\nfrom time import monotonic\n",
        "mcast": "",
        "mcast.scribe": "from chordcast import server\nfrom . import tree\n",  # upward
        "mcast.tree": "from .scribe import Scribe\nfrom chord import ids\n",  # cycle with scribe
        "mcast.stream": (
            "import http.server\n"
            "from asyncio import subprocess\n"
            "import grpc_health.v1\n"
            "from chordcast.v1 import mcast_pb2_grpc\n"
        ),
        "mcast.sim": "import grpc\n",  # the simulator may
        "chordcast": "",
        "chordcast.server": "import grpc\nfrom chord import ids\n",
    },
    packages=frozenset({"chord", "chord.sim", "mcast", "chordcast"}),
)


def test_checker_resolves_every_kind_of_import() -> None:
    got = {(imp.importer, imp.target) for imp in all_imports(SYNTHETIC)}
    assert {
        ("chord.node", "chord.ids"),              # relative `from . import module`
        ("chord.node", "chordcast.v1.chord_pb2"),
        ("chord.node", "mcast.scribe"),           # under TYPE_CHECKING
        ("chord.node", "socket"),                 # inside a function
        ("chord.sim.memnet", "chord.ids"),        # `from .. import` up a package
        ("mcast.scribe", "chordcast.server"),     # `from pkg import module`
        ("mcast.tree", "mcast.scribe"),           # `from .module import name`
        ("mcast.stream", "asyncio.subprocess"),
    } <= got
    assert ("chord.ports", "time") in got


def test_checker_reports_upward_imports() -> None:
    violations = upward_imports(SYNTHETIC)
    assert len(violations) == 2, violations
    assert any(v.startswith("chord.node:5 imports mcast.scribe") for v in violations)
    assert any(v.startswith("mcast.scribe:1 imports chordcast.server") for v in violations)
    # chordcast.v1 is allowed everywhere; chordcast may import everything below it.
    assert not any(" imports chordcast.v1" in v or v.startswith("chordcast") for v in violations)


def test_checker_reports_cycles() -> None:
    violations = import_cycles(SYNTHETIC)
    assert violations == [
        "import cycle among {mcast.scribe, mcast.tree}: "
        "mcast.scribe (line 2) -> mcast.tree (line 1) -> mcast.scribe"
    ]
    longer = Project({"a": "import b\n", "b": "import c\n", "c": "import a\n", "d": "import a\n"})
    assert import_cycles(longer) == [
        "import cycle among {a, b, c}: a (line 1) -> b (line 1) -> c (line 1) -> a"
    ]
    assert import_cycles(Project({"a": "import b\n", "b": "import c\n", "c": ""})) == []


def test_checker_reports_io_in_protocol_modules() -> None:
    violations = io_imports(SYNTHETIC)
    flagged = sorted(v.split(": ")[0] for v in violations)
    assert flagged == [
        "chord.node:7 imports socket",
        "mcast.stream:1 imports http.server",
        "mcast.stream:2 imports asyncio.subprocess",
        "mcast.stream:3 imports grpc_health.v1",
        "mcast.stream:4 imports chordcast.v1.mcast_pb2_grpc",
    ]
    # Exempt: the simulators, the ports, and the chordcast layer.
    assert not any(v.startswith(("chord.sim", "mcast.sim", "chord.ports", "chordcast"))
                   for v in violations)
