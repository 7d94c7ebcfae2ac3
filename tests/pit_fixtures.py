"""Markets whose liquidity ranking changes at an hour: for the point-in-time ``top=`` tests (issue 22 item 5).

``load_panel`` ranks ``top=`` over everything it loads; the entry points that
take a range (``load_market``, ``GraphEncoder.encode_range``, the env factory)
must rank on the hours before it. These helpers build the market that tells
the two apart: the pairs ranked last before ``since`` become the most liquid
from ``since`` on.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from gnn_market.panel import load_panel
from gnn_market.store import Store
from gnn_market.training.universe import rank_universe

#: Scaled together, so the store's own checks (taker volume <= volume) still hold.
VOLUME_COLUMNS = ["volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"]


def ranked_before(store: Store, top: int, before: pd.Timestamp, market: str = "spot",
                  symbols: list[str] | None = None) -> list[str]:
    """The oracle: training's point-in-time ranking (a Panel-based implementation) of ``symbols`` (default: all)."""
    return rank_universe(load_panel(store, market=market, symbols=symbols), top, before)


def scale_volume(store: Store, dest: Path, symbols: list[str], since: pd.Timestamp, factor: float,
                 market: str = "spot") -> Store:
    """A copy of ``store`` at ``dest`` where ``symbols`` trade ``factor`` x their volume from ``since`` on.

    Prices are untouched, so only the liquidity ranking (and volume features) can change.
    """
    copy = Store(shutil.copytree(store.root, dest))
    for sym in symbols:
        k = copy.klines(sym, market)
        later = k.index >= since
        k.loc[later, VOLUME_COLUMNS] *= factor
        copy.write_klines(sym, k, market=market)
    return copy


def late_liquidity(store: Store, dest: Path, top: int, since: pd.Timestamp,
                   market: str = "spot") -> tuple[Store, list[str]]:
    """(copy, pairs ranked before ``since``): in the copy every other pair is 10^4 x as liquid from ``since`` on.

    Asserts the construction works: ranked over the hours from ``since`` on, the
    copy's top ``top`` holds none of the pairs ranked before it.
    """
    before = ranked_before(store, top, since, market)
    others = sorted(set(store.symbols(market)) - set(before))
    copy = scale_volume(store, dest, others, since, 1e4, market)
    hindsight = load_panel(copy, market=market, start=since, top=top).symbols
    assert not set(hindsight) & set(before), "the construction must change the in-range ranking"
    return copy, before
