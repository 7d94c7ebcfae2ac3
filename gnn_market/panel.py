"""Store -> one aligned hourly (time x symbol) panel with explicit masks.

Every array of a :class:`Panel` is ``[T, N]``: row ``t`` is the hour whose
candle opened at ``times[t]`` (UTC), column ``n`` is ``symbols[n]``. Conventions
(see ``docs/features.md``):

* **Grid.** One hourly grid from the first to the last candle over all loaded
  symbols, without holes. Hours before a symbol's listing or after its
  delisting are masked (``mask`` False, prices NaN), never invented.
* **Short gaps, causal fill.** A missing candle is forward-filled when the last
  real candle is at most ``max_fill_hours`` hours earlier: close carried,
  ``open = high = low = close``, volume 0, flagged in ``filled``. The fill
  only looks back, so the first ``max_fill_hours`` hours of a *long* gap are
  filled too (at that time nobody can know how long the gap will last); the
  rest of a long gap stays masked. Deciding by the gap's total length would
  leak the future into the mask.
* **Bad candles.** A candle with a non-finite or non-positive open/high/low/
  close counts as missing; a NaN volume counts as 0.
* **Book.** Row ``t`` gets the latest snapshot with ``snapshot_time`` in
  ``(t + 1h - book_tolerance, t + 1h]``: taken at or before the close of
  candle ``t`` (the decision time), never after it, since a snapshot after
  the close already holds part of the next candle, whose class is row ``t``'s
  label. ``snapshot_time`` is the true capture time (store format 2; the
  ``collect`` job takes the book ``--book-lead`` = 30 s before each hour). In
  a store of format 1 (``STORE.json`` ``"book_time": "floored"`` once
  migrated), whose collector floored snapshots taken up to 5 min after
  an hour to the hour, every stamp is read as its latest possible capture
  time (on-the-hour stamps + 5 min, others + 1 s), so such snapshots never
  serve the row whose close they followed.
* **Funding.** Row ``t`` gets the latest funding event with
  ``funding_time <= t + 1h`` (settled by the decision time). Funding is keyed
  by the perp symbol; a spot panel uses the perp of the same name if stored.
  A perp panel also has ``funding_events``: the rates of the events settling
  inside row ``t``'s own hour, ``(t, t + 1h]``, summed (0 where none). The
  forward-filled ``funding_rate`` cannot tell two equal consecutive settlements
  apart; what a position held over an hour pays needs the events themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np
import pandas as pd

from .errors import DataError
from .store import Store
from .store_schema import LEGACY_BOOK_DELAY, unique_symbols, validate_market
from .timeutil import HOUR, to_utc_index

#: Row ``t`` takes the latest book snapshot in ``(t + 1h - BOOK_TOLERANCE, t + 1h]``: at most this old at the close.
BOOK_TOLERANCE = pd.Timedelta(minutes=5)

#: Every ``[T, N]`` array of a :class:`Panel`, in field order: what ``slice``/``select`` cut and what
#: identifies "the data" (the environment's encoder cache hashes them). Optional ones may be None.
ARRAY_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "mask", "filled",
                "funding_rate", "has_funding", "best_bid", "best_ask", "bid_qty", "ask_qty", "has_book",
                "funding_events")


@dataclass
class Panel:
    """Aligned hourly arrays ``[T, N]`` for ``N`` symbols of one market.

    Float arrays are NaN where unknown; ``mask`` says where a real or
    short-gap-filled candle exists (``filled`` marks the latter).
    ``quote_volume``/``trades`` are NaN where the source does not report them.
    """

    times: pd.DatetimeIndex  # [T] hourly UTC grid, no holes
    symbols: list[str]  # [N]
    market: str
    open: np.ndarray  # [T, N] float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    mask: np.ndarray  # [T, N] bool
    filled: np.ndarray  # [T, N] bool
    funding_rate: np.ndarray  # [T, N] float64, NaN if none
    has_funding: np.ndarray  # [T, N] bool
    best_bid: np.ndarray  # [T, N] float64 from the last snapshot at or before t + 1h, NaN if none
    best_ask: np.ndarray
    bid_qty: np.ndarray
    ask_qty: np.ndarray
    has_book: np.ndarray  # [T, N] bool
    funding_events: np.ndarray | None = None  # [T, N] float64: rates settling in (t, t + 1h], summed; perp only

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, N)``."""
        return len(self.times), len(self.symbols)

    def slice(self, start=None, end=None) -> "Panel":
        """Rows with ``start <= time <= end`` (inclusive; None = open end).

        Features computed on a slice lose the history before ``start``.
        """
        lo = 0 if start is None else int(self.times.searchsorted(to_utc_index([start], "t")[0], "left"))
        hi = len(self.times) if end is None else int(self.times.searchsorted(to_utc_index([end], "t")[0], "right"))
        return replace(self, times=self.times[lo:hi], symbols=list(self.symbols),
                       **self._arrays(lambda a: a[lo:hi].copy()))

    def select(self, symbols: list[str]) -> "Panel":
        """Columns for ``symbols`` (in that order); unknown or repeated symbol -> DataError."""
        symbols = unique_symbols(symbols)
        missing = [s for s in symbols if s not in self.symbols]
        if missing:
            raise DataError(f"symbols not in panel: {missing}")
        cols = [self.symbols.index(s) for s in symbols]
        return replace(self, symbols=list(symbols), **self._arrays(lambda a: a[:, cols].copy()))

    def _arrays(self, cut: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
        """``cut(array)`` for every array field that is set (absent optional ones stay None)."""
        return {name: cut(arr) for name in ARRAY_FIELDS if (arr := getattr(self, name)) is not None}

    def __repr__(self) -> str:
        span = f"{self.times[0]} .. {self.times[-1]}" if len(self.times) else "empty"
        return f"Panel({self.market}, T={len(self.times)}, N={len(self.symbols)}, {span})"


def load_panel(store: Store, market: str = "spot", symbols: list[str] | None = None,
               start=None, end=None, top: int | None = None, max_fill_hours: int = 3,
               book_tolerance: pd.Timedelta = BOOK_TOLERANCE) -> Panel:
    """Load klines (plus funding and book snapshots where stored) into a :class:`Panel`.

    Args:
        store: the market store.
        market: ``"spot"`` or ``"perp"``.
        symbols: symbols to load (default: all of ``market``); unknown or repeated -> DataError.
        start, end: inclusive bounds on candle ``open_time``.
        top: keep the ``top`` symbols with the largest quote volume over the
            loaded range (``volume x close`` where quote volume is unknown).
            Note: ranking over the whole range is a selection made with
            hindsight; use it for the universe, not inside a backtest window
            (:func:`rank_top_before` ranks on the hours before a range instead).
        max_fill_hours: forward-fill a missing candle at most this many hours
            after the last real one (0 disables filling).
        book_tolerance: how long before the close ``t + 1h`` a snapshot may be
            taken and still count for row ``t`` (see module docstring).
    """
    validate_market(market)
    if max_fill_hours < 0:
        raise DataError(f"max_fill_hours must be >= 0, got {max_fill_hours}")
    given = symbols is not None
    symbols = _candidates(store, market, symbols)
    frames = store.read_many("klines", symbols, market, start=start, end=end)  # month files read by threads
    if not given or top is not None:
        frames = {s: f for s, f in frames.items() if len(f)}  # drop symbols without candles in range
    if top is not None:
        frames = _top_by_quote_volume(frames, top)
    if not frames or not any(len(f) for f in frames.values()):
        raise DataError(f"no {market} candles in store {store.root} for the requested range")
    names = sorted(frames) if not given or top is not None else list(symbols)
    first = min(f.index.min() for f in frames.values() if len(f))
    last = max(f.index.max() for f in frames.values() if len(f))
    times = pd.date_range(first, last, freq="h", name="time")
    raw = _align_klines(frames, names, times)
    real = raw.pop("real")
    kl = _forward_fill(raw, real, max_fill_hours)
    funding = _align_funding(store, names, times, events=market == "perp")
    book = _align_book(store, market, names, times, book_tolerance)
    return Panel(times=times, symbols=names, market=market, **kl, **funding, **book)


def rank_top_before(store: Store, market: str, top: int, before: pd.Timestamp | None,
                    symbols: list[str] | None = None) -> list[str]:
    """Point in time: the ``top`` most liquid of ``symbols`` (default: all of ``market``), ranked before ``before``.

    Liquidity is the rule of ``load_panel(top=)`` (summed quote volume,
    ``volume x close`` where unknown; ties by name), summed over every stored
    candle that opened strictly before ``before``, i.e. over the hours before
    a range starting there. Candles from ``before`` on are never read, so no
    volume of the range or after it can change the choice. Symbols without a
    candle before ``before`` were not trading yet and are not eligible. Returns
    the chosen names sorted, as ``load_panel`` orders them.

    A :class:`DataError` when ``before`` is None (a range with no ``start=``
    begins at the first stored hour, so only its own hours could rank the
    pairs) or when nothing is stored before it.
    """
    validate_market(market)
    if before is None:
        raise DataError(f"top={top} ranks pairs by quote volume on the stored hours before the range, and no "
                        f"start= was given (the range would begin at the first stored hour, so only its own hours "
                        f"could rank them: a choice made with hindsight); pass start= a later hour, or symbols= "
                        f"without top=")
    frames = store.read_many("klines", _candidates(store, market, symbols), market, end=before)
    frames = {s: f[f.index < before] for s, f in frames.items()}  # `end` is inclusive: the range's own hour out
    frames = {s: f for s, f in frames.items() if len(f)}
    if not frames:
        raise DataError(f"top={top} ranks pairs by quote volume on the stored hours before start="
                        f"{before.isoformat()}, and store {store.root} holds no {market} candles before it; pass "
                        f"a later start=, or symbols= without top=")
    return sorted(_top_by_quote_volume(frames, top))


def _candidates(store: Store, market: str, symbols: list[str] | None) -> list[str]:
    """``symbols`` checked against the store (all of ``market`` when None); unknown or repeated -> DataError."""
    available = store.symbols(market)
    if symbols is None:
        return available
    symbols = unique_symbols(symbols)
    unknown = [s for s in symbols if s not in available]
    if unknown:
        raise DataError(f"unknown {market} symbols {unknown} in store {store.root}")
    return symbols


def _top_by_quote_volume(frames: dict[str, pd.DataFrame], top: int) -> dict[str, pd.DataFrame]:
    if top <= 0:
        raise DataError(f"top must be positive, got {top}")
    liquidity = {}
    for sym, f in frames.items():
        quote = f["quote_volume"].to_numpy(dtype="float64")
        estimate = f["volume"].to_numpy(dtype="float64") * f["close"].to_numpy(dtype="float64")
        liquidity[sym] = float(np.nansum(np.where(np.isfinite(quote), quote, estimate)))
    keep = sorted(liquidity, key=lambda s: (-liquidity[s], s))[:top]
    return {s: frames[s] for s in keep}


def _align_klines(frames: dict[str, pd.DataFrame], names: list[str],
                  times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Scatter each symbol's candles into ``[T, N]`` arrays (NaN elsewhere) plus ``real``."""
    T, N = len(times), len(names)
    cols = ("open", "high", "low", "close", "volume", "quote_volume", "trades")
    out = {c: np.full((T, N), np.nan) for c in cols}
    t0 = times[0].value
    for n, sym in enumerate(names):
        f = frames.get(sym)
        if f is None or not len(f):
            continue
        rows = (f.index.asi8 - t0) // HOUR.value
        for c in cols:
            out[c][rows, n] = f[c].to_numpy(dtype="float64", na_value=np.nan)
    prices = np.stack([out[c] for c in ("open", "high", "low", "close")])
    real = np.all(np.isfinite(prices) & (prices > 0), axis=0)
    for c in cols:
        out[c][~real] = np.nan
    out["volume"][real & ~np.isfinite(out["volume"])] = 0.0
    out["real"] = real
    return out


def _forward_fill(kl: dict[str, np.ndarray], real: np.ndarray, max_fill_hours: int) -> dict[str, np.ndarray]:
    """Causal forward fill of at most ``max_fill_hours`` hours after the last real candle."""
    T, N = real.shape
    rows = np.arange(T)[:, None]
    last = np.maximum.accumulate(np.where(real, rows, -1), axis=0)  # [T, N] last real row <= t
    filled = ~real & (last >= 0) & (rows - last <= max_fill_hours)
    src = np.where(last >= 0, last, 0)
    col = np.broadcast_to(np.arange(N), (T, N))
    carried = kl["close"][src, col]
    out = dict(kl)
    for c in ("open", "high", "low", "close"):
        out[c] = np.where(filled, carried, kl[c])
    for c in ("volume", "quote_volume", "trades"):
        known_zero = np.where(np.isnan(kl[c][src, col]), np.nan, 0.0)  # stay unknown if never reported
        out[c] = np.where(filled, known_zero if c != "volume" else 0.0, kl[c])
    out["mask"] = real | filled
    out["filled"] = filled
    return out


def _align_funding(store: Store, names: list[str], times: pd.DatetimeIndex,
                   events: bool) -> dict[str, np.ndarray | None]:
    """``funding_rate``/``has_funding`` (latest event with ``funding_time <= t + 1h``) and, when
    ``events``, ``funding_events`` (events in ``(t, t + 1h]``, summed). One read per symbol,
    searchsorted over the grid: no loop over hours."""
    T, N = len(times), len(names)
    rate = np.full((T, N), np.nan)
    settled = np.zeros((T, N)) if events else None
    grid = times.as_unit("ns").asi8
    keys = grid + HOUR.value
    stored = set(store.funding_symbols())
    frames = store.read_many("funding", [s for s in names if s in stored])
    for n, sym in enumerate(names):
        if sym not in frames:
            continue
        f = frames[sym]
        rates = f["funding_rate"].to_numpy(dtype="float64")
        ok = np.isfinite(rates)
        when, rates = pd.DatetimeIndex(f.index).as_unit("ns").asi8[ok], rates[ok]
        if not len(when):
            continue
        idx = np.searchsorted(when, keys, side="right") - 1
        has = idx >= 0
        rate[has, n] = rates[idx[has]]
        if settled is not None:
            # The event at e belongs to the row t with times[t] < e <= times[t] + 1h, if any.
            row = np.searchsorted(grid, when, side="left") - 1
            inside = (row >= 0) & (when <= grid[np.maximum(row, 0)] + HOUR.value)
            np.add.at(settled[:, n], row[inside], rates[inside])
    return {"funding_rate": rate, "has_funding": np.isfinite(rate), "funding_events": settled}


def _align_book(store: Store, market: str, names: list[str], times: pd.DatetimeIndex,
                tolerance: pd.Timedelta) -> dict[str, np.ndarray]:
    """Latest snapshot in ``(t + 1h - tolerance, t + 1h]`` per row (never one taken after the close)."""
    if tolerance <= pd.Timedelta(0):
        raise DataError(f"book_tolerance must be positive, got {tolerance}")
    T, N = len(times), len(names)
    cols = ("best_bid", "best_ask", "bid_qty", "ask_qty")
    out = {c: np.full((T, N), np.nan) for c in cols}
    closes = times.asi8 + HOUR.value
    book_syms = set(store.book_symbols(market))
    legacy = store.book_time() == "floored" if book_syms else False  # a format 1 store, migrated or not
    frames = store.read_many("book", [s for s in names if s in book_syms], market)
    for n, sym in enumerate(names):
        if sym not in frames:
            continue
        b = frames[sym]
        if not len(b):
            continue
        snap = b.index.asi8
        order = None
        if legacy:  # latest possible capture time of a floored stamp (see module docstring)
            snap = snap + np.where(snap % HOUR.value == 0, LEGACY_BOOK_DELAY.value, 1_000_000_000)
            order = np.argsort(snap, kind="stable")
            snap = snap[order]
        idx = np.searchsorted(snap, closes, side="right") - 1  # last snapshot taken at or before the close
        ok = idx >= 0
        ok[ok] = snap[idx[ok]] > closes[ok] - tolerance.value
        for c in cols:
            values = b[c].to_numpy(dtype="float64")
            if order is not None:
                values = values[order]
            out[c][ok, n] = values[idx[ok]]
    has = np.isfinite(out["best_bid"]) & np.isfinite(out["best_ask"])
    has &= np.isfinite(out["bid_qty"]) & np.isfinite(out["ask_qty"])
    for c in cols:
        out[c][~has] = np.nan
    out["has_book"] = has
    return out


def panel_fields() -> list[str]:
    """Names of the ``[T, N]`` arrays of a :class:`Panel`, in field order (:data:`ARRAY_FIELDS`)."""
    return [f.name for f in fields(Panel) if f.name in ARRAY_FIELDS]
