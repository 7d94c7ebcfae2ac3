"""Mutation check: apply realistic one-line bugs and report how many the tests catch.

Each mutant replaces one exact snippet of a source file (it must occur exactly once) and
runs the test files that guard that code. A mutant is *caught* when those tests fail. The
tree is copied to a temporary folder first, so the working tree is never modified.

    python benchmarks/mutation_check.py            # every mutant, table per area
    python benchmarks/mutation_check.py -k band    # mutants whose name holds "band"
    python benchmarks/mutation_check.py --list     # list them without running

Exit status 1 when any mutant survives or no longer applies (its snippet changed: update
the list). It takes minutes (one pytest run per mutant), so CI does not run it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"


@dataclass(frozen=True)
class Mutant:
    """One bug: in ``path`` replace ``before`` (exactly once) by ``after``; ``tests`` must catch it."""

    area: str
    name: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]
    select: str = ""  #: pytest ``-k`` expression, to run only the guarding tests of a slow file


SIG = "gnn_market/significance.py"
SIG_TESTS = ("tests/test_significance.py",)
EVAL = "gnn_market/training/evaluation.py"

MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- statistics
    Mutant("statistics", "bootstrap level 90% by default", SIG,
           "seed: int = DEFAULT_BOOTSTRAP_SEED, level: float = 0.95,",
           "seed: int = DEFAULT_BOOTSTRAP_SEED, level: float = 0.90,", SIG_TESTS),
    Mutant("statistics", "point estimate mixed into the quantiles", SIG,
           "percentile_interval(diffs[0], diffs[1:], level)", "percentile_interval(diffs[0], diffs, level)",
           SIG_TESTS),
    Mutant("statistics", "replicates of n_days - 1 days", SIG,
           "reshape(replicates, -1)[:, :n_days]", "reshape(replicates, -1)[:, :n_days - 1]", SIG_TESTS),
    Mutant("statistics", "macro-F1 counts fp twice", SIG,
           "denom = cm.sum(-1) + cm.sum(-2)", "denom = cm.sum(-1) + 2 * cm.sum(-2) - np.diagonal(cm, axis1=-2, axis2=-1)",
           SIG_TESTS),
    Mutant("statistics", "verdict: a zero low end counts as better", SIG,
           "if self.ci_low > 0:", "if self.ci_low >= 0:", SIG_TESTS),
    Mutant("statistics", "first seed only instead of the seed mean", SIG,
           "(seed_w * per_seed.T).sum(1) / n_seeds", "(seed_w * per_seed[:1].T).sum(1) / n_seeds", SIG_TESTS),
    Mutant("statistics", "training seeds never resampled", SIG,
           "if not resample_seeds or n_seeds < 2:", "if True:", SIG_TESTS),
    Mutant("statistics", "seed draw not inflated (bootstrap shrinkage, no t)", SIG,
           "1.0 + seed_inflation(n_seeds, level) * (picks - 1.0)", "picks", SIG_TESTS),
    Mutant("statistics", "seed inflation without Student's t", SIG,
           " * student_t.ppf(q, n_seeds - 1) / norm.ppf(q))", ")", SIG_TESTS),
    Mutant("statistics", "single-day blocks", SIG,
           "length = block_length(n_days, block_days)\n", "length = 1\n", SIG_TESTS),
    Mutant("statistics", "default block of 1 day", SIG,
           "DEFAULT_BLOCK_DAYS = 7", "DEFAULT_BLOCK_DAYS = 1", SIG_TESTS),
    Mutant("statistics", "moving instead of circular blocks", SIG,
           "rng.integers(0, n_days, size=(replicates, n_blocks))",
           "rng.integers(0, n_days - length + 1, size=(replicates, n_blocks))",
           SIG_TESTS),
    Mutant("statistics", "B's seeds not paired with A's", SIG,
           "per_seed = fn(drawn_a) - fn(drawn_b)", "per_seed = fn(drawn_a) - fn(drawn_b[::-1])", SIG_TESTS),
    Mutant("statistics", "primary comparison = worst on validation", EVAL,
           "return max(models, key=lambda name: val_macro_f1[name])",
           "return min(models, key=lambda name: val_macro_f1[name])", SIG_TESTS),
    Mutant("statistics", "Bonferroni over every comparison, primary included", EVAL,
           "(1 - SIGNIFICANCE_LEVEL) / max(len(family), 1)", "(1 - SIGNIFICANCE_LEVEL) / max(len(models), 1)",
           SIG_TESTS),
    # ---------------------------------------------------------------- live follower
    Mutant("follower", "embedding-column mismatch not refused", "gnn_market/follow.py",
           "    if has_emb != embeddings:", "    if has_emb != embeddings and False:", ("tests/test_follow.py",)),
    Mutant("follower", "pairs one hour behind only are waited for", "gnn_market/follow.py",
           "(since is None or t >= since - HOUR)}", "(since is None or t >= since)}", ("tests/test_follow.py",)),
    Mutant("follower", "stopped pairs still waited for", "gnn_market/follow.py",
           "if s not in stopped and (since", "if (since", ("tests/test_follow.py",)),
    Mutant("follower", "missing final newline not added", "gnn_market/follow.py",
           "if old and not old.endswith(b\"\\n\"):", "if False:", ("tests/test_follow.py",)),
    Mutant("follower", "another model's rows accepted", "gnn_market/follow.py",
           "    if models - {model}:", "    if False:", ("tests/test_follow.py",)),
    # ---------------------------------------------------------------- resume and splits
    Mutant("resume", "key ignores the fold's hours", "gnn_market/training/resume.py",
           '"hours": _digest(hours),', '"hours": "-",', ("tests/test_resume.py",), select="folds_hours"),
    Mutant("resume", "part-format version check skipped", "gnn_market/training/resume.py",
           'if raw.get("version") != PART_VERSION:', "if False:", ("tests/test_resume.py",), select="previous_format or version"),
    Mutant("splits", "candidate_hours admits an incomplete first window", "gnn_market/training/splits.py",
           "return hours[hours >= window - 1]", "return hours[hours >= window - 2]", ("tests/test_splits.py",)),
    Mutant("splits", "candidate_hours drops the first full window", "gnn_market/training/splits.py",
           "return hours[hours >= window - 1]", "return hours[hours >= window]", ("tests/test_splits.py",)),
    # ---------------------------------------------------------------- store rules
    Mutant("store", "taker buy volume may exceed volume", "gnn_market/store_schema.py",
           "masks[f\"{part} > {whole}\"] = col(part) > col(whole) * (1 + TAKER_TOLERANCE)",
           "masks[f\"{part} > {whole}\"] = col(part) > col(whole) * (2 + TAKER_TOLERANCE)", ("tests/test_store.py",)),
    Mutant("store", "high < low tolerated", "gnn_market/store_schema.py",
           "masks[\"high < low\"] = h < lo * (1 - OHLC_TOLERANCE)", "masks[\"high < low\"] = h < lo * 0.5", ("tests/test_store.py",)),
    Mutant("store", "duplicated timestamps kept", "gnn_market/store_schema.py",
           "dup = df.index.duplicated(keep=False)", "dup = df.index.duplicated(keep=False) & False", ("tests/test_store.py",)),
    Mutant("store", "integer times: unit window one unit too wide", "gnn_market/store_schema.py",
           "inside = ~found & (raw >= MIN_TIME_MS * per_ms) & (raw <= latest_ms * per_ms)",
           "inside = ~found & (raw >= MIN_TIME_MS * per_ms / 1000) & (raw <= latest_ms * per_ms)", ("tests/test_store.py",)),
    Mutant("store", "writers accept a marker of version 0", "gnn_market/store_marker.py",
           "or type(version) is not int or version < 1):", "or type(version) is not int or version < 0):",
           ("tests/test_store.py",), select="marker"),
    Mutant("store", "two repairs may share a backup folder", "gnn_market/store_health.py",
           'folder = self.base / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}"\n            try:\n'
           "                folder.mkdir(exist_ok=False)",
           'folder = self.base / f"{stamp}"\n            try:\n                folder.mkdir(exist_ok=True)',
           ("tests/test_store.py",), select="repair"),
    # ---------------------------------------------------------------- checkpoints and the env cache
    Mutant("checkpoint", "integer weights accepted", "gnn_market/checkpoint.py",
           "        if not value.is_floating_point():", "        if False:", ("tests/test_checkpoint.py",)),
    Mutant("checkpoint", "a CUDA-less --device cuda let through", "gnn_market/checkpoint.py",
           'if kind == "cuda" and not torch.cuda.is_available():', 'if kind == "cuda" and False:',
           ("tests/test_checkpoint.py",), select="cuda"),
    Mutant("env", "cache entry served despite changed files", "envs/cache.py",
           "changed = sorted(name for name, digest in actual.items() if digest != recorded[name])",
           "changed = []", ("tests/test_crypto_graph_env.py",), select="cache"),
    Mutant("env", "a bool passes as an int", "envs/checks.py",
           "return isinstance(value, (int, np.integer)) and not is_bool(value)",
           "return isinstance(value, (int, np.integer))", ("tests/test_env_hardening.py",)),
    # ---------------------------------------------------------------- environment arithmetic and ranges
    Mutant("env", "no-trade band inclusive (portfolio)", "envs/portfolio.py",
           "    if full < threshold:", "    if full <= threshold:", ("tests/test_portfolio.py",)),
    Mutant("env", "no-trade band inclusive (env)", "envs/portfolio.py",
           "    if full < threshold:", "    if full <= threshold:", ("tests/test_env_trading_rules.py",)),
    Mutant("env", "the env trades off the rebalance_every grid", "envs/crypto_graph.py",
           "trade_now=self._steps % self._every == 0)", "trade_now=self._steps % self._every != 1)",
           ("tests/test_env_trading_rules.py",)),
    Mutant("env", "overlap lets start == fit_end through", "envs/ranges.py",
           "if start > fit_end or end < fit_start:", "if start >= fit_end or end < fit_start:",
           ("tests/test_env_range.py",)),
    Mutant("env", "overlap lets end == fit_start through", "envs/ranges.py",
           "if start > fit_end or end < fit_start:", "if start > fit_end or end <= fit_start:",
           ("tests/test_env_range.py",)),
    # ---------------------------------------------------------------- correlations and features (look-ahead)
    Mutant("correlation", "window reads one hour ahead", "gnn_market/correlations.py",
           "log_ret[max(0, t - window + 1): t + 1]", "log_ret[max(0, t - window + 2): t + 2]",
           ("tests/test_graph_builder.py",)),
    Mutant("correlation", "min_periods boundary off by one", "gnn_market/correlations.py",
           "ok = (n >= min_periods)", "ok = (n > min_periods)", ("tests/test_graph_builder.py",)),
    Mutant("correlation", "chunked window one hour longer", "gnn_market/correlations.py",
           "lo = np.maximum(hours + 1 - window, 0)", "lo = np.maximum(hours - window, 0)",
           ("tests/test_graph_builder.py", "tests/test_hour_batches.py")),
    Mutant("feature", "lag reads the next row", "gnn_market/feature_generator.py",
           "out[k:] = a[: len(a) - k]", "out[k:] = a[1: len(a) - k + 1]", ("tests/test_feature_generator.py",)),
    Mutant("feature", "rolling window one row short", "gnn_market/feature_generator.py",
           "np.subtract(cs[w:], cs[: len(a0) - w], out=out[w:])",
           "np.subtract(cs[w:], cs[1: len(a0) - w + 1], out=out[w:])", ("tests/test_feature_generator.py",)),
    Mutant("feature", "UP threshold inclusive", "gnn_market/feature_generator.py",
           "np.where(r > threshold, 2,", "np.where(r >= threshold, 2,", ("tests/test_feature_generator.py",)),
    Mutant("feature", "label from the same hour's return", "gnn_market/feature_generator.py",
           "nxt[:-1] = close[1:]", "nxt[1:] = close[1:]", ("tests/test_feature_generator.py",)),
)


def copy_tree(dest: Path) -> None:
    """The repository without its virtual environments, runs and caches."""
    ignore = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "runs", "__pycache__", "*.egg-info",
                                    ".pytest_cache", ".ruff_cache", "local")
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


def run_mutant(tree: Path, mutant: Mutant, timeout: float) -> tuple[str, float]:
    """``"caught"``, ``"survived"``, ``"stale"`` (snippet not found exactly once) or ``"timeout"``."""
    target = tree / mutant.path
    original = target.read_text()
    if original.count(mutant.before) != 1:
        return "stale", 0.0
    target.write_text(original.replace(mutant.before, mutant.after))
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests,
                               *(["-k", mutant.select] if mutant.select else [])],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        outcome = "survived" if proc.returncode == 0 else "caught"
        if proc.returncode in (2, 3, 4, 5):  # interrupted / internal / usage / no tests: not a catch
            outcome = f"error (pytest exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        outcome = "timeout"
    finally:
        target.write_text(original)
    return outcome, time.perf_counter() - started


def summary(rows: list[tuple[Mutant, str, float]]) -> str:
    areas = list(dict.fromkeys(m.area for m, _, _ in rows))
    lines = [f"{'area':<14}{'mutants':>8}{'caught':>8}{'survived':>10}{'other':>7}", "-" * 47]
    for area in areas + ["total"]:
        sel = [o for m, o, _ in rows if area in ("total", m.area)]
        caught, survived = sel.count("caught"), sel.count("survived")
        if area == "total":
            lines.append("-" * 47)
        lines.append(f"{area:<14}{len(sel):>8}{caught:>8}{survived:>10}{len(sel) - caught - survived:>7}")
    total = len(rows)
    caught = sum(o == "caught" for _, o, _ in rows)
    lines.append(f"catch rate: {caught}/{total} = {100 * caught / max(total, 1):.0f} %")
    lines += [f"{o.upper()}: [{m.area}] {m.name} ({m.path})" for m, o, _ in rows if o != "caught"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default=None, help="only mutants whose name or area holds this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's test run")
    parser.add_argument("--out", type=Path, default=LOCAL_RESULTS / "mutation_check.json",
                        help="JSON of every mutant's outcome")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.k or args.k.lower() in f"{m.area} {m.name}".lower()]
    if args.list:
        for m in mutants:
            print(f"[{m.area}] {m.name}: {m.path} -> {' '.join(m.tests)}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        tree = Path(tmp) / "repo"
        copy_tree(tree)
        for i, mutant in enumerate(mutants, 1):
            outcome, seconds = run_mutant(tree, mutant, args.timeout)
            rows.append((mutant, outcome, seconds))
            print(f"{i:>3}/{len(mutants)} {outcome:<9} [{mutant.area}] {mutant.name} ({seconds:.0f} s)", flush=True)
    print(summary(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mutants": [{"area": m.area, "name": m.name, "path": m.path, "outcome": o, "seconds": round(t, 1)}
                    for m, o, t in rows]}, indent=1) + "\n")
    return 0 if all(o == "caught" for _, o, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
