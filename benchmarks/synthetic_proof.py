"""The graph path on the market with planted lead-lag structure, seeds 0-4, with the DEFAULTS.

For each seed S this is exactly ``python -m gnn_market.train --data synthetic
--seed S`` (the simulator's default market drawn with seed S, every training
default unchanged; the seed also seeds training). It reports test macro-F1 of
the GNN, its two ablations (``gnn_no_edges``: the same network, with the node
encoder chosen for the GNN on validation, and no edges; ``gnn_no_temporal``:
same graphs, no temporal encoder, which is the GNN itself where validation
chose the snapshot encoder) and
every baseline, and the GNN's margins over the no-edge ablation and over the
best baseline (every model not named ``gnn*``). Seeds are fixed up front;
every seed is reported.

Two decision rules, so the margins do not hinge on one rule:

- ``val_rule`` (the CLI's table): the protocol's calibration step
  (``training.calibrate.calibrate_fold``): every learned model's
  probabilities vector-scaled and its decision rule chosen on its own
  validation rows; majority and persistence keep their rules;
- ``argmax``: plain argmax of each model's uncalibrated probabilities.

The run is the protocol's own (``training.run_fold`` then ``calibrate_fold``
on the default split, the same calls ``run_training`` makes, minus writing
artefacts), so the ``val_rule`` numbers equal those the CLI prints.

    python benchmarks/synthetic_proof.py [--seeds 0 1 2 3 4] [--threads 1]

Writes ``benchmarks/results/local/synthetic_proof_defaults.json`` (ignored by git);
``--results benchmarks/results/synthetic_proof_defaults.json`` updates the published figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gnn_market.pipeline import load_market  # noqa: E402
from gnn_market.sources import open_store  # noqa: E402
from gnn_market.training import (  # noqa: E402
    TrainConfig,
    candidate_hours,
    make_splits,
    resolve_device,
    results_table,
    run_fold,
    score,
)
from gnn_market.training.calibrate import calibrate_fold  # noqa: E402
from gnn_market.training.evaluation import significance_vs_gnn, stack_seeds  # noqa: E402

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


def run_seed(seed: int, threads: int) -> dict:
    cfg = TrainConfig(data="synthetic", seed=seed, progress=False, threads=threads)
    torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    market = load_market(open_store(None, cfg.data, seed=cfg.seed), cfg.market, threshold=cfg.threshold)
    split = make_splits(candidate_hours(market, cfg.window), cfg)[0]
    result = run_fold(market, split, cfg, resolve_device(cfg.device))
    seconds = time.perf_counter() - started
    test, val = score([result], "test"), score([result], "val")
    calibrated = calibrate_fold(result)
    ruled = score([calibrated.fold], "test")
    print(f"\nseed {seed}: node encoder {result.encoder} (validation macro-F1 {result.encoder_scores})", flush=True)
    print(f"\nseed {seed} (argmax)\n" + results_table(test), flush=True)
    print(f"\nseed {seed} (the CLI's table: validation-fitted calibration + decision rule)\n"
          + results_table({k: ruled[k] for k in test}), flush=True)
    f1 = {name: m["macro_f1"] for name, m in test.items()}
    f1_rule = {name: ruled[name]["macro_f1"] for name in test}
    rule_margins = margins(f1_rule)
    y, hours, preds = stack_seeds([[calibrated]])
    vs = significance_vs_gnn(y, preds, market.times[hours])["gnn_vs"]  # paired bootstrap over test days
    intervals = {"ci_vs_no_edges": vs["gnn_no_edges"]["macro_f1"],
                 "ci_vs_best_baseline": vs[rule_margins["best_baseline"]]["macro_f1"]}
    return {"seed": seed, "encoder": result.encoder, "encoder_val_macro_f1": result.encoder_scores, "macro_f1": f1, "val_macro_f1": {n: m["macro_f1"] for n, m in val.items()},
            "mcc": {n: m["mcc"] for n, m in test.items()}, **margins(f1),
            "val_rule": {"macro_f1": f1_rule, "mcc": {n: ruled[n]["mcc"] for n in test},
                         "log_loss": {n: ruled[n]["log_loss"] for n in test},
                         "brier": {n: ruled[n]["brier"] for n in test}, **rule_margins, **intervals},
            "best_epochs": {k: h.best_epoch for k, h in result.histories.items()},
            "test_class_balance": test["gnn"]["class_balance"], "seconds": seconds}


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}\n{'seed':>4} {'encoder':>8} {'gnn':>7} {'no_edges':>9} {'no_temp':>8} {'best baseline':>22} "
          f"{'vs no-edge':>11} {'vs no-temp':>11} {'vs best baseline':>17}")
    for r in rows:
        f = r["macro_f1"]
        no_temp = f.get("gnn_no_temporal", float("nan"))
        vs_temp = r["margin_vs_no_temporal"] if r["margin_vs_no_temporal"] is not None else float("nan")
        best = f"{f[r['best_baseline']]:.4f} ({r['best_baseline']})"
        print(f"{r['seed']:>4} {r.get('encoder', ''):>8} {f['gnn']:>7.4f} {f['gnn_no_edges']:>9.4f} {no_temp:>8.4f} {best:>22} "
              f"{r['margin_vs_no_edges']:>+11.4f} {vs_temp:>+11.4f} {r['margin_vs_best_baseline']:>+17.4f}")


def print_intervals(rows: list[dict]) -> None:
    """The CLI rule's margins with their 95 % day-block bootstrap intervals, log-loss and Brier."""
    print("\nGNN minus the no-edge ablation / the best baseline (CLI rule), 95 % paired day-bootstrap intervals")
    print(f"{'seed':>4} {'vs no-edge [95% CI]':>28} {'vs best baseline [95% CI]':>28} "
          f"{'GNN log-loss':>13} {'majority':>9} {'GNN Brier':>10} {'majority':>9}")
    for r in rows:
        v = r["val_rule"]
        cis = [f"{i['diff']:+.3f} [{i['ci_low']:+.3f}, {i['ci_high']:+.3f}]"
               for i in (v["ci_vs_no_edges"], v["ci_vs_best_baseline"])]
        print(f"{r['seed']:>4} {cis[0]:>28} {cis[1]:>28} {v['log_loss']['gnn']:>13.3f} "
              f"{v['log_loss']['majority']:>9.3f} {v['brier']['gnn']:>10.3f} {v['brier']['majority']:>9.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    rows = [run_seed(s, args.threads) for s in args.seeds]
    print_table(rows, "test macro-F1, plain argmax")
    print_table([{"seed": r["seed"], "encoder": r["encoder"], **r["val_rule"]} for r in rows],
                "test macro-F1, the CLI's table (validation-fitted calibration + decision rule)")
    print_intervals(rows)
    print("\nseconds per seed: " + ", ".join(f"{r['seconds']:.0f}" for r in rows))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"command": "python -m gnn_market.train --data synthetic --seed S",
                                        "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
