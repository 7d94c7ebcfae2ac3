"""Data CLI: ``python -m gnn_market.data {backfill,collect,import-vision,import-csv,info}``.

* ``backfill``: universe + hourly klines + funding history + one book snapshot
  per symbol. Resumable: only hours outside the stored range are fetched.
* ``collect``: the live hourly job; just after each hour closes it appends the
  closed candle, a top-20 book snapshot and the current funding rate for
  every symbol (``--once``: one cycle). Binance serves no order-book history,
  so this is how book history comes to exist. Without ``--once`` a failed
  cycle (outage, errors left after retries) is logged and tried again after
  the next hour; an IP ban (418) or an unwritable store stops the job.
* ``import-vision``: Binance public-archive zips/CSVs (``gnn_market.vision``).
* ``import-csv``: a folder of per-symbol ``<SYMBOL>.csv[.gz]`` candle dumps with a
  header (``gnn_market.csv_import``), e.g. the three-year Binance spot set.
* ``info``: per market: symbols, time range, rows, gaps, funding and book coverage.

Errors a user can cause end as one ``error: ...`` line on stderr, exit 2.
Every write is an idempotent upsert, so nothing stored is lost or duplicated.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
from tqdm import tqdm

from .binance import PERP, SPOT, BinanceClient, ClientConfig, Universe
from .cli import parse_symbols, run_cli
from .errors import BannedError, BinanceError, CryptoGraphError, DataError, StoreError, UnknownSymbolError
from .csv_import import read_csv_folder
from .sources import open_store
from .store import Store
from .timeutil import HOUR_MS
from .vision import import_paths

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- plan & report
@dataclass
class SymbolResult:
    klines: int = 0
    book: int = 0
    funding: int = 0


@dataclass
class RefreshReport:
    """What one backfill/collect pass did, per market."""

    results: dict[tuple[str, str], SymbolResult] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    peak_weight: dict[str, int] = field(default_factory=dict)
    weight_budget: dict[str, int] = field(default_factory=dict)

    def total(self, what: str) -> int:
        return sum(getattr(r, what) for r in self.results.values())

    def summary(self) -> str:
        lines = []
        for market in (SPOT, PERP):
            res = {s: r for (m, s), r in self.results.items() if m == market}
            errs = {s: e for (m, s), e in self.errors.items() if m == market}
            if not res and not errs:
                continue
            lines.append(f"{market}: {len(res)} symbols, +{sum(r.klines for r in res.values())} candles, "
                         f"+{sum(r.book for r in res.values())} book snapshots"
                         + (f", +{sum(r.funding for r in res.values())} funding rows" if market == PERP else "")
                         + (f", {len(errs)} skipped" if errs else ""))
            for sym, err in sorted(errs.items()):
                lines.append(f"  skipped {sym}: {err}")
        lines.append(f"{self.requests} requests ({self.retries} retries) in {self.seconds:.1f} s; peak weight "
                     + ", ".join(f"{m} {self.peak_weight.get(m, 0)}/{self.weight_budget.get(m, 0)}"
                                 for m in self.peak_weight))
        return "\n".join(lines)


def make_client(args: argparse.Namespace) -> BinanceClient:
    return BinanceClient(ClientConfig(spot_url=args.spot_url, futures_url=args.futures_url,
                                      timeout=args.timeout, max_retries=args.retries,
                                      max_workers=args.workers))


def check_writable(store: Store) -> None:
    """Fail before any download if the store folder cannot be written."""
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=store.root, prefix=".probe.", delete=True):
            pass
    except OSError as exc:
        raise StoreError(f"cannot write to store {store.root}: {exc.strerror or exc}") from exc


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
def _stored_range(store: Store, symbol: str, market: str, listed: set[str] | None = None) -> tuple[int, int] | None:
    if listed is None:
        listed = set(store.symbols(market)) if store.exists() else set()
    if symbol not in listed:
        return None
    bounds = store.stored_range(symbol, market)
    if bounds is None:
        return None
    return int(bounds[0].value // 1_000_000), int(bounds[1].value // 1_000_000)


def sync_symbol(client: BinanceClient, store: Store, market: str, symbol: str, start_ms: int,
                now_ms: int, current_funding: dict[str, pd.DataFrame] | None,
                listed: set[str] | None = None) -> SymbolResult:
    """Bring one symbol up to date: missing klines, one book snapshot, funding.

    ``listed``: the symbols the store holds for ``market`` (saves a folder scan).
    """
    res = SymbolResult()
    stored = _stored_range(store, symbol, market, listed)
    ranges = [(start_ms, None)] if stored is None else []
    if stored is not None:
        first, last = stored
        if start_ms < first:
            ranges.append((start_ms, first - HOUR_MS))
        ranges.append((last + HOUR_MS, None))
    frames = [client.klines(symbol, market, lo, hi, now_ms=now_ms) for lo, hi in ranges]
    frames = [f for f in frames if len(f)]
    if frames:
        res.klines = store.write_klines(symbol, pd.concat(frames).sort_index(), market)
    res.book = store.write_book(symbol, client.book(symbol, market), market)
    if market == PERP:
        stored_funding = store.stored_range(symbol, kind="funding")
        last_ms = None if stored_funding is None else int(stored_funding[1].value // 1_000_000)
        new = []
        # Settled history since the last stored row; skipped while the latest
        # stored row is the live estimate for a settlement still ahead.
        if last_ms is None or last_ms <= now_ms:
            since = start_ms if last_ms is None else last_ms
            new.append(client.funding_history(symbol, since, now_ms))
        if current_funding and symbol in current_funding:
            new.append(current_funding[symbol])
        new = [f for f in new if len(f)]
        if new:  # one upsert (one rewrite) for history + live row
            merged = pd.concat(new)
            res.funding = store.write_funding(symbol, merged[~merged.index.duplicated(keep="last")])
    return res


def refresh(client: BinanceClient, store: Store, plan: dict[str, list[str]], hours: int,
            progress: bool = False) -> RefreshReport:
    """Run :func:`sync_symbol` for every planned symbol on the client's thread pool.

    ``hours``: how far back a symbol with nothing stored starts (backfill
    also extends stored symbols back to this horizon).
    """
    t0 = time.perf_counter()
    report = RefreshReport()
    now_ms = client.server_time_ms(SPOT if SPOT in plan else PERP)
    start_ms = (now_ms // HOUR_MS - hours) * HOUR_MS
    current = client.current_funding() if PERP in plan else None
    tasks = [(m, s) for m, syms in plan.items() for s in syms]
    bar = tqdm(total=len(tasks), unit="symbol", disable=not progress, file=sys.stderr)
    try:
        key = {f"{m}:{s}": (m, s) for m, s in tasks}
        listed = {m: set(store.symbols(m)) if store.exists() else set() for m in plan}

        def task(k: str) -> SymbolResult:
            market, symbol = key[k]
            return sync_symbol(client, store, market, symbol, start_ms, now_ms, current, listed[market])

        batch = client.map_symbols(task, key, progress=lambda _: bar.update(1))
    finally:
        bar.close()
    report.results = {key[k]: v for k, v in batch.values.items()}
    report.errors = {key[k]: str(e) for k, e in batch.errors.items()}
    report.seconds = time.perf_counter() - t0
    report.requests, report.retries = client.requests, client.retries
    for m, lim in client.limiters.items():
        if lim.peak_reserved:
            report.peak_weight[m], report.weight_budget[m] = lim.peak_reserved, lim.limit
    return report


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
def cmd_backfill(args: argparse.Namespace) -> int:
    store = Store(args.store)
    check_writable(store)
    if args.hours < 1:
        raise DataError("--hours must be >= 1")
    client = make_client(args)
    uni = client.universe(args.market, top=None if args.symbols else args.top,
                          min_quote_volume=None if args.symbols else args.min_quote_volume)
    plan = select(uni, _markets(args.market), parse_symbols(args.symbols))
    report = refresh(client, store, plan, args.hours, progress=True)
    return _finish(report, store)


def collect_cycle(client: BinanceClient, store: Store, args: argparse.Namespace) -> int:
    """One hourly cycle: every stored symbol (or the universe, for an empty store) brought up to date."""
    plan = {m: store.symbols(m) for m in _markets(args.market) if store.symbols(m)}
    if not plan:  # empty store: start from the universe
        uni = client.universe(args.market, top=args.top, min_quote_volume=args.min_quote_volume)
        plan = select(uni, _markets(args.market), parse_symbols(args.symbols))
    return _finish(refresh(client, store, plan, args.hours), store)


def seconds_to_next_cycle(client: BinanceClient, delay_s: float) -> float:
    """Until ``delay_s`` after the next hour, on the server's clock (the local one if it is unreachable)."""
    try:
        now = client.server_time_ms()
    except BinanceError:
        now = int(time.time() * 1000)
    return ((now // HOUR_MS + 1) * HOUR_MS - now) / 1000 + delay_s


def cmd_collect(args: argparse.Namespace) -> int:
    store = Store(args.store)
    check_writable(store)
    client = make_client(args)
    if args.once:
        return collect_cycle(client, store, args)
    while True:
        try:
            collect_cycle(client, store, args)
        except (BannedError, StoreError):
            raise  # going on would extend an IP ban; an unwritable store does not heal by itself
        except CryptoGraphError as exc:
            # A live job outlives outages: log, keep what was stored, try again next hour.
            log.error("collect cycle failed (will retry after the next hour): %s", exc)
        wait = seconds_to_next_cycle(client, args.delay)
        log.info("next cycle in %.0f s", wait)
        _wait(wait)


def _wait(seconds: float) -> None:
    """The loop's only sleep (tests replace it; the client's retry back-off has its own)."""
    time.sleep(seconds)


def cmd_import_vision(args: argparse.Namespace) -> int:
    store = Store(args.store)
    check_writable(store)
    report = import_paths([Path(p) for p in args.paths], store)
    print(report.summary())
    return 0


def cmd_import_csv(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    frames = read_csv_folder(folder, drop_last=not args.keep_last)  # every file checked before any write
    symbols = parse_symbols(args.symbols)
    if symbols:
        unknown = sorted(set(symbols) - set(frames))
        if unknown:
            raise DataError(f"no file for {', '.join(unknown)} in {folder}")
        frames = {s: frames[s] for s in symbols}
    store = Store(args.store)
    check_writable(store)
    added = 0
    for symbol, frame in tqdm(frames.items(), desc="import-csv", unit="symbol", disable=None):
        added += store.write_klines(symbol, frame, market=args.market)
    rows = sum(len(f) for f in frames.values())
    print(f"{len(frames)} symbols, {rows} candles read, {added} new in {store.root} ({args.market})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    print(format_info(store))
    return 0


def format_info(store: Store) -> str:
    """Per market: symbols, range, rows, gaps, funding and book coverage."""
    summary = store.summary()
    lines = [f"store {store.root}"]
    for market in (SPOT, PERP):
        s = summary[summary["market"] == market] if len(summary) else summary
        if not len(s):
            continue
        with_gaps = s[s["gaps"] > 0]
        lines.append(f"{market}: {len(s)} symbols, {s['first'].min():%Y-%m-%d %H:%M} .. "
                     f"{s['last'].max():%Y-%m-%d %H:%M} UTC, {int(s['rows'].sum())} candles, "
                     f"{len(with_gaps)} symbols with gaps ({int(s['missing_hours'].sum())} missing hours)")
        book = s[s["book_rows"] > 0]
        lines.append(f"  book: {len(book)}/{len(s)} symbols, {int(s['book_rows'].sum())} snapshots")
        if market == PERP:
            fund = s[s["funding_rows"] > 0]
            lines.append(f"  funding: {len(fund)}/{len(s)} symbols, {int(s['funding_rows'].sum())} rows")
    if len(summary):
        table = summary.assign(first=summary["first"].dt.strftime("%Y-%m-%d %H:%M"),
                               last=summary["last"].dt.strftime("%Y-%m-%d %H:%M"))
        lines.append(table.to_string(index=False))
    return "\n".join(lines)


# --------------------------------------------------------------------------- parser
def _add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--market", choices=["spot", "perp", "both"], default="spot")
    p.add_argument("--top", type=int, default=None, help="keep the N most traded pairs")
    p.add_argument("--min-quote-volume", type=float, default=None, help="24 h quote volume floor (USDT)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols instead of the ranked universe")
    p.add_argument("--spot-url", default=ClientConfig.spot_url, help="spot host root")
    p.add_argument("--futures-url", default=ClientConfig.futures_url, help="USDT-M futures host root")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=5, help="retries per request")
    p.add_argument("--workers", type=int, default=ClientConfig.max_workers, help="concurrent requests")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gnn_market.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("backfill", help="download history into a store (resumable)")
    p.add_argument("--store", required=True)
    p.add_argument("--hours", type=int, default=24 * 365, help="history length (default one year)")
    _add_network(p)
    p.set_defaults(func=cmd_backfill)
    p = sub.add_parser("collect", help="hourly live job: candle + book + funding")
    p.add_argument("--store", required=True)
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument("--hours", type=int, default=24, help="history for symbols with nothing stored")
    p.add_argument("--delay", type=float, default=15.0, help="seconds after the hour (late candles)")
    _add_network(p)
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("import-vision", help="import Binance public-archive zips/CSVs")
    p.add_argument("paths", nargs="+")
    p.add_argument("--store", required=True)
    p.set_defaults(func=cmd_import_vision)
    p = sub.add_parser("import-csv", help="import a folder of <SYMBOL>.csv[.gz] hourly candle files")
    p.add_argument("folder")
    p.add_argument("--store", required=True)
    p.add_argument("--market", choices=["spot", "perp"], default="spot")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: every file)")
    p.add_argument("--keep-last", action="store_true",
                   help="keep each file's last row (by default dropped: dumps usually end in a partial hour)")
    p.set_defaults(func=cmd_import_csv)
    p = sub.add_parser("info", help="describe a store (default: the bundled sample)")
    p.add_argument("--store", default=None)
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0)
    for name in ("top", "workers", "retries"):
        if getattr(args, name, None) is not None and getattr(args, name) < (1 if name != "retries" else 0):
            raise DataError(f"--{name} must be positive")
    return int(args.func(args) or 0)


def cli() -> int:
    """Console-script entry point ``cryptograph-data``."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
