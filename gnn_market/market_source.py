"""The seam between where market data comes from and the store: the :class:`MarketSource` Protocol.

A source answers five small questions for a market (``"spot"`` or ``"perp"``)
and a time range, each in the store's schema (:mod:`gnn_market.store_schema`):
which symbols it has, their hourly candles, an order-book snapshot, funding
rates, and what time it is. The generic code that fills a store speaks only
to this Protocol: :func:`copy_source` here (copy whole series: the importers)
and :mod:`gnn_market.source_sync` (bring symbols up to date: ``backfill`` /
``collect``'s reference path). So the Binance
REST client (:class:`~gnn_market.binance.BinanceClient`), the public-archive
importer (:class:`~gnn_market.vision.VisionSource`), the CSV importer
(:class:`~gnn_market.csv_import.CsvSource`) and a user's own feed all plug in
the same way (docs/data.md, "Adding a data source").

Times given to a source are epoch **milliseconds** (UTC ``int``), not
``pd.Timestamp``: the hour arithmetic of a refresh (``HOUR_MS`` steps, stored
ranges), Binance's API and the archive files all count in ms, an ``int`` is
exact and cannot be a naive local time by mistake. Times a source *returns*
are the frames' UTC ``DatetimeIndex``, as the store keeps them.

Every frame a source returns is checked (:func:`checked_source_frame`) before
anything is written: a frame that breaks the schema raises one
:class:`~gnn_market.errors.DataError` naming the source. A frame without rows
(``pd.DataFrame()`` will do) means "none": nothing is written.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Protocol, runtime_checkable

import pandas as pd

from .errors import CryptoGraphError, DataError
from .store import Store
from .store_schema import BOOK_COLUMNS, FUNDING_COLUMNS, KLINE_COLUMNS, MIN_TIME_MS, checked_frame

#: A series to copy: (kind ``"klines"`` or ``"funding"``, market, symbol).
Series = tuple[str, str, str]


@runtime_checkable
class MarketSource(Protocol):
    """Where a store's market data comes from: symbols, candles, book and funding per market and range.

    Implemented by :class:`~gnn_market.binance.BinanceClient` (REST),
    :class:`~gnn_market.vision.VisionSource` (archive files) and
    :class:`~gnn_market.csv_import.CsvSource` (a folder of CSV files). A class
    with these five methods is a source; it needs no base class
    (``isinstance(x, MarketSource)`` checks the methods are there).
    """

    def symbols(self, market: str) -> list[str]:
        """The symbols this source holds for ``market``.

        Args:
            market: ``"spot"`` or ``"perp"``.

        Returns:
            Symbol names (``^[A-Z0-9]{2,30}$``), best first where the source
            ranks them; empty when it has nothing for ``market``.
        """
        ...

    def klines(self, symbol: str, market: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        """Closed hourly candles of ``symbol`` with ``start_ms <= open_time <= end_ms``.

        Args:
            symbol: a symbol of :meth:`symbols` (``market``).
            market: ``"spot"`` or ``"perp"``.
            start_ms: first open time wanted, epoch ms (UTC), on the hour.
            end_ms: last open time wanted, inclusive; ``None``: up to the last closed hour.

        Returns:
            Columns ``KLINE_COLUMNS`` (``open``, ``high``, ``low``, ``close``,
            ``volume`` required; ``quote_volume``, ``trades``,
            ``taker_buy_volume``, ``taker_buy_quote_volume`` may be missing),
            indexed by the UTC ``open_time``; empty when nothing is in range.
        """
        ...

    def book(self, symbol: str, market: str) -> pd.DataFrame:
        """The order-book snapshot(s) the source can give now.

        Args:
            symbol: a symbol of :meth:`symbols` (``market``).
            market: ``"spot"`` or ``"perp"``.

        Returns:
            Columns ``BOOK_COLUMNS`` (``best_bid``, ``best_ask``, ``bid_qty``,
            ``ask_qty`` required), indexed by the UTC ``snapshot_time`` (the
            true capture time, never rounded). May be empty: an archive has no
            live book.
        """
        ...

    def funding(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        """Funding rates of perpetual ``symbol`` with ``start_ms <= funding_time <= end_ms``.

        Args:
            symbol: a symbol of :meth:`symbols` (``"perp"``).
            start_ms: first settlement time wanted, epoch ms (UTC).
            end_ms: last settlement time wanted, inclusive; ``None``: everything
                the source has from ``start_ms`` on, which for a live source may
                end with its estimate of the next settlement, stamped at that
                settlement's time (the settled value later replaces it: same index).

        Returns:
            Columns ``FUNDING_COLUMNS`` (``funding_rate`` required,
            ``mark_price`` may be missing), indexed by the UTC ``funding_time``;
            empty for a source without funding.
        """
        ...

    def now_ms(self, market: str) -> int:
        """The source's clock in epoch ms: it decides which hour is still open.

        Args:
            market: ``"spot"`` or ``"perp"`` (a source may have one clock per market).

        Returns:
            Epoch ms (UTC). A file-backed source returns its newest time plus an hour
            (or the local clock), so every hour it holds counts as closed.
        """
        ...


def source_name(source: object) -> str:
    """How messages name a source: its ``name`` attribute when it has one, else its class."""
    return str(getattr(source, "name", None) or type(source).__name__)


def checked_source_frame(frame: object, kind: str, source: object, what: str) -> pd.DataFrame:
    """``frame`` as the store schema of ``kind`` (``"klines"``, ``"book"``, ``"funding"``), or one DataError.

    On top of the store's own rules (required columns, numeric values, prices,
    OHLC order: :func:`~gnn_market.store_schema.checked_frame`) a source must
    stamp its rows in UTC: a naive index is refused, never guessed, because a
    local time read as UTC would shift every row by hours without a word.

    Args:
        frame: what the source returned.
        kind: the store kind the frame should be.
        source: the source, for the message (:func:`source_name`).
        what: which call, e.g. ``"klines BTCUSDT (spot)"``.

    Raises:
        DataError: ``source <name>: <what>: <what is wrong>``.
    """
    label = f"source {source_name(source)}: {what}"
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{label}: expected a pandas DataFrame, got {type(frame).__name__}")
    if not len(frame):  # nothing to write: ``pd.DataFrame()`` is enough to say "none" (a source without a book)
        return empty_frame(kind)
    if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is None:
        raise DataError(f"{label}: naive times in the index; stamp them in UTC "
                        f"(e.g. index.tz_localize('UTC')), a source's times are never guessed")
    return checked_frame(frame, kind, label)


def empty_frame(kind: str) -> pd.DataFrame:
    """An empty frame of the store schema of ``kind`` (what a source without such data returns)."""
    columns, index = {"klines": (KLINE_COLUMNS, "open_time"), "book": (BOOK_COLUMNS, "snapshot_time"),
                      "funding": (FUNDING_COLUMNS, "funding_time")}[kind]
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    frame.index = pd.DatetimeIndex([], tz="UTC", name=index).as_unit("ns")
    return frame


def in_range(frame: pd.DataFrame, start_ms: int, end_ms: int | None) -> pd.DataFrame:
    """The rows of ``frame`` (UTC index) with ``start_ms <= time <= end_ms`` (``end_ms`` None: no upper bound)."""
    tz = getattr(frame.index, "tz", None)  # a naive index is filtered too: the check then names the mistake
    keep = frame.index >= pd.Timestamp(start_ms, unit="ms", tz="UTC").tz_convert(tz)
    if end_ms is not None:
        keep &= frame.index <= pd.Timestamp(end_ms, unit="ms", tz="UTC").tz_convert(tz)
    return frame if keep.all() else frame[keep]


def wall_clock_ms() -> int:
    """The local clock in epoch ms: a file source's ``now_ms`` (every hour it holds has closed)."""
    return int(time.time() * 1000)


def all_series(source: MarketSource, markets: Iterable[str] = ("spot", "perp")) -> list[Series]:
    """Every (kind, market, symbol) ``source`` holds: klines of each market, funding of its perps."""
    series = [("klines", m, s) for m in markets for s in source.symbols(m)]
    return series + [("funding", "perp", s) for kind, m, s in list(series) if m == "perp"]


def copy_source(source: MarketSource, store: Store, series: list[Series], start_ms: int = MIN_TIME_MS,
                end_ms: int | None = None, written: Callable[[Series, int, int], None] | None = None,
                write_failed: Callable[[CryptoGraphError], CryptoGraphError] | None = None) -> dict[Series, int]:
    """Copy ``series`` of ``source`` (rows with ``start_ms <= time <= end_ms``) into ``store``.

    Every target is checked first (:meth:`Store.check_targets`: the store's marker and each series'
    stored files), so a store that would refuse a write stops the copy before anything is written.
    Then each series is read, checked and written in one upsert, in the given order: a bad
    frame stops the copy before its series is written (series written before it stay).

    Args:
        source: any :class:`MarketSource`.
        store: the destination; writes are idempotent upserts, so a copy can be re-run.
        series: (kind ``"klines"``/``"funding"``, market, symbol) to copy, e.g. :func:`all_series`.
        start_ms, end_ms: the range, epoch ms (``end_ms`` None: everything from ``start_ms``).
        written: called after each write with the series, its rows and the rows new to the store.
        write_failed: turns the error of a failed write into the one raised (e.g. adding what was written).

    Returns:
        Rows new to the store per series.
    """
    for kind, market, symbol in series:
        store.check_targets(kind, [symbol], None if kind == "funding" else market)
    added: dict[Series, int] = {}
    for item in series:
        frame = _read_series(source, item, start_ms, end_ms)
        try:
            added[item] = _write_series(store, item, frame)
        except CryptoGraphError as exc:
            if write_failed is None:
                raise
            raise write_failed(exc) from exc
        if written is not None:
            written(item, len(frame), added[item])
    return added


def _read_series(source: MarketSource, series: Series, start_ms: int, end_ms: int | None) -> pd.DataFrame:
    kind, market, symbol = series
    if kind == "funding":
        return checked_source_frame(source.funding(symbol, start_ms, end_ms), kind, source, f"funding {symbol}")
    if kind != "klines":
        raise DataError(f"cannot copy {kind!r}: a series is klines or funding")
    return checked_source_frame(source.klines(symbol, market, start_ms, end_ms), kind, source,
                                f"klines {symbol} ({market})")


def _write_series(store: Store, series: Series, frame: pd.DataFrame) -> int:
    kind, market, symbol = series
    if kind == "funding":
        return store.write_funding(symbol, frame)
    return store.write_klines(symbol, frame, market=market)
