"""Following the docs leaves the checkout clean: documented outputs and benchmark results are ignored by git."""
from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                                reason="needs a git checkout")


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("path", ["data/", "data/klines/market=spot/symbol=BTCUSDT/month=2024-01/data.parquet", "preds.parquet", "preds.csv",
                                  "preds.npz", "live.parquet", "live.csv", "benchmarks/results/local/refresh.json",
                                  "runs/x/model.pt"])
def test_documented_outputs_are_ignored(path):
    assert _ignored(path)


def test_published_benchmark_results_stay_tracked():
    assert not _ignored("benchmarks/results/refresh.json")


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_benchmarks_write_into_the_ignored_folder_by_default(script):
    """Every output default is built from LOCAL_RESULTS = benchmarks/results/local (ignored)."""
    tree = ast.parse((ROOT / "benchmarks" / script).read_text())
    assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert "LOCAL_RESULTS" in assigned, f"{script}: no LOCAL_RESULTS"
    assert ast.unparse(assigned["LOCAL_RESULTS"]) == "ROOT / 'benchmarks' / 'results' / 'local'"
    if "RESULTS" in assigned:
        assert "LOCAL_RESULTS" in ast.unparse(assigned["RESULTS"])
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args \
                and isinstance(node.args[0], ast.Constant) and node.args[0].value in ("--out", "--results"):
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            text = ast.unparse(default) if default is not None else "None"
            assert text == "None" or "LOCAL_RESULTS" in text or text == "RESULTS", f"{script}: default {text}"
