"""The training run's market: the point-in-time ``--top N`` universe and the split.

``load_panel(top=N)`` ranks symbols by their quote volume over the whole
loaded range, test hours included: a choice of universe made with hindsight.
A training run with ``--top N`` instead ranks **only on hours strictly before
the first validation hour of the first fold**, which is all a forecaster
standing at the end of the training period could have known:

1. load every candidate symbol (all of the market, or ``--symbols``) and compute the split;
2. rank by liquidity = summed quote volume (``volume x close`` where the
   store has no quote volume, e.g. the bundled sample), as :func:`~gnn_market.panel.load_panel` does,
   over the hours before that cut; symbols without a candle before it are not eligible;
3. reload the chosen symbols and recompute the split. Should the new split's
   first validation hour fall before the cut, rank again with that earlier cut
   (a few rounds at most), so the ranking never sees a validation or test hour.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..panel import Panel
from ..pipeline import MarketData, load_market
from ..store import Store
from .config import TrainConfig
from .splits import Split, candidate_hours, make_splits

#: Re-ranking rounds before giving up on a stable point-in-time universe.
MAX_UNIVERSE_ROUNDS = 10


def liquidity_before(panel: Panel, before: pd.Timestamp) -> dict[str, float]:
    """Summed quote volume (``volume x close`` where unknown) per symbol over real candles with time < ``before``.

    Symbols without a real candle before ``before`` are left out.
    """
    rows = panel.times < before
    real = panel.mask[rows] & ~panel.filled[rows]                                    # [T_before, N]
    quote = panel.quote_volume[rows]
    value = np.where(np.isfinite(quote), quote, panel.volume[rows] * panel.close[rows])
    total = np.nansum(np.where(real, value, np.nan), axis=0)
    return {s: float(total[n]) for n, s in enumerate(panel.symbols) if real[:, n].any()}


def rank_universe(panel: Panel, top: int, before: pd.Timestamp) -> list[str]:
    """The ``top`` most liquid symbols of ``panel`` on hours < ``before``, sorted by name (ties: by name)."""
    if top <= 0:
        raise DataError(f"--top must be positive, got {top}")
    liquidity = liquidity_before(panel, before)
    if not liquidity:
        raise DataError(f"--top: no candles before {before.isoformat()} to rank the universe on")
    return sorted(sorted(liquidity, key=lambda s: (-liquidity[s], s))[:top])


def _load(store: Store, cfg: TrainConfig, symbols: list[str] | None) -> tuple[MarketData, list[Split]]:
    market = load_market(store, cfg.market, symbols, None, cfg.start, cfg.end, cfg.threshold)
    return market, make_splits(candidate_hours(market, cfg.window), cfg)


def load_training_market(store: Store, cfg: TrainConfig) -> tuple[MarketData, list[Split], dict[str, Any]]:
    """The run's market and folds, and ``metrics.json``'s ``data`` entry.

    ``data``: ``{"top", "symbols", "universe_ranked_until"}``; the last is the
    ISO time of the last hour whose volume entered the ``--top`` ranking (None without ``--top``).
    """
    if cfg.top is None:
        market, splits = _load(store, cfg, cfg.symbols)
        return market, splits, {"top": None, "symbols": list(market.panel.symbols), "universe_ranked_until": None}
    candidates, splits = _load(store, cfg, cfg.symbols)
    cut = candidates.times[splits[0].val[0]]
    for _ in range(MAX_UNIVERSE_ROUNDS):
        symbols = rank_universe(candidates.panel, cfg.top, cut)
        market, splits = _load(store, cfg, symbols)
        first_val = market.times[splits[0].val[0]]
        if first_val >= cut:
            ranked = candidates.times[candidates.times < cut]
            return market, splits, {"top": cfg.top, "symbols": list(market.panel.symbols),
                                    "universe_ranked_until": ranked[-1].isoformat()}
        cut = first_val
    raise DataError(f"--top {cfg.top}: no stable point-in-time universe after {MAX_UNIVERSE_ROUNDS} rounds")
