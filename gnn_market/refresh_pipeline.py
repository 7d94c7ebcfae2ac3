"""Refresh a store from Binance: downloads on threads, parsing and store writes in other processes.

:func:`refresh` (``backfill``, every ``collect`` cycle) and :func:`book_pass`
(``collect``'s pre-close snapshots) fetch each planned symbol on the client's
bounded thread pool (its weight pacing, retries and per-symbol error rules
unchanged) and hand the decoded answers to a :class:`~gnn_market.refresh_writes.WritePool`,
whose processes parse them and upsert the store. The download threads then hold
the GIL only to send requests and decode JSON, so the network waits of many
symbols overlap while other cores parse and write.

The stored result is the one of the sequential reference path
(``gnn_market.source_sync.sync_symbol``): the same requests per symbol (stored range
first, then missing candles, one book snapshot, funding since the last stored
row), the same parsers, the same upserts in the same order; a symbol that fails
keeps what the reference would have written before the failure.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from .binance import PERP, SPOT, BinanceClient
from .errors import DataError
from .refresh_report import RefreshReport, SymbolResult  # noqa: F401 (RefreshReport re-exported: its old home)
from .refresh_writes import SymbolFetch, WritePool, WritePoolConfig, shared_pool, write_fetched
from .store import Store
from .store_schema import BadStoreFile
from .timeutil import HOUR_MS


@dataclass(frozen=True)
class _Pass:
    """What every symbol task of one refresh shares."""

    client: BinanceClient
    store: Store
    root: str  # absolute: the write processes do not share a later chdir
    start_ms: int
    now_ms: int
    live: dict[str, dict] | None  # premiumIndex objects by perp symbol
    listed: dict[str, set[str]]
    book: bool
    pool: WritePool


def refresh(client: BinanceClient, store: Store, plan: dict[str, list[str]], hours: int,
            progress: bool = False, book: bool = True, pool: WritePool | None = None) -> RefreshReport:
    """Bring every planned symbol up to date: missing klines, one book snapshot (``book``), funding.

    ``hours``: how far back a symbol with nothing stored starts (backfill also
    extends stored symbols back to this horizon). ``pool``: the write processes
    (default: the process-wide :func:`~gnn_market.refresh_writes.shared_pool`).
    A symbol that fails (unknown, a bad stored file, an error left after
    retries) is reported in ``errors`` and skipped; a ban or a store error stops the pass.
    """
    t0 = time.perf_counter()
    pool = pool or _default_pool(sum(len(s) for s in plan.values()))
    pool.start()  # the workers' imports overlap the first requests
    now_ms = client.server_time_ms(SPOT if SPOT in plan else PERP)
    run = _Pass(client, store, os.path.abspath(store.root), (now_ms // HOUR_MS - hours) * HOUR_MS, now_ms,
                client.premium_rows() if PERP in plan else None,
                {m: set(store.symbols(m)) if store.exists() else set() for m in plan}, book, pool)
    key = {f"{m}:{s}": (m, s) for m, syms in plan.items() for s in syms}
    bar = tqdm(total=len(key), unit="symbol", disable=not progress, file=sys.stderr)
    try:
        batch = client.map_symbols(lambda k: _sync(run, *key[k]), key, progress=lambda _: bar.update(1))
    finally:
        bar.close()
    return RefreshReport().finish(client, batch, key, t0)


def _default_pool(symbols: int) -> WritePool:
    """The process-wide write pool, or writes in the download threads for a refresh too small to gain from it."""
    pool = shared_pool()
    return pool if symbols >= pool.config.min_symbols else _INLINE


_INLINE = WritePool(WritePoolConfig(processes=0))


def _sync(run: _Pass, market: str, symbol: str) -> SymbolResult:
    """One symbol: read its stored ranges, download what is missing, then write it in a pool process.

    A download that fails after some steps still writes those steps (as the reference path,
    which writes each kind before downloading the next), then raises.
    """
    fetch = SymbolFetch(market, symbol, run.now_ms)
    result = SymbolResult()
    try:
        _download(run, fetch)
    finally:
        if fetch.kline_pages or fetch.book is not None or fetch.funding is not None or fetch.live is not None:
            result = run.pool.run(write_fetched, run.root, fetch)
    return result


def _download(run: _Pass, f: SymbolFetch) -> None:
    """Fill ``f`` step by step: klines (every missing range), the book, funding (perps)."""
    client, market, symbol = run.client, f.market, f.symbol
    span = _stored(run, market, symbol, "klines") if symbol in run.listed[market] else None
    ranges: list[tuple[int, int | None]] = [(run.start_ms, None)] if span is None else []
    if span is not None:
        if run.start_ms < span[0]:
            ranges.append((run.start_ms, span[0] - HOUR_MS))
        ranges.append((span[1] + HOUR_MS, None))
    f.kline_pages = [client.klines_rows(symbol, market, lo, hi, run.now_ms) for lo, hi in ranges]
    if run.book:
        f.book = client.book_payload(symbol, market)
    if market != PERP:
        return
    funding = _stored(run, market, symbol, "funding")
    last_ms = None if funding is None else funding[1]
    # Settled history since the last stored row; skipped while the latest
    # stored row is the live estimate for a settlement still ahead.
    if last_ms is None or last_ms <= run.now_ms:
        f.funding = client.funding_rows(symbol, run.start_ms if last_ms is None else last_ms, run.now_ms)
    if run.live and symbol in run.live:
        f.live = run.live[symbol]


def _stored(run: _Pass, market: str, symbol: str, kind: str) -> tuple[int, int] | None:
    """(first, last) stored time of ``kind`` in ms, or None; a bad stored file fails this symbol only."""
    if not run.store.exists():
        return None  # a new store: its first write (of this pass) creates it
    try:
        bounds = run.store.stored_range(symbol, market, kind=kind)
    except BadStoreFile as exc:
        raise DataError(f"{exc}") from exc
    if bounds is None:
        return None
    return int(bounds[0].value // 1_000_000), int(bounds[1].value // 1_000_000)


def book_pass(client: BinanceClient, store: Store, plan: dict[str, list[str]],
              pool: WritePool | None = None) -> RefreshReport:
    """One top-20 book snapshot per planned symbol, stamped with its capture time (the collector's pre-close pass)."""
    t0 = time.perf_counter()
    client.server_time_ms(SPOT if SPOT in plan else PERP)  # refresh the clock offset the stamps use
    key = {f"{m}:{s}": (m, s) for m, syms in plan.items() for s in syms}
    root, pool = os.path.abspath(store.root), pool or _default_pool(len(key))

    def task(k: str) -> SymbolResult:
        market, symbol = key[k]
        fetch = SymbolFetch(market, symbol, 0, book=client.book_payload(symbol, market))
        return pool.run(write_fetched, root, fetch)

    return RefreshReport().finish(client, client.map_symbols(task, key), key, t0)
