"""The shape a maintainer meets: short functions, every error class in errors.py."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("gnn_market", "envs") for p in (ROOT / pkg).rglob("*.py"))
#: Longest function, in lines (def to last line, docstring included).
MAX_FUNCTION_LINES = 60


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_there_are_sources():
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_the_limit(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(_tree(path)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"split along their concepts: {long}"


def _is_exception(node: ast.ClassDef) -> bool:
    names = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
    return any(n.endswith(("Error", "Exception")) or n == "BadStoreFile" for n in names) or \
        node.name.endswith("Error")


@pytest.mark.parametrize("path", [p for p in SOURCES if p.name != "errors.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_error_classes_live_in_errors_py(path):
    defined = [n.name for n in ast.walk(_tree(path)) if isinstance(n, ast.ClassDef) and _is_exception(n)]
    assert not defined, f"define {defined} in gnn_market/errors.py"


def test_the_error_check_can_fail():
    tree = ast.parse("class Oops(ValueError):\n    pass\nclass StoreProblem(errors.StoreError):\n    pass\n"
                     "class Settings(Base):\n    pass\n")
    assert [n.name for n in tree.body if _is_exception(n)] == ["Oops", "StoreProblem"]
