"""Node features and next-hour labels from a :class:`~gnn_market.panel.Panel`.

One vectorised pass over ``[T, N]`` arrays: rolling windows are differences of
cumulative sums along time (each output row only reads rows <= t, so the
result at t is bit-for-bit independent of later data), and Wilder's RSI is a
linear recursion run by :func:`scipy.signal.lfilter` over all symbols at once.
No Python loop runs over hours or symbols (only over the rare RSI restarts
after a long gap).

Row ``t`` uses candles with ``open_time <= t`` plus the book snapshot and
funding known at ``t + 1h`` (see ``panel.py``); it is available at ``t + 1h``.
Every value is finite: where a feature's window is incomplete, or the data is
degenerate (zero volume, constant prices, empty ask side, no book, no funding),
it takes the documented neutral value. Definitions: ``docs/features.md``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from .classes import CLASS_NAMES, IGNORE_INDEX
from .errors import DataError
from .panel import Panel


@dataclass(frozen=True)
class FeatureConfig:
    """Window lengths (hours) of the node features."""

    horizons: tuple[int, ...] = (1, 4, 12, 24)  # ret_{h}h
    vol_window: int = 24  # returns in vol_{w}h
    rsi_period: int = 14  # Wilder period of rsi_{p}
    volume_window: int = 24  # candles in the volume_ratio mean
    spread_window: int = 24  # Abdi-Ranaldo products averaged in spread_ar
    imbalance_cap: float = 100.0  # book_imbalance is clipped to [0, cap]

    def __post_init__(self) -> None:
        ints = (*self.horizons, self.vol_window, self.rsi_period, self.volume_window, self.spread_window)
        if not self.horizons or min(ints) < 1 or self.vol_window < 2:
            raise DataError(f"invalid FeatureConfig {self}: windows must be >= 1 (vol_window >= 2)")
        object.__setattr__(self, "horizons", tuple(int(h) for h in self.horizons))

    @property
    def min_history(self) -> int:
        """Hours of history (beyond t) a node needs before it is ``valid``."""
        return max(max(self.horizons), self.vol_window, self.rsi_period, self.volume_window, self.spread_window)

    def names(self) -> list[str]:
        """Feature schema, in column order."""
        return ([f"ret_{h}h" for h in self.horizons]
                + [f"vol_{self.vol_window}h", f"rsi_{self.rsi_period}", "volume_ratio", "spread",
                   "book_imbalance", "funding_rate", "has_book", "has_funding", "spread_ar",
                   "hour_sin", "hour_cos", "is_filled"])

    def to_dict(self) -> dict:
        """Plain dict (checkpoint-safe)."""
        d = asdict(self)
        d["horizons"] = list(self.horizons)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        d = dict(d)
        if "horizons" in d:
            d["horizons"] = tuple(d["horizons"])
        return cls(**d)


FEATURE_NAMES: tuple[str, ...] = tuple(FeatureConfig().names())
#: 0/1 indicator features; normalisers leave them unchanged.
FLAG_FEATURES: tuple[str, ...] = ("has_book", "has_funding", "is_filled")


@dataclass
class Features:
    """Node features of a panel."""

    values: np.ndarray  # [T, N, F] float32, finite everywhere
    names: list[str]  # [F]
    times: pd.DatetimeIndex  # [T]
    symbols: list[str]  # [N]
    valid: np.ndarray  # [T, N] bool: candle present and complete history for every feature
    config: FeatureConfig = field(default_factory=FeatureConfig)

    def to_frame(self) -> pd.DataFrame:
        """Long view: one row per (time, symbol), feature columns plus ``valid``."""
        T, N, F = self.values.shape
        index = pd.MultiIndex.from_product([self.times, self.symbols], names=["time", "symbol"])
        frame = pd.DataFrame(self.values.reshape(T * N, F), index=index, columns=list(self.names))
        frame["valid"] = self.valid.reshape(T * N)
        return frame

    def column(self, name: str) -> np.ndarray:
        """``[T, N]`` view of one feature."""
        return self.values[:, :, self.names.index(name)]


# --------------------------------------------------------------------------- helpers
def _lagged(a: np.ndarray, k: int, fill=np.nan) -> np.ndarray:
    """``a`` shifted down by ``k`` rows: out[t] = a[t - k] (``fill`` for t < k)."""
    out = np.full_like(a, fill)
    if k < len(a):
        out[k:] = a[: len(a) - k]
    return out


def window_sum(a: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of finite values of ``a`` [T, N] over rows ``t-w+1 .. t``.

    Returns ``(sum, count)``, both ``[T, N]`` float64; windows are truncated at
    row 0. Cumulative-sum differences: O(T N), reads only rows <= t.
    """
    finite = np.isfinite(a)
    return _windowed(np.where(finite, a, 0.0), w), _windowed(finite.astype(np.float64), w)


def _windowed(a0: np.ndarray, w: int) -> np.ndarray:
    """Sum of ``a0`` (finite) over rows ``t-w+1 .. t`` by a cumulative sum and two slices."""
    cs = np.cumsum(a0, axis=0)
    if w >= len(a0):
        return cs
    out = np.empty_like(cs)
    out[:w] = cs[:w]
    np.subtract(cs[w:], cs[: len(a0) - w], out=out[w:])
    return out


def log_returns(panel: Panel) -> np.ndarray:
    """``ln(close[t] / close[t-1])`` ``[T, N]`` float64, NaN where either candle is missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(panel.close)
    r = np.full_like(logc, np.nan)
    r[1:] = logc[1:] - logc[:-1]
    return r


def _history_ok(mask: np.ndarray, hours: int) -> np.ndarray:
    """True where candles exist at every row ``t-hours .. t``."""
    return _windowed(mask.astype(np.float64), hours + 1) >= hours + 1


# --------------------------------------------------------------------------- features
def _returns(logc: np.ndarray, horizons: tuple[int, ...]) -> list[np.ndarray]:
    out = []
    for h in horizons:
        r = logc - _lagged(logc, h)
        out.append(np.where(np.isfinite(r), r, 0.0))
    return out


def _volatility(r1: np.ndarray, w: int) -> np.ndarray:
    """Sample std (ddof=1) of the last ``w`` log returns; 0 unless all ``w`` exist."""
    s, n = window_sum(r1, w)
    s2, _ = window_sum(r1 * r1, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s * s / n) / (n - 1)
    vol = np.sqrt(np.clip(var, 0.0, None))
    return np.where(n >= w, vol, 0.0)


def _segment_start(mask: np.ndarray) -> np.ndarray:
    """Row where the current run of present candles began (-1 where masked)."""
    rows = np.arange(len(mask))[:, None]
    prev = np.vstack([np.zeros((1, mask.shape[1]), bool), mask[:-1]])
    starts = np.maximum.accumulate(np.where(mask & ~prev, rows, -1), axis=0)
    return np.where(mask, starts, -1)


def _wilder_rsi(close: np.ndarray, mask: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI over ``period`` closes, restarting after every missing candle.

    Within a run of present candles starting at row ``s``: the average gain
    (loss) at ``s + period`` is the mean of the first ``period`` gains
    (losses); afterwards ``avg_t = avg_{t-1} (1 - 1/p) + gain_t / p``.
    ``RSI = 100 avg_gain / (avg_gain + avg_loss)``; 50 if both are 0 or the
    run is shorter than ``period`` changes.
    """
    T, N = close.shape
    alpha = 1.0 / period
    d = close - _lagged(close, 1)  # NaN across a missing candle
    gl = np.concatenate([np.clip(d, 0.0, None), np.clip(-d, 0.0, None)], axis=1)  # [T, 2N]
    start = _segment_start(mask)
    pos = np.where(mask, np.arange(T)[:, None] - start, -1)  # changes available in the run
    pos2 = np.concatenate([pos, pos], axis=1)
    seed = _windowed(np.nan_to_num(gl), period)  # used only where the window is complete
    x = np.where(pos2 > period, alpha * np.nan_to_num(gl), 0.0)
    x = np.where(pos2 == period, seed / period, x)
    # y_t = (1 - alpha) y_{t-1} + x_t; x is 0 before a column's first seed, so y_{s-1} = 0 there.
    y = lfilter([1.0], [1.0, alpha - 1.0], x, axis=0)
    # A second run in the same column must start from 0 again: recompute its tail (rare).
    seeds_t, seeds_c = np.nonzero(pos2 == period)
    first = np.zeros_like(seeds_t, dtype=bool)
    _, first_idx = np.unique(seeds_c, return_index=True)
    first[first_idx] = True
    for t, c in sorted(zip(seeds_t[~first], seeds_c[~first])):
        y[t:, c] = lfilter([1.0], [1.0, alpha - 1.0], x[t:, c])
    gain, loss = y[:, :N], y[:, N:]
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0, 100.0 * gain / total, 50.0)
    return np.where(pos >= period, rsi, 50.0)


def _volume_ratio(volume: np.ndarray, w: int) -> np.ndarray:
    """volume[t] / mean(volume[t-w+1..t]); 1 if the window is incomplete or all zero."""
    s, n = window_sum(volume, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = volume * n / s
    return np.where((n >= w) & (s > 0) & np.isfinite(ratio), ratio, 1.0)


def _book(panel: Panel, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spread, book_imbalance, has_book) with neutral 0 / 1 / False where no usable snapshot."""
    if not panel.has_book.any():  # e.g. candles-only data: skip the arithmetic on all-NaN arrays
        shape = panel.mask.shape
        return np.zeros(shape), np.ones(shape), np.zeros(shape, dtype=bool)
    bid, ask = panel.best_bid, panel.best_ask
    mid = 0.5 * (bid + ask)
    has = panel.has_book & panel.mask & np.isfinite(mid) & (mid > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(has, (ask - bid) / mid, 0.0)
        bq, aq = np.clip(panel.bid_qty, 0.0, None), np.clip(panel.ask_qty, 0.0, None)
        ratio = np.where(aq > 0, bq / aq, np.where(bq > 0, cap, 1.0))  # empty ask side -> cap
    imbalance = np.where(has, np.clip(ratio, 0.0, cap), 1.0)
    return np.where(np.isfinite(spread), spread, 0.0), imbalance, has


def _abdi_ranaldo(panel: Panel, w: int) -> np.ndarray:
    """Abdi-Ranaldo (2017) spread from closes, highs and lows, ending at t.

    ``P_t = 4 (c_{t-1} - eta_{t-1}) (c_{t-1} - eta_t)`` with ``c = ln close``,
    ``eta = (ln high + ln low) / 2``; estimate ``sqrt(max(mean(P over w), 0))``,
    0 unless all ``w`` products exist.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.log(panel.close)
        eta = 0.5 * (np.log(panel.high) + np.log(panel.low))
    c1 = _lagged(c, 1)
    p = 4.0 * (c1 - _lagged(eta, 1)) * (c1 - eta)
    s, n = window_sum(p, w)
    est = np.sqrt(np.clip(s / np.maximum(n, 1), 0.0, None))
    return np.where(n >= w, est, 0.0)


def compute_features(panel: Panel, config: FeatureConfig = FeatureConfig()) -> Features:
    """All node features ``[T, N, F]`` (float32, finite) in one vectorised pass."""
    mask = panel.mask
    close = np.where(mask, panel.close, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(close)
    r1 = logc - _lagged(logc, 1)
    volume = np.where(mask, np.nan_to_num(panel.volume, nan=0.0), np.nan)
    spread, imbalance, has_book = _book(panel, config.imbalance_cap)
    has_funding = panel.has_funding & mask
    funding = np.where(has_funding, panel.funding_rate, 0.0)
    hour = panel.times.hour.to_numpy()[:, None] * np.ones((1, len(panel.symbols)))
    columns = [
        *_returns(logc, config.horizons),
        _volatility(r1, config.vol_window),
        _wilder_rsi(close, mask, config.rsi_period),
        _volume_ratio(volume, config.volume_window),
        spread,
        imbalance,
        funding,
        has_book.astype(np.float64),
        has_funding.astype(np.float64),
        _abdi_ranaldo(panel, config.spread_window),
        np.sin(2 * np.pi * hour / 24.0),
        np.cos(2 * np.pi * hour / 24.0),
        panel.filled.astype(np.float64),
    ]
    values = np.empty(mask.shape + (len(columns),), dtype=np.float32)  # filled column by column: less peak memory
    for j, column in enumerate(columns):
        values[:, :, j] = column
    # no candle at t: every column above is already at its neutral value there (NaN inputs fall
    # through to the neutral branch, flags are ANDed with mask); tests check it against the reference
    if not np.isfinite(values).all():  # defensive: the rules above should make this unreachable
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    valid = mask & _history_ok(mask, config.min_history)
    return Features(values=values, names=config.names(), times=panel.times,
                    symbols=list(panel.symbols), valid=valid, config=config)


def neutral_values(config: FeatureConfig = FeatureConfig()) -> dict[str, float]:
    """Value each feature takes when it is unknown (documented in docs/features.md)."""
    return dict(zip(config.names(), _neutral(config).tolist()))


def _neutral(config: FeatureConfig) -> np.ndarray:
    n = len(config.horizons)
    # returns, vol, rsi, volume_ratio, spread, imbalance, funding, has_book, has_funding,
    # spread_ar, hour_sin, hour_cos, is_filled
    return np.array([0.0] * n + [0.0, 50.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                    dtype=np.float32)


# --------------------------------------------------------------------------- labels
@dataclass
class Labels:
    """Next-hour classes: DOWN 0, SIDEWAYS 1, UP 2, or IGNORE_INDEX."""

    classes: np.ndarray  # [T, N] int64
    next_return: np.ndarray  # [T, N] float64 close[t+1]/close[t] - 1, NaN if unknown
    threshold: float
    times: pd.DatetimeIndex | None = None
    symbols: list[str] | None = None

    def balance(self) -> dict[str, float]:
        """Share of DOWN / SIDEWAYS / UP among labelled entries (0s if none)."""
        labelled = self.classes[self.classes != IGNORE_INDEX]
        total = max(labelled.size, 1)
        return {name: float((labelled == k).sum() / total) for k, name in enumerate(CLASS_NAMES)}

    def counts(self) -> dict[str, int]:
        """Number of labelled entries per class, plus ``ignored``."""
        out = {name: int((self.classes == k).sum()) for k, name in enumerate(CLASS_NAMES)}
        out["ignored"] = int((self.classes == IGNORE_INDEX).sum())
        return out


def make_labels(panel: Panel, threshold: float = 0.01) -> Labels:
    """Class of the next candle: UP if ``r > threshold``, DOWN if ``r < -threshold``.

    ``r = close[t+1] / close[t] - 1``. Both candles must be real (present and
    not forward-filled): a filled price is a stand-in, not a trade, so such
    hours, the last hour and hours before a missing candle get IGNORE_INDEX.
    """
    if not threshold >= 0:
        raise DataError(f"threshold must be >= 0, got {threshold}")
    real = panel.mask & ~panel.filled
    close = np.where(real, panel.close, np.nan)
    nxt = np.full_like(close, np.nan)
    nxt[:-1] = close[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = nxt / close - 1.0
    known = np.isfinite(r)
    classes = np.where(r > threshold, 2, np.where(r < -threshold, 0, 1)).astype(np.int64)
    classes[~known] = IGNORE_INDEX
    return Labels(classes=classes, next_return=np.where(known, r, np.nan), threshold=float(threshold),
                  times=panel.times, symbols=list(panel.symbols))
