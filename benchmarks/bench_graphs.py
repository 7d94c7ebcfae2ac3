"""Benchmark: features + labels + every hourly correlation edge set for a year x 300 pairs.

Runs the vectorised pipeline (``compute_features``, ``make_labels``,
``iter_edge_sets`` over all 8,760 hours, dense graphs) and a naive reference
(per-symbol pandas rolling windows, per-hour ``numpy.corrcoef`` / pandas
pairwise ``corr``) on the same random-walk panel, each in its own subprocess
so peak memory (``ru_maxrss``, the whole process: imports, generated data
and the pipeline) is per pipeline. (tracemalloc is not used: it doubles the
run time of the per-hour loops.) The naive correlation loop runs
on an evenly spread subset of hours and is extrapolated linearly to the year
(marked in the table). Prints a table and writes ``benchmarks/results/local/graphs.json`` (ignored by git;
``--out benchmarks/results/graphs.json`` updates the published figures).

    python benchmarks/bench_graphs.py [--hours 8760] [--symbols 300] [--naive-hours 300]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gnn_market.feature_generator import (  # noqa: E402
    compute_features,
    log_returns,  # noqa: E402
    make_labels,
)
from gnn_market.graph_builder import GraphConfig, iter_edge_sets  # noqa: E402
from gnn_market.panel import Panel  # noqa: E402

#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/<name>.json``) explicitly to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
RESULTS = LOCAL_RESULTS / "graphs.json"


def random_panel(hours: int, symbols: int, seed: int = 0) -> Panel:
    """Correlated random walks with late listings, early delistings and short/long gaps."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2023-01-01", periods=hours, freq="h", tz="UTC", name="time")
    market = rng.normal(0, 0.004, (hours, 1))
    r = market * rng.uniform(0.5, 1.5, symbols) + rng.normal(0, 0.008, (hours, symbols))
    close = 10 ** rng.uniform(-3, 4, symbols) * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    wick = np.exp(np.abs(rng.normal(0, 0.003, (hours, symbols))))
    high, low = np.maximum(open_, close) * wick, np.minimum(open_, close) / wick
    volume = rng.gamma(2.0, 100.0, (hours, symbols))
    mask = np.ones((hours, symbols), bool)
    for n in range(symbols // 15):  # ~7% listed during the year, ~3% delisted
        mask[: rng.integers(100, hours - 500), n] = False
    for n in range(symbols - symbols // 30, symbols):
        mask[rng.integers(500, hours - 100):, n] = False
    for _ in range(symbols // 10):  # gaps of 1..8 hours
        t, n = rng.integers(0, hours - 10), rng.integers(0, symbols)
        mask[t: t + rng.integers(1, 9), n] = False
    arrays = {k: np.where(mask, v, np.nan) for k, v in
              dict(open=open_, high=high, low=low, close=close, volume=volume).items()}
    nan = np.full((hours, symbols), np.nan)
    no = np.zeros((hours, symbols), bool)
    return Panel(times=times, symbols=[f"S{n:03d}USDT" for n in range(symbols)], market="spot", **arrays,
                 quote_volume=nan, trades=nan, mask=mask, filled=no, funding_rate=nan, has_funding=no,
                 best_bid=nan, best_ask=nan, bid_qty=nan, ask_qty=nan, has_book=no)


# ---------------------------------------------------------------- pipelines
def fast_pipeline(panel: Panel) -> dict:
    wall, cpu = [time.perf_counter()], [time.process_time()]

    def lap() -> None:
        wall.append(time.perf_counter())
        cpu.append(time.process_time())

    feats = compute_features(panel)
    lap()
    labels = make_labels(panel)
    lap()
    r = log_returns(panel)
    n_edges, n_sets, check = 0, 0, 0.0
    for t, _edge_index, edge_attr in iter_edge_sets(r, feats.valid, 0, len(panel.times), GraphConfig()):
        n_edges += edge_attr.size
        n_sets += 1
        if t % 997 == 0:
            check += float(np.abs(edge_attr).sum())
    lap()
    stages = ("features", "labels", "edges")
    out = {f"{name}_s": wall[i + 1] - wall[i] for i, name in enumerate(stages)}
    out.update({f"{name}_cpu_s": cpu[i + 1] - cpu[i] for i, name in enumerate(stages)})
    out.update({"total_s": wall[-1] - wall[0], "total_cpu_s": cpu[-1] - cpu[0], "edge_sets": n_sets,
                "edges": n_edges, "checksum": check, "balance": labels.balance()})
    return out


def naive_rsi(close: pd.Series, period: int = 14) -> pd.Series:
    d = close.diff()
    gain = d.clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
    loss = (-d).clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
    return 100 * gain / (gain + loss)


def naive_features(panel: Panel) -> None:
    """Per-symbol pandas rolling windows (the straightforward way)."""
    for n in range(len(panel.symbols)):
        close = pd.Series(panel.close[:, n], index=panel.times)
        vol = pd.Series(panel.volume[:, n], index=panel.times)
        logc = np.log(close)
        out = pd.DataFrame(index=panel.times)
        for h in (1, 4, 12, 24):
            out[f"ret_{h}h"] = logc - logc.shift(h)
        out["vol_24h"] = logc.diff().rolling(24).std()
        out["rsi_14"] = naive_rsi(close)
        out["volume_ratio"] = vol / vol.rolling(24).mean()
        eta = (np.log(pd.Series(panel.high[:, n])) + np.log(pd.Series(panel.low[:, n]))) / 2
        c = logc.reset_index(drop=True)
        out["spread_ar"] = np.sqrt((4 * (c.shift(1) - eta.shift(1)) * (c.shift(1) - eta)).rolling(24).mean()
                                   .clip(lower=0)).to_numpy()
        out.fillna(0.0)


def naive_labels(panel: Panel) -> None:
    for n in range(len(panel.symbols)):
        close = pd.Series(panel.close[:, n])
        r = close.shift(-1) / close - 1
        np.where(r > 0.01, 2, np.where(r < -0.01, 0, 1))


def naive_edges(r: np.ndarray, valid: np.ndarray, hours: np.ndarray) -> tuple[float, dict[int, np.ndarray]]:
    """Per hour: numpy.corrcoef on the window (pandas pairwise corr if it has holes), then edges."""
    kept = {}
    t0 = time.perf_counter()
    for t in hours:
        window = r[max(0, t - 99): t + 1]
        cols = np.flatnonzero(valid[t])
        sub = window[:, cols]
        if np.isfinite(sub).all():
            corr = np.corrcoef(sub.T)
        else:
            corr = pd.DataFrame(sub).corr(min_periods=50).to_numpy()
        corr = np.nan_to_num(corr)
        src, dst = np.nonzero(~np.eye(len(cols), dtype=bool))
        attr = corr[src, dst].astype(np.float32)
        kept[int(t)] = attr
    return time.perf_counter() - t0, kept


def child(part: str, hours: int, symbols: int, naive_hours: int) -> dict:
    panel = random_panel(hours, symbols)
    cpu0 = time.process_time()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports + generated panel
    if part == "fast":
        out = fast_pipeline(panel)
    else:
        t0 = time.perf_counter()
        naive_features(panel)
        t1 = time.perf_counter()
        naive_labels(panel)
        t2 = time.perf_counter()
        feats = compute_features(panel)  # only for the node sets (not timed)
        r = log_returns(panel)
        sub = np.unique(np.linspace(0, hours - 1, naive_hours).astype(int))
        edges_s, kept = naive_edges(r, feats.valid, sub)
        fast = {t: a.copy() for t, _, a in iter_edge_sets(r, feats.valid, 0, hours) if t in kept}
        diff = max(float(np.abs(fast[t] - kept[t]).max(initial=0.0)) for t in kept)
        edges_year = edges_s * hours / len(sub)
        out = {"features_s": t1 - t0, "labels_s": t2 - t1, "edges_s": edges_year,
               "edges_measured_s": edges_s, "edges_measured_hours": int(len(sub)),
               "total_s": (t1 - t0) + (t2 - t1) + edges_year, "max_abs_diff_vs_fast": diff}
    out["cpu_s"] = time.process_time() - cpu0  # CPU time of the timed part (less sensitive to other load)
    out["rss_before_mb"] = rss_before
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(part: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", part, "--hours", str(args.hours), "--symbols", str(args.symbols),
           "--naive-hours", str(args.naive_hours)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--naive-hours", type=int, default=300, help="hours the naive edge loop really runs")
    parser.add_argument("--child", choices=["fast", "naive"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.hours, args.symbols, args.naive_hours)))
        return 0
    fast, naive = run_child("fast", args), run_child("naive", args)
    rows = [("features", "features_s"), ("labels", "labels_s"), ("edges (all hours, dense)", "edges_s"),
            ("total", "total_s")]
    print(f"graphs benchmark: {args.hours} hours x {args.symbols} symbols, dense edges "
          f"({fast['edges']:,} edges in {fast['edge_sets']:,} hourly sets), {os.cpu_count()} CPUs")
    print(f"{'stage':<28}{'vectorised s':>14}{'naive s':>12}{'speed-up':>10}")
    for label, key in rows:
        star = " *" if key in ("edges_s", "total_s") else ""
        print(f"{label:<28}{fast[key]:>14.2f}{naive[key]:>12.2f}{naive[key] / max(fast[key], 1e-9):>9.0f}x{star}")
    print(f"{'CPU s, vectorised: features / labels / edges / total':<28} {fast['features_cpu_s']:.2f} / "
          f"{fast['labels_cpu_s']:.2f} / {fast['edges_cpu_s']:.2f} / {fast['total_cpu_s']:.2f} "
          f"(naive child CPU {naive['cpu_s']:.2f} s with its edges on the subset only)")
    print(f"{'peak RSS (process) MB':<28}{fast['maxrss_mb']:>14.0f}{naive['maxrss_mb']:>12.0f}")
    print(f"{'  of which before the run MB':<28}{fast['rss_before_mb']:>14.0f}{naive['rss_before_mb']:>12.0f}"
          "   (imports + generated panel)")
    print(f"* naive edges measured on {naive['edges_measured_hours']} evenly spread hours "
          f"({naive['edges_measured_s']:.2f} s) and extrapolated linearly to {args.hours}; "
          f"max |corr difference| vs vectorised on those hours: {naive['max_abs_diff_vs_fast']:.1e}")
    targets = {"total_under_10s": fast["total_s"] < 10, "peak_rss_under_2gb": fast["maxrss_mb"] < 2048,
               "speedup_at_least_20x": naive["total_s"] / fast["total_s"] >= 20}
    print("targets:", targets)
    print(f"load average during the run: {os.getloadavg()}")
    result = {"hours": args.hours, "load_average_after": os.getloadavg(), "symbols": args.symbols, "cpus": os.cpu_count(),
              "python": platform.python_version(), "numpy": np.__version__, "vectorised": fast, "naive": naive,
              "speedup_total": naive["total_s"] / fast["total_s"], "targets": targets,
              "note": "naive edges extrapolated linearly from the measured subset of hours"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
