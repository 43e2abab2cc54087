"""No module of the packages imports another that imports it back, directly or round
a longer loop: such cycles make import order matter and hide which idea depends on which.

Read from the source with ``ast`` (nothing is imported), so it also covers optional parts
(Ray, S3) that are not installed. Imports inside functions count too, since a lazy import
that closes a loop is the same tangle; only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("featurestore", "model", "training", "server", "spotting")
KNOWN_CYCLES: list[list[str]] = []


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that ``node`` (inside module ``name``) imports."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        out.add(sub if sub in modules else source)
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set().union(*(_targets(name, path, node, modules) for node in _imports(tree)))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_packages_and_their_imports():
    graph = _graph()
    assert {"featurestore", "featurestore.store", "model", "training", "server"} <= set(graph)
    assert "featurestore.writer" in graph["featurestore.store"]
    assert "featurestore.store" in graph["featurestore"]


def test_a_cycle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back():
    assert [c for c in _cycles(_graph()) if c not in KNOWN_CYCLES] == []


# -- who may import extraction -------------------------------------------------------------------

EXTRACT = "featurestore.extract"
EXTRACT_USERS = {"featurestore.cli"}  # registers `populate` and `synth`
"""Outside ``featurestore/extract/`` itself, the only modules of the store's package that
may import extraction: the rest of the store (importers included) sits a floor below it."""


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _defined_in_extract(modules: dict[str, Path]) -> set[str]:
    """Names that extraction itself defines (not the ones it re-exports from the floor)."""
    names = set()
    for name, path in modules.items():
        if not _under(name, EXTRACT):
            continue
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _taken_from_extract(name: str, path: Path, tree: ast.AST, modules: dict[str, Path]):
    """(imported name, module it is imported from) for every name taken from extraction."""
    for node in _imports(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            single = ast.ImportFrom(module=node.module, names=[alias], level=node.level)
            targets = _targets(name, path, single, modules)
            if any(_under(t, EXTRACT) for t in targets):
                yield alias.name, node.module or ""


def test_only_extraction_and_the_cli_import_extraction():
    graph = _graph()
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if _under(module, "featurestore") and not _under(module, EXTRACT)
        if module not in EXTRACT_USERS
        for target in targets
        if _under(target, EXTRACT)
    )
    assert offenders == [], "sampling, layouts, manifests live in featurestore/, not extract/"


def test_the_server_takes_only_extraction_itself_from_extract():
    modules = _modules()
    extraction = _defined_in_extract(modules)
    assert {"ClipExtractor", "LandmarkExtractor", "decode_clip"} <= extraction
    assert not {"sample_indices", "landmark_layout", "read_wlasl"} & extraction
    offenders = sorted(
        f"{name} takes {taken} from {source}"
        for name, path in modules.items()
        if _under(name, "server")
        for taken, source in _taken_from_extract(name, path, ast.parse(path.read_text()), modules)
        if taken not in extraction
    )
    assert offenders == [], "take sampling, layouts and manifests from the store's floor"


def test_a_floor_name_taken_from_extract_is_seen():
    modules = _modules()
    path = ROOT / "server" / "example.py"
    tree = ast.parse("from featurestore.extract import ClipExtractor, sample_indices\n")
    taken = dict(_taken_from_extract("server.example", path, tree, modules))
    assert set(taken) == {"ClipExtractor", "sample_indices"}
    assert "sample_indices" not in _defined_in_extract(modules)
