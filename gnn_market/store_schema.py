"""The store's schema and value rules: columns and dtypes per kind, symbol and market names, and
the checks every stored row must pass (unique times, candles on the hour, finite prices between a
floor and a sanity bound, OHLC ordering, non-negative and bounded volumes, whole trade counts, taker
volumes within the total, bounded funding). Integer times in a file written by another tool are read
as epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude
(:func:`epoch_index`).

:mod:`gnn_market.store` applies them on every write and read; importers and
collectors use :func:`checked_frame` to refuse bad input before it reaches the store.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import BadStoreFile, DataError, StoreError  # noqa: F401  (BadStoreFile: old import path)
from .timeutil import HOUR, to_utc_index

MARKETS = ("spot", "perp")
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,30}$")
#: Version 1 floored book snapshots taken up to this long after an hour to the hour (and others to the second).
LEGACY_BOOK_DELAY = pd.Timedelta(minutes=5)
#: Largest price (USDT) accepted: far above any real quote (BTC ~1e5), far below a corrupt value such as 1e300.
MAX_PRICE = 1e9
#: Smallest price (USDT) accepted: Binance's finest tick on a USDT pair is 1e-8; 1e-300 is corruption (its
#: logarithm breaks every return feature).
MIN_PRICE = 1e-10
#: Largest traded value of one hourly candle (USDT): ``quote_volume``, ``taker_buy_quote_volume`` and
#: ``volume`` / ``taker_buy_volume`` times ``close``. All of Binance trades ~1e10 USDT a day; BTC's busiest
#: hour in the bundled sample is 2e9. A volume of 1e300 passes every other rule and changes predictions.
MAX_NOTIONAL = 1e12
#: Largest ``trades`` count of one hourly candle (BTC's busiest hours have ~1e6).
MAX_TRADES = 1e9
#: Relative slack of "taker buy volume <= volume" (both are sums of the same trades; the slack absorbs
#: float round trips through other tools only).
TAKER_TOLERANCE = 1e-6
#: Relative slack of the OHLC ordering rule. Binance data (the bundled sample and the three-year spot set) holds
#: it exactly; the slack only absorbs float round trips through other tools.
OHLC_TOLERANCE = 1e-9
#: Largest ``|funding_rate|`` per interval accepted (Binance caps rates at a few percent).
MAX_FUNDING_RATE = 1.0
#: Earliest time the importers accept (2010-01-01 UTC, in ms): an older epoch value is a unit or format mistake.
MIN_TIME_MS = 1_262_304_000_000

#: Hourly candle columns and dtypes. ``trades`` is nullable (``pd.NA`` where the
#: source does not report it); float columns are NaN where unknown.
KLINE_COLUMNS: dict[str, str] = {
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",  # base asset
    "quote_volume": "float64",  # quote asset (USDT)
    "trades": "Int64",
    "taker_buy_volume": "float64",  # base asset
    "taker_buy_quote_volume": "float64",
}
KLINE_REQUIRED = ("open", "high", "low", "close", "volume")

#: Funding events of a perpetual. ``funding_rate`` is per funding interval
#: (e.g. 0.0001 = 0.01% per 8 h); ``mark_price`` is NaN where unknown.
FUNDING_COLUMNS: dict[str, str] = {"funding_rate": "float64", "mark_price": "float64"}
FUNDING_REQUIRED = ("funding_rate",)

#: Summary of one top-of-book snapshot (top ``levels`` levels, usually 20).
#: ``spread`` is the absolute spread ``best_ask - best_bid`` in quote units;
#: ``bid_qty``/``ask_qty`` are summed base quantities over the levels.
BOOK_COLUMNS: dict[str, str] = {
    "best_bid": "float64",
    "best_ask": "float64",
    "best_bid_qty": "float64",
    "best_ask_qty": "float64",
    "bid_qty": "float64",
    "ask_qty": "float64",
    "bid_notional": "float64",
    "ask_notional": "float64",
    "spread": "float64",
    "levels": "int64",
}
BOOK_REQUIRED = ("best_bid", "best_ask", "bid_qty", "ask_qty")


@dataclass(frozen=True)
class _Kind:
    name: str
    index: str
    columns: dict[str, str]
    required: tuple[str, ...]
    per_market: bool


KLINES = _Kind("klines", "open_time", KLINE_COLUMNS, KLINE_REQUIRED, per_market=True)
FUNDING = _Kind("funding", "funding_time", FUNDING_COLUMNS, FUNDING_REQUIRED, per_market=False)
BOOK = _Kind("book", "snapshot_time", BOOK_COLUMNS, BOOK_REQUIRED, per_market=True)


def is_valid_symbol(symbol: str) -> bool:
    """True if ``symbol`` is safe to use as a file name (``^[A-Z0-9]{2,30}$``)."""
    return isinstance(symbol, str) and bool(SYMBOL_PATTERN.match(symbol))


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` or raise :class:`DataError` if it is not ``^[A-Z0-9]{2,30}$``."""
    if not is_valid_symbol(symbol):
        raise DataError(f"invalid symbol {symbol!r}: expected 2-30 characters A-Z or 0-9")
    return symbol


def unique_symbols(symbols: Sequence[str], what: str = "symbols") -> list[str]:
    """``symbols`` as a list, refusing a bare string and repeated names (:class:`DataError` naming them).

    A symbol listed twice would be two nodes of one pair in every graph (and change the
    other pairs' outputs), so it is an error everywhere a list of symbols is taken,
    never silently de-duplicated.
    """
    if isinstance(symbols, (str, bytes)):
        raise DataError(f"{what} must be a list of symbols, got the string {symbols!r}")
    symbols = list(symbols)
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise DataError(f"{what} lists {', '.join(map(str, repeated))} more than once; give each symbol once")
    return symbols


def validate_market(market: str) -> str:
    if market not in MARKETS:
        raise DataError(f"unknown market {market!r}: expected one of {', '.join(MARKETS)}")
    return market


def _empty_frame(kind: _Kind) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in kind.columns.items()})
    frame.index = pd.DatetimeIndex([], tz="UTC", name=kind.index).as_unit("ns")
    return frame


def _normalise(df: pd.DataFrame, kind: _Kind, check: bool = True) -> pd.DataFrame:
    """Coerce ``df`` to the kind's schema: UTC index, known columns, dtypes; ``check``: apply the value rules."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{kind.name}: expected a pandas DataFrame, got {type(df).__name__}")
    if _has_schema(df, kind):  # already coerced (our own client and reader): validate only
        if check:
            _check_values(df, kind)
        return df
    if kind.index in df.columns:
        df = df.set_index(kind.index)
    missing = [c for c in kind.required if c not in df.columns]
    if missing:
        raise DataError(f"{kind.name}: missing required columns {missing}")
    if pd.api.types.is_numeric_dtype(df.index.dtype) and not pd.api.types.is_bool_dtype(df.index.dtype):
        index = epoch_index(df.index.to_numpy(), kind.index)  # never read as ns blindly: ms would land in 1970
    else:
        try:
            index = to_utc_index(df.index, kind.index)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{kind.name}: index is not a datetime: {exc}") from exc
    columns: dict[str, object] = {}
    for col, dtype in kind.columns.items():
        if col in df.columns:
            values = df[col].to_numpy()
            try:
                if dtype == "Int64":
                    columns[col] = _whole_numbers(pd.to_numeric(values), col, kind, index)
                elif dtype == "int64":
                    columns[col] = pd.to_numeric(values).astype("int64")
                else:
                    columns[col] = pd.to_numeric(values).astype("float64")
            except (TypeError, ValueError) as exc:
                raise DataError(f"{kind.name}: column {col!r} is not numeric: {exc}") from exc
        elif dtype == "Int64":
            columns[col] = pd.array([pd.NA] * len(index), dtype="Int64")
        else:
            columns[col] = np.full(len(index), 0 if dtype == "int64" else np.nan, dtype=dtype)
    # One constructor call: building column by column costs ~10x more on small frames.
    out = pd.DataFrame(columns, index=index)
    if check:
        _check_values(out, kind)
    return out


def _whole_numbers(values: np.ndarray, col: str, kind: _Kind, index: pd.DatetimeIndex) -> pd.arrays.IntegerArray:
    """A count column (``trades``) as ``Int64``; NaN stays missing, a fraction is refused (never rounded).

    Rounding used to store ``trades`` 1.5 as 2 without a word: a fractional count is a unit or column mistake.
    """
    floats = pd.array(values, dtype="Float64")
    data = floats.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(data) & ((data != np.round(data)) | (np.abs(data) > 2.0 ** 53))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{kind.name}: column {col!r} holds {int(bad.sum())} non-integer value(s) (first "
                        f"{data[first]!r} at {index[first]:%Y-%m-%d %H:%M:%S}); a count must be a whole number")
    return floats.astype("Int64")


#: Epoch units of integer times and their factor to nanoseconds. Their ranges over [2010-01-01, tomorrow]
#: are ~1e9, ~1e12, ~1e15 and ~1e18: they never overlap, so the magnitude of each value tells its unit.
_EPOCH_UNITS = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}


def epoch_index(values: np.ndarray, name: str) -> pd.DatetimeIndex:
    """Numeric epoch times -> UTC ns index, each value's unit (s, ms, µs or ns) told by its magnitude.

    The importers read ms and µs the same way (:mod:`gnn_market.vision`). A value that is not a whole
    number, or that falls in [2010-01-01, tomorrow] in no unit, raises :class:`DataError`.
    """
    raw = np.asarray(values, dtype="float64")
    if not np.isfinite(raw).all() or (raw != np.floor(raw)).any():
        raise DataError(f"{name}: integer times must be finite whole numbers (epoch s, ms, µs or ns)")
    latest_ms = pd.Timestamp.now(tz="UTC").value // 1_000_000 + 24 * 3_600_000
    ns = np.zeros(len(raw), dtype="int64")
    found = np.zeros(len(raw), dtype=bool)
    for factor in _EPOCH_UNITS.values():
        per_ms = 1e6 / factor  # values of this unit per millisecond
        inside = ~found & (raw >= MIN_TIME_MS * per_ms) & (raw <= latest_ms * per_ms)
        # From the values themselves, not their float64 copy (inexact above 2**53 ~ 9e15, i.e. for ns).
        ns[inside] = np.asarray(values)[inside].astype("int64") * factor
        found |= inside
    if not found.all():
        first = int(np.flatnonzero(~found)[0])
        raise DataError(f"{name}: row {first + 1}: integer time {raw[first]:.0f} is in 2010-01-01 .. tomorrow "
                        f"neither as epoch seconds, milliseconds, microseconds nor nanoseconds")
    return pd.DatetimeIndex(ns.view("M8[ns]"), name=name).tz_localize("UTC")


def _check_values(df: pd.DataFrame, kind: _Kind) -> None:
    """Raise :class:`DataError` if rows of a frame about to be written break a value rule."""
    if df.index.hasnans:
        raise DataError(f"{kind.name}: index has missing timestamps")
    faults = row_faults(df, kind)
    if faults:
        raise DataError(f"{kind.name}: " + "; ".join(_describe(df.index, faults)))


def row_faults(df: pd.DataFrame, kind: _Kind) -> dict[str, np.ndarray]:
    """Value rules broken by each row of ``df`` (in the kind's schema): ``{rule: bool mask}``, empty if none.

    Vectorised; NaN means "unknown" and passes every rule except for kline prices.
    Duplicated timestamps are not a row fault (see :func:`find_problems`).
    """
    # One conversion of the whole frame: a pandas column lookup per rule cost ~30x more on hourly upserts.
    values = df.to_numpy(dtype="float64", na_value=np.nan)
    position = {name: i for i, name in enumerate(df.columns)}

    def col(name: str) -> np.ndarray:
        return values[:, position[name]]

    masks: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", over="ignore"):  # NaN compares False; 1e300 x price is inf, flagged
        if kind is KLINES:
            times = df.index.asi8
            masks["open_time not on the hour"] = (times % HOUR.value) != 0
            o, h, lo, c = (col(n) for n in ("open", "high", "low", "close"))
            prices = np.stack([o, h, lo, c])
            masks["missing or non-finite price"] = ~np.isfinite(prices).all(axis=0)
            masks["price <= 0"] = (prices <= 0).any(axis=0)
            masks[f"price < {MIN_PRICE:g}"] = ((prices > 0) & (prices < MIN_PRICE)).any(axis=0)
            masks[f"price > {MAX_PRICE:g}"] = (prices > MAX_PRICE).any(axis=0)
            top, bottom = np.maximum(o, c), np.minimum(o, c)
            masks["high < low"] = h < lo * (1 - OHLC_TOLERANCE)
            masks["high < max(open, close)"] = h < top * (1 - OHLC_TOLERANCE)
            masks["low > min(open, close)"] = lo > bottom * (1 + OHLC_TOLERANCE)
            for name in ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume", "trades"):
                v = col(name)
                masks[f"{name} < 0 or infinite"] = (v < 0) | np.isinf(v)
            masks.update(_volume_faults(col, c))
        elif kind is FUNDING:
            rate, mark = col("funding_rate"), col("mark_price")
            masks[f"|funding_rate| > {MAX_FUNDING_RATE:g} or infinite"] = np.abs(rate) > MAX_FUNDING_RATE
            masks[f"mark_price not in (0, {MAX_PRICE:g}]"] = (mark <= 0) | (mark > MAX_PRICE)
        else:
            for name in ("best_bid", "best_ask"):
                v = col(name)
                masks[f"{name} not in [0, {MAX_PRICE:g}]"] = (v < 0) | (v > MAX_PRICE)
            for name in ("best_bid_qty", "best_ask_qty", "bid_qty", "ask_qty", "bid_notional", "ask_notional",
                         "levels"):
                v = col(name)
                masks[f"{name} < 0 or infinite"] = (v < 0) | np.isinf(v)
            masks["spread infinite"] = np.isinf(col("spread"))
    return {rule: mask for rule, mask in masks.items() if mask.any()}


def _volume_faults(col, close: np.ndarray) -> dict[str, np.ndarray]:
    """Kline volume rules beyond the sign: bounded traded value, taker part within the total, trade count."""
    masks = {}
    for label, value in (("volume x close", col("volume") * close),
                         ("taker_buy_volume x close", col("taker_buy_volume") * close),
                         ("quote_volume", col("quote_volume")),
                         ("taker_buy_quote_volume", col("taker_buy_quote_volume"))):
        masks[f"{label} > {MAX_NOTIONAL:g} USDT"] = value > MAX_NOTIONAL
    for part, whole in (("taker_buy_volume", "volume"), ("taker_buy_quote_volume", "quote_volume")):
        masks[f"{part} > {whole}"] = col(part) > col(whole) * (1 + TAKER_TOLERANCE)
    masks[f"trades > {MAX_TRADES:g}"] = col("trades") > MAX_TRADES
    return masks


def checked_frame(df: pd.DataFrame, kind: str, source: object) -> pd.DataFrame:
    """``df`` in the schema of ``kind`` (``"klines"``, ``"funding"``, ``"book"``), checked by the value rules.

    For importers, to refuse a bad file while reading it, before anything is
    written; raises :class:`DataError` naming ``source``. Duplicated
    timestamps are left to the caller (a write keeps the later row).
    """
    spec = {k.name: k for k in (KLINES, FUNDING, BOOK)}[kind]
    try:
        return _normalise(df, spec)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from exc


def _describe(index: pd.DatetimeIndex, faults: dict[str, np.ndarray]) -> list[str]:
    """``{rule: mask}`` -> ``["3 row(s) with high < low (first at 2024-01-01 05:00)", ...]``."""
    out = []
    for rule, mask in faults.items():
        first = index[int(np.flatnonzero(mask)[0])]
        out.append(f"{int(mask.sum())} row(s) with {rule} (first at {first:%Y-%m-%d %H:%M:%S})")
    return out


def find_problems(df: pd.DataFrame, kind: _Kind) -> list[str]:
    """Every rule a stored frame breaks, one phrase each (empty list: valid)."""
    problems = []
    if df.index.hasnans:
        return [f"{int(df.index.isna().sum())} missing timestamp(s)"]
    dup = df.index.duplicated(keep=False)
    if dup.any():
        first = df.index[int(np.flatnonzero(dup)[0])]
        problems.append(f"{int(df.index.duplicated().sum())} duplicated timestamp(s) "
                        f"(first {first:%Y-%m-%d %H:%M:%S})")
    return problems + _describe(df.index, row_faults(df, kind))


@dataclass
class FileReport:
    """What :meth:`Store.check` found in (or :meth:`Store.repair` did to) one stored file."""

    kind: str
    market: str | None
    symbol: str
    path: Path
    problems: list[str] = field(default_factory=list)
    rows_before: int = 0
    rows_after: int = 0
    backup: Path | None = None
    repairable: bool = True
    month: int | None = None  # month key (year * 12 + month - 1) of the month file

    def line(self) -> str:
        where = f"{self.kind}/{self.market}" if self.market else self.kind
        return f"{where} {self.symbol}: " + "; ".join(self.problems)

def _has_schema(df: pd.DataFrame, kind: _Kind) -> bool:
    """True if ``df`` already is exactly in the kind's schema (as this module writes it)."""
    index = df.index
    return (isinstance(index, pd.DatetimeIndex) and str(index.tz) == "UTC" and index.unit == "ns"
            and index.name == kind.index and list(df.columns) == list(kind.columns)
            and [str(t) for t in df.dtypes] == list(kind.columns.values())
            and index.is_monotonic_increasing and index.is_unique)


def first_time_out_of_range(ms: np.ndarray) -> int | None:
    """Index of the first epoch-ms value before 2010-01-01 or after tomorrow (UTC), or None.

    Importers check raw timestamps with it before any conversion: a far-future value
    (year 24785) would overflow pandas' time range, a too-early one is a unit mistake.
    """
    latest = pd.Timestamp.now(tz="UTC").value // 1_000_000 + 24 * 3_600_000
    outside = (ms < MIN_TIME_MS) | (ms > latest)
    return int(np.flatnonzero(outside)[0]) if outside.any() else None
