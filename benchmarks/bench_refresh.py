"""Benchmark: one hourly refresh (``collect --once``) of 200 symbols against a local server.

Starts the fake Binance server from ``tests/fake_binance.py`` with 50 ms added
latency per request, 200 coins listed on spot and perp, and runs the refresh
(klines + top-20 book + funding) on a store that already holds the previous
hours, for 200 perps (all three kinds per symbol) and for the same 200 coins
on spot and perp (400 symbol-markets), each run twice:

* ``concurrent``: the real client (bounded thread pool, weight pacing);
* ``sequential``: the naive reference, one request at a time.

Each run is repeated ``--repeat`` times (default 3) on a fresh copy of the
store; the table shows the median wall time and the range. Prints a table
(wall time, requests, peak used weight per minute as counted by the server vs
the limit) and writes ``benchmarks/results/local/refresh.json`` (ignored by git;
``--out benchmarks/results/refresh.json`` updates the published figures).

    python benchmarks/bench_refresh.py [--symbols 200] [--latency 0.05] [--workers 8] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/<name>.json``) explicitly to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import multiprocessing as mp  # noqa: E402

import requests  # noqa: E402

from gnn_market.binance import PERP, SPOT, BinanceClient, ClientConfig  # noqa: E402
from gnn_market.data import refresh  # noqa: E402
from gnn_market.store import Store  # noqa: E402
from gnn_market.timeutil import HOUR_MS  # noqa: E402

from fake_binance import FakeBinance, many_symbols, serve_forever_in_process  # noqa: E402

NOW = 1_709_294_430_000  # fixed server clock: 2024-03-01 12:00:30 UTC


def seed_store(path: Path, n: int) -> None:
    """A store as the previous cycle left it: everything up to 10:00, book and funding."""
    with FakeBinance(many_symbols(n, listed_hours=48), now_ms=NOW - HOUR_MS) as srv:
        client = BinanceClient(ClientConfig(spot_url=srv.url, futures_url=srv.url))
        plan = {SPOT: [f"C{_name(i)}USDT" for i in range(n)], PERP: [f"C{_name(i)}USDT" for i in range(n)]}
        refresh(client, Store(path), plan, hours=48)


def _name(i: int) -> str:
    from fake_binance import _letters
    return _letters(i)


def run(n: int, latency: float, workers: int, store: Path, markets: tuple[str, ...]) -> dict:
    """One refresh against a server in its own process (so it does not share our GIL)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=serve_forever_in_process, args=(queue, n, NOW, latency), daemon=True)
    proc.start()
    try:
        url = queue.get(timeout=60)
        client = BinanceClient(ClientConfig(spot_url=url, futures_url=url, max_workers=workers))
        plan = {m: Store(store).symbols(m) for m in markets}
        t0 = time.perf_counter()
        report = refresh(client, Store(store), plan, hours=48)
        wall = time.perf_counter() - t0
        assert not report.errors, report.errors
        stats = requests.get(f"{url}/_stats", timeout=10).json()
    finally:
        proc.kill()
        proc.join()
    return {"workers": workers, "wall_s": round(wall, 3), **{k: stats[k] for k in ("requests", "http_429")},
            "new_candles": report.total("klines"), "book_rows": report.total("book"),
            "funding_rows": report.total("funding"),
            **{k: v for k, v in stats.items() if k not in ("requests", "http_429")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=ClientConfig.max_workers)
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario; the median wall time is reported")
    ap.add_argument("--out", default=str(LOCAL_RESULTS / "refresh.json"), help="JSON output")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    try:
        seed_store(tmp / "seed", args.symbols)
        rows = {}
        scenarios = [("perp", (PERP,)), ("spot+perp", (SPOT, PERP))]
        for name, markets in scenarios:
            for label, workers in (("concurrent", args.workers), ("sequential", 1)):
                key = f"{name} {label}"
                runs = []
                for i in range(args.repeat):
                    shutil.copytree(tmp / "seed", tmp / f"{key} {i}")
                    runs.append(run(args.symbols, args.latency, workers, tmp / f"{key} {i}", markets))
                walls = sorted(r["wall_s"] for r in runs)
                rows[key] = {**runs[0], "wall_s": walls[len(walls) // 2], "wall_min_s": walls[0],
                             "wall_max_s": walls[-1], "runs": len(runs),
                             "peak_weight_spot": max(r["peak_weight_spot"] for r in runs),
                             "peak_weight_perp": max(r["peak_weight_perp"] for r in runs),
                             "http_429": sum(r["http_429"] for r in runs)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = ["wall_s", "wall_min_s", "wall_max_s", "requests", "http_429", "new_candles", "book_rows",
            "funding_rows", "peak_weight_spot", "limit_spot", "peak_weight_perp", "limit_perp"]
    print(f"refresh of {args.symbols} symbols (perp only, then spot + perp), {args.latency * 1000:.0f} ms latency, "
          f"median of {args.repeat} runs each")
    print(f"{'run (workers)':28}" + "".join(f"{c:>17}" for c in cols))
    for label, row in rows.items():
        print(f"{label + ' (' + str(row['workers']) + ')':28}" + "".join(f"{row[c]:>17}" for c in cols))
    for name in ("perp", "spot+perp"):
        speed = rows[f"{name} sequential"]["wall_s"] / rows[f"{name} concurrent"]["wall_s"]
        print(f"{name}: concurrent is {speed:.1f}x faster than the sequential reference")
    out = {"symbols": args.symbols, "latency_s": args.latency, "repeat": args.repeat,
           "python": platform.python_version(),
           "machine": platform.machine(), "cpus": __import__("os").cpu_count(), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
