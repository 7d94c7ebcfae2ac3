"""The docs run as written: every ```python snippet of README.md and docs/*.md, and every relative link.

Snippets run as scripts (``python snippet.py``) in a folder prepared like a reader's checkout after
the guide's first steps: ``data/`` is an offline synthetic store (spot and perp), ``runs/perp/``
(also ``runs/X/``, ``runs/x/``) a tiny perp checkpoint trained on its first weeks, and
``runs/perp/live`` a live predictions folder. Interface listings that are not meant to run are
fenced as ``pyi``. A snippet that needs something else must say so in its own code.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
#: Hours of the docs' synthetic store; the checkpoint is fitted on the first FIT_HOURS of them.
STORE_HOURS, FIT_HOURS = 24 * 45, 24 * 25


def _snippets() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for k, match in enumerate(FENCE.finditer(doc.read_text())):
            out.append((f"{doc.relative_to(ROOT)}#{k + 1}", match.group(1)))
    return out


SNIPPETS = _snippets()


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory) -> Path:
    """A working folder as the guide leaves it: data/, runs/perp/model.pt (and X, x), runs/perp/live."""
    from gnn_market.synthetic import SyntheticConfig, write_synthetic_store

    root = tmp_path_factory.mktemp("reader")
    config = SyntheticConfig(n_symbols=8, hours=STORE_HOURS, seed=5, n_sectors=2, leaders_per_sector=1)
    store = write_synthetic_store(root / "data", config)
    end = store.klines(store.symbols("perp")[0], "perp").index[FIT_HOURS].isoformat()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _run([sys.executable, "-m", "gnn_market.train", "--store", "data", "--market", "perp", "--end", end,
          "--epochs", "1", "--hidden", "8", "--heads", "2", "--no-ablation", "--no-baselines", "--no-progress",
          "--out", "runs/perp"], root, env)
    for other in ("X", "x"):
        shutil.copytree(root / "runs" / "perp", root / "runs" / other)
    _run([sys.executable, "-m", "gnn_market.predict", "--store", "data", "--checkpoint", "runs/perp/model.pt",
          "--follow", "--once", "--out", "runs/perp/live"], root, env)
    return root


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_there_are_snippets_to_run():
    assert len(SNIPPETS) >= 8


NO_RUN = re.compile(r"^```python no-run\n(.*?)^```", re.M | re.S)


def test_snippets_not_run_need_a_tool_that_is_not_a_dependency():
    """``python no-run`` fences are only for engines we do not install (Polars, Spark)."""
    held = [(doc, m.group(1)) for doc in DOCS for m in NO_RUN.finditer(doc.read_text())]
    assert held, "the Polars and Spark examples are expected in docs/data.md"
    for doc, code in held:
        assert re.search(r"^(import polars|from pyspark)", code, re.M), f"{doc.name}: a no-run snippet must need them"


@pytest.mark.parametrize("name, code", SNIPPETS, ids=[n for n, _ in SNIPPETS])
def test_snippet_runs_as_written(name, code, reader_folder, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    _run([sys.executable, str(script)], reader_folder, env)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return out


def _links() -> list[tuple[str, Path, str]]:
    docs = [*DOCS, *sorted((ROOT / "docs" / "results").rglob("*.md"))]
    out = []
    for doc in docs:
        for target in LINK.findall(doc.read_text()):
            if not re.match(r"^[a-z]+:", target):
                out.append((f"{doc.relative_to(ROOT)} -> {target}", doc, target))
    return out


LINKS = _links()


def test_there_are_links_to_check():
    assert len(LINKS) > 30


@pytest.mark.parametrize("name, doc, target", LINKS, ids=[n for n, _, _ in LINKS])
def test_relative_link_and_anchor_exist(name, doc, target):
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.exists(), f"{name}: {dest} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{name}: no heading #{anchor} in {dest.name}"


def test_the_anchor_rule_matches_githubs():
    doc = ROOT / "docs" / "environment.md"
    assert "the-overlap-rule" in _anchors(doc)
    assert "observation-source-gnn-or-raw" in _anchors(doc)  # backticks and a colon dropped
    assert "the-cryptograph-v0-environment-and-the-ppo-example" in _anchors(ROOT / "docs" / "guide.md")
