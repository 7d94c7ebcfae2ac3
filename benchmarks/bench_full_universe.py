"""Benchmark: the full default training run, the encoder and CryptoGraph-v0 on a 450-pair, six-month store.

    python benchmarks/bench_full_universe.py [--store DIR] [--symbols 450] [--days 183] [--run-dir DIR]
                                             [--skip-train --wall S --rss MB]

1. writes the synthetic store (``SyntheticConfig(n_symbols=450, hours=24*183)``)
   unless ``--store`` names one;
2. runs ``python -m gnn_market.train --store S --market perp`` with every
   default in a child process: wall time, peak RSS (``ru_maxrss`` of the
   child) and ``metrics.json``'s timings (where the time goes);
3. in further child processes, on the trained ``model.pt``:
   ``GraphEncoder.encode_range`` over the test range and
   ``gym.make("CryptoGraph-v0")`` over the same range (wall, peak RSS, the
   size of the encoded arrays).

Prints a table and writes ``benchmarks/results/local/full_universe.json``
(``--results benchmarks/results/full_universe.json`` updates the published figures).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "full_universe.json"

ENCODE = """
import json, resource, sys, time
from gnn_market.encoder import GraphEncoder
enc = GraphEncoder.load(sys.argv[1])
t0 = time.perf_counter()
out = enc.encode_range(sys.argv[2], start=sys.argv[3], end=sys.argv[4])
wall = time.perf_counter() - t0
print(json.dumps({"hours": len(out.times), "pairs": len(out.symbols), "wall_s": wall,
                  "encoded_mb": (out.probs.nbytes + out.embeddings.nbytes + out.mask.nbytes) / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

ENV = """
import json, resource, sys, time, tempfile
import gymnasium as gym
import envs  # registers CryptoGraph-v0
t0 = time.perf_counter()
env = gym.make("CryptoGraph-v0", store=sys.argv[2], checkpoint=sys.argv[1], market="perp", start=sys.argv[3],
               end=sys.argv[4], allow_overlap=True, cache_dir=tempfile.mkdtemp())
obs, _ = env.reset(seed=0)
build = time.perf_counter() - t0
t0, steps = time.perf_counter(), 0
while steps < 1000:
    obs, r, term, trunc, _ = env.step(env.action_space.sample())
    steps += 1
    if term or trunc:
        env.reset()
print(json.dumps({"build_s": build, "steps_per_s": steps / (time.perf_counter() - t0), "obs_floats": int(obs.size),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def train(store: Path, out: Path) -> dict:
    """The default run in a child process: wall, the child's peak RSS and metrics.json's timings."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gnn_market.train", "--store", str(store), "--market", "perp",
                           "--out", str(out), "--no-progress"], cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"training failed with exit {done.returncode}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return summarise(out, wall, peak)


def summarise(out: Path, wall_s: float, peak_rss_mb: float) -> dict:
    """The run's headline figures and where its time went (``metrics.json`` timings, grouped)."""
    m = json.loads((out / "metrics.json").read_text())
    t = m["timings"]
    parts = {"load + features": t["load_s"], "edge features (once per run)": t.get("edges_s", 0.0),
             "normaliser + rows (fold)": t.get("fold1_graphs_s", 0.0)}
    for name in ("gnn", "gnn_no_temporal", "gnn_no_edges"):
        if f"fold1_{name}_s" in t:
            parts[f"train {name}"] = t[f"fold1_{name}_s"]
    parts["baselines"] = t.get("fold1_baselines_s", 0.0)
    parts["calibration + significance"] = t.get("fold1_calibration_s", 0.0) + t.get("significance_s", 0.0)
    parts["report, plots, rest"] = t["total_s"] - sum(parts.values())
    return {"wall_s": wall_s, "peak_rss_mb": peak_rss_mb, "pairs": m["split"]["symbols"],
            "test_range": m["split"]["folds"][0]["test"]["range"], "parts_s": parts,
            "test_macro_f1": {k: v["macro_f1"] for k, v in m["test"].items()},
            "encoder": m["encoder"], "distributed": m.get("distributed")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path)
    p.add_argument("--symbols", type=int, default=450)
    p.add_argument("--days", type=int, default=183)
    p.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "full_universe", help="the training run's --out")
    p.add_argument("--skip-train", action="store_true", help="summarise an existing --run-dir (give --wall/--rss)")
    p.add_argument("--wall", type=float, help="with --skip-train: the run's measured wall seconds")
    p.add_argument("--rss", type=float, help="with --skip-train: the run's measured peak RSS in MB")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    store = args.store
    if store is None:
        from gnn_market.synthetic import SyntheticConfig, write_synthetic_store
        config = SyntheticConfig(n_symbols=args.symbols, hours=24 * args.days)
        store = ROOT / "runs" / f"store-{config.fingerprint()}"
        if not (store / "STORE.json").exists():
            write_synthetic_store(store, config)
    run = summarise(args.run_dir, args.wall, args.rss) if args.skip_train else train(store, args.run_dir)
    test = run["test_range"]
    encode = child(ENCODE, str(args.run_dir / "model.pt"), str(store), test[0], test[1])
    env = child(ENV, str(args.run_dir / "model.pt"), str(store), test[0], test[1])
    print(f"default training run, {run['pairs']} pairs: {run['wall_s'] / 60:.1f} min wall, "
          f"peak RSS {run['peak_rss_mb'] / 1024:.2f} GB")
    for name, seconds in run["parts_s"].items():
        print(f"  {name:<36} {seconds:>8.0f} s")
    print(f"encode_range, test range ({encode['hours']} h x {encode['pairs']} pairs): {encode['wall_s']:.1f} s, "
          f"{encode['hours'] / encode['wall_s']:.1f} h/s, peak RSS {encode['peak_rss_mb']:.0f} MB, "
          f"encoded arrays {encode['encoded_mb']:.0f} MB")
    print(f"gym.make + reset (same range): {env['build_s']:.1f} s, {env['steps_per_s']:.0f} steps/s, "
          f"{env['obs_floats']} obs floats, peak RSS {env['peak_rss_mb']:.0f} MB")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "store": str(store)}
    args.results.write_text(json.dumps({"meta": meta, "train": run, "encode": encode, "env": env}, indent=2) + "\n")


if __name__ == "__main__":
    main()
