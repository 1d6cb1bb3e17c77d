"""vidlit's import graph: no cycles, and layers import downward only (DESIGN.md's layer order)::

    cli / serve -> inference, extract, curate, check -> tasks (config, callbacks, checkpoint_io, strategies)
        -> heads -> metrics / data / backbones -> formats -> layers -> core

Every ``import`` of a vidlit module counts, function-level and ``TYPE_CHECKING`` ones included
(they are dependencies all the same). Modules of one layer may import each other, except the three
siblings ``data``, ``metrics`` and ``backbones``: a task family's reader and metric meet only in
its ``formats`` module. Heads sit one layer above them, not beside them: the head contract has a
head build its metric collection (``TaskHead.metrics()``), and some heads run an encoder of their
own (NLQ's query text tower), so a head may import metrics and backbones; none of those ever
imports a head. Known violations would be allow-listed below, each as an
``(importer, imported)`` pair; the list may only shrink: a pair that no longer occurs fails the
test, so whoever removes an import removes its entry.

The curation and extraction path (``vidlit curate``, ``vidlit extract``, the engines whose Ray
workers unpickle their stages, and the shard reader) runs without Lightning: importing it costs
seconds per process. A subprocess imports each of those modules and checks that no Lightning
module came with it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vidlit"

# Layer of each top-level part of vidlit: a module may import its own layer and those below.
LAYERS = {
    "vidlit": 0,  # the package root holds only __version__
    "core": 0,
    "layers": 1,
    "formats": 2,
    "backbones": 3,
    "data": 3,
    "metrics": 3,
    "heads": 4,  # a head builds its metrics and may run an encoder of its own
    "tasks": 5,
    "callbacks": 5,  # Lightning callbacks, plugins and strategies: the tasks' trainer-side glue
    "checkpoint_io": 5,
    "strategies": 5,
    "engines": 5,  # partitions, done markers, the local and Ray Data engines of curate / extract
    "config": 5,  # VidlitCLI, the configuration system the command and inference build on
    "inference": 6,
    "extract": 6,  # verbs that run a model or decode videos, as inference does
    "curate": 6,
    "captioning": 6,  # curate's captioner and summarizer plugins
    "check": 6,
    "cli": 7,
    "serve": 7,
}
SIBLINGS = {"backbones", "data", "metrics"}

# Known layering violations, (importer, imported), each with its reason; empty since the task-family
# contracts landed. A pair listed here must still occur (the list only shrinks).
ALLOWED_LAYER_VIOLATIONS: set[tuple[str, str]] = set()

# Known import cycles, each broken by leaving out one edge; empty as well.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> set[tuple[str, str]]:
    """Every (importer, imported) pair of vidlit modules, from the source (nothing is imported).

    ``from vidlit.x import y`` counts as importing ``vidlit.x.y`` when that is a module, else
    ``vidlit.x``; relative imports are resolved against the importer's package.
    """
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges = set()
    for module, path in files.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.split(".")[0] == "vidlit" else None
                if target is not None and target != module:
                    edges.add((module, target))
    return edges


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _violates(importer: str, imported: str) -> bool:
    a, b = _part(importer), _part(imported)
    if a not in LAYERS or b not in LAYERS:
        raise AssertionError(f"{importer} or {imported}: a new top-level part of vidlit; add it to LAYERS")
    if LAYERS[b] > LAYERS[a]:
        return True
    return a != b and a in SIBLINGS and b in SIBLINGS


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_the_graph_sees_function_level_and_relative_imports():
    edges = import_graph()
    # cli imports vidlit.tasks.empty_batches inside main(); config imports callbacks at the top
    assert ("vidlit.cli", "vidlit.tasks.empty_batches") in edges
    assert ("vidlit.config", "vidlit.callbacks") in edges
    assert len(edges) > 100


def test_no_import_cycles():
    edges = import_graph()
    stale = sorted(ALLOWED_CYCLE_EDGES - edges)
    assert not stale, f"allow-listed cycle edges that no longer occur; remove them from the list: {stale}"
    # an allow-listed layer violation that closes a cycle is allowed once
    cycles = _cycles(edges - ALLOWED_CYCLE_EDGES - ALLOWED_LAYER_VIOLATIONS)
    assert not cycles, f"import cycles between vidlit modules: {cycles}"


def test_layers_import_downward_only():
    edges = import_graph()
    stale = sorted(ALLOWED_LAYER_VIOLATIONS - edges)
    assert not stale, f"allow-listed imports that no longer occur; remove them from the list: {stale}"
    violations = sorted(e for e in edges - ALLOWED_LAYER_VIOLATIONS if _violates(*e))
    assert not violations, (
        "imports against the layer order (cli/serve -> inference -> tasks -> "
        f"heads/metrics/data/backbones -> formats -> layers -> core), or sideways: {violations}"
    )


def test_allow_lists_hold_only_violations():
    assert all(_violates(*edge) for edge in ALLOWED_LAYER_VIOLATIONS)
    assert not any(_violates(*edge) for edge in ALLOWED_CYCLE_EDGES)  # those are cycles, not layering


# Modules whose import (in the driver and in every Ray worker) must not pull in Lightning;
# vidlit.data.lists holds VideoEntry, which extract's decoding workers unpickle with every row
LIGHTNING_FREE = (
    "vidlit.curate",
    "vidlit.extract",
    "vidlit.engines.ray_data",
    "vidlit.data.shards",
    "vidlit.data.lists",
)


@pytest.mark.parametrize("module", LIGHTNING_FREE)
def test_curation_path_imports_no_lightning(module):
    code = (
        f"import sys, {module}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('lightning', 'pytorch_lightning')))))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert not loaded, (
        f"import {module} loads Lightning ({', '.join(loaded[:5])}, ...); find the importer with "
        f"python -X importtime -c 'import {module}' and import it where it is used"
    )
