"""Data CLI: ``python -m gnn_market.data {backfill,collect,import-vision,import-csv,info,repair,migrate}``.

* ``backfill``: universe + hourly klines + funding history + one book snapshot
  per symbol. Resumable: only hours outside the stored range are fetched.
* ``collect``: the live hourly job. ``--book-lead`` seconds (default 30)
  before each hour closes it takes a top-20 book snapshot of every symbol,
  stamped with its true capture time (so the panel's row for the closing
  hour can use it: :data:`gnn_market.panel.BOOK_TOLERANCE`); ``--delay``
  seconds after the hour it appends the closed candle and the current funding
  rate. ``--once``: one cycle (candles, book, funding) at the time it is run.
  Binance serves no order-book history, so this is how book history comes to
  exist. Without ``--once`` a failed pass (outage, errors left after retries)
  is logged with its count in a row and the next try's UTC time, and tried
  again at the next one; until one cycle has worked a configuration error (HTTP
  4xx, unknown symbol, nothing to collect) stops the job with exit 2; an IP ban
  (418) or a store error stops it at any time (docs/data.md).
* ``import-vision``: Binance public-archive zips/CSVs (``gnn_market.vision``).
* ``import-csv``: a folder of per-symbol ``<SYMBOL>.csv[.gz]`` candle dumps with a
  header (``gnn_market.csv_import``), e.g. the three-year Binance spot set.
* ``info``: per market: symbols, time range, rows, gaps, funding and book
  coverage, and every stored file that breaks a store rule.
* ``repair``: fix the files ``info`` reports (``Store.repair``; ``--dry-run``
  only says what it would do). Originals are kept under ``repair-backup/``.
* ``migrate``: convert a store of the one-file-per-symbol layout (formats 1-2) to
  month files (format 3, ``gnn_market.migrate``); every reader and writer refuses
  the old layout with one line naming this command.

``backfill`` and ``collect`` download on ``--workers`` threads and parse and write
in one helper process per core (:mod:`gnn_market.refresh_pipeline`; a pass of
fewer than 16 symbols writes in its threads); :func:`refresh_reference` is the
previous all-in-one-process path, kept as the reference the tests compare with.

Module map: this module is the CLI (arguments, the Binance client it builds, the
``collect`` loop). What fills a store from any data source lives in
:mod:`gnn_market.source_sync` (through the :class:`~gnn_market.market_source.MarketSource`
Protocol); ``info``/``repair``/``migrate`` in :mod:`gnn_market.data_maintenance`.
Their public names stay importable from here.

Errors a user can cause (argument errors included) end as one ``error: ...``
line on stderr, exit 2; arguments and inputs are checked before the store is
created or written. Every write is an idempotent upsert, so nothing stored is
lost or duplicated.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
from tqdm import tqdm

from .binance import PERP, SPOT, BinanceClient, ClientConfig, Universe
from .cli import DefaultsHelpFormatter, OneLineParser, parse_symbols, program_name, run_cli
from .csv_import import import_csv_folder
from .data_maintenance import cmd_info, cmd_migrate, cmd_repair, format_info  # noqa: F401 (re-exported)
from .errors import BannedError, BinanceError, CryptoGraphError, DataError, OutageError, StoreError, UnknownSymbolError
from .market_source import MarketSource
from .panel import BOOK_TOLERANCE
from .refresh_pipeline import RefreshReport, book_pass, refresh
from .source_sync import check_writable, plan_tasks, sync_source, sync_symbol  # noqa: F401 (re-exported)
from .store import Store
from .timeutil import HOUR_MS
from .vision import MAX_MEMBER_BYTES, import_paths

log = logging.getLogger(__name__)


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
    """Every stored symbol of the chosen markets, or the universe for an empty store."""
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


def cmd_collect(args: argparse.Namespace) -> int:
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
        _wait(max(0.0, (hour - args.book_lead * 1000 - _now_ms(client)) / 1000))
        error = _guarded(lambda: _finish_books(book_pass(client, store, _collect_plan(client, store, args))))
        if stops_collect(error, worked):
            raise error
        books.record(error, next_ms=hour + HOUR_MS - int(args.book_lead * 1000))
        # Binance can publish a bar 10-15 s late: the closed candle is fetched --delay s after the hour.
        wait = max(0.0, (hour + args.delay * 1000 - _now_ms(client)) / 1000)
        log.info("next cycle in %.0f s", wait)
        _wait(wait)


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


def _wait(seconds: float) -> None:
    """The loop's only sleep (tests replace it; the client's retry back-off has its own)."""
    time.sleep(seconds)


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


# --------------------------------------------------------------------------- parser
def _number(kind: str, low: float, low_open: bool = True):
    """An argparse type: a finite float above ``low`` (``low_open``) or at least ``low``; NaN and inf refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind} (expected a finite number {bound})")
        return value

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


_positive = _number("positive number", 0.0)
_non_negative = _number("non-negative number", 0.0, low_open=False)


def _add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--market", choices=["spot", "perp", "both"], default="spot",
                   help="spot pairs, USDT-M perpetuals, or both")
    p.add_argument("--top", type=int, default=None, help="keep the N most traded pairs")
    p.add_argument("--min-quote-volume", type=_non_negative, default=None, help="24 h quote volume floor (USDT)")
    # parsed (checked, repeats refused) with the other arguments: before the universe is fetched
    p.add_argument("--symbols", type=parse_symbols, default=None,
                   help="comma-separated symbols instead of the ranked universe (each once)")
    p.add_argument("--spot-url", default=ClientConfig.spot_url, help="spot host root")
    p.add_argument("--futures-url", default=ClientConfig.futures_url, help="USDT-M futures host root")
    p.add_argument("--timeout", type=_positive, default=10.0, help="seconds per request (finite, > 0)")
    p.add_argument("--retries", type=int, default=5, help="retries per request")
    p.add_argument("--workers", type=int, default=ClientConfig.max_workers, help="concurrent requests")


#: ``collect --help``: the schedule and what happens when a pass fails (see :func:`stops_collect`).
COLLECT_DESCRIPTION = """\
The live hourly job. --book-lead seconds before each hour closes it takes a top-20
book snapshot of every symbol; --delay seconds after the hour it appends every closed
candle not yet stored and the funding rate. It works on the symbols the store holds
(an empty store gets the universe). --once: one cycle now, then exit.

When a pass fails, the job logs one ERROR line per failed pass: what failed, how many
passes of that kind failed in a row, and the next try (UTC, on the server's clock;
the local one while the server is unreachable):
  ERROR ...: collect cycle failed (3 in a row, a network outage or server error):
  spot klines BTCUSDT: cannot reach ... (timeout) after 6 attempts; next try at
  2024-03-01 14:00:15 UTC
and logs when it works again; the hours it missed are fetched then.
 - Outages are ridden out, from the first cycle on: timeouts, refused connections,
   host names that do not resolve (a machine without network sees the same),
   HTTP 5xx and 429 left after --retries.
 - Until one cycle has worked, any other error stops the job with one error line and
   exit 2: a host that answers but is not the Binance API (HTTP 4xx), an unknown
   --symbols entry, no symbol left by --top/--min-quote-volume. A URL that is not
   http(s)://host[:port] and an unwritable store are refused before any request.
 - An IP ban (418) or a store that cannot be written stops it at any time (exit 2).
"""


def build_parser() -> argparse.ArgumentParser:
    """The data CLI: one subcommand per job, each with its description and every default shown."""
    parser = OneLineParser(prog=program_name("gnn_market.data"), formatter_class=DefaultsHelpFormatter,
                           description="Download, collect, import, inspect, repair and migrate market stores. "
                           "Each subcommand has its own --help.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, func: Callable, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=description or text, formatter_class=DefaultsHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = command("backfill", "download history into a store (resumable: only missing hours are fetched)",
                cmd_backfill)
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--hours", type=int, default=24 * 365, help="history length in hours (8760 = one year)")
    _add_network(p)
    p = command("collect", "hourly live job: book before the close, then candle + funding", cmd_collect,
                COLLECT_DESCRIPTION)
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--once", action="store_true", help="run one cycle (candles, book, funding) now and exit")
    p.add_argument("--hours", type=int, default=24, help="history for symbols with nothing stored")
    p.add_argument("--delay", type=_non_negative, default=15.0, help="seconds after the hour (late candles)")
    p.add_argument("--book-lead", type=_positive, default=30.0,
                   help=f"seconds before the hour for the book snapshots (at most "
                        f"{BOOK_TOLERANCE.total_seconds():.0f}, the panel's window)")
    p.add_argument("--predict", metavar="CHECKPOINT", default=None,
                   help="after each cycle, run this model.pt on every newly stored complete hour (as predict "
                        "--follow does) and append the predictions to --predictions")
    p.add_argument("--predictions", metavar="DIR", default=None,
                   help="with --predict: the predictions folder, a month-partitioned Parquet dataset "
                        "(DIR/month=YYYY-MM/*.parquet), continued where it ends")
    _add_network(p)
    p = command("import-vision", "import Binance public-archive zips/CSVs (data.binance.vision)", cmd_import_vision)
    p.add_argument("paths", nargs="+", help="archive files or folders of them")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--market", choices=["spot", "perp"], default=None,
                   help="market of files whose path does not say (must agree with a path that does)")
    p.add_argument("--symbol", default=None, help="symbol of files whose name does not say")
    p.add_argument("--max-member-mb", type=_positive, default=MAX_MEMBER_BYTES / 2 ** 20,
                   help="largest file / uncompressed zip member read, MiB")
    p = command("import-csv", "import a folder of <SYMBOL>.csv[.gz] hourly candle files", cmd_import_csv)
    p.add_argument("folder", help="folder of <SYMBOL>.csv or <SYMBOL>.csv.gz files with a header")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--market", choices=["spot", "perp"], default="spot", help="market the candles belong to")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: every file)")
    p.add_argument("--keep-last", action="store_true",
                   help="keep each file's last row (by default dropped: dumps usually end in a partial hour)")
    p = command("info", "describe a store and list files that break its rules", cmd_info)
    p.add_argument("--store", default=None, help="store folder (default: the bundled sample)")
    p = command("repair", "fix stored files that break the store rules (originals backed up)", cmd_repair)
    p.add_argument("--store", required=True, help="store folder")
    p.add_argument("--dry-run", action="store_true", help="only say what would be dropped")
    p = command("migrate", "convert a store of the one-file-per-symbol layout (formats 1-2) to month files "
                           "(format 3); resumable, verifies every row before removing the old files", cmd_migrate)
    p.add_argument("--store", required=True, help="store folder in the old layout")
    p.add_argument("--keep-backup", action="store_true",
                   help="keep the old files in DIR/migrate-backup-<time>/ after verification (default: delete them)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version: argparse printed and exits
        return int(exc.code or 0)
    for name in ("top", "workers", "retries"):
        if getattr(args, name, None) is not None and getattr(args, name) < (1 if name != "retries" else 0):
            raise DataError(f"--{name} must be {'positive' if name != 'retries' else '>= 0'}")
    if getattr(args, "symbol", None) is not None:
        args.symbol = args.symbol.strip().upper()
    return int(args.func(args) or 0)


def cli() -> int:
    """Console-script entry point ``cryptograph-data``."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
