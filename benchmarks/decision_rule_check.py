"""Label-free adaptive decision rules against the validation-fitted one, on the same predictions.

The protocol's rule (``training.calibrate``) turns each learned model's
calibrated probabilities into classes with per-class weights fitted on
validation macro-F1, fixed from then on. After a regime shift it can stop
predicting a class altogether (synthetic seed 3: SIDEWAYS on 1 % of test rows
where 34 % are SIDEWAYS). The adaptive rule fits the same per-class weights,
but on probabilities divided by their rolling mean over the last ``--window``
hours of the model's own predictions (``calibration.prior_adjusted``: no
labels, no later hour), and applies them the same way on test.

For each seed: one default run of ``python -m gnn_market.train`` on the data
(``training.run_fold``; vector scaling fitted on validation as in the CLI),
then test macro-F1 of every model under both rules (majority and persistence
keep their own rules), the GNN's margins over its no-edge ablation and the
best baseline, and the rules' predicted class shares. Two parameter-free
prior corrections are candidates too (:data:`RATIO_RULES`: argmax of each
probability over the model's own mean probability of that class, over the
last ``--window`` hours or over validation). Two more rules are scored for
diagnosis only (:data:`DIAGNOSTIC_RULES`): plain argmax, and the rule fitted
on the test labels (an upper bound for any per-class weighting, never a
result). The window is fixed before any run (168 h = one week); nothing here
changes a default.

    python benchmarks/decision_rule_check.py --seeds 13 14 15 16 17
    python benchmarks/decision_rule_check.py --data sample --seeds 0
    python benchmarks/decision_rule_check.py --seeds 23 24 --set context_inputs=True   # a candidate default
    python benchmarks/decision_rule_check.py --seeds 23 24 --predictions runs/preds    # train once, rescore later
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # tune_defaults.parse_override

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tune_defaults import parse_override  # noqa: E402

from gnn_market.calibration import DecisionRule, VectorScaling, prior_adjusted, rolling_prior  # noqa: E402
from gnn_market.pipeline import load_market  # noqa: E402
from gnn_market.sources import open_store  # noqa: E402
from gnn_market.training import TrainConfig, candidate_hours, make_splits, resolve_device, run_fold  # noqa: E402
from gnn_market.training.calibrate import is_calibrated  # noqa: E402
from gnn_market.training.metrics import classification_metrics  # noqa: E402

LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "decision_rule_check.json"
WINDOW_HOURS = 168


#: Rules scored besides the two candidates, for diagnosis only (never a result, never a default):
#: plain argmax of the calibrated probabilities, and the rule fitted on the TEST labels themselves,
#: the most any per-class weighting of these probabilities could reach on that test range.
DIAGNOSTIC_RULES = ("argmax", "oracle_test_fit")
#: Parameter-free prior corrections, candidates checked on 2026-12-02: argmax of p_k / prior_k, with the
#: prior the model's own mean probability over the last ``window`` hours, or over validation.
RATIO_RULES = ("ratio_rolling", "ratio_val")
RULES = ("fixed", "adaptive", *RATIO_RULES, *DIAGNOSTIC_RULES)


def decide(result, window: int) -> dict[str, dict[str, np.ndarray]]:
    """``{rule: {model: classes [M_test]}}`` of one fold's result, for every rule in :data:`RULES`."""
    out: dict[str, dict[str, np.ndarray]] = {rule: {} for rule in RULES}
    for name, (classes, probs) in result.test.items():
        if not is_calibrated(name):
            for rule in RULES:
                out[rule][name] = classes
            continue
        scaling = VectorScaling().fit(result.val[name][1], result.y_val)
        val, test = scaling.transform(result.val[name][1]), scaling.transform(probs)
        out["fixed"][name] = DecisionRule().fit(val, result.y_val).predict(test)
        val_adj = prior_adjusted(val, result.val_hours, window)
        test_adj = prior_adjusted(test, result.test_hours, window)
        out["adaptive"][name] = DecisionRule().fit(val_adj, result.y_val).predict(test_adj)
        out["ratio_rolling"][name] = (test / np.maximum(rolling_prior(test, result.test_hours, window), 1e-9)).argmax(1)
        out["ratio_val"][name] = (test / val.mean(0)).argmax(1)
        out["argmax"][name] = test.argmax(1)
        out["oracle_test_fit"][name] = DecisionRule().fit(test, result.y_test).predict(test)
    return out


def summarise(y: np.ndarray, classes: dict[str, np.ndarray]) -> dict:
    f1 = {n: float(classification_metrics(y, c)["macro_f1"]) for n, c in classes.items()}
    baselines = {k: v for k, v in f1.items() if not k.startswith("gnn")}
    best = max(baselines, key=baselines.get)
    return {"macro_f1": f1, "best_baseline": best, "margin_vs_no_edges": f1["gnn"] - f1["gnn_no_edges"],
            "margin_vs_best_baseline": f1["gnn"] - baselines[best],
            "gnn_predicted_shares": (np.bincount(classes["gnn"], minlength=3) / len(y)).round(3).tolist()}


def prediction_file(folder: Path, data: str, seed: int, overrides: dict) -> Path:
    """Where :func:`run_seed` keeps one run's predictions: one file per data, seed and overrides."""
    tag = "" if not overrides else "_" + hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    return folder / f"{data}_{seed}{tag}.npz"


def save_predictions(result, path: Path) -> None:
    """Validation and test classes and probabilities of every model, labels and hours (``.npz``)."""
    arrays = {"y_val": result.y_val, "y_test": result.y_test, "val_hours": result.val_hours,
              "test_hours": result.test_hours}
    for name in result.test:
        arrays[f"valc_{name}"], arrays[f"val_{name}"] = result.val[name]
        arrays[f"testc_{name}"], arrays[f"test_{name}"] = result.test[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_predictions(path: Path) -> SimpleNamespace:
    """What :func:`save_predictions` wrote, shaped like the fold result :func:`decide` reads."""
    with np.load(path) as d:
        names = [k[len("test_"):] for k in d.files if k.startswith("test_") and k != "test_hours"]
        return SimpleNamespace(test={n: (d[f"testc_{n}"], d[f"test_{n}"]) for n in names},
                               val={n: (d[f"valc_{n}"], d[f"val_{n}"]) for n in names},
                               y_val=d["y_val"], y_test=d["y_test"], val_hours=d["val_hours"],
                               test_hours=d["test_hours"])


def fold_result(data: str, seed: int, overrides: dict | None = None, predictions: Path | None = None,
                train_seed: int | None = None):
    """The fold result of ``--data DATA --seed SEED`` (with ``overrides``), trained with ``train_seed``
    (default: the market seed, as the CLI does). With ``predictions``, a run already kept there is read
    back instead of trained, and a new one is kept there."""
    overrides = overrides or {}
    key = overrides if train_seed is None else {**overrides, "train_seed": train_seed}
    kept = None if predictions is None else prediction_file(predictions, data, seed, key)
    if kept is not None and kept.exists():
        return load_predictions(kept)
    cfg = replace(TrainConfig(data=data, seed=seed, progress=False, threads=1), **overrides)
    torch.set_num_threads(1)
    market = load_market(open_store(None, cfg.data, seed=cfg.seed), cfg.market, threshold=cfg.threshold)
    split = make_splits(candidate_hours(market, cfg.window), cfg)[0]
    train_cfg = cfg if train_seed is None else replace(cfg, seed=train_seed)
    result = run_fold(market, split, train_cfg, resolve_device(cfg.device))
    if kept is not None:
        save_predictions(result, kept)
    return result


def run_seed(data: str, seed: int, window: int, overrides: dict | None = None,
             predictions: Path | None = None) -> dict:
    """One default (or overridden) run, scored under every rule (see :func:`fold_result` for ``predictions``)."""
    overrides = overrides or {}
    started = time.perf_counter()
    result = fold_result(data, seed, overrides, predictions)
    rules = decide(result, window)
    return {"seed": seed, "data": data, "window": window, "overrides": overrides,
            "seconds": round(time.perf_counter() - started),
            "test_shares": (np.bincount(result.y_test, minlength=3) / len(result.y_test)).round(3).tolist(),
            **{rule: summarise(result.y_test, classes) for rule, classes in rules.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic", choices=["synthetic", "sample"])
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15, 16, 17])
    p.add_argument("--window", type=int, default=WINDOW_HOURS)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--predictions", type=Path, metavar="DIR",
                   help="keep each run's validation and test predictions in DIR and reuse them: "
                        "a new rule is then scored without training")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="TrainConfig fields to change (a candidate default), e.g. context_inputs=True")
    args = p.parse_args()
    rows = []
    print(f"{'seed':>4} {'rule':>15} {'gnn':>7} {'vs no-edge':>11} {'vs best baseline':>24} {'GNN shares D/S/U':>20}")
    for seed in args.seeds:
        row = run_seed(args.data, seed, args.window, dict(parse_override(o) for o in args.overrides),
                       args.predictions)
        rows.append(row)
        for rule in RULES:
            r = row[rule]
            print(f"{seed:>4} {rule:>15} {r['macro_f1']['gnn']:>7.4f} {r['margin_vs_no_edges']:>+11.4f} "
                  f"{r['margin_vs_best_baseline']:>+8.4f} ({r['best_baseline']:>13}) "
                  f"{'/'.join(f'{s:.2f}' for s in r['gnn_predicted_shares']):>20}", flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
