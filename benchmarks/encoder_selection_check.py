"""Is choosing the GNN's node encoder on validation better than always using the GRU?

Issue 22 item 2. The GNN can read each pair's last ``lookback`` hours through
a GRU (``temporal``) or only the current hour (``snapshot``); the protocol used
to keep the one with the better validation macro-F1. Which one wins depends on
training noise, so this check judges the selection *criteria* on markets that
are used for nothing else: fresh synthetic market seeds (default 60-67, never
used by another benchmark or result; 0-54 are taken by ``synthetic_proof*``,
``decision_rule_check*`` and ``ensemble_check*``).

For every market seed S: the simulator's default market drawn with seed S,
the training defaults (one training seed, S, as ``python -m gnn_market.train
--data synthetic --seed S``), one split, no baselines. Both encoders are
trained (``gnn`` = the GRU, ``gnn_no_temporal`` = the snapshot network) and
scored the protocol's way (``calibrate_fold``: vector scaling and decision
rule fitted on validation). Each criterion then picks one encoder per market
seed from **validation scores only**:

- ``always_gru`` / ``always_snapshot``;
- ``val_macro_f1``: the better best-epoch validation macro-F1 (the old default);
- ``val_log_loss``: the lower raw validation log-loss;
- ``val_macro_f1_margin_0.005`` / ``_0.01``: the snapshot only when it wins by more than the margin.

A criterion is judged by the **test** macro-F1 (and log-loss) of its picks on
these held-out seeds, as a paired difference from ``always_gru`` with its
standard error over market seeds; a difference within 2 standard errors is a
tie. The test rows of these seeds serve only this comparison.

Resumable: one JSON line per finished market seed in ``--lines``; a rerun skips
the seeds already there. ``--results`` gets the summary (with a UTC timestamp,
the machine and the split of every row)::

    python benchmarks/encoder_selection_check.py [--seeds 60 61 ... 67] [--threads 1]

Published: ``--results benchmarks/results/encoder_selection_check.json``. Outcome (8 seeds,
2 GATv2 layers): no criterion beat ``always_gru`` (every one a tie; ``always_snapshot`` worse),
so the protocol now always uses the GRU and the selection is the opt-in ``--encoder-selection``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gnn_market import __version__  # noqa: E402
from gnn_market.pipeline import load_market  # noqa: E402
from gnn_market.sources import open_store  # noqa: E402
from gnn_market.training import TrainConfig, candidate_hours, make_splits, resolve_device, run_fold, score  # noqa: E402
from gnn_market.training.calibrate import calibrate_fold  # noqa: E402
from gnn_market.training.folds import choose_encoder, validation_scores  # noqa: E402

SEEDS = list(range(60, 68))
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
LINES = LOCAL_RESULTS / "encoder_selection_check.jsonl"
RESULTS = LOCAL_RESULTS / "encoder_selection_check.json"
#: Row of each encoder's network in a fold run without selection (see gnn_market/training/folds.py).
ROWS = {"temporal": "gnn", "snapshot": "gnn_no_temporal"}
#: criterion -> (TrainConfig.encoder_criterion, margin); None = a fixed encoder.
CRITERIA: dict[str, tuple[str, float] | str] = {
    "always_gru": "temporal",
    "always_snapshot": "snapshot",
    "val_macro_f1": ("macro_f1", 0.0),
    "val_log_loss": ("log_loss", 0.0),
    "val_macro_f1_margin_0.005": ("macro_f1", 0.005),
    "val_macro_f1_margin_0.01": ("macro_f1", 0.01),
}


def run_seed(seed: int, threads: int) -> dict:
    """Train both encoders on market seed ``seed``; their validation and test scores."""
    cfg = TrainConfig(data="synthetic", seed=seed, progress=False, threads=threads, baselines=False,
                      select_encoder=False, ablation=True, temporal_ablation=True)
    torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    market = load_market(open_store(None, cfg.data, seed=cfg.seed), cfg.market, threshold=cfg.threshold)
    split = make_splits(candidate_hours(market, cfg.window), cfg)[0]
    result = run_fold(market, split, cfg, resolve_device(cfg.device))
    test = score([calibrate_fold(result).fold], "test")
    row = {"seed": seed, "training_seed": cfg.seed, "split": split.describe(market.times),
           "config": {"layers": cfg.layers, "lookback": cfg.lookback, "epochs": cfg.epochs, "hidden": cfg.hidden},
           "seconds": time.perf_counter() - started, "load_average_1m": os.getloadavg()[0]}
    for encoder, name in ROWS.items():
        val = validation_scores(result.histories[name], result.val[name][1], result.y_val)
        row[encoder] = {"val_macro_f1": val["macro_f1"], "val_log_loss": val["log_loss"],
                        "test_macro_f1": test[name]["macro_f1"], "test_log_loss": test[name]["log_loss"],
                        "best_epoch": result.histories[name].best_epoch}
    row["no_edges_test_macro_f1"] = test["gnn_no_edges"]["macro_f1"]
    return row


def pick(row: dict, criterion: tuple[str, float] | str) -> str:
    """The encoder ``criterion`` picks on ``row``'s validation scores (never its test scores)."""
    if isinstance(criterion, str):
        return criterion
    val = {enc: {"macro_f1": row[enc]["val_macro_f1"], "log_loss": row[enc]["val_log_loss"]} for enc in ROWS}
    return choose_encoder(val["temporal"], val["snapshot"], *criterion)


def summarise(rows: list[dict]) -> dict:
    """Per criterion: picks, mean test scores, paired difference from always_gru (mean, se, verdict)."""
    base = {m: np.array([r["temporal"][f"test_{m}"] for r in rows]) for m in ("macro_f1", "log_loss")}
    out = {}
    for name, criterion in CRITERIA.items():
        picks = [pick(r, criterion) for r in rows]
        entry: dict = {"picks": dict(zip([r["seed"] for r in rows], picks)),
                       "snapshot_picks": picks.count("snapshot")}
        for metric, better in (("macro_f1", 1.0), ("log_loss", -1.0)):
            got = np.array([r[enc][f"test_{metric}"] for r, enc in zip(rows, picks)])
            diff = got - base[metric]
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
            mean = float(diff.mean())
            verdict = ("tie" if not se > 0 or abs(mean) <= 2 * se
                       else ("better" if better * mean > 0 else "worse"))
            entry[metric] = {"mean": float(got.mean()), "minus_always_gru": mean, "se": se,
                             "verdict_vs_always_gru": verdict if name != "always_gru" else "-"}
        out[name] = entry
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lines", type=Path, default=LINES, help="one JSON line per finished market seed (resumable)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    args.lines.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.lines.exists():
        done = {r["seed"]: r for r in map(json.loads, args.lines.read_text().splitlines()) if r}
    for seed in args.seeds:
        if seed in done:
            continue
        row = run_seed(seed, args.threads)
        row["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        with args.lines.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done[seed] = row
        print(f"seed {seed}: GRU test macro-F1 {row['temporal']['test_macro_f1']:.4f}, snapshot "
              f"{row['snapshot']['test_macro_f1']:.4f} ({row['seconds']:.0f} s)", flush=True)
    rows = [done[s] for s in args.seeds]
    summary = summarise(rows)
    for name, entry in summary.items():
        f1 = entry["macro_f1"]
        print(f"{name:>28}: snapshot x{entry['snapshot_picks']}, test macro-F1 {f1['mean']:.4f}, "
              f"minus always_gru {f1['minus_always_gru']:+.4f} (se {f1['se']:.4f}) {f1['verdict_vs_always_gru']}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "command": "python benchmarks/encoder_selection_check.py --seeds " + " ".join(map(str, args.seeds)),
        "written_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                    "processor": platform.processor(), "threads": args.threads,
                                                    "load_average_1m_at_write": os.getloadavg()[0]},
        "held_out_market_seeds": args.seeds,
        "judged_on": "test rows of the held-out market seeds (used for nothing else); picks use validation only",
        "criteria": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
