"""Small hand-built stores and a straightforward per-symbol pandas reference for the feature tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gnn_market.store import Store

START = pd.Timestamp("2024-03-01 00:00", tz="UTC")


def random_klines(rng: np.random.Generator, times: pd.DatetimeIndex, price: float = 100.0,
                  vol: float = 0.01) -> pd.DataFrame:
    """Random-walk candles with consistent open/high/low/close and random volume."""
    close = price * np.exp(np.cumsum(rng.normal(0, vol, len(times))))
    open_ = np.concatenate([[price], close[:-1]])
    spread = np.abs(rng.normal(0, vol / 2, len(times)))
    high = np.maximum(open_, close) * np.exp(spread)
    low = np.minimum(open_, close) * np.exp(-spread)
    volume = rng.gamma(2.0, 50.0, len(times))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume,
                         "quote_volume": volume * close, "trades": rng.integers(1, 500, len(times))},
                        index=pd.DatetimeIndex(times, name="open_time"))


def random_book(rng: np.random.Generator, klines: pd.DataFrame, offset=pd.Timedelta(seconds=-3)) -> pd.DataFrame:
    """One snapshot per hour at ``open_time + 1h + offset``: by default 3 s before the close of the
    candle, as the ``collect`` job takes it, so it serves row open_time."""
    mid = klines["close"].to_numpy()
    half = mid * rng.uniform(1e-4, 1e-3, len(mid))
    return pd.DataFrame({"best_bid": mid - half, "best_ask": mid + half,
                         "bid_qty": rng.gamma(2, 10, len(mid)), "ask_qty": rng.gamma(2, 10, len(mid))},
                        index=pd.DatetimeIndex(klines.index + pd.Timedelta(hours=1) + offset, name="snapshot_time"))


def random_funding(rng: np.random.Generator, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Funding every 8 hours (00, 08, 16 UTC) over ``times``."""
    events = times[times.hour % 8 == 0]
    return pd.DataFrame({"funding_rate": rng.normal(1e-4, 2e-4, len(events))},
                        index=pd.DatetimeIndex(events, name="funding_time"))


def build_store(path: Path, hours: int = 400, seed: int = 0) -> Store:
    """Four spot symbols with book and funding for two of them, a symbol listed mid-panel,
    one delisted early, a short (2 h) and a long (6 h) gap, zero volumes and a flat stretch."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(START, periods=hours, freq="h", tz="UTC")
    store = Store(path)
    aaa = random_klines(rng, times, 100.0)
    store.write_klines("AAAUSDT", aaa)
    store.write_book("AAAUSDT", random_book(rng, aaa))
    store.write_funding("AAAUSDT", random_funding(rng, times))
    bbb = random_klines(rng, times, 5.0, 0.02)
    bbb = bbb.drop(bbb.index[[50, 51]]).drop(bbb.index[200:206])  # short gap, long gap
    bbb.loc[bbb.index[100:110], "volume"] = 0.0  # zero volume stretch
    store.write_klines("BBBUSDT", bbb)
    book = random_book(rng, bbb)
    book.loc[book.index[30:40], "ask_qty"] = 0.0  # empty ask side
    store.write_book("BBBUSDT", book)
    ccc = random_klines(rng, times[120:], 1.0)  # listed mid-panel
    flat = ccc.index[40:80]
    ccc.loc[flat, ["open", "high", "low", "close"]] = 1.0  # constant price
    store.write_klines("CCCUSDT", ccc)
    store.write_funding("CCCUSDT", random_funding(rng, times[100:]))
    store.write_klines("DDDUSDT", random_klines(rng, times[: hours - 60], 20.0))  # delisted early
    return store


# ------------------------------------------------------------------ straightforward reference
def wilder_rsi_loop(close: pd.Series, period: int = 14) -> pd.Series:
    """Textbook Wilder RSI, restarting after every missing close; NaN before warm-up."""
    out = np.full(len(close), np.nan)
    values = close.to_numpy()
    gains, losses, avg_g, avg_l = [], [], None, None
    for i in range(1, len(values)):
        if np.isnan(values[i]) or np.isnan(values[i - 1]):
            gains, losses, avg_g, avg_l = [], [], None, None
            continue
        d = values[i] - values[i - 1]
        g, loss = max(d, 0.0), max(-d, 0.0)
        if avg_g is None:
            gains.append(g)
            losses.append(loss)
            if len(gains) == period:
                avg_g, avg_l = sum(gains) / period, sum(losses) / period
            else:
                continue
        else:
            avg_g = (avg_g * (period - 1) + g) / period
            avg_l = (avg_l * (period - 1) + loss) / period
        out[i] = 50.0 if avg_g + avg_l == 0 else 100.0 * avg_g / (avg_g + avg_l)
    return pd.Series(out, index=close.index)


def reference_features(panel, symbol: str) -> pd.DataFrame:
    """Features of one symbol computed with pandas rolling windows, neutral values where undefined."""
    n = panel.symbols.index(symbol)
    idx = panel.times
    mask = pd.Series(panel.mask[:, n], index=idx)
    close = pd.Series(np.where(panel.mask[:, n], panel.close[:, n], np.nan), index=idx)
    high = pd.Series(panel.high[:, n], index=idx)
    low = pd.Series(panel.low[:, n], index=idx)
    volume = pd.Series(np.where(panel.mask[:, n], panel.volume[:, n], np.nan), index=idx)
    logc = np.log(close)
    out = pd.DataFrame(index=idx)
    for h in (1, 4, 12, 24):
        out[f"ret_{h}h"] = (logc - logc.shift(h)).fillna(0.0)
    out["vol_24h"] = logc.diff().rolling(24, min_periods=24).std(ddof=1).fillna(0.0)
    out["rsi_14"] = wilder_rsi_loop(close).fillna(50.0)
    mean_vol = volume.rolling(24, min_periods=24).mean()
    ratio = volume / mean_vol
    out["volume_ratio"] = ratio.where((mean_vol > 0) & ratio.notna(), 1.0)
    bid = pd.Series(panel.best_bid[:, n], index=idx)
    ask = pd.Series(panel.best_ask[:, n], index=idx)
    has_book = pd.Series(panel.has_book[:, n], index=idx) & mask
    mid = (bid + ask) / 2
    out["spread"] = ((ask - bid) / mid).where(has_book, 0.0)
    bq, aq = pd.Series(panel.bid_qty[:, n], index=idx), pd.Series(panel.ask_qty[:, n], index=idx)
    imb = (bq / aq).where(aq > 0, np.where(bq > 0, 100.0, 1.0)).clip(upper=100.0)
    out["book_imbalance"] = imb.where(has_book, 1.0)
    has_f = pd.Series(panel.has_funding[:, n], index=idx) & mask
    out["funding_rate"] = pd.Series(panel.funding_rate[:, n], index=idx).where(has_f, 0.0)
    out["has_book"] = has_book.astype(float)
    out["has_funding"] = has_f.astype(float)
    c, eta = np.log(close), (np.log(high) + np.log(low)) / 2
    prod = 4 * (c.shift(1) - eta.shift(1)) * (c.shift(1) - eta)
    out["spread_ar"] = np.sqrt(prod.rolling(24, min_periods=24).mean().clip(lower=0)).fillna(0.0)
    hours = idx.hour.to_numpy()
    out["hour_sin"] = np.sin(2 * np.pi * hours / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hours / 24)
    out["is_filled"] = panel.filled[:, n].astype(float)
    neutral = {"rsi_14": 50.0, "volume_ratio": 1.0, "book_imbalance": 1.0}
    for col in out.columns:
        if col not in ("hour_sin", "hour_cos"):
            out.loc[~mask, col] = neutral.get(col, 0.0)
    out["valid"] = mask.astype(float).rolling(25, min_periods=25).sum().eq(25)
    return out
