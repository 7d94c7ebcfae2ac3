"""Binance payloads -> store-schema DataFrames.

Pure functions, no network: the client hands them what python-binance parsed
from JSON, and the archive importer (:mod:`gnn_market.vision`) follows the
same funding-time rounding (:func:`round_funding_time`), so archive and REST
rows land on the same index.

* :func:`klines_frame`: kline arrays -> :data:`~gnn_market.store.KLINE_COLUMNS`
  (closed, on-the-hour candles only).
* :func:`book_frame` and :func:`snapshot_ms`: a depth answer -> one
  :data:`~gnn_market.store.BOOK_COLUMNS` row and its true capture time
  (never rounded: a time rounded down could fall before the close of an hour
  whose next candle the snapshot already saw).
* :func:`funding_frame`, :func:`premium_frame`: settled and live funding ->
  :data:`~gnn_market.store.FUNDING_COLUMNS`.
* :func:`require` and :func:`to_float`: checks of response shapes and values
  shared with the client and the universe rules.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BinanceError, DataError
from ..store_schema import BOOK_COLUMNS, FUNDING_COLUMNS, KLINE_COLUMNS
from ..timeutil import HOUR_MS, ms_to_utc_index

log = logging.getLogger(__name__)


def klines_frame(rows: list, symbol: str = "", now_ms: int | None = None) -> pd.DataFrame:
    """Binance kline arrays -> store kline schema (closed, on-the-hour candles only)."""
    cols = list(KLINE_COLUMNS)
    if not rows:
        return _empty(cols, "open_time")
    try:
        arr = [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                float(r[7]), int(r[8]), float(r[9]), float(r[10])) for r in rows]
    except (TypeError, ValueError, IndexError) as exc:
        raise BinanceError(f"klines {symbol}: unexpected row shape: {exc}") from exc
    open_ms = np.array([a[0] for a in arr], dtype="int64")
    keep = open_ms % HOUR_MS == 0
    if not keep.all():
        log.warning("klines %s: dropped %d candles not on the hour", symbol, int((~keep).sum()))
    if now_ms is not None:
        keep &= open_ms + HOUR_MS <= now_ms  # still open: not final yet
    df = pd.DataFrame([a[1:] for a, k in zip(arr, keep) if k], columns=cols,
                      index=ms_to_utc_index(open_ms[keep], "open_time"))
    df["trades"] = df["trades"].astype("Int64")
    df = df[~df.index.duplicated(keep="last")].sort_index()
    return df


def book_frame(data: dict, symbol: str, snapshot_ms: int) -> pd.DataFrame:
    """A depth answer -> one row of :data:`BOOK_COLUMNS` at ``snapshot_ms``."""
    try:
        bids = np.array([[float(p), float(q)] for p, q, *_ in data.get("bids", [])], dtype="float64")
        asks = np.array([[float(p), float(q)] for p, q, *_ in data.get("asks", [])], dtype="float64")
    except (TypeError, ValueError) as exc:
        raise BinanceError(f"depth {symbol}: unexpected level shape: {exc}") from exc
    if len(bids) == 0 or len(asks) == 0:
        raise DataError(f"depth {symbol}: empty order book")
    row = {
        "best_bid": bids[0, 0], "best_ask": asks[0, 0],
        "best_bid_qty": bids[0, 1], "best_ask_qty": asks[0, 1],
        "bid_qty": bids[:, 1].sum(), "ask_qty": asks[:, 1].sum(),
        "bid_notional": float((bids[:, 0] * bids[:, 1]).sum()),
        "ask_notional": float((asks[:, 0] * asks[:, 1]).sum()),
        "spread": asks[0, 0] - bids[0, 0],
        "levels": int(min(len(bids), len(asks))),
    }
    columns = {c: np.array([row[c]], dtype=t) for c, t in BOOK_COLUMNS.items()}
    return pd.DataFrame(columns, index=ms_to_utc_index([snapshot_ms], "snapshot_time"))


def snapshot_ms(data: dict, received_ms: int) -> int:
    """Capture time of a depth answer: the server's event time ``E`` (futures) or else ``received_ms``.

    Spot depth carries no time, so the receive time on the server's clock
    stands for it: no earlier than the snapshot, so a stamp never claims the
    book was known before it was. Nothing is rounded.
    """
    event = data.get("E") if isinstance(data, dict) else None
    if isinstance(event, int) and not isinstance(event, bool) and event > 0:
        return event
    return int(received_ms)


def round_funding_time(ms: int) -> int:
    """Settlement times carry ms jitter (``08:00:00.011``): round to the minute."""
    return int(round(ms / 60_000)) * 60_000


def funding_frame(rows: list[dict]) -> pd.DataFrame:
    """fundingRate rows -> :data:`FUNDING_COLUMNS` indexed by (rounded) ``funding_time``."""
    if not rows:
        return _empty(list(FUNDING_COLUMNS), "funding_time")
    try:
        times = [round_funding_time(int(r["fundingTime"])) for r in rows]
        rates = [float(r["fundingRate"]) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise BinanceError(f"fundingRate: unexpected row shape: {exc}") from exc
    marks = [to_float(r.get("markPrice"), np.nan) for r in rows]
    df = pd.DataFrame({"funding_rate": rates, "mark_price": marks},
                      index=ms_to_utc_index(times, "funding_time"))
    return df[~df.index.duplicated(keep="last")].sort_index()


def premium_frame(rows: list[dict]) -> pd.DataFrame:
    """premiumIndex objects -> funding rows at ``nextFundingTime``."""
    out = [{"fundingTime": r["nextFundingTime"], "fundingRate": r["lastFundingRate"],
            "markPrice": r.get("markPrice")} for r in rows
           if r.get("nextFundingTime") and r.get("lastFundingRate") not in (None, "")]
    return funding_frame(out)


def _empty(cols: list[str], index: str) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    df.index = pd.DatetimeIndex([], tz="UTC", name=index).as_unit("ns")
    return df


def require(data: Any, kind: type, what: str) -> Any:
    """``data`` if it is a ``kind`` (the JSON shape expected for ``what``), else :class:`BinanceError`."""
    if not isinstance(data, kind):
        raise BinanceError(f"{what}: unexpected response type {type(data).__name__}")
    return data


def to_float(value: Any, default: float = 0.0) -> float:
    """A numeric field as a finite float; ``default`` when missing, malformed or not finite."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default
