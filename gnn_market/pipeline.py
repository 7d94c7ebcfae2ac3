"""The one data path: store -> panel -> features -> (labels, for training) -> returns.

Training, the encoder and ``predict`` all go through :func:`prepare_market`,
so a checkpoint sees at inference exactly the inputs it was trained on.
Inference asks for ``labels=False``: labels read the *next* candle, and
nothing that runs at hour t needs them.

    market = load_market(store, start="2023-01-01")                  # training: with labels
    market = prepare_market(panel, feature_config=cfg, labels=False)  # encoder: no labels
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import DataError
from .feature_generator import FeatureConfig, Features, Labels, compute_features, log_returns, make_labels
from .panel import Panel, load_panel, rank_top_before
from .store import Store
from .timeutil import parse_utc


@dataclass
class MarketData:
    """Features, labels and returns of one panel, computed once per run (all ``[T, N]`` on its grid)."""

    panel: Panel
    features: Features           # values [T, N, F] float32, valid [T, N] bool
    labels: Labels | None        # classes [T, N] int64; None when prepared with labels=False (inference)
    log_ret: np.ndarray          # [T, N] float64 ln(close[t] / close[t-1]), NaN if unknown
    current_return: np.ndarray   # [T, N] float64 simple return of the candle at t (NaN if unknown)
    feature_config: FeatureConfig

    @property
    def times(self) -> pd.DatetimeIndex:
        """``[T]`` hourly UTC grid."""
        return self.features.times

    def require_labels(self) -> Labels:
        """The labels; a :class:`DataError` if this market was prepared with ``labels=False``."""
        if self.labels is None:
            raise DataError("these market data were prepared without labels (labels=False)")
        return self.labels


def simple_returns(close: np.ndarray) -> np.ndarray:
    """[T, N] ``close[t] / close[t-1] - 1``; NaN for the first hour or a missing close."""
    out = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = close[1:] / close[:-1] - 1.0
    out[~np.isfinite(out)] = np.nan
    return out


def load_market(store: Store, market: str = "spot", symbols: Sequence[str] | None = None, top: int | None = None,
                start: str | None = None, end: str | None = None, threshold: float = 0.01,
                *, labels: bool = True) -> MarketData:
    """Store -> panel -> :func:`prepare_market` (with the default feature config).

    ``start``/``end`` are ISO strings (UTC; errors name them ``--start``/``--end``).
    ``top``: keep the ``top`` most liquid of ``symbols`` (default: all of the
    market), ranked point in time on every stored hour *before* ``start``
    (:func:`~gnn_market.panel.rank_top_before`), so no volume of the loaded
    hours or later picks the pairs. ``top`` without ``start``, or with nothing
    stored before it, is a :class:`DataError`.
    """
    t0, t1 = parse_utc(start, "--start"), parse_utc(end, "--end")
    names = list(symbols) if symbols else None
    if top is not None:
        names = rank_top_before(store, market, top, t0, names)
    panel = load_panel(store, market=market, symbols=names, start=t0, end=t1)
    return prepare_market(panel, threshold, labels=labels)


def prepare_market(panel: Panel, threshold: float = 0.01, feature_config: FeatureConfig | None = None,
                   *, labels: bool = True) -> MarketData:
    """Panel -> features, labels (only with ``labels=True``), log and simple returns.

    Args:
        panel: ``[T, N]`` aligned arrays; must hold at least one hour and one symbol.
        threshold: UP/DOWN return threshold of the labels (unused without labels).
        feature_config: window lengths (None = the defaults); a checkpoint's own at inference.
        labels: compute next-hour labels (training); inference passes False.
    """
    if len(panel.times) == 0 or len(panel.symbols) == 0:
        raise DataError("no candles in the requested range")
    feature_config = FeatureConfig() if feature_config is None else feature_config
    return MarketData(
        panel=panel,
        features=compute_features(panel, feature_config),
        labels=make_labels(panel, threshold=threshold) if labels else None,
        log_ret=log_returns(panel),
        current_return=simple_returns(np.where(panel.mask, panel.close, np.nan)),
        feature_config=feature_config,
    )
