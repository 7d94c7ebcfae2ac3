"""Benchmark: a full-history training load from the month-file layout (format 3) beside the old one-file-per-symbol layout.

Builds two stores from the same synthetic frames: ``--symbols`` perpetuals (default 200) with ``--hours``
hourly candles each (default 26,280 = three years), an hourly book snapshot and 8-hourly funding. The new
store is written by :class:`gnn_market.store.Store` (one file per month); the old one as the previous
release wrote it (one file per kind and symbol: ``Table.from_pandas``, zstd, no dictionary) and is read
through the previous release's read path (the same decode and value checks, one file per symbol). Then
times, on each store, ``load_panel(store, "perp")`` (klines, funding, book: what training loads; best of
``--repeat`` runs): the old layout; the new one without its read cache (``read_cache=False``, with 8 and
with 1 read thread); and with the read cache (:mod:`gnn_market.store_cache`): its first load, which
builds the cache (timed once), then warm loads, then warm loads after every symbol's newest month file
was rewritten (as the hourly ``collect`` rewrites the current month: those are read from their files). It adds ``prepare_market`` (features and labels of that
panel, timed once: the store plays no part in it) and checks that every path gives the same panel.

    python benchmarks/bench_store_read.py [--symbols 200] [--hours 26280] [--repeat 3] [--out FILE]

Writes ``benchmarks/results/local/store_read.json`` (ignored by git) unless ``--out`` names another file.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Default output: an ignored folder, so running a benchmark never dirties the checkout. Pass the
#: tracked file (``benchmarks/results/<name>.json``) explicitly to update the published figures.
LOCAL_RESULTS = ROOT / "benchmarks" / "results" / "local"
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import gnn_market.store as store_module  # noqa: E402
import gnn_market.store_cache as store_cache  # noqa: E402
from gnn_market.panel import ARRAY_FIELDS, load_panel  # noqa: E402
from gnn_market.pipeline import prepare_market  # noqa: E402
from gnn_market.store import Store  # noqa: E402
from gnn_market.store_layout import KINDS, frame_of, read_table, slice_times  # noqa: E402
from gnn_market.store_schema import BadStoreFile, _empty_frame, _Kind, find_problems  # noqa: E402

START = "2021-01-01"


class OldLayoutStore(Store):
    """The previous release's read path over its layout: one file per (kind, market, symbol), decoded and
    checked exactly as before (:func:`frame_of`, :func:`find_problems`), one symbol after another."""

    def format_version(self) -> int:
        return 2

    def book_time(self) -> str:
        return "capture"

    def _old(self, kind: _Kind, symbol: str, market: str | None) -> Path:
        return self.root / kind.name / f"{symbol}.parquet" if kind.name == "funding" else \
            self.root / kind.name / (market or "spot") / f"{symbol}.parquet"

    def _names(self, folder: Path) -> list[str]:
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []

    def symbols(self, market: str = "spot") -> list[str]:
        return self._names(self.root / "klines" / market)

    def book_symbols(self, market: str = "spot") -> list[str]:
        return self._names(self.root / "book" / market)

    def funding_symbols(self) -> list[str]:
        return self._names(self.root / "funding")

    def _read(self, kind, symbol, market, missing_ok, start=None, end=None) -> pd.DataFrame:
        path = self._old(kind, symbol, market)
        if not path.exists():
            return _empty_frame(kind)
        df = frame_of(read_table(path), path, kind)
        if find_problems(df, kind):
            raise BadStoreFile(f"invalid store file {path}")
        return slice_times(df, start, end)

    def read_many(self, kind: str, symbols: list[str], market: str = "spot", start=None, end=None
                  ) -> dict[str, pd.DataFrame]:
        """As the previous release read them: one symbol after another."""
        return {s: self._read(KINDS[kind], s, market, missing_ok=True, start=start, end=end) for s in symbols}


def symbol_frames(i: int, hours: int) -> dict[str, pd.DataFrame]:
    """Symbol ``i``'s ``{"klines", "book", "funding": frame}``: random walks, valid by the store rules."""
    rng = np.random.default_rng(i)
    idx = pd.date_range(START, periods=hours, freq="h", tz="UTC", name="open_time").as_unit("ns")
    snaps = (idx - pd.Timedelta(seconds=30)).rename("snapshot_time")
    events = idx[::8].rename("funding_time")
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    volume = rng.uniform(1, 100, hours)
    kl = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                       "volume": volume, "quote_volume": volume * close,
                       "trades": pd.array(rng.integers(1, 10_000, hours), dtype="Int64"),
                       "taker_buy_volume": volume / 2, "taker_buy_quote_volume": volume * close / 2}, index=idx)
    bk = pd.DataFrame({"best_bid": close * 0.9999, "best_ask": close * 1.0001, "best_bid_qty": 1.0,
                       "best_ask_qty": 1.0, "bid_qty": volume, "ask_qty": volume, "bid_notional": volume * close,
                       "ask_notional": volume * close, "spread": close * 2e-4,
                       "levels": np.full(hours, 20, dtype="int64")}, index=snaps)
    fd = pd.DataFrame({"funding_rate": rng.normal(0, 1e-4, len(events)), "mark_price": close[::8]}, index=events)
    return {"klines": kl, "book": bk, "funding": fd}


def build(tmp: Path, symbols: int, hours: int) -> dict[str, float]:
    """Both stores from the same frames, one symbol at a time; returns the seconds each writer took."""
    old, new = tmp / "old", tmp / "new"
    old.mkdir(parents=True)
    (old / "STORE.json").write_text(json.dumps({"format": "cryptograph-store", "version": 2}) + "\n")
    store, spent = Store(new), {"old": 0.0, "new": 0.0}
    for i in range(symbols):
        symbol, kinds = f"SYM{i:03d}USDT", symbol_frames(i, hours)
        t0 = time.perf_counter()
        store.write_klines(symbol, kinds["klines"], "perp")
        store.write_book(symbol, kinds["book"], "perp")
        store.write_funding(symbol, kinds["funding"])
        t1 = time.perf_counter()
        write_old(old, symbol, kinds)
        spent["new"] += t1 - t0
        spent["old"] += time.perf_counter() - t1
    return spent


def write_old(root: Path, symbol: str, kinds: dict[str, pd.DataFrame]) -> None:
    """The previous release's files: ``Table.from_pandas`` with the index, zstd, no dictionary, at its paths."""
    for kind, frame in kinds.items():
        path = root / kind / f"{symbol}.parquet" if kind == "funding" else root / kind / "perp" / f"{symbol}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=True), path, compression="zstd",
                       use_dictionary=False)


def best_of(repeat: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - t0)
    return min(times), result


def same_panel(a, b) -> bool:
    """True if two panels hold the same times, symbols and arrays (NaN equal to NaN)."""
    arrays = [(getattr(a, f), getattr(b, f)) for f in ARRAY_FIELDS if getattr(a, f) is not None or getattr(b, f) is not None]
    return a.times.equals(b.times) and a.symbols == b.symbols and all(
        x is not None and y is not None and np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in arrays)


def stored_files(root: Path) -> int:
    """Data files of a store: every ``*.parquet`` outside hidden folders (the read cache is counted apart)."""
    return sum(1 for p in root.rglob("*.parquet") if not p.relative_to(root).parts[0].startswith("."))


def measure(store: Store, repeat: int) -> dict:
    """Best-of-``repeat`` seconds of ``load_panel(store, "perp")``, and the panel."""
    panel_s, panel = best_of(repeat, lambda: load_panel(store, "perp"))
    return {"load_panel_s": round(panel_s, 3), "shape": list(panel.shape), "files": stored_files(store.root),
            "panel": panel}


def settle(since: float) -> None:
    """Wait until ``store_cache.RACY_NS`` has passed since ``since``: files changed more recently are not
    cached (nor cache files sealed) yet, a safeguard a real training load, hours after the writes, never meets."""
    wait = store_cache.RACY_NS / 1e9 - (time.perf_counter() - since)
    if wait > 0:
        time.sleep(wait)


def rewrite_newest_months(root: Path) -> int:
    """Replace every symbol's newest month file by a copy (new inode and times, same rows), as the hourly
    ``collect`` does to the current month: the cache then reads those months from their files."""
    count = 0
    for folder in root.glob("*/market=*/symbol=*"):
        newest = max(folder.glob("month=*/data.parquet"))
        copy = newest.with_name(".data.parquet.bench.tmp")
        shutil.copyfile(newest, copy)
        os.replace(copy, newest)
        count += 1
    return count


def measure_cached(root: Path, repeat: int, built_at: float) -> dict[str, dict]:
    """The read cache: the first load (which builds it, timed once), warm loads (best of ``repeat``), and
    warm loads after every newest month was rewritten (a store that ``collect`` keeps current)."""
    settle(built_at)
    store = Store(root, read_cache=True)
    first = measure(store, 1)
    settle(time.perf_counter())
    warm = measure(store, repeat)
    rewrite_newest_months(root)
    live = measure(store, repeat)
    cache_files = sum(1 for _ in (root / store_cache.CACHE_DIR).rglob("*.parquet"))
    cache_mb = sum(p.stat().st_size for p in (root / store_cache.CACHE_DIR).rglob("*.parquet")) / 2**20
    for row in (first, warm, live):
        row.update(cache_files=cache_files, cache_mb=round(cache_mb, 1))
    return {"new, cached: first load": first, "new, cached": warm, "new, cached, newest months rewritten": live}


def measure_all(tmp: Path, repeat: int, built_at: float) -> dict[str, dict]:
    """Every layout and read path, the same frames: old; new without the cache (8 threads, 1 thread); cached."""
    rows = {"old": measure(OldLayoutStore(tmp / "old"), repeat), "new": measure(Store(tmp / "new", read_cache=False), repeat)}
    threads, store_module.READ_THREADS = store_module.READ_THREADS, 1
    try:
        rows["new, 1 thread"] = measure(Store(tmp / "new", read_cache=False), repeat)  # what the threads win here
    finally:
        store_module.READ_THREADS = threads
    rows.update(measure_cached(tmp / "new", repeat, built_at))
    return rows


LABELS = {"old": "old: one file per symbol (format 2)", "new": "new: one file per month, no cache",
          "new, 1 thread": f"new, no cache, 1 read thread (not {store_module.READ_THREADS})",
          "new, cached: first load": "new, read cache: first load (builds it)",
          "new, cached": "new, read cache: warm",
          "new, cached, newest months rewritten": "new, read cache: warm, newest months new"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--hours", type=int, default=26_280, help="hours of history per symbol (26280 = 3 years)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per load; the best is reported")
    ap.add_argument("--out", default=str(LOCAL_RESULTS / "store_read.json"), help="JSON output")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-read-"))
    try:
        built = build(tmp, args.symbols, args.hours)
        rows = measure_all(tmp, args.repeat, time.perf_counter())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    panels = {name: row.pop("panel") for name, row in rows.items()}
    same = all(same_panel(panels["old"], panel) for panel in panels.values())
    new_panel = panels["new"]
    del panels
    t0 = time.perf_counter()
    prepare_market(new_panel)  # features and labels: the rest of a training load, the same for both layouts
    prepare_s = time.perf_counter() - t0
    print(f"full-history load of {args.symbols} perps x {args.hours} hours (klines, book, funding), "
          f"best of {args.repeat} (a cache's first load: once); same panel from every layout and path: {same}")
    print(f"{'layout':48}{'files':>8}{'cache':>7}{'write_s':>10}{'load_panel_s':>14}{'+prepare_market_s':>19}")
    for name, label in LABELS.items():
        r = rows[name]
        r["prepare_market_s"] = round(r["load_panel_s"] + prepare_s, 3)
        print(f"{label:48}{r['files']:>8}{r.get('cache_files', 0):>7}{built['new' if name != 'old' else 'old']:>10.2f}"
              f"{r['load_panel_s']:>14.3f}{r['prepare_market_s']:>19.3f}")
    old_s = rows["old"]["load_panel_s"]
    print(f"load_panel / old layout: new {rows['new']['load_panel_s'] / old_s:.2f}x, cached first load "
          f"{rows['new, cached: first load']['load_panel_s'] / old_s:.2f}x, cached warm "
          f"{rows['new, cached']['load_panel_s'] / old_s:.2f}x (newest months rewritten: "
          f"{rows['new, cached, newest months rewritten']['load_panel_s'] / old_s:.2f}x); "
          f"cache {rows['new, cached']['cache_mb']} MB "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    out = {"symbols": args.symbols, "hours": args.hours, "repeat": args.repeat, "same_panel": same,
           "write_s": {k: round(v, 2) for k, v in built.items()}, "results": rows,
           "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
