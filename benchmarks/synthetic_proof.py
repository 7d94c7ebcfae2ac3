"""The graph path on the market with planted lead-lag structure, seeds 0-4, with the DEFAULTS.

For each seed S this is exactly ``python -m gnn_market.train --data synthetic
--seed S`` (the simulator's default market drawn with seed S, every training
default unchanged; the seed also seeds training). It reports test macro-F1 of
the GNN, its two ablations (``gnn_no_edges``: same temporal encoder and
context, no edges; ``gnn_no_temporal``: same graphs, no temporal encoder) and
every baseline, and the GNN's margins over the no-edge ablation and over the
best baseline (every model not named ``gnn*``). Predictions are plain argmax of
each model's probabilities. Seeds are fixed up front; every seed is reported.

    python benchmarks/synthetic_proof.py [--seeds 0 1 2 3 4] [--threads 1]

Writes ``benchmarks/results/local/synthetic_proof_defaults.json`` (ignored by git);
``--results benchmarks/results/synthetic_proof_defaults.json`` updates the published figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gnn_market.training import TrainConfig, results_table, run_training  # noqa: E402

#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/synthetic_proof_defaults.json``) to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "synthetic_proof_defaults.json"


def margins(f1: dict[str, float]) -> dict[str, object]:
    """GNN - no-edge ablation and GNN - best baseline (models not named ``gnn*``)."""
    baselines = {k: v for k, v in f1.items() if not k.startswith("gnn")}
    best = max(baselines, key=baselines.get)
    return {"best_baseline": best, "margin_vs_no_edges": f1["gnn"] - f1["gnn_no_edges"],
            "margin_vs_no_temporal": f1["gnn"] - f1["gnn_no_temporal"] if "gnn_no_temporal" in f1 else None,
            "margin_vs_best_baseline": f1["gnn"] - baselines[best]}


def run_seed(seed: int, root: Path, threads: int) -> dict:
    cfg = TrainConfig(data="synthetic", seed=seed, out=str(root / f"run-{seed}"), progress=False, threads=threads)
    metrics = run_training(cfg)
    print(f"\nseed {seed}\n" + results_table(metrics["test"]), flush=True)
    f1 = {name: m["macro_f1"] for name, m in metrics["test"].items()}
    return {"seed": seed, "macro_f1": f1, "val_macro_f1": {n: m["macro_f1"] for n, m in metrics["val"].items()},
            "mcc": {n: m["mcc"] for n, m in metrics["test"].items()}, **margins(f1),
            "best_epochs": {k: h["best_epoch"] for k, h in metrics["history"].items()},
            "seconds": metrics["timings"]["total_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_seed(s, Path(tmp), args.threads) for s in args.seeds]
    print(f"\n{'seed':>4} {'gnn':>7} {'no_edges':>9} {'no_temp':>8} {'best baseline':>22} "
          f"{'vs no-edge':>11} {'vs no-temp':>11} {'vs best baseline':>17} {'time':>6}")
    for r in rows:
        f = r["macro_f1"]
        no_temp = f.get("gnn_no_temporal", float("nan"))
        vs_temp = r["margin_vs_no_temporal"] if r["margin_vs_no_temporal"] is not None else float("nan")
        best = f"{f[r['best_baseline']]:.4f} ({r['best_baseline']})"
        print(f"{r['seed']:>4} {f['gnn']:>7.4f} {f['gnn_no_edges']:>9.4f} {no_temp:>8.4f} {best:>22} "
              f"{r['margin_vs_no_edges']:>+11.4f} {vs_temp:>+11.4f} {r['margin_vs_best_baseline']:>+17.4f} "
              f"{r['seconds']:>5.0f}s")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"command": "python -m gnn_market.train --data synthetic --seed S",
                                        "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
