"""Cross-sectional rank ICs and their day-block bootstrap intervals (the statistics of ``diagnose``).

Pure numpy on ``[T, N]`` arrays (hours x pairs) with a ``valid`` mask: the per-hour Spearman
correlation of a signal with the next hour's return, the same after regressing control signals
out of the ranks (the *incremental* Rank IC), and percentile intervals from a circular bootstrap of
blocks of whole days (:func:`gnn_market.significance.draw_replicates`, the draws the model
comparisons use). scipy is imported only where ranks are taken.

As ``python -m gnn_market.diagnose`` uses them:

Per hour, the cross-sectional Spearman correlation (Rank IC) of every signal
with the label over the pairs where every signal and the label exist (so all
signals are compared on the same pairs and hours); also the Pearson IC.
Reported: mean Rank IC, Rank ICIR (mean / sd of the hourly Rank IC, not
annualised, as Qlib) and a 95 % interval from a **circular block bootstrap over
days with 7-day blocks** (``significance.py``'s resampler) (hours of a day share news and regimes, and daily
effects persist for weeks, so resampling hours or single days would make the
interval too narrow). The key comparisons, all paired (same hours and pairs,
same resampled days):

* best graph signal minus best own signal (each the highest mean Rank IC of its
  group, chosen on the same hours: the own side gets the better sign of its last
  hour for free, the graph side the best of three; both optimistic in the same way);
* every graph signal minus the best own signal (3 comparisons);
* the **incremental Rank IC** of each graph signal: per hour, its cross-sectional
  ranks are regressed on the ranks of ``own_1h`` and ``own_mom_24h`` (plus a
  constant) and the residual's Rank IC with the label is taken. Sign-free on the
  own side, it asks whether the graph carries information the pair's own
  history does not.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _rowwise_pearson(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pearson r of ``a[t]`` with ``b[t]`` over ``valid[t]`` for every row ``t`` -> ``[T]`` (NaN if undefined)."""
    w = valid.astype(np.float64)
    n = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        a0 = np.where(valid, a - (np.where(valid, a, 0.0).sum(1) / n)[:, None], 0.0)
        b0 = np.where(valid, b - (np.where(valid, b, 0.0).sum(1) / n)[:, None], 0.0)
        r = (a0 * b0).sum(1) / np.sqrt((a0 * a0).sum(1) * (b0 * b0).sum(1))
    return np.where(np.isfinite(r), r, np.nan)


def cross_ranks(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank, as Spearman's) of ``x[t]`` among ``valid[t]``; NaN elsewhere."""
    from scipy.stats import rankdata

    return rankdata(np.where(valid, x, np.nan), axis=1, nan_policy="omit")


def rank_ic_series(signal: np.ndarray, label: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-hour cross-sectional Spearman correlation of ``signal`` with ``label`` over ``valid`` pairs: ``[T]``."""
    return _rowwise_pearson(cross_ranks(signal, valid), cross_ranks(label, valid), valid)


def incremental_rank_ic_series(signal: np.ndarray, controls: Sequence[np.ndarray], label: np.ndarray,
                               valid: np.ndarray) -> np.ndarray:
    """Per-hour Rank IC of ``signal`` after regressing out ``controls`` cross-sectionally: ``[T]``.

    Hour by hour, the ranks of ``signal`` are regressed (OLS, with a constant)
    on the ranks of every control over the ``valid`` pairs; the residual's Rank
    IC with ``label`` is what the signal says that the controls do not.
    """
    return _incremental_from_ranks(cross_ranks(signal, valid), [cross_ranks(c, valid) for c in controls],
                                   cross_ranks(label, valid), valid)


def _incremental_from_ranks(signal_rank: np.ndarray, control_ranks: Sequence[np.ndarray], label_rank: np.ndarray,
                            valid: np.ndarray) -> np.ndarray:
    """:func:`incremental_rank_ic_series` from ranks; all hours at once as ``[T, k, k]`` batched normal equations."""
    y = np.where(valid, signal_rank, 0.0)
    X = np.stack([valid.astype(np.float64)] + [np.where(valid, c, 0.0) for c in control_ranks], axis=-1)
    # rows of invalid pairs are all 0 and do not enter the fit
    xtx = np.einsum("tnk,tnl->tkl", X, X)
    xty = np.einsum("tnk,tn->tk", X, y)
    coef = np.matmul(np.linalg.pinv(xtx, hermitian=True), xty[..., None])[..., 0]  # pinv: collinear hours stay finite
    resid = y - np.einsum("tnk,tk->tn", X, coef)
    return _rowwise_pearson(cross_ranks(resid, valid), label_rank, valid)


def block_bootstrap_means(series: np.ndarray, day: np.ndarray, n_days: int, block_days: int, replicates: int,
                          seed: int, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of every column of ``series`` and its block-bootstrap interval over days.

    Args:
        series: ``[H, M]`` hourly values (one column per statistic; NaN rows never reach here).
        day: ``[H]`` day index ``0 .. n_days-1`` of every row.

    The days are drawn exactly as for the training run's intervals
    (:func:`gnn_market.significance.draw_replicates`: circular blocks of ``block_days``
    consecutive days; there are no seeds here), and each replicate averages the hours of
    the drawn days (a day drawn twice counts twice). Every column uses the same draws, so a
    column of differences is a paired comparison. Returns ``(mean [M], low [M], high [M])``,
    percentile interval at ``level``.
    """
    from .significance import draw_replicates

    day_sum = np.zeros((n_days, series.shape[1]))
    np.add.at(day_sum, day, series)
    day_n = np.bincount(day, minlength=n_days).astype(np.float64)
    day_w, _ = draw_replicates(n_days, 1, replicates, seed, block_days, resample_seeds=False, level=level)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (day_w @ day_sum) / (day_w @ day_n)[:, None]              # [R, M]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(reps, [alpha, 1.0 - alpha], axis=0)
    return series.mean(0), lo, hi


def _verdict(lo: float, hi: float) -> str:
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "tie"
