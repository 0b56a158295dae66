"""Layering: every mobilevit module imports on its own, and the package's import graph has no cycles.

The graph is read from the source (``ast``), not from ``sys.modules``: an edge A -> B is any
``import`` / ``from ... import`` statement in A that names module B of the package, at module level or
inside a function alike (a lazy import is still a dependency; it only hides a circle until run time).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.  The
implicit import of parent packages is not an edge.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "mobilevit")

# Cycles outside the checkpoint package and hub/model, known when the test was written (issue 15) and
# owned by other work: each edge listed here is ignored when looking for cycles.  Remove an edge once
# its cycle is broken; do not add new ones.
KNOWN_EDGES = frozenset({
    # model.py: lazy imports in MobileViT methods (input_hint, preset_for, predict, model_summary) close
    # hub -> model -> predictor -> hub, model -> predictor -> default -> hub and
    # model -> notebook -> predictor -> hub -> model.
    ("mobilevit.model", "mobilevit.predictor"),
    ("mobilevit.model", "mobilevit.notebook"),
    # notebook.py imports predictor.preset_for while predictor.py imports notebook's renderers.
    ("mobilevit.notebook", "mobilevit.predictor"),
})


def _modules() -> dict[str, str]:
    """Dotted module name -> path of every .py file of the package."""
    out = {}
    for d, dirs, files in os.walk(PKG):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__pycache__")))
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(d, f)
    return out


def _extensions() -> set:
    """Compiled modules of the package (``mobilevit._C``): leaves of the graph, not parsed."""
    out = set()
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith((".so", ".pyd")):
                rel = os.path.relpath(os.path.join(d, f.split(".", 1)[0]), ROOT).split(os.sep)
                out.add(".".join(rel))
    return out


def import_graph() -> dict[str, set]:
    mods = _modules()
    leaves = _extensions() | {"mobilevit._C"}  # _C may not be built in a source checkout
    graph: dict[str, set] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = here[:len(here) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods or sub in leaves else base)
            for t in targets:
                if t in leaves:
                    continue
                # "import mobilevit.x.y" names the deepest module of the package it reaches.
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycles(graph: dict[str, set]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(graph, comp) -> str:
    members = set(comp)
    edges = sorted(f"{a} -> {b}" for a in comp for b in graph[a] if b in members)
    return "{" + ", ".join(comp) + "}: " + "; ".join(edges)


def test_no_import_cycles():
    graph = import_graph()
    assert "mobilevit.checkpoint.pickle_vm" in graph and "mobilevit.hub" in graph, sorted(graph)
    pruned = {a: {b for b in bs if (a, b) not in KNOWN_EDGES} for a, bs in graph.items()}
    cycles = find_cycles(pruned)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(pruned, c) for c in cycles)
    for a, b in KNOWN_EDGES:  # the allow-list stays true: a stale entry must be removed
        assert b in graph.get(a, ()), f"allow-listed edge {a} -> {b} no longer exists; remove it"


def test_checkpoint_package_is_layered():
    """The checkpoint submodules never import the package __init__, hub or model."""
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("mobilevit.checkpoint."):
            bad = {d for d in deps if not d.startswith("mobilevit.checkpoint.")}
            assert not bad, f"{mod} imports {sorted(bad)}"
    assert "mobilevit.hub" not in graph["mobilevit.model"]


def test_cycle_finder_reports_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(g) == [["a", "b", "c"]]
    assert "a -> b" in _describe(g, ["a", "b", "c"])


# __main__ runs the CLI when imported; it is only checked in the graph.
@pytest.mark.parametrize("mod", sorted(m for m in _modules() if not m.endswith(".__main__")))
def test_module_imports_in_a_fresh_interpreter(mod):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", f"import {mod}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"import {mod} failed:\n{r.stderr[-2000:]}"
