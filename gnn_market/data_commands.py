"""What each ``python -m gnn_market.data`` subcommand does, imported only after its arguments are parsed.

:mod:`gnn_market.data` is the light half (parser, ``main``, dispatch): its ``--help`` must not
import python-binance, pyarrow or the store. Every public name of this module stays importable
from :mod:`gnn_market.data` (PEP 562), as it was before the split. ``info``/``repair``/``migrate``
live in :mod:`gnn_market.data_maintenance`; what fills a store from any data source in
:mod:`gnn_market.source_sync` (through the :class:`~gnn_market.market_source.MarketSource` Protocol).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm import tqdm

from .binance import PERP, SPOT, BinanceClient, ClientConfig, Universe
from .cli import parse_symbols
from .csv_import import import_csv_folder
from .data_maintenance import cmd_info, cmd_migrate, cmd_repair, format_info  # noqa: F401 (re-exported)
from .errors import BannedError, BinanceError, CryptoGraphError, DataError, OutageError, StoreError, UnknownSymbolError
from .market_source import MarketSource
from .panel import BOOK_TOLERANCE
from .refresh_pipeline import RefreshReport, book_pass, refresh
from .source_sync import check_writable, plan_tasks, sync_source, sync_symbol  # noqa: F401 (re-exported)
from .store import Store
from .timeutil import HOUR_MS
from .vision import MAX_MEMBER_BYTES, import_paths  # noqa: F401 (MAX_MEMBER_BYTES: re-exported)

#: The CLI's logger name, as before the split: users' log filters and the tests' caplog name it.
log = logging.getLogger("gnn_market.data")


# --------------------------------------------------------------------------- plan & report
def make_client(args: argparse.Namespace) -> BinanceClient:
    return BinanceClient(ClientConfig(spot_url=args.spot_url, futures_url=args.futures_url,
                                      timeout=args.timeout, max_retries=args.retries,
                                      max_workers=args.workers))


def select(uni: Universe, markets: list[str], symbols: list[str] | None) -> dict[str, list[str]]:
    """Symbols per market: the ranked universe, or the user's list mapped onto it."""
    plan: dict[str, list[str]] = {}
    if symbols is None:
        plan = {m: uni.symbols(m) for m in markets}
    else:
        unknown = []
        for sym in symbols:
            found = False
            for m in markets:
                name = sym
                if m == PERP and sym not in uni.perp:
                    name = uni.spot_to_perp.get(sym, sym)
                if m == SPOT and sym not in uni.spot:
                    name = uni.perp_to_spot.get(sym, sym)
                if name in uni.symbols(m):
                    plan.setdefault(m, [])
                    if name not in plan[m]:
                        plan[m].append(name)
                    found = True
            if not found:
                unknown.append(sym)
        if unknown:
            raise UnknownSymbolError(f"unknown symbol(s) {', '.join(unknown)}: not a tradable USDT pair "
                                     f"in the {'/'.join(markets)} universe")
    if not any(plan.values()):
        raise DataError("empty result: no symbols match the universe filters")
    return {m: s for m, s in plan.items() if s}


# --------------------------------------------------------------------------- one pass
def refresh_reference(client: BinanceClient, store: Store, plan: dict[str, list[str]], hours: int,
                      progress: bool = False, book: bool = True) -> RefreshReport:
    """The reference path: the generic :func:`~gnn_market.source_sync.sync_symbol` of every planned
    symbol, asked of the client through the :class:`~gnn_market.market_source.MarketSource` Protocol,
    on the client's thread pool.

    Everything (download, parsing, store writes) happens in this process, so
    with ``max_workers=1`` it is the naive sequential refresh. :func:`refresh`
    (:mod:`gnn_market.refresh_pipeline`) stores exactly the same rows faster;
    tests and ``benchmarks/bench_refresh.py`` compare the two.
    ``hours``: how far back a symbol with nothing stored starts (backfill
    also extends stored symbols back to this horizon). ``book``: also take a
    book snapshot of each symbol.
    """
    t0 = time.perf_counter()
    key, task = plan_tasks(client, store, plan, hours, book)
    bar = tqdm(total=len(key), unit="symbol", disable=not progress, file=sys.stderr)
    try:
        batch = client.map_symbols(task, key, progress=lambda _: bar.update(1))
    finally:
        bar.close()
    return RefreshReport().finish(client, batch, key, t0)


def refresh_any(source: MarketSource, store: Store, plan: dict[str, list[str]], hours: int,
                progress: bool = False, book: bool = True) -> RefreshReport:
    """One backfill/collect pass from ``source``: the fast Binance pipeline for a :class:`BinanceClient`
    (:func:`refresh`: downloads on threads, parsing and writes in processes), the generic
    Protocol path (:func:`~gnn_market.source_sync.sync_source`) for any other source."""
    if isinstance(source, BinanceClient):
        return refresh(source, store, plan, hours, progress=progress, book=book)
    return sync_source(source, store, plan, hours, progress=progress, book=book)


def _markets(market: str) -> list[str]:
    return [SPOT, PERP] if market == "both" else [market]


def _finish(report: RefreshReport, store: Store) -> int:
    print(report.summary())
    if not report.results:
        first = next(iter(report.errors.values()), "no symbol succeeded")
        raise BinanceError(f"nothing downloaded: {first}")
    if not store.markets():
        raise DataError("empty result: the server returned no closed candles")
    return 0


# --------------------------------------------------------------------------- commands
def _check_hours(args: argparse.Namespace) -> None:
    if args.hours < 1:
        raise DataError(f"--hours must be >= 1, got {args.hours}")


def cmd_backfill(args: argparse.Namespace) -> int:
    _check_hours(args)
    store = Store(args.store)
    check_writable(store)
    client = make_client(args)
    uni = client.universe(args.market, top=None if args.symbols else args.top,
                          min_quote_volume=None if args.symbols else args.min_quote_volume)
    plan = select(uni, _markets(args.market), args.symbols)  # --symbols: a list, checked by the parser
    report = refresh_any(client, store, plan, args.hours, progress=True)
    return _finish(report, store)


def _collect_plan(client: BinanceClient, store: Store, args: argparse.Namespace) -> dict[str, list[str]]:
    """``--symbols`` (checked against the exchange: stored or new, a new one starts with ``--hours`` of
    history), else every stored symbol of the chosen markets, or the universe for an empty store."""
    if args.symbols:
        uni = client.universe(args.market, top=None, min_quote_volume=None)
        return select(uni, _markets(args.market), args.symbols)
    plan = {m: store.symbols(m) for m in _markets(args.market) if store.exists() and store.symbols(m)}
    if not plan:  # empty store: start from the universe
        uni = client.universe(args.market, top=args.top, min_quote_volume=args.min_quote_volume)
        plan = select(uni, _markets(args.market), args.symbols)
    return plan


def collect_cycle(client: BinanceClient, store: Store, args: argparse.Namespace, book: bool = True) -> int:
    """One cycle: every stored symbol (or the universe, for an empty store) brought up to date.

    ``book``: also take a book snapshot now (``--once``); the loop takes it in
    its own pass before the hour instead (:func:`book_pass`). A cycle in which no
    symbol could be downloaded and some call gave up on an outage raises
    :class:`OutageError` (the loop rides it out), whatever the first symbol's error was.
    """
    plan = _collect_plan(client, store, args)
    outages = client.outages
    report = refresh_any(client, store, plan, args.hours, book=book)
    try:
        return _finish(report, store)
    except BinanceError as exc:
        if client.outages > outages and not isinstance(exc, OutageError):
            raise OutageError(str(exc)) from exc
        raise


def next_hour_ms(client: BinanceClient) -> int:
    """The next hour boundary on the server's clock (the local one if it is unreachable)."""
    return (_now_ms(client) // HOUR_MS + 1) * HOUR_MS


def _now_ms(client: BinanceClient) -> int:
    try:
        return client.server_time_ms()
    except BinanceError:
        return int(time.time() * 1000)


def seconds_to_next_cycle(client: BinanceClient, delay_s: float) -> float:
    """Until ``delay_s`` after the next hour, on the server's clock (the local one if it is unreachable)."""
    now = _now_ms(client)
    return ((now // HOUR_MS + 1) * HOUR_MS - now) / 1000 + delay_s


def cmd_collect(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    """``collect``: one cycle (``--once``) or the endless hourly loop; ``sleep`` is the loop's only sleep
    (:func:`gnn_market.data.main` passes ``gnn_market.data._wait``, which tests replace)."""
    _check_hours(args)
    if not 0 < args.book_lead <= BOOK_TOLERANCE.total_seconds():
        raise DataError(f"--book-lead must be in (0, {BOOK_TOLERANCE.total_seconds():.0f}] seconds (the panel "
                        f"uses a snapshot taken at most that long before the close), got {args.book_lead:g}")
    store = Store(args.store)
    check_writable(store)
    if (args.predict is None) != (args.predictions is None):
        raise DataError("--predict CHECKPOINT and --predictions DIR go together")
    predictor = None
    if args.predict is not None:  # torch and the model load only here: collect alone stays light
        from .live import collect_predictions, predict_after_cycle

        predictor = collect_predictions(args.predict, args.predictions, store, _markets(args.market))
    client = make_client(args)
    if args.once:
        code = collect_cycle(client, store, args)
        if predictor is not None:
            predictor.poll()  # --once: a failure is the run's error line (the cycle's data is stored)
        return code
    cycles, books = FailureStreak("collect cycle"), FailureStreak("book pass")
    worked = False  # a collect cycle has succeeded: the URLs, symbols and store are right
    while True:
        # Candles and funding of the hours closed so far.
        error = _guarded(lambda: collect_cycle(client, store, args, book=False))
        if stops_collect(error, worked):
            raise error
        if predictor is not None:  # the model on the hours now complete; a failure is logged, never stops this job
            predict_after_cycle(predictor)
        hour = next_hour_ms(client)
        cycles.record(error, next_ms=hour + int(args.delay * 1000))
        worked = worked or error is None
        # The book a few seconds before the close: the state at the decision time of the closing hour's row.
        sleep(max(0.0, (hour - args.book_lead * 1000 - _now_ms(client)) / 1000))
        error = _guarded(lambda: _finish_books(book_pass(client, store, _collect_plan(client, store, args))))
        if stops_collect(error, worked):
            raise error
        books.record(error, next_ms=hour + HOUR_MS - int(args.book_lead * 1000))
        # Binance can publish a bar 10-15 s late: the closed candle is fetched --delay s after the hour.
        wait = max(0.0, (hour + args.delay * 1000 - _now_ms(client)) / 1000)
        log.info("next cycle in %.0f s", wait)
        sleep(wait)


def _finish_books(report: RefreshReport) -> None:
    log.info("book pass: %d snapshots, %d symbols skipped", report.total("book"), len(report.errors))
    for (market, sym), err in sorted(report.errors.items()):
        log.warning("book %s %s skipped: %s", market, sym, err)


def _guarded(step: Callable[[], object]) -> CryptoGraphError | None:
    """Run one pass of the endless job; its user-facing error (None when it worked), for :func:`stops_collect`."""
    try:
        step()
    except CryptoGraphError as exc:
        return exc
    return None


def stops_collect(error: CryptoGraphError | None, worked_before: bool) -> bool:
    """Whether a failed pass ends the endless ``collect`` job (exit 2) rather than being retried.

    - An IP ban (418) or a store error always stops it: going on would extend the ban, and an
      unwritable or broken store does not heal by itself.
    - Until a collect cycle has worked once, every error but an outage stops it too: a host that
      answers but is not the Binance API (HTTP 4xx), an unknown symbol, no symbol left by the
      filters are configuration errors that no retry fixes, and the user who just started the job
      should see one error line, not a log that grows every hour.
    - An outage (:class:`OutageError`: timeouts, refused connections, host names that do not
      resolve, which is also what a machine without network sees, HTTP 5xx, 429) is retried at the
      next pass, from the first cycle on; after a working cycle every other error is retried too.
    """
    if error is None:
        return False
    if isinstance(error, (BannedError, StoreError)):
        return True
    return not worked_before and not isinstance(error, OutageError)


@dataclass
class FailureStreak:
    """Failed passes in a row of one kind, so each failure's log line says how long it has lasted."""

    what: str
    count: int = 0

    def record(self, error: CryptoGraphError | None, next_ms: int) -> None:
        """Log a failed pass (what failed, the count, the next try in UTC) or a recovery."""
        if error is None:
            if self.count:
                log.info("%s works again after %d failed in a row", self.what, self.count)
            self.count = 0
            return
        self.count += 1
        kind = "a network outage or server error" if isinstance(error, OutageError) else "error"
        log.error("%s failed (%d in a row, %s): %s; next try at %s UTC", self.what, self.count, kind, error,
                  pd.Timestamp(next_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S"))


def cmd_import_vision(args: argparse.Namespace) -> int:
    store = Store(args.store)
    check_writable(store)  # creates nothing: a failed import leaves no empty store behind
    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.expanduser().exists()]
    if missing:
        raise DataError(f"no such file or folder: {missing[0]}")
    report = import_paths(paths, store, market=args.market, symbol=args.symbol,
                          max_member_bytes=int(args.max_member_mb * 2 ** 20))
    print(report.summary())
    return 0


def cmd_import_csv(args: argparse.Namespace) -> int:
    store = Store(args.store)
    check_writable(store)  # creates nothing
    # Every file, then every target (marker, stored files), is checked before the first write.
    report = import_csv_folder(Path(args.folder), store, market=args.market, drop_last=not args.keep_last,
                               symbols=parse_symbols(args.symbols) or None, progress=True)
    rows, added = sum(report.rows_read.values()), sum(report.rows_added.values())
    print(f"{len(report.rows_read)} symbols, {rows} candles read, {added} new in {store.root} ({args.market})")
    return 0
