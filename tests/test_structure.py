"""The package's shape, read from the source with ``ast`` (no module is executed).

The import graph: every import of a critkl module, at module level or inside a function, is an edge. No cycle;
``analysis`` (statistics) imports no critkl module; ``critical`` (the pure locator) no model code; the RL collect
no measurement code; a sweep point's worker process needs nothing that imports torch.

Module size: one module per concept, at most ``MAX_LINES`` lines, unless its docstring says why it is one concept
that stays one module (as ``config``'s does)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "critkl"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _resolve(name: str) -> str | None:
    """The critkl module that ``import name`` executes last: ``name`` itself, or its nearest parent."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str) -> set[str]:
    """The critkl modules ``name`` imports anywhere in its source (module level, functions, classes)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(), str(MODULES[name]))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            # `from . import task` imports the submodule critkl.task; `from .losses import gae` critkl.losses
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out |= {m for t in targets if (m := _resolve(t)) is not None and m != name}
    return out


GRAPH = {name: imports(name) for name in MODULES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def find_cycle() -> list[str] | None:
    """One import cycle as a path [m, ..., m], or None (depth-first search, three colours)."""
    colour, stack = dict.fromkeys(GRAPH, 0), []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for nxt in sorted(GRAPH[m]):
            if colour[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == 0 and (found := visit(nxt)):
                return found
        colour[m] = 2
        stack.pop()
        return None

    for m in sorted(GRAPH):
        if colour[m] == 0 and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_every_kind_of_import():
    """The reader itself: module-level and in-function imports, relative and absolute, are all edges."""
    assert {"critkl.analysis", "critkl.critical", "critkl.measure", "critkl.rl", "critkl"} <= set(MODULES)
    assert "critkl.critical" in GRAPH["critkl.rollout"]        # from .critical import critical_mask
    assert "critkl.task" in GRAPH["critkl.measure"]            # from . import task
    assert "critkl.task" in GRAPH["critkl"]                    # inside check_version
    assert "critkl.task" in GRAPH["critkl.config"]             # inside functions only
    assert "critkl.rl" in GRAPH["critkl"]


def test_no_import_cycle():
    assert find_cycle() is None, " -> ".join(find_cycle())


def test_a_cycle_would_be_found(monkeypatch):
    """The circle this layout removed: analysis -> rollout -> critical -> analysis."""
    monkeypatch.setitem(GRAPH, "critkl.analysis", {"critkl.rollout"})
    monkeypatch.setitem(GRAPH, "critkl.critical", GRAPH["critkl.critical"] | {"critkl.analysis"})
    cycle = find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"critkl.analysis", "critkl.rollout", "critkl.critical"} <= set(cycle)


def test_analysis_imports_no_critkl_module():
    assert GRAPH["critkl.analysis"] == set()


def test_the_locator_runs_no_model():
    """critical.py maps text to positions: the task and the tokenizer, nothing that loads or runs a model."""
    assert GRAPH["critkl.critical"] <= {"critkl.task", "critkl.tokenizer"}


@pytest.mark.parametrize("hot", ["critkl.rollout", "critkl.losses"])
def test_the_rl_collect_and_loss_import_no_measurement(hot):
    assert "critkl.measure" not in reachable(hot) and "critkl.analysis" not in reachable(hot)


def test_a_sweep_point_needs_no_torch():
    """A local sweep worker imports critkl.points without the package's __init__ (critkl.sweep): what it imports
    must not import torch either."""
    assert reachable("critkl.points") <= {"critkl.fileio"} and GRAPH["critkl.fileio"] == set()


# ----------------------------------------------------------------------------------------- module size

MAX_LINES = 450


def says_one_concept(source: str) -> bool:
    """The module docstring says why a long module is still one: "one concept" ... "one module"."""
    doc = " ".join((ast.get_docstring(ast.parse(source)) or "").lower().split())
    return "one concept" in doc and "one module" in doc


def test_the_size_rule_reads_docstrings():
    assert says_one_concept(MODULES["critkl.config"].read_text())
    assert not says_one_concept('"""Sweeps, SLURM and file locks."""\nx = 1\n')
    assert not says_one_concept("x = 1  # one concept, one module: a comment is not the docstring\n")


def test_long_modules_say_why_they_are_one_concept():
    lines = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    unexplained = {name: n for name, n in lines.items() if n > MAX_LINES and not says_one_concept(MODULES[name].read_text())}
    assert not unexplained, (f"over {MAX_LINES} lines: {unexplained}; split by concept, or say in the module docstring "
                             "why it is one concept that stays one module")
