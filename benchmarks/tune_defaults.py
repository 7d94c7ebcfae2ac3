"""Choose training defaults on VALIDATION macro-F1 of seeded synthetic markets (never on test).

One call = one configuration over several market seeds: ``--data synthetic
--seed S`` with ``TrainConfig`` fields overridden as ``key=value``. Appends one
JSON line per (configuration, seed) with validation macro-F1 of every model,
the GNN's validation margins, the best epochs and the wall time, to
``benchmarks/results/tuning.jsonl``. Test metrics are computed by the run
(the protocol always scores test) but neither printed nor stored here.

    python benchmarks/tune_defaults.py --seeds 10 11 12 lookback=24 batch_hours=32

On a real store, one walk-forward fold is enough to check a candidate on its
validation weeks without paying for the whole study: ``--store S --folds 3
--fold 2`` trains the GNN and its ablations on that fold only (no baselines,
no calibration) and logs their validation curves and best validation macro-F1
(plain argmax, the early-stopping metric).

    python benchmarks/tune_defaults.py --store data/spot3y --folds 3 --fold 2 --seeds 0 top_k=10
"""
from __future__ import annotations

import argparse
import ast
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataclasses import replace  # noqa: E402

import torch  # noqa: E402

from gnn_market.machine import machine_info  # noqa: E402
from gnn_market.sources import open_store  # noqa: E402
from gnn_market.training import TrainConfig, resolve_device, run_fold, run_training  # noqa: E402
from gnn_market.training.universe import load_training_market  # noqa: E402

#: Default output: an ignored folder; the published log is benchmarks/results/tuning.jsonl (--results).
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "tuning.jsonl"


def parse_override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--tag", default="")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--store", help="a real store instead of --data (with --folds/--fold)")
    p.add_argument("--folds", type=int, default=1)
    p.add_argument("--fold", type=int, help="0-based fold: train only this fold's GNNs (validation curves only)")
    p.add_argument("overrides", nargs="*", help="TrainConfig fields as key=value")
    args = p.parse_args()
    overrides = dict(parse_override(o) for o in args.overrides)
    if args.fold is not None:
        for seed in args.seeds:
            append(args.results, fold_row(args, seed, overrides))
        return
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            cfg = TrainConfig(data=args.data, seed=seed, out=tmp, progress=False, threads=1, **overrides)
            m = run_training(cfg)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        val = {k: round(v["macro_f1"], 4) for k, v in m["val"].items()}
        tabular = [v for k, v in val.items() if not k.startswith("gnn")]
        row = {"tag": args.tag, "data": args.data, "seed": seed, "overrides": overrides, "val_macro_f1": val,
               "val_margin_no_edges": round(val["gnn"] - val.get("gnn_no_edges", float("nan")), 4),
               "val_margin_best_baseline": round(val["gnn"] - max(tabular), 4) if tabular else None,
               "best_epochs": {k: h["best_epoch"] for k, h in m["history"].items()},
               "epochs_run": {k: len(h["train_loss"]) for k, h in m["history"].items()},
               "val_curves": {k: [round(x, 4) for x in h["val_macro_f1"]] for k, h in m["history"].items()},
               "split": m["split"]["folds"],
               "seconds": round(time.perf_counter() - started, 1),
               "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1)}
        append(args.results, row)


def fold_row(args: argparse.Namespace, seed: int, overrides: dict) -> dict:
    """Train one walk-forward fold's GNNs (no baselines, no calibration); their validation curves."""
    started = time.perf_counter()
    torch.set_num_threads(1)
    cfg = TrainConfig(data=args.data, store=args.store, folds=args.folds, seed=seed, out="unused", progress=False,
                      threads=1, baselines=False, **overrides)
    market, splits, _ = load_training_market(open_store(cfg.store, cfg.data, seed=cfg.seed), cfg)
    result = run_fold(market, splits[args.fold], replace(cfg, seeds=None), resolve_device(cfg.device))
    curves = {k: [round(x, 4) for x in h.val_macro_f1] for k, h in result.histories.items()}
    return {"tag": args.tag, "data": args.store or args.data, "folds": args.folds, "fold": args.fold, "seed": seed,
            "overrides": overrides, "val_best_macro_f1": {k: max(c) for k, c in curves.items()},
            "val_curves": curves, "split": splits[args.fold].describe(market.times),
            "seconds": round(time.perf_counter() - started, 1)}


def append(path: Path, row: dict) -> None:
    """One JSON line, stamped with when it was written and on what machine (the order of events
    and the split used are part of the record: choices must be checkable against the test dates)."""
    row = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row, "machine": machine_info()}
    print(json.dumps(row), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
