"""Benchmark: a 200-perp backfill into an empty store, and the hourly refresh on 1-month, 1-year, 3-year stores.

Each run talks to the fake Binance server of ``tests/fake_binance.py`` in its own
process (50 ms added latency per request by default) and downloads klines, one
top-20 book snapshot and funding of every perp:

* ``backfill``: ``--backfill-hours`` (200) hours of ``--symbols`` (200) perps into an empty store;
* ``refresh``: the last ``--refresh-hours`` (3) hours (one ``collect --once`` cycle) on a store
  that already holds ``--histories`` hours per symbol (default 720, 8760, 26280: 1 month,
  1 year, 3 years of klines, one book snapshot per hour and funding every 8 h, written
  straight through the :class:`~gnn_market.store.Store` API). Every run starts from a
  hard-linked copy of the seeded store (the store replaces files, never edits them in place).

Paths compared, on the same server and store:

* ``pipeline``: :func:`gnn_market.refresh_pipeline.refresh`, what ``backfill``/``collect`` run
  (downloads on threads, parsing and store writes in a warm write pool, as in a running ``collect``);
* ``threads``: :func:`gnn_market.data.refresh_reference` on the same thread count (all in one process, as the
  previous release; since the MarketSource seam it runs the generic :mod:`gnn_market.source_sync` path);
* ``sequential``: the reference with one thread, the naive sequential refresh (one run: it is slow).

Printed per run: median wall time (and range over ``--repeat`` runs), CPU seconds of this
process plus the write processes (and of this process alone: the part bound to one GIL),
requests and the peak used weight per minute *as the server counts it* against its limit.
The store layout is a parameter: :data:`LAYOUTS` maps a name to a function that opens a
store of that layout at a path (``--layouts`` picks them); each layout is one more set of runs. Writes ``benchmarks/results/local/refresh.json``
(ignored by git; ``--out benchmarks/results/refresh.json`` updates the published figures).

    python benchmarks/bench_refresh.py [--symbols 200] [--latency 0.05] [--repeat 3] [--layouts current]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/<name>.json``) explicitly to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import multiprocessing as mp  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import requests  # noqa: E402

from gnn_market.binance import PERP, BinanceClient, ClientConfig  # noqa: E402
from gnn_market.data import refresh_reference  # noqa: E402
from gnn_market.refresh_pipeline import refresh  # noqa: E402
from gnn_market.refresh_writes import shared_pool  # noqa: E402
from gnn_market.store import Store  # noqa: E402
from gnn_market.timeutil import HOUR_MS  # noqa: E402

from fake_binance import _letters, serve_forever_in_process  # noqa: E402

NOW = 1_709_294_430_000  # fixed server clock: 2024-03-01 12:00:30 UTC
FUNDING_MS = 8 * HOUR_MS

def _per_symbol_store(path: Path):
    """The previous release's one-file-per-symbol store (its own class, loaded from git)."""
    from old_store_layout import previous_release_store

    cls = previous_release_store()
    if cls is None:
        raise SystemExit("the per-symbol layout needs git and commit 03b4107 (tests/old_store_layout.py)")
    return cls(path)


#: Store layouts benchmarked, by name: a function that opens (creating on first write) a store of that
#: layout at a path. ``monthly`` is the store (one file per kind, market, symbol and UTC month);
#: ``per-symbol`` the previous release's layout, written by that release's own Store class.
LAYOUTS: dict[str, Callable[[Path], Store]] = {"monthly": Store, "per-symbol": _per_symbol_store}
#: The process-pool pipeline writes through ``gnn_market.store.Store`` in its workers, so it runs on the
#: monthly layout only; the per-symbol layout is timed through the threads path (the previous release's).
PIPELINE_LAYOUTS = ("monthly",)


@dataclass(frozen=True)
class Setup:
    """One benchmark's sizes."""

    symbols: int
    latency: float
    workers: int
    backfill_hours: int
    refresh_hours: int


def perp_symbols(n: int) -> list[str]:
    return [f"C{_letters(i)}USDT" for i in range(n)]


# --------------------------------------------------------------------------- seeding
def history_frames(hours: int, end_ms: int, price: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthetic klines, hourly book snapshots (30 s before each close) and funding ending at ``end_ms``.

    Valid by every store rule; funding holds the settlements up to ``end_ms`` and, last, the live
    estimate of the next one (what a collector leaves), so a refresh asks no funding history.
    """
    h = np.arange(end_ms // HOUR_MS - hours + 1, end_ms // HOUR_MS + 1)
    mid = price * (1 + 0.05 * np.sin(h / 17.0))
    close = mid * (1 + 0.001 * np.sin(h / 3.0))
    vol = 1000.0 + h % 977
    index = pd.DatetimeIndex(h * HOUR_MS * 1_000_000, tz="UTC", name="open_time")
    klines = pd.DataFrame({
        "open": mid, "high": np.maximum(mid, close) * 1.002, "low": np.minimum(mid, close) * 0.998, "close": close,
        "volume": vol, "quote_volume": vol * mid, "trades": pd.array(100 + h % 500, dtype="Int64"),
        "taker_buy_volume": vol / 2, "taker_buy_quote_volume": vol * mid / 2}, index=index)
    stamps = (h * HOUR_MS + HOUR_MS - 30_000) * 1_000_000
    book = pd.DataFrame({
        "best_bid": close * 0.9999, "best_ask": close * 1.0001, "best_bid_qty": 1.0, "best_ask_qty": 2.0,
        "bid_qty": 210.0, "ask_qty": 230.0, "bid_notional": 210.0 * close, "ask_notional": 230.0 * close,
        "spread": close * 0.0002, "levels": np.full(len(h), 20, dtype="int64")},
        index=pd.DatetimeIndex(stamps, tz="UTC", name="snapshot_time"))
    settled = np.arange(-(-h[0] * HOUR_MS // FUNDING_MS), end_ms // FUNDING_MS + 2) * FUNDING_MS
    rates = 1e-4 * np.sin(settled / FUNDING_MS / 5.0)
    funding = pd.DataFrame({"funding_rate": rates, "mark_price": price},
                           index=pd.DatetimeIndex(settled * 1_000_000, tz="UTC", name="funding_time"))
    return klines, book, funding


def seed_store(store: Store, symbols: list[str], hours: int, end_ms: int) -> None:
    """``hours`` of history per perp, written through the Store API (no server)."""
    for i, sym in enumerate(symbols):
        klines, book, funding = history_frames(hours, end_ms, price=1.0 + i)
        store.write_klines(sym, klines, PERP)
        store.write_book(sym, book, PERP)
        store.write_funding(sym, funding)


def linked_copy(src: Path, dst: Path) -> Path:
    """A copy of a store made of hard links: instant, and safe because the store replaces files, never edits them."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


# --------------------------------------------------------------------------- one run
def _cpu(mode: str) -> tuple[float, float]:
    """CPU seconds so far of this process (downloads, and every write on the reference paths) and of the write pool."""
    return time.process_time(), shared_pool().cpu_seconds() if mode == "pipeline" else 0.0


def run_once(setup: Setup, store: Store, mode: str, hours: int, listed_hours: int) -> dict:
    """One pass of ``mode`` against a fresh server process (it does not share our GIL)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=serve_forever_in_process,
                       args=(queue, setup.symbols, NOW, setup.latency, listed_hours), daemon=True)
    proc.start()
    try:
        url = queue.get(timeout=120)
        workers = 1 if mode == "sequential" else setup.workers
        client = BinanceClient(ClientConfig(spot_url=url, futures_url=url, max_workers=workers))
        plan = {PERP: perp_symbols(setup.symbols)}
        path = refresh if mode == "pipeline" else refresh_reference
        t0, (main0, pool0) = time.perf_counter(), _cpu(mode)
        report = path(client, store, plan, hours=hours)
        wall, (main1, pool1) = time.perf_counter() - t0, _cpu(mode)
        assert not report.errors, report.errors
        stats = requests.get(f"{url}/_stats", timeout=10).json()
    finally:
        proc.kill()
        proc.join()
    return {"mode": mode, "workers": workers, "wall_s": round(wall, 3),
            "cpu_s": round(main1 - main0 + pool1 - pool0, 3), "main_cpu_s": round(main1 - main0, 3),
            "requests": stats["requests"], "http_429": stats["http_429"],
            "peak_weight": stats["peak_weight_perp"], "limit": stats["limit_perp"],
            "new_candles": report.total("klines"), "book_rows": report.total("book"),
            "funding_rows": report.total("funding")}


def summarise(runs: list[dict]) -> dict:
    walls = sorted(r["wall_s"] for r in runs)
    cpus = sorted(r["cpu_s"] for r in runs)
    mains = sorted(r["main_cpu_s"] for r in runs)
    return {**runs[0], "wall_s": walls[len(walls) // 2], "wall_min_s": walls[0], "wall_max_s": walls[-1],
            "cpu_s": cpus[len(cpus) // 2], "main_cpu_s": mains[len(mains) // 2], "runs": len(runs),
            "peak_weight": max(r["peak_weight"] for r in runs),
            "http_429": sum(r["http_429"] for r in runs)}


# --------------------------------------------------------------------------- scenarios
def bench_backfill(setup: Setup, layout: str, tmp: Path, modes: dict[str, int]) -> dict[str, dict]:
    out = {}
    for mode, repeat in modes.items():
        runs = [run_once(setup, LAYOUTS[layout](tmp / f"backfill-{layout}-{mode}-{i}"), mode,
                         setup.backfill_hours, setup.backfill_hours + 24) for i in range(repeat)]
        out[mode] = summarise(runs)
    return out


def bench_refresh(setup: Setup, layout: str, tmp: Path, history: int, modes: dict[str, int]) -> dict[str, dict]:
    seed = tmp / f"seed-{layout}-{history}"
    end_ms = (NOW // HOUR_MS - 1 - setup.refresh_hours) * HOUR_MS  # the refresh fetches the hours after it
    t0 = time.perf_counter()
    seed_store(LAYOUTS[layout](seed), perp_symbols(setup.symbols), history, end_ms)
    print(f"  seeded {history} h x {setup.symbols} perps ({layout}) in {time.perf_counter() - t0:.1f} s", flush=True)
    out = {}
    for mode, repeat in modes.items():
        runs = [run_once(setup, LAYOUTS[layout](linked_copy(seed, tmp / f"{seed.name}-{mode}-{i}")), mode,
                         24, history + 24) for i in range(repeat)]  # hours=24: what `collect` passes
        out[mode] = summarise(runs)
    shutil.rmtree(seed, ignore_errors=True)
    return out


def warm_pool() -> float:
    """Start the write processes as a running ``collect`` has them; returns the seconds it took."""
    t0 = time.perf_counter()
    pool = shared_pool()
    with ThreadPoolExecutor(pool.config.processes) as threads:  # as many tasks at once as processes: all start
        list(threads.map(lambda _: pool.run(time.sleep, 0.2), range(pool.config.processes)))
    return time.perf_counter() - t0


def print_table(rows: list[dict]) -> None:
    cols = [("scenario", 10), ("history", 9), ("layout", 12), ("path", 15), ("wall s", 8), ("range s", 13),
            ("CPU s", 7), ("main CPU s", 11), ("requests", 9), ("weight/limit", 13), ("429", 4), ("+candles", 9)]
    print("".join(f"{name:>{w}}" for name, w in cols))
    for r in rows:
        cells = [r["scenario"], r["history"], r["layout"], f"{r['mode']}({r['workers']})", f"{r['wall_s']:.2f}",
                 f"{r['wall_min_s']:.2f}-{r['wall_max_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['main_cpu_s']:.2f}", r["requests"],
                 f"{r['peak_weight']}/{r['limit']}", r["http_429"], r["new_candles"]]
        print("".join(f"{c!s:>{w}}" for c, (_, w) in zip(cells, cols)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=ClientConfig.max_workers, help="download threads")
    ap.add_argument("--repeat", type=int, default=3, help="runs per path; the median is reported")
    ap.add_argument("--backfill-hours", type=int, default=200)
    ap.add_argument("--refresh-hours", type=int, default=3)
    ap.add_argument("--histories", default="720,8760,26280", help="hours stored before the refresh, comma-separated")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"store layouts ({', '.join(LAYOUTS)})")
    ap.add_argument("--no-sequential", action="store_true", help="skip the (slow) sequential reference")
    ap.add_argument("--out", default=str(LOCAL_RESULTS / "refresh.json"), help="JSON output")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup = Setup(args.symbols, args.latency, args.workers, args.backfill_hours, args.refresh_hours)
    modes = {"pipeline": args.repeat, "threads": args.repeat, **({} if args.no_sequential else {"sequential": 1})}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    pool_start_s = warm_pool()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    try:
        for layout in args.layouts.split(","):
            own = modes if layout in PIPELINE_LAYOUTS else {k: v for k, v in modes.items() if k != "pipeline"}
            results = {("backfill", "empty"): bench_backfill(setup, layout, tmp, own)}
            for history in (int(h) for h in args.histories.split(",")):
                results[("refresh", f"{history} h")] = bench_refresh(setup, layout, tmp, history, own)
            rows += [{"scenario": s, "history": h, "layout": layout, **row}
                     for (s, h), by_mode in results.items() for row in by_mode.values()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.symbols} perps, {args.latency * 1000:.0f} ms latency, backfill {args.backfill_hours} h, refresh "
          f"{args.refresh_hours} h; median of {args.repeat} runs (sequential: 1); CPU = this process + write "
          f"processes, main CPU = this process alone (the GIL-bound part); weight = peak per minute as the server counts it; load before: {load}")
    print_table(rows)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"write pool start (once per process, not in the runs above): {pool_start_s:.2f} s; load after: {load_after}")
    out = {"symbols": args.symbols, "latency_s": args.latency, "repeat": args.repeat, "workers": args.workers,
           "backfill_hours": args.backfill_hours, "refresh_hours": args.refresh_hours,
           "write_processes": shared_pool().config.processes, "pool_start_s": round(pool_start_s, 3),
           "loadavg_before": load, "loadavg_after": load_after, "python": platform.python_version(), "machine": platform.machine(),
           "cpus": os.cpu_count(), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {args.out}")
    return out


if __name__ == "__main__":
    main()
