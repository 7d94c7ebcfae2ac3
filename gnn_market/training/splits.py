"""Chronological train | purge | validation | purge | test splits, one or walk-forward folds.

The purge gap is ``window + horizon`` hours (101 by default): the correlation
window of the first validation hour then starts after the last training
label's candle, so no price that shaped a training target or edge is re-used
by a later split's inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..checkpoint import iso_range
from ..classes import IGNORE_INDEX
from ..errors import DataError
from ..pipeline import MarketData
from .config import MIN_SEGMENT_HOURS, TrainConfig


@dataclass
class Split:
    """Hour indices (into the panel's T axis) of one train / validation / test fold."""

    train: np.ndarray   # [H_train] int, ascending
    val: np.ndarray     # [H_val]
    test: np.ndarray    # [H_test]

    def describe(self, times: pd.DatetimeIndex) -> dict[str, Any]:
        """``{"train"|"val"|"test": {"hours": int, "range": [first_iso, last_iso]}}`` for ``metrics.json``."""
        return {name: {"hours": int(len(idx)), "range": iso_range(times[idx])}
                for name, idx in (("train", self.train), ("val", self.val), ("test", self.test))}


def candidate_hours(market: MarketData, window: int) -> np.ndarray:
    """Hours ``[H]`` with a full correlation window behind them and at least one labelled, valid node.

    The window of hour ``t`` is the ``window`` hours ``t - window + 1 .. t`` (``correlations._window``),
    so the first candidate is hour ``window - 1``: an earlier one would get a shortened window.
    """
    labelled = (market.require_labels().classes != IGNORE_INDEX) & market.features.valid
    hours = np.flatnonzero(labelled.any(axis=1))
    return hours[hours >= window - 1]


def make_splits(hours: np.ndarray, cfg: TrainConfig) -> list[Split]:
    """Chronological folds with ``cfg.purge`` hours dropped before validation and before test.

    One fold: train | purge | val | purge | test with the configured fractions.
    K folds: the test share is cut into K consecutive blocks; fold k tests on
    block k, validates on the ``val_fraction`` hours before it and trains on
    everything earlier (an expanding window). The last fold equals the one-fold split.
    """
    n, gap = len(hours), cfg.purge
    n_val = int(round(cfg.val_fraction * n))
    n_test_total = int(round(cfg.test_fraction * n))
    block = n_test_total // cfg.folds
    if not _fits(n, 1, cfg):
        raise DataError(
            f"too few hours: {n} usable hours (after the {cfg.window}-hour correlation window), but one fold "
            f"(train | {gap}-hour purge | validation {cfg.val_fraction:.0%} | {gap}-hour purge | test "
            f"{cfg.test_fraction:.0%}, >= {MIN_SEGMENT_HOURS} hours each) needs at least {_hours_needed(1, cfg)}")
    if not _fits(n, cfg.folds, cfg):
        most = max(k for k in range(1, cfg.folds) if _fits(n, k, cfg))
        raise DataError(
            f"too many folds: {n} usable hours support at most {most} fold(s) (the test share, {n_test_total} "
            f"hours, is cut into {cfg.folds} blocks of {block} hours, under the {MIN_SEGMENT_HOURS}-hour minimum); "
            f"use --folds {most} or fewer, or give at least {_hours_needed(cfg.folds, cfg)} usable hours "
            f"for {cfg.folds} folds")
    splits = []
    for k in range(cfg.folds):
        test_end = n - (cfg.folds - 1 - k) * block
        test_start = test_end - block
        val_end = test_start - gap
        val_start = val_end - n_val
        train_end = val_start - gap
        assert train_end >= MIN_SEGMENT_HOURS  # guaranteed by _fits
        splits.append(Split(hours[:train_end], hours[val_start:val_end], hours[test_start:test_end]))
    return splits


def _fits(n: int, folds: int, cfg: TrainConfig) -> bool:
    """Whether ``n`` usable hours give ``folds`` folds with every segment >= MIN_SEGMENT_HOURS hours."""
    n_val = int(round(cfg.val_fraction * n))
    block = int(round(cfg.test_fraction * n)) // folds
    first_train = n - folds * block - cfg.purge - n_val - cfg.purge  # fold 1 trains on the fewest hours
    return min(block, n_val, first_train) >= MIN_SEGMENT_HOURS


def _hours_needed(folds: int, cfg: TrainConfig) -> int:
    """Fewest usable hours that give ``folds`` folds (what the error messages quote)."""
    n = 2 * cfg.purge + 3 * MIN_SEGMENT_HOURS
    while not _fits(n, folds, cfg):
        n += max(1, n // 1000)  # coarse steps up (a few thousand at worst), then back to the first that fits
    while n > 1 and _fits(n - 1, folds, cfg):
        n -= 1
    return n
