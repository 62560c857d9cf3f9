"""The house's floors: each module of zmqcam imports only from its own floor or the floors below, and
no modules import each other in a circle. Checked on the package's source, so that no change can
bring an upward import or a circle back in.

The floors are written down here, once (README's "How it works" draws the same picture). Lowest
first: the ground (errors, words, atomic files), the config, the bus, the pure cores (image,
recording format, calibration preview), the workers (sources, grabber, stitcher, bridge, recorder,
client, the process shell), the supervisor, the CLI, and apart from all of them ``zmqcam.testing``,
which may import anything and which nothing in the product imports.

This walks the syntax tree of every module under ``zmqcam/`` (every import statement, including
those inside functions and under ``if TYPE_CHECKING``), resolves each ``zmqcam`` import to the module
it names, and fails on an import from a lower floor to a higher one, on an import of a module that
does not exist, on a module no floor is written down for, and on any circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import zmqcam

#: module (or package) -> floor; a module takes the floor of its longest entry here. "zmqcam" alone
#: is the package's public face (``zmqcam/__init__.py``, which re-exports the client).
FLOORS: dict[str, int] = {
    # 0: ground, imports nothing of zmqcam
    "zmqcam.errors": 0,
    "zmqcam.names": 0,
    "zmqcam.files": 0,
    # 1: the config, and the key-file checks loading it needs
    "zmqcam.config": 1,
    # 2: the bus: wire format, sockets and demand, CURVE, the status vocabulary
    "zmqcam.bus": 2,
    # 3: pure cores, no sockets and no processes
    "zmqcam.image": 3,
    "zmqcam.recording": 3,
    "zmqcam.recording.format": 3,
    "zmqcam.calibration": 3,
    "zmqcam.video": 3,
    # 4: the workers, each a thin process shell over a class a test can run in-process
    "zmqcam.sources": 4,
    "zmqcam.grabber": 4,
    "zmqcam.stitcher": 4,
    "zmqcam.bridge": 4,
    "zmqcam.publisher": 4,
    "zmqcam.recording.recorder": 4,
    "zmqcam.client": 4,
    "zmqcam.process": 4,
    "zmqcam": 4,
    # 5: the supervisor
    "zmqcam.supervisor": 5,
    # 6: the command line, a leaf (python -m zmqcam.record is one of its commands)
    "zmqcam.cli": 6,
    "zmqcam.record": 6,
    # 7: apart: test doubles and references, never imported by the product
    "zmqcam.testing": 7,
}

PACKAGE = Path(zmqcam.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str, floors: Mapping[str, int] = FLOORS) -> int | None:
    """The floor of the longest entry that is ``module`` or a package containing it ("zmqcam" only
    for the package itself)."""
    best: tuple[int, int] | None = None
    for prefix, floor in floors.items():
        matches = module == prefix or (prefix != "zmqcam" and module.startswith(prefix + "."))
        if matches and (best is None or len(prefix) > best[0]):
            best = (len(prefix), floor)
    return None if best is None else best[1]


def imports_in(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, imported zmqcam module) for every import of zmqcam in ``tree``. ``from X import name``
    names the module X.name when there is one, else X itself. An unknown module is yielded as it is
    written (the test reports it)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "zmqcam" or alias.name.startswith("zmqcam."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, up level - 1 more
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            if base != "zmqcam" and not base.startswith("zmqcam."):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in known else base


def import_graph(modules: Mapping[str, Path]) -> dict[str, list[tuple[int, str]]]:
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = sorted(set(imports_in(tree, name, path.name == "__init__.py", known)))
    return graph


def upward_imports(graph: Mapping[str, list[tuple[int, str]]], floors: Mapping[str, int] = FLOORS) -> list[str]:
    """Every import that runs from a lower floor to a higher one, or to a module with no floor."""
    found = []
    for module, imports in graph.items():
        own = floor_of(module, floors)
        for line, target in imports:
            theirs = floor_of(target, floors)
            if own is not None and theirs is not None and theirs > own:
                found.append(f"{module} (floor {own}) line {line} imports {target} (floor {theirs})")
    return found


def circles(graph: Mapping[str, list[tuple[int, str]]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module, or a module that
    imports itself (Tarjan's algorithm)."""
    edges = {module: sorted({target for _, target in imports if target in graph}) for module, imports in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges[node]:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_check_finds_what_it_looks_for() -> None:
    """The checks flag an upward import, a circle and a module without a floor (else the tests
    below could never fail), and resolve ``from package import module`` to the module."""
    floors = {"zmqcam.low": 0, "zmqcam.high": 1}
    graph = {
        "zmqcam.low": [(3, "zmqcam.high")],
        "zmqcam.high": [(5, "zmqcam.low")],
        "zmqcam.alone": [(7, "zmqcam.alone")],
    }
    assert upward_imports(graph, floors) == ["zmqcam.low (floor 0) line 3 imports zmqcam.high (floor 1)"]
    assert circles(graph) == [["zmqcam.alone"], ["zmqcam.high", "zmqcam.low"]]
    assert floor_of("zmqcam.alone", floors) is None
    assert floor_of("zmqcam.cli.status") == 6 and floor_of("zmqcam.recording.recorder") == 4
    tree = ast.parse("def f():\n    from zmqcam.bus import curve, protocol\n    from . import sibling\n")
    found = list(imports_in(tree, "zmqcam.bus.sockets", False, {"zmqcam.bus.curve", "zmqcam.bus.sibling"}))
    assert found == [(2, "zmqcam.bus.curve"), (2, "zmqcam.bus"), (3, "zmqcam.bus.sibling")]


def test_every_module_has_a_floor_and_imports_only_modules_that_exist() -> None:
    modules = find_modules()
    assert len(modules) > 40, "the package was not found"
    without = [name for name in modules if floor_of(name) is None]
    assert not without, f"no floor written down for {without} (add it to FLOORS, and to README's picture)"
    missing = [
        f"{module} line {line} imports {target}"
        for module, imports in import_graph(modules).items()
        for line, target in imports
        if target not in modules
    ]
    assert not missing, "imports of modules that do not exist: " + "; ".join(missing)


def test_no_module_imports_from_a_higher_floor() -> None:
    upward = upward_imports(import_graph(find_modules()))
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    found = circles(import_graph(find_modules()))
    assert not found, "import circles: " + "; ".join(" <-> ".join(group) for group in found)
