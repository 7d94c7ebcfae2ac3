"""Would averaging several trained networks fix the synthetic proof? One market, K training seeds.

For each market seed S: the default run of ``python -m gnn_market.train --data
synthetic --seed S`` (training seed S), plus K - 1 runs on the same market and
split with training seeds S + 1000, S + 2000, ... Every learned model (GNN,
ablations, logistic, HistGB, MLP) is then scored twice under the protocol's
rule (vector scaling and per-class weights fitted on validation):

* ``single``: the first member alone (exactly the CLI's result);
* ``ensemble``: the mean of the members' calibrated probabilities, with the
  decision rule fitted on the mean validation probabilities.

Majority and persistence keep their own rules. Prints, per seed, the GNN's
macro-F1 and its margins over the no-edge ablation and the best baseline for
both, and writes them as JSON. ``--predictions DIR`` keeps every run's
predictions (the first member's file is the one ``decision_rule_check.py``
keeps), so a second call only rescores.

    python benchmarks/ensemble_check.py --seeds 23 24 25 --predictions runs/preds
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # decision_rule_check

import numpy as np  # noqa: E402
from decision_rule_check import fold_result, summarise  # noqa: E402

from gnn_market.calibration import DecisionRule, VectorScaling  # noqa: E402
from gnn_market.training.calibrate import is_calibrated  # noqa: E402

#: Default output: an ignored folder; published figures are written with --results benchmarks/results/...
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "ensemble_check.json"
SEED_STEP = 1000  # member k trains with seed S + k * SEED_STEP


def member(seed: int, k: int, predictions: Path | None):
    """The fold result of market ``seed`` trained with seed ``seed + k * SEED_STEP`` (kept in ``predictions``)."""
    return fold_result("synthetic", seed, predictions=predictions, train_seed=None if k == 0 else seed + k * SEED_STEP)


def decide_ensemble(members: list) -> dict[str, dict[str, np.ndarray]]:
    """``{"single": {model: classes}, "ensemble": {...}}``: the first member, and the members' mean calibrated
    probabilities, each turned into classes by a rule fitted on (mean) validation probabilities."""
    first, y_val = members[0], members[0].y_val
    out: dict[str, dict[str, np.ndarray]] = {"single": {}, "ensemble": {}}
    for name, (classes, _) in first.test.items():
        if not is_calibrated(name):
            out["single"][name] = out["ensemble"][name] = classes
            continue
        val, test = [], []
        for m in members:
            scaling = VectorScaling().fit(m.val[name][1], y_val)
            val.append(scaling.transform(m.val[name][1]))
            test.append(scaling.transform(m.test[name][1]))
        out["single"][name] = DecisionRule().fit(val[0], y_val).predict(test[0])
        out["ensemble"][name] = DecisionRule().fit(np.mean(val, 0), y_val).predict(np.mean(test, 0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="market seeds")
    p.add_argument("--members", type=int, default=3, help="training seeds per market (K >= 2)")
    p.add_argument("--predictions", type=Path, metavar="DIR", help="keep and reuse every run's predictions")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.members < 2:
        raise SystemExit("--members must be at least 2")
    rows = []
    print(f"{'seed':>4} {'single gnn':>10} {'- no-edge':>9} {'- best':>7}   {'ensemble gnn':>12} {'- no-edge':>9} {'- best':>7}")
    for seed in args.seeds:
        members = [member(seed, k, args.predictions) for k in range(args.members)]
        scored = {kind: summarise(members[0].y_test, c) for kind, c in decide_ensemble(members).items()}
        rows.append({"seed": seed, "members": args.members, **scored})
        s, e = scored["single"], scored["ensemble"]
        print(f"{seed:>4} {s['macro_f1']['gnn']:>10.4f} {s['margin_vs_no_edges']:>+9.3f} {s['margin_vs_best_baseline']:>+7.3f}"
              f"   {e['macro_f1']['gnn']:>12.4f} {e['margin_vs_no_edges']:>+9.3f} {e['margin_vs_best_baseline']:>+7.3f}",
              flush=True)
    diff = np.array([r["ensemble"]["macro_f1"]["gnn"] - r["single"]["macro_f1"]["gnn"] for r in rows])
    if len(diff) > 1:
        print(f"ensemble - single, GNN macro-F1: {diff.mean():+.4f} (sd {diff.std(ddof=1):.4f}), "
              f"better on {int((diff > 0).sum())} of {len(diff)}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
