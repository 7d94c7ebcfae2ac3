"""Inputs of the stronger baselines: cross-sectional market context and per-row lookback windows.

The question these baselines answer: does the GNN's message passing beat
*simple* cross-asset aggregation? So the context is what a quant computes
first from the whole cross-section at hour ``t`` (market mean and dispersion
of returns, market volatility, BTC and ETH), from the raw market data
(panel closes, the un-normalised ``vol_24h`` feature), never from the
normalised node features.

Columns (:data:`CONTEXT_NAMES`), all at hour ``t``; ``r_k(t, n) =
ln(close_t / close_{t-k})`` for the pairs *observed* at ``t`` (a real candle:
present and not forward-filled, since a filled candle's return is a stand-in
0, not a trade), NaN otherwise:

- ``mkt_ret_{k}h``, ``mkt_disp_{k}h`` for k = 1, 4, 24: mean and sample sd
  (ddof 1) of ``r_k(t, .)`` over the pairs where it is finite (NaN with none,
  resp. fewer than 2 pairs);
- ``mkt_vol_24h``: mean of the pairs' ``vol_24h`` (sd of their last 24
  hourly log returns, as the node feature but in float64) over the pairs
  whose features are ``valid`` at t;
- ``mkt_ret_vol_24h``: sd (ddof 1) of ``mkt_ret_1h`` over hours ``t-23 .. t``
  (NaN unless all 24 exist): how volatile the market itself has been;
- ``btc_ret_1h``, ``btc_ret_24h``, ``eth_ret_1h``, ``eth_ret_24h``:
  ``r_1``/``r_24`` of BTCUSDT and ETHUSDT (NaN where the pair is absent
  from the panel or not observed at t);
- ``excess_ret_1h``, ``excess_ret_24h`` (per pair): the row's own ``r_k``
  minus ``mkt_ret_{k}h``, because trees split on one variable at a time and
  cannot form that difference themselves.

Every column at ``t`` reads rows ``<= t`` only (tested by perturbing the future).
Everything is vectorised over ``[T, N]``; the only loops run over the three
horizons and over chunks of hours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..feature_generator import window_sum
from ..normalizer import FeatureNormalizer
from ..pipeline import MarketData
from ..windows import lookback_windows

HORIZONS: tuple[int, ...] = (1, 4, 24)
#: Reference pairs whose own returns are context columns (lower-cased as the column prefix).
REFERENCE_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
MARKET_VOL_WINDOW = 24
MARKET_NAMES: tuple[str, ...] = (
    *(name for k in HORIZONS for name in (f"mkt_ret_{k}h", f"mkt_disp_{k}h")),
    "mkt_vol_24h", f"mkt_ret_vol_{MARKET_VOL_WINDOW}h",
    *(f"{s[:-4].lower()}_ret_{k}h" for s in REFERENCE_SYMBOLS for k in (1, 24)),
)
PAIR_NAMES: tuple[str, ...] = ("excess_ret_1h", "excess_ret_24h")
CONTEXT_NAMES: tuple[str, ...] = MARKET_NAMES + PAIR_NAMES
#: Per-chunk budget of the ``[H, N, L, F]`` windows gathered at once by :func:`row_windows`.
WINDOW_CHUNK_BYTES = 16 * 2**20


@dataclass
class MarketContext:
    """Context of one panel, kept compact (not ``[T, N, C]``): hour-level columns plus the pairs' own returns."""

    market: np.ndarray    # [T, C_m] float64, columns MARKET_NAMES
    pair_ret: np.ndarray  # [T, N, 2] float64, r_1 and r_24 of each pair (NaN where not observed)

    def rows(self, hour: np.ndarray, pair: np.ndarray) -> np.ndarray:
        """``[M, C]`` float64 context of rows ``(hour[m], pair[m])``, columns :data:`CONTEXT_NAMES`."""
        hour, pair = np.asarray(hour, dtype=np.int64), np.asarray(pair, dtype=np.int64)
        market = self.market[hour]
        mean_cols = [MARKET_NAMES.index(f"mkt_ret_{k}h") for k in (1, 24)]
        excess = self.pair_ret[hour, pair] - market[:, mean_cols]
        return np.concatenate([market, excess], axis=1)


def _cross_section(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample sd (ddof 1) across axis 1 of ``r`` [T, N] over finite entries: ``[T]`` each."""
    finite = np.isfinite(r)
    n = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, r, 0.0).sum(axis=1) / n                      # NaN where n == 0
        dev = np.where(finite, r - mean[:, None], 0.0)                       # two passes: no cancellation
        sd = np.sqrt((dev * dev).sum(axis=1) / (n - 1))
    return mean, np.where(n >= 2, sd, np.nan)


def _rolling_sd(a: np.ndarray, w: int) -> np.ndarray:
    """Sample sd (ddof 1) of ``a`` [T, K] over rows ``t-w+1 .. t``; NaN unless all ``w`` are finite.

    Cumulative-sum differences (``feature_generator.window_sum``): reads rows <= t only.
    """
    s, n = window_sum(a, w)
    s2, _ = window_sum(a * a, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s * s / n) / (n - 1)
    return np.where(n >= w, np.sqrt(np.clip(var, 0.0, None)), np.nan)


def market_context(market: MarketData) -> MarketContext:
    """Cross-sectional context of every hour of ``market`` (see the module docstring for the columns)."""
    panel = market.panel
    observed = panel.mask & ~panel.filled
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(np.where(panel.mask, panel.close, np.nan))
    ret: dict[int, np.ndarray] = {}
    for k in HORIZONS:
        r = np.full_like(logc, np.nan)
        r[k:] = logc[k:] - logc[:-k]
        ret[k] = np.where(observed, r, np.nan)
    cols: dict[str, np.ndarray] = {}
    for k in HORIZONS:
        cols[f"mkt_ret_{k}h"], cols[f"mkt_disp_{k}h"] = _cross_section(ret[k])
    # vol_24h as the feature defines it (filled candles count as 0 returns), but recomputed in float64:
    # the stored feature is float32
    r1 = np.full_like(logc, np.nan)
    r1[1:] = logc[1:] - logc[:-1]
    vol = np.where(market.features.valid, _rolling_sd(r1, MARKET_VOL_WINDOW), np.nan)
    cols["mkt_vol_24h"], _ = _cross_section(vol)
    cols[f"mkt_ret_vol_{MARKET_VOL_WINDOW}h"] = _rolling_sd(cols["mkt_ret_1h"][:, None], MARKET_VOL_WINDOW)[:, 0]
    T = len(logc)
    for symbol in REFERENCE_SYMBOLS:
        j = panel.symbols.index(symbol) if symbol in panel.symbols else None
        for k in (1, 24):
            cols[f"{symbol[:-4].lower()}_ret_{k}h"] = np.full(T, np.nan) if j is None else ret[k][:, j]
    return MarketContext(market=np.stack([cols[name] for name in MARKET_NAMES], axis=1),
                         pair_ret=np.stack([ret[1], ret[24]], axis=-1))


@dataclass
class RowInputs:
    """Per-fold ``[T, N]`` arrays that tabular rows point into (shared, never copied per row)."""

    x: np.ndarray              # [T, N, F] float32: the normalised features the GNN sees, 0 where invalid
    valid: np.ndarray          # [T, N] bool
    context: MarketContext | None = None


def row_inputs(market: MarketData, normalizer: FeatureNormalizer) -> RowInputs:
    """Normalise the features exactly as :class:`~gnn_market.graph_builder.HourlyGraphDataset` does,
    and compute the market context once for the fold."""
    valid = market.features.valid
    x = normalizer.transform(market.features.values, valid)
    x[~valid] = 0.0
    return RowInputs(x=x, valid=valid, context=market_context(market))


def row_windows(inputs: RowInputs, hour: np.ndarray, pair: np.ndarray, length: int,
                chunk_bytes: int = WINDOW_CHUNK_BYTES) -> np.ndarray:
    """Flattened lookback windows ``[M, L * F]`` float32 of rows ``(hour[m], pair[m])``, oldest hour first.

    Read through :func:`gnn_market.windows.lookback_windows` (the temporal GNN's
    inputs), chunked over distinct hours so that at most ``chunk_bytes`` of
    ``[H, N, L, F]`` windows exist at a time; the output itself is ``M * L * F * 4`` bytes.
    """
    T, N, F = inputs.x.shape
    hour, pair = np.asarray(hour, dtype=np.int64), np.asarray(pair, dtype=np.int64)
    out = np.empty((len(hour), length * F), dtype=np.float32)
    hours, inv = np.unique(hour, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    per_chunk = max(1, chunk_bytes // (N * length * F * 4))
    bounds = np.searchsorted(inv[order], np.arange(0, len(hours) + per_chunk, per_chunk))
    for c, a in enumerate(range(0, len(hours), per_chunk)):
        windows, _ = lookback_windows(inputs.x, inputs.valid, hours[a:a + per_chunk], length)
        sel = order[bounds[c]:bounds[c + 1]]
        out[sel] = windows[inv[sel] - a, pair[sel]].reshape(len(sel), length * F)
    return out
