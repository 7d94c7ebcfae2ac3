"""Fill a store from any :class:`~gnn_market.market_source.MarketSource`: the generic half of the data CLI.

Speaking only to the Protocol (no exchange type is named here):

* :func:`sync_source` (and :func:`sync_symbol` per symbol): bring planned
  symbols up to date, the way ``backfill``/``collect`` do: the candles missing
  before and after the stored range, one book snapshot, funding since the last
  stored row. The Binance CLI uses a faster, Binance-only path for the same rows
  (:mod:`gnn_market.refresh_pipeline`); this one is the reference it is tested against.

Copying whole series from a file source (the importers) is
:func:`gnn_market.market_source.copy_source`.

Every frame a source returns is checked (:func:`~gnn_market.market_source.checked_source_frame`)
before it is written, so a bad frame stops with one :class:`DataError` naming the source.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Callable

import pandas as pd
from tqdm import tqdm

from .errors import BannedError, BinanceError, DataError, StoreError
from .market_source import MarketSource, checked_source_frame
from .refresh_report import RefreshReport, SymbolResult
from .store import Store
from .store_schema import BadStoreFile
from .timeutil import HOUR_MS


def check_writable(store: Store) -> None:
    """Fail before any download or import if the store folder cannot be written; creates nothing.

    An existing store must have a marker (``STORE.json``) this version can write, or none; it is probed with a temporary file; for a new one the
    nearest existing parent folder must be writable (the store folder itself
    is created by the first write, so a command that fails earlier leaves nothing behind).
    """
    root = store.root
    if root.exists():
        if not root.is_dir():
            raise StoreError(f"store path is a file, not a folder: {root}")
        store.check_marker()  # a store of a newer format, or with a damaged marker, is never written to
        try:
            with tempfile.NamedTemporaryFile(dir=root, prefix=".probe.", delete=True):
                pass
        except OSError as exc:
            raise StoreError(f"cannot write to store {root}: {exc.strerror or exc}") from exc
        return
    parent = root.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"cannot write to store {root}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write to store {root}: permission denied in {parent}")


# --------------------------------------------------------------------------- refresh
def stored_span_ms(store: Store, symbol: str, market: str, kind: str = "klines",
                   listed: set[str] | None = None) -> tuple[int, int] | None:
    """(first, last) stored time of ``kind`` in epoch ms, or None when nothing is stored.

    ``listed``: the symbols the store holds for ``market`` (saves a folder scan; klines only).
    """
    if not store.exists():
        return None
    if kind == "klines":
        listed = set(store.symbols(market)) if listed is None else listed
        if symbol not in listed:
            return None
    bounds = store.stored_range(symbol, market, kind=kind)
    if bounds is None:
        return None
    return int(bounds[0].value // 1_000_000), int(bounds[1].value // 1_000_000)


def sync_symbol(source: MarketSource, store: Store, market: str, symbol: str, start_ms: int, now_ms: int,
                listed: set[str] | None = None, book: bool = True) -> SymbolResult:
    """Bring one symbol up to date: missing klines, one book snapshot (unless ``book`` is False), funding.

    Args:
        source: where the rows come from.
        store: where they go (idempotent upserts, each kind written before the next is asked for).
        market, symbol: the series.
        start_ms: how far back a symbol with nothing stored starts (and how far back a stored one is extended).
        now_ms: the source's clock for this pass: hours that closed before it are fetched.
        listed: the symbols the store holds for ``market`` (saves a folder scan).
        book: also take a book snapshot.

    Returns:
        The rows added per kind. A stored file of this symbol that is corrupt or breaks a store rule,
        or a frame the source got wrong, raises :class:`DataError` (the symbol fails, not the pass).
    """
    try:
        return _sync_symbol(source, store, market, symbol, start_ms, now_ms, listed, book)
    except BadStoreFile as exc:
        raise DataError(f"{exc}") from exc


def _missing_ranges(stored: tuple[int, int] | None, start_ms: int, last_closed: int) -> list[tuple[int, int]]:
    """Open-time ranges (inclusive) not stored yet: before the stored range back to ``start_ms``, and after it."""
    if stored is None:
        ranges = [(start_ms, last_closed)]
    else:
        first, last = stored
        ranges = [(start_ms, first - HOUR_MS)] if start_ms < first else []
        ranges.append((last + HOUR_MS, last_closed))
    return [(lo, min(hi, last_closed)) for lo, hi in ranges if lo <= min(hi, last_closed)]


def _sync_symbol(source: MarketSource, store: Store, market: str, symbol: str, start_ms: int, now_ms: int,
                 listed: set[str] | None, book: bool) -> SymbolResult:
    res = SymbolResult()
    last_closed = (now_ms // HOUR_MS - 1) * HOUR_MS
    stored = stored_span_ms(store, symbol, market, listed=listed)
    frames = [checked_source_frame(source.klines(symbol, market, lo, hi), "klines", source,
                                   f"klines {symbol} ({market})") for lo, hi in _missing_ranges(stored, start_ms, last_closed)]
    frames = [f for f in frames if len(f)]
    if frames:
        res.klines = store.write_klines(symbol, pd.concat(frames).sort_index(), market)
    if book:
        snapshot = checked_source_frame(source.book(symbol, market), "book", source, f"book {symbol} ({market})")
        if len(snapshot):
            res.book = store.write_book(symbol, snapshot, market)
    if market == "perp":
        span = stored_span_ms(store, symbol, market, kind="funding")
        # From the last stored row on (it may be a live estimate the settled value replaces).
        since = start_ms if span is None else span[1]
        rows = checked_source_frame(source.funding(symbol, since), "funding", source, f"funding {symbol}")
        if len(rows):  # one upsert (one rewrite) for history + live row
            res.funding = store.write_funding(symbol, rows[~rows.index.duplicated(keep="last")])
    return res


def plan_tasks(source: MarketSource, store: Store, plan: dict[str, list[str]], hours: int,
               book: bool = True) -> tuple[dict[str, tuple[str, str]], Callable[[str], SymbolResult]]:
    """What one refresh pass runs: ``{"market:symbol": (market, symbol)}`` and the task for one key.

    The source's clock is read once (the first planned market's), so every symbol of the pass
    stops at the same closed hour; ``hours``: how far back a symbol with nothing stored starts.
    """
    now_ms = source.now_ms("spot" if "spot" in plan else "perp")
    start_ms = (now_ms // HOUR_MS - hours) * HOUR_MS
    key = {f"{m}:{s}": (m, s) for m, syms in plan.items() for s in syms}
    listed = {m: set(store.symbols(m)) if store.exists() else set() for m in plan}

    def task(k: str) -> SymbolResult:
        market, symbol = key[k]
        return sync_symbol(source, store, market, symbol, start_ms, now_ms, listed[market], book)

    return key, task


def sync_source(source: MarketSource, store: Store, plan: dict[str, list[str]], hours: int,
                progress: bool = False, book: bool = True) -> RefreshReport:
    """Bring every planned symbol up to date from ``source``, one symbol after another.

    Args:
        source: any :class:`MarketSource`.
        store: the destination.
        plan: symbols per market, e.g. ``{"spot": ["BTCUSDT"]}``.
        hours: how far back a symbol with nothing stored starts.
        progress: show a progress bar on stderr.
        book: also take a book snapshot of each symbol.

    Returns:
        The pass's report: rows added per (market, symbol), and the symbols skipped with their error
        (a :class:`DataError` or a source failure); a ban or a store error stops the pass.
    """
    t0 = time.perf_counter()
    key, task = plan_tasks(source, store, plan, hours, book)
    report = RefreshReport()
    for k in tqdm(key, unit="symbol", disable=not progress, file=sys.stderr):
        try:
            report.results[key[k]] = task(k)
        except BannedError:
            raise
        except (BinanceError, DataError) as exc:  # this symbol fails, the pass goes on
            report.errors[key[k]] = str(exc)
    report.seconds = time.perf_counter() - t0
    return report
