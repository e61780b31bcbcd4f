"""The layers contract: imports between the top-level packages of ``interspace_pruning`` only
point down, so no import closes a cycle between them.

Layers from the bottom up; the packages of one layer are independent (neither imports the
other). Every import counts: at module level, inside functions (lazy imports) and under
``TYPE_CHECKING``. A new top-level package or module must be placed in a layer here.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="the layers contract needs grimp (the test extra)")

PACKAGE = "interspace_pruning"
ROOT = "__init__"  # the package's own __init__: the public facade, at the top

LAYERS: list[tuple[str, ...]] = [
    ("foundations",),  # files, checksums, claims, signals, torch.distributed helpers
    ("data", "models"),  # datasets and their shapes; the model zoo
    ("bases",),  # filter bases
    ("masks",),  # masked parametrisations, the prunable-tensor view
    ("interspace", "pruning"),  # the IP representation; criteria and allocation
    ("callbacks",),  # the training-loop protocol (Callback, TrainState)
    ("tracking",),  # experiment trackers (TensorBoard, W&B, MLflow) and their callback
    ("schedules", "diagnostics", "training"),  # pruners; diagnostics; the loop
    ("inference",),  # costs, sparse engine, sparse files, ONNX, timing
    ("experiments",),  # one run, IMP rounds, grids and sweeps
    ("report", "campaign"),  # tables and plots of run folders; queues across machines
    ("integrations", "cli"),  # adapters to other frameworks; the command line
    (ROOT, "__main__"),  # the facade (``import interspace_pruning as ip``), ``python -m``
]


def rank_of(layers: list[tuple[str, ...]]) -> dict[str, int]:
    return {name: i for i, layer in enumerate(layers) for name in layer}


def top_level(module: str, package: str = PACKAGE) -> str:
    """``interspace_pruning.masks.mask`` -> ``masks``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def cross_imports(graph, package: str = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """Each import between two top-level names, as ``importer:line -> imported`` lines."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            a, b = top_level(importer, package), top_level(imported, package)
            if a == b:
                continue
            details = graph.get_import_details(importer=importer, imported=imported)
            lines = sorted({d["line_number"] for d in details}) or ["?"]
            for line in lines:
                edges[(a, b)].append(f"{importer}:{line} -> {imported}")
    return edges


def violations(graph, layers=LAYERS, package: str = PACKAGE) -> list[str]:
    """Imports that point up or sideways within a layer, and top-level names not placed."""
    rank = rank_of(layers)
    names = {top_level(m, package) for m in graph.modules}
    out = [f"{package}.{n} is in no layer of the contract" for n in sorted(names - set(rank))]
    for (a, b), where in sorted(cross_imports(graph, package).items()):
        if a not in rank or b not in rank:
            continue  # reported above
        if rank[b] == rank[a]:
            out += [f"{w}  ({a} and {b} share a layer: independent)" for w in where]
        elif rank[b] > rank[a]:
            out += [f"{w}  (points up: {a} is below {b})" for w in where]
    return out


def package_cycles(graph, package: str = PACKAGE) -> list[list[str]]:
    """Cycles in the graph of top-level names (strongly connected components of size > 1)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in cross_imports(graph, package):
        succ[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted({top_level(m, package) for m in graph.modules}):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(PACKAGE, cache_dir=None)


def test_every_package_is_in_one_layer():
    flat = [name for layer in LAYERS for name in layer]
    assert len(flat) == len(set(flat))
    src = Path(__import__(PACKAGE).__file__).parent
    here = {p.stem for p in src.glob("*.py")} | {p.parent.name for p in src.glob("*/__init__.py")}
    assert here <= set(flat), f"place these in LAYERS: {sorted(here - set(flat))}"


def test_imports_only_point_down(graph):
    found = violations(graph)
    assert not found, "imports against the layers contract:\n" + "\n".join(found)


def test_no_cycle_between_top_level_packages(graph):
    assert package_cycles(graph) == []


# -- the contract's own checks: it sees what it must ----------------------------------------


def _fake_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.mark.parametrize("where", ["module", "function", "type_checking"])
def test_an_upward_import_is_caught(tmp_path, monkeypatch, where):
    """An import from a lower layer to a higher one fails the contract, whether it runs at
    import time, lazily inside a function, or only for type checkers; and the cycle it
    closes is found."""
    body = {
        "module": "from ..top import thing\n",
        "function": "def f():\n    from ..top import thing\n    return thing\n",
        "type_checking": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..top import thing\n"
        ),
    }[where]
    pkg = f"layers_fake_{where}"
    _fake_package(
        tmp_path,
        {
            f"{pkg}/__init__.py": "",
            f"{pkg}/low/__init__.py": body,
            f"{pkg}/top/__init__.py": "from ..low import f as g\nthing = 1\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    g = grimp.build_graph(pkg, cache_dir=None)
    layers = [("low",), ("top",), (ROOT,)]
    found = violations(g, layers, pkg)
    assert len(found) == 1
    assert found[0].startswith(f"{pkg}.low:") and "points up" in found[0]
    assert package_cycles(g, pkg) == [["low", "top"]]
    (other,) = violations(g, [("top",), ("low",), (ROOT,)], pkg)  # layers the other way up
    assert other.startswith(f"{pkg}.top:1 -> {pkg}.low")


def test_siblings_are_independent_and_unplaced_names_reported(tmp_path, monkeypatch):
    pkg = "layers_fake_siblings"
    _fake_package(
        tmp_path,
        {
            f"{pkg}/__init__.py": "",
            f"{pkg}/a.py": "from . import b\n",
            f"{pkg}/b.py": "",
            f"{pkg}/c.py": "",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    g = grimp.build_graph(pkg, cache_dir=None)
    found = violations(g, [("a", "b"), (ROOT,)], pkg)
    assert found[0] == f"{pkg}.c is in no layer of the contract"
    assert "share a layer" in found[1] and len(found) == 2
