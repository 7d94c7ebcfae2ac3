"""Benchmark: ``python -m gnn_market.diagnose`` on a 450-pair market over ~6 months, against a per-hour loop.

Writes a simulated market (``SyntheticConfig(n_symbols=450, hours=4380)``, spot
candles only, planted lead-lag structure) into a temporary store, then, each in
its own subprocess (so each peak RSS is its own):

* **fast**: the command's three stages on that store -- load the panel, every
  signal at every hour (:func:`gnn_market.diagnose.compute_signals`), the Rank
  ICs, incremental Rank ICs and 2,000-replicate block bootstraps
  (:func:`gnn_market.diagnose.evaluate`);
* **naive reference**: per decision hour, pandas pairwise ``DataFrame.corr``
  on the 100-hour window and on the stacked ``[r_{s-1}, r_s]`` window (lead-lag),
  the signals from those matrices, and one ``scipy.stats.spearmanr`` per signal
  and hour. It runs on ``--naive-hours`` evenly spread hours and is
  extrapolated linearly to all hours (marked in the table); loading the store
  is shared (same code), its bootstrap is not counted. Its signals are compared with the
  fast path's on those hours (``max_abs_diff``).

Prints a table and writes ``benchmarks/results/local/diagnose.json`` (ignored by
git; ``--out benchmarks/results/diagnose.json`` updates the published figure).

    python benchmarks/bench_diagnose.py [--symbols 450] [--hours 4380] [--naive-hours 24]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gnn_market import diagnose as dg  # noqa: E402
from gnn_market.feature_generator import log_returns  # noqa: E402
from gnn_market.store import Store  # noqa: E402
from gnn_market.synthetic import SyntheticConfig, simulate_market  # noqa: E402

LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "diagnose.json"


def write_store(path: Path, symbols: int, hours: int, seed: int) -> None:
    """The simulated market's spot candles as a store (perp, funding and book are not read by the check)."""
    config = SyntheticConfig(n_symbols=symbols, hours=hours, seed=seed, n_sectors=15, with_funding=False,
                             with_book=False)
    market = simulate_market(config)
    store = Store(path)
    for sym, df in market.klines["spot"].items():
        store.write_klines(sym, df, market="spot")


def naive_hours(hours: int, count: int) -> np.ndarray:
    """Evenly spread decision hours after the warm-up (the same in both children)."""
    return np.unique(np.linspace(dg.EDGE_WINDOW + 30, hours - 2, count).astype(int))


def fast(store: str, sample: np.ndarray) -> dict:
    cfg = dg.DiagnoseConfig(store=store, progress=False)
    wall, cpu = [time.perf_counter()], [time.process_time()]
    panel = dg.load_diagnose_panel(cfg)
    wall.append(time.perf_counter()), cpu.append(time.process_time())
    signals = dg.compute_signals(panel, cfg)
    wall.append(time.perf_counter()), cpu.append(time.process_time())
    report = dg.evaluate(signals, cfg)
    wall.append(time.perf_counter()), cpu.append(time.process_time())
    stages = ("load", "signals", "evaluate")
    out = {f"{s}_s": wall[i + 1] - wall[i] for i, s in enumerate(stages)}
    out.update({f"{s}_cpu_s": cpu[i + 1] - cpu[i] for i, s in enumerate(stages)})
    out.update(total_s=wall[-1] - wall[0], total_cpu_s=cpu[-1] - cpu[0], hours=report["hours"],
               pairs=report["pairs"], primary=report["primary"],
               lead_lag_rank_ic=report["signals"]["lead_lag"]["rank_ic"]["mean"],
               sample={name: signals.values[name][sample].tolist() for name in dg.GRAPH_SIGNALS})
    return out


def naive_signals(graph_r: np.ndarray, now: np.ndarray, t: int) -> dict[str, np.ndarray]:
    """The three graph signals at hour ``t`` from pandas pairwise correlations of this hour's windows."""
    n = graph_r.shape[1]
    win = pd.DataFrame(graph_r[max(0, t - 99): t + 1])
    corr = win.corr(min_periods=50).fillna(0.0).to_numpy().copy()
    stacked = pd.DataFrame(np.hstack([win.shift(1).to_numpy()[1:], win.to_numpy()[1:]]))
    lag = stacked.corr(min_periods=50).fillna(0.0).to_numpy()[:n, n:].copy()  # [j, i] = corr(r_j[s-1], r_i[s])
    sd = np.where(win.count().to_numpy() >= 50, win.std(ddof=0).to_numpy(), 0.0)
    np.fill_diagonal(corr, 0.0)
    np.fill_diagonal(lag, 0.0)
    x, present = np.nan_to_num(now[t]), np.isfinite(now[t]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.abs(corr) @ present
        nbr = (corr @ x) / den
        beta = ((corr * corr) @ (sd * present)) / den / sd
        lead = (lag.T @ x) / (np.abs(lag).T @ present)
    return {"nbr_return": nbr, "nbr_residual": nbr - beta * now[t], "lead_lag": lead}


def naive(store: str, sample: np.ndarray) -> dict:
    panel = dg.load_diagnose_panel(dg.DiagnoseConfig(store=store, progress=False))  # not timed: same as fast
    graph_r, now = log_returns(panel), dg.real_log_returns(panel)
    label = np.vstack([now[1:], np.full((1, now.shape[1]), np.nan)])
    kept = {}
    t0 = time.perf_counter()
    for t in sample:
        sig = naive_signals(graph_r, now, int(t))
        sig.update(own_1h=now[t], own_reversal=-now[t])
        for values in sig.values():
            ok = np.isfinite(values) & np.isfinite(label[t])
            spearmanr(values[ok], label[t][ok])
        kept[int(t)] = sig
    measured = time.perf_counter() - t0
    T = len(panel.times)
    return {"signals_measured_s": measured, "measured_hours": int(len(sample)),
            "signals_s": measured * T / len(sample), "hours": T,
            "sample": {name: [kept[int(t)][name].tolist() for t in sample] for name in dg.GRAPH_SIGNALS}}


def child(part: str, store: str, hours: int, count: int) -> dict:
    sample = naive_hours(hours, count)
    cpu0 = time.process_time()
    out = fast(store, sample) if part == "fast" else naive(store, sample)
    out["cpu_s"] = time.process_time() - cpu0
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(part: str, store: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", part, "--store", store, "--hours", str(args.hours),
           "--naive-hours", str(args.naive_hours)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=450)
    parser.add_argument("--hours", type=int, default=4380, help="about 6 months")
    parser.add_argument("--naive-hours", type=int, default=24, help="hours the naive loop really runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["fast", "naive"])
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.store, args.hours, args.naive_hours)))
        return 0
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_diagnose.") as tmp:
        t0 = time.perf_counter()
        write_store(Path(tmp) / "store", args.symbols, args.hours, args.seed)
        written = time.perf_counter() - t0
        f = run_child("fast", str(Path(tmp) / "store"), args)
        n = run_child("naive", str(Path(tmp) / "store"), args)
    diff = max(float(np.nanmax(np.abs(np.array(f["sample"][k], float) - np.array(n["sample"][k], float))))
               for k in dg.GRAPH_SIGNALS)
    same_nan = all(np.array_equal(np.isnan(np.array(f["sample"][k], float)), np.isnan(np.array(n["sample"][k], float)))
                   for k in dg.GRAPH_SIGNALS)
    fast_compute = f["signals_s"] + f["evaluate_s"]
    rows = [("load the store", f["load_s"], f["load_s"]),
            ("signals + Rank ICs", fast_compute, n["signals_s"]),
            ("total", f["total_s"], f["load_s"] + n["signals_s"])]
    print(f"{args.symbols} pairs x {args.hours} hours (store written in {written:.0f} s; load average "
          f"{load0:.1f} at start)")
    print(f"{'stage':<24}{'diagnose':>11}{'naive per-hour loop':>22}{'speed-up':>10}")
    print("-" * 67)
    for name, a, b in rows:
        extrapolated = "*" if name != "load the store" else " "
        print(f"{name:<24}{a:>9.1f} s{b:>19.1f} s{extrapolated}{b / a:>9.0f}x")
    print(f"diagnose stages: signals {f['signals_s']:.1f} s, Rank ICs + incremental + 2,000-replicate bootstrap "
          f"{f['evaluate_s']:.1f} s; CPU {f['total_cpu_s']:.1f} s")
    print(f"peak RSS: diagnose {f['maxrss_mb']:.0f} MB, naive {n['maxrss_mb']:.0f} MB; * = the naive loop measured on "
          f"{n['measured_hours']} hours ({n['signals_measured_s']:.2f} s) and extrapolated, its bootstrap not counted; "
          f"max |signal difference| on those hours {diff:.2e} (same undefined entries: {same_nan})")
    print(f"primary: {f['primary']['comparison']} {f['primary']['mean']:+.4f} "
          f"[{f['primary']['ci_low']:+.4f}, {f['primary']['ci_high']:+.4f}] ({f['primary']['verdict']})")
    for d in (f, n):
        d.pop("sample")
    result = {"symbols": args.symbols, "hours": args.hours, "seed": args.seed, "store_write_s": written,
              "fast": f, "naive": n, "speedup_signals": n["signals_s"] / f["signals_s"],
              "max_abs_diff": diff, "same_undefined": same_nan, "loadavg_at_start": load0,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
