"""The data flows one way: store < panel < features < graphs < pipeline < model < training / encoder < env.

Parsed from the source (every import statement, also those inside functions),
so a cycle hidden by a function-level import is caught too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gnn_market", "envs")

#: The data path, bottom to top: a module may import only from its own or lower layers.
DATA_PATH = ("gnn_market.store", "gnn_market.panel", "gnn_market.feature_generator", "gnn_market.graph_builder",
             "gnn_market.pipeline", "gnn_market.model", "gnn_market.checkpoint", "gnn_market.encoder")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """``{module: {imported module, ...}}`` for every module of the two packages (internal imports only)."""
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in modules and c != name}
        graph[name] = found
    return graph


GRAPH = _imports()


def test_there_are_modules_to_check():
    assert {"gnn_market.encoder", "gnn_market.store", "envs.crypto_graph"} <= set(GRAPH)


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("low", DATA_PATH)
def test_no_module_imports_from_above_it_on_the_data_path(low):
    above = set(DATA_PATH[DATA_PATH.index(low) + 1:])
    above |= {m for m in GRAPH if m.startswith(("gnn_market.training", "envs"))} | {"gnn_market.train"}
    assert not (GRAPH[low] & above), f"{low} imports {sorted(GRAPH[low] & above)}"


#: The package root is the public facade: it names training and the environment factory, but imports
#: them only on first access (PEP 562; tests/test_public_api.py checks it stays light) or for type checkers.
FACADE = "gnn_market"


def test_inference_and_the_library_never_import_training_or_the_environment():
    for module, targets in GRAPH.items():
        if module == FACADE:
            continue
        if module.startswith("gnn_market") and not module.startswith(("gnn_market.training", "gnn_market.train")):
            bad = {t for t in targets if t.startswith(("gnn_market.training", "gnn_market.train", "envs"))}
            assert not bad, f"{module} imports {sorted(bad)}"
