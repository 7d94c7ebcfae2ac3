"""Qlib-style trading metrics of a classifier's test predictions: IC, Rank IC and a costed portfolio.

The **score** of a (hour, pair) row is ``P(UP) - P(DOWN)`` of the model's calibrated test
probabilities (:func:`probability_score`). Everything is computed on ``[H, N]`` matrices:
``H`` distinct test hours (ascending, pooled over folds), ``N`` pairs; ``NaN`` marks a
(hour, pair) without a test row. The label's return is the one the score predicts:
``r[t] = close[t+1] / close[t] - 1`` of the row's hour ``t`` (``make_labels``'s ``next_return``).

- **IC** / **Rank IC** (:func:`cross_sectional_ic`): per hour, the Pearson / Spearman
  correlation across pairs of the score with the next hour's log return ``ln(1 + r)``;
  hours with fewer than :data:`MIN_PAIRS` valid pairs, or where the score or the return is
  constant across pairs, are skipped (``NaN``). ``ic`` is the mean over the kept hours,
  ``icir`` the mean divided by the sample sd (ddof 1) of the per-hour IC, **per hour, not
  annualised** (Qlib reports it per period the same way).
- **Portfolio** (:func:`portfolio_weights`, :func:`portfolio_returns`): rebalanced every
  hour from the score with a hysteresis band (see :func:`portfolio_weights`); perpetuals
  (``long_short``): long the top-k, short the bottom-k, equal weights, gross exposure 1
  (``+0.5/k`` / ``-0.5/k``); spot: long-only top-k (``1/k`` each), scored as its **excess**
  over the equal-weight portfolio of the hour's valid pairs. The position taken at hour
  ``t`` earns the label's simple return ``r[t]`` (``close[t+1] / close[t] - 1``), never
  the return of the candle ending at ``t``. Costs: ``cost_bps`` (10 bps) per unit of
  turnover ``sum_n |w[t, n] - w[t-1, n]|``, charged on every change of weights, the first
  entry included (``w[-1] = 0``); the equal-weight benchmark is a yardstick, not traded,
  and pays no costs. Weights are reset to their targets every hour (intra-hour drift
  ignored); perpetual funding payments are not modelled.
- :func:`performance`: annualised return (arithmetic mean of the hourly net return x
  8760), Sharpe (mean / sd (ddof 1) x sqrt(8760)), maximum drawdown of the **summed**
  (not compounded) cumulative net return, as a positive fraction, and mean turnover per hour.
- :func:`gnn_differences`: GNN minus each model on Rank IC and Sharpe with a percentile
  interval from ``significance.py``'s resampler: circular blocks of 7 consecutive test
  days x training seeds (paired: the same days and seeds for both models), the same
  noise the classification intervals count.

A pair without a test row at hour ``t`` (its next candle missing) cannot be held at ``t``:
leaving it counts as turnover. An hour where every valid score is equal carries no ranking:
the long-short book is flat then, the long-only book holds the equal-weight benchmark
(``majority``'s constant probabilities: flat, or the benchmark, throughout).
Undefined statistics (no kept hour, a zero sd) are ``None`` in the summaries.

    score = probability_score(probs)                                   # [M]
    S, R = to_matrix(score, pos, pair, H, N), to_matrix(ret, pos, pair, H, N)
    series = model_series(S, R, PortfolioConfig(long_short=True))
    summarise(series)  # {"ic", "rank_ic", "icir", "rank_icir", "portfolio": {...}, ...}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from .classes import CLASS_NAMES
from .significance import DEFAULT_BLOCK_DAYS, DEFAULT_BOOTSTRAP_SEED, DEFAULT_REPLICATES, block_length, draw_replicates

#: Hours per year: annualisation of hourly returns and Sharpe ratios.
HOURS_PER_YEAR = 8760
#: An hour's IC needs at least this many pairs with a score and a return.
MIN_PAIRS = 3
#: Coverage of the trading intervals (replicates, seed and block length: ``significance.py``'s defaults).
TRADING_LEVEL = 0.95

_UP, _DOWN = CLASS_NAMES.index("UP"), CLASS_NAMES.index("DOWN")


@dataclass(frozen=True)
class PortfolioConfig:
    """How a score becomes hourly weights, and what trading costs.

    ``long_short``: perpetuals (long top-k, short bottom-k) or spot (long-only top-k against
    equal weight); ``k_fraction``: k = max(1, floor(k_fraction x valid pairs)) per hour;
    ``band``: a held name stays held while it ranks within the top ``band x k`` (bottom, for
    shorts), 1.0 = plain top-k every hour; ``cost_bps``: cost per unit of turnover, in basis points.
    """

    long_short: bool
    k_fraction: float = 0.2
    band: float = 2.0
    cost_bps: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.k_fraction <= 0.5 and self.band >= 1.0 and self.cost_bps >= 0):
            raise ValueError(f"invalid portfolio config {self}: need 0 < k_fraction <= 0.5, band >= 1, "
                             f"cost_bps >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "style": "long-short top/bottom k" if self.long_short
                else "long-only top k minus equal weight"}


@dataclass
class HourSeries:
    """One model's per-hour results on one seed's test hours (all ``[H]``; ``NaN`` = skipped hour)."""

    ic: np.ndarray
    rank_ic: np.ndarray
    net: np.ndarray        # hourly net (of costs) return; spot: excess over equal weight
    turnover: np.ndarray   # sum_n |w[t] - w[t-1]|


def probability_score(probs: np.ndarray) -> np.ndarray:
    """``[M]`` score ``P(UP) - P(DOWN)`` of probabilities ``[M, 3]`` (class order of ``CLASS_NAMES``)."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs[:, _UP] - probs[:, _DOWN]


def to_matrix(values: np.ndarray, hour_pos: np.ndarray, pair: np.ndarray, n_hours: int,
              n_pairs: int) -> np.ndarray:
    """``[H, N]`` float64 matrix with ``values[m]`` at ``(hour_pos[m], pair[m])``, ``NaN`` elsewhere."""
    out = np.full((n_hours, n_pairs), np.nan)
    out[np.asarray(hour_pos, dtype=np.int64), np.asarray(pair, dtype=np.int64)] = values
    return out


def _row_spread(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``[H]`` max - min of each row's valid entries (0 for a constant row, -inf for an empty one)."""
    return np.max(np.where(valid, a, -np.inf), axis=1) - np.min(np.where(valid, a, np.inf), axis=1)


def _row_corr(a: np.ndarray, b: np.ndarray, valid: np.ndarray, min_pairs: int) -> np.ndarray:
    """``[H]`` Pearson correlation of rows of ``a`` and ``b`` ``[H, N]`` over ``valid`` entries.

    ``NaN`` for a row with fewer than ``min_pairs`` valid entries or a constant ``a`` or ``b``.
    """
    n = valid.sum(axis=1)
    keep = (n >= min_pairs) & (_row_spread(a, valid) > 0) & (_row_spread(b, valid) > 0)
    m = np.maximum(n, 1)[:, None]
    da = np.where(valid, a - np.where(valid, a, 0.0).sum(axis=1, keepdims=True) / m, 0.0)
    db = np.where(valid, b - np.where(valid, b, 0.0).sum(axis=1, keepdims=True) / m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    return np.where(keep, np.clip(corr, -1.0, 1.0), np.nan)


def _row_ranks(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank, as scipy's spearmanr) of each row's valid entries."""
    filled = np.where(valid, a, np.inf)  # invalid entries rank after every valid one: valid ranks are 1..n
    return np.where(valid, rankdata(filled, method="average", axis=1), np.nan)


def cross_sectional_ic(score: np.ndarray, log_return: np.ndarray,
                       min_pairs: int = MIN_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Per-hour ``(ic [H], rank_ic [H])``: Pearson and Spearman correlation across pairs.

    Args:
        score: ``[H, N]`` the model's score, ``NaN`` without a row.
        log_return: ``[H, N]`` next-hour log return of each row, ``NaN`` without a label.

    An hour with fewer than ``min_pairs`` entries valid in both, or a constant score or
    return across its pairs, is ``NaN`` (skipped).
    """
    valid = np.isfinite(score) & np.isfinite(log_return)
    ic = _row_corr(score, log_return, valid, min_pairs)
    rank_ic = _row_corr(_row_ranks(score, valid), _row_ranks(log_return, valid), valid, min_pairs)
    return ic, rank_ic


def _pick(order: np.ndarray, held: np.ndarray, excluded: np.ndarray, k: int, band_k: int) -> np.ndarray:
    """Up to ``k`` pair indices: the held ones ranked within ``order[:band_k]``, then the best others.

    ``order``: valid pairs, best first; ``held`` / ``excluded``: ``[N]`` bool.
    """
    candidates = order[~excluded[order]]
    top = candidates[:band_k]
    kept = top[held[top]][:k]                          # held and still inside the band, best first
    taken = np.zeros_like(held)
    taken[kept] = True
    fill = candidates[~taken[candidates]][:k - len(kept)]
    return np.concatenate([kept, fill])


def portfolio_weights(score: np.ndarray, valid: np.ndarray, cfg: PortfolioConfig) -> np.ndarray:
    """``[H, N]`` target weights, hour by hour, from scores known at that hour.

    Turnover rule (hysteresis band): at hour ``t`` with ``n`` valid pairs, ``k = max(1,
    floor(k_fraction * n))`` (long-short: at most ``n // 2``). The long book keeps every
    name it held at ``t - 1`` that is still valid and ranks within the top ``band * k``
    (best first, at most ``k``), and fills up to ``k`` with the best-ranked names it does
    not hold; the short book does the same from the bottom, never taking a long name.
    ``band = 1`` is plain top-k. Ties in the score are broken by panel order (stable sort).
    An hour with fewer valid pairs than the book needs (2 long-short, 1 long-only) or
    without dispersion in the valid scores has no ranking: the long-short book is flat
    (all zero), the long-only book holds the benchmark (``1/n`` on every valid pair, so
    its excess return is only the cost of getting there); the held names are forgotten.

    The loop runs over hours only (each hour's book depends on the previous one); the
    work inside is vectorised over pairs. Weights at ``t`` read scores at hours ``<= t`` only.
    """
    H, N = score.shape
    weights = np.zeros((H, N))
    long_held, short_held = np.zeros(N, dtype=bool), np.zeros(N, dtype=bool)
    need = 2 if cfg.long_short else 1
    for t in range(H):
        idx = np.flatnonzero(valid[t])
        s = score[t, idx]
        n = len(idx)
        if n < need or np.ptp(s) == 0:   # no ranking: long-short is flat, long-only holds the benchmark
            long_held[:], short_held[:] = False, False
            if not cfg.long_short and n:
                weights[t, idx] = 1.0 / n
            continue
        k = max(1, int(np.floor(cfg.k_fraction * n)))
        k = min(k, n // 2) if cfg.long_short else k
        band_k = max(k, int(np.floor(cfg.band * k)))
        order = idx[np.argsort(-s, kind="stable")]     # best first, ties in panel order
        longs = _pick(order, long_held, np.zeros(N, dtype=bool), k, band_k)
        long_held[:] = False
        long_held[longs] = True
        if cfg.long_short:
            shorts = _pick(order[::-1], short_held, long_held, k, band_k)
            short_held[:] = False
            short_held[shorts] = True
            weights[t, longs], weights[t, shorts] = 0.5 / k, -0.5 / k
        else:
            weights[t, longs] = 1.0 / k
    return weights


def portfolio_returns(weights: np.ndarray, simple_return: np.ndarray, valid: np.ndarray,
                      cfg: PortfolioConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(net [H], turnover [H])`` of hourly ``weights`` ``[H, N]``.

    ``simple_return[t, n]``: the label's return of hour ``t`` (``close[t+1] / close[t] - 1``),
    the return the position taken at ``t`` earns. ``net = weights . r - cost`` (long-short) or
    ``weights . r - mean(r over valid pairs) - cost`` (long-only against equal weight), with
    ``cost = cost_bps / 1e4 * turnover`` and ``turnover[t] = sum_n |w[t] - w[t-1]|`` (``w[-1] = 0``).
    """
    r = np.where(valid, simple_return, 0.0)
    gross = (weights * r).sum(axis=1)
    if not cfg.long_short:
        n = valid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            benchmark = np.where(n > 0, r.sum(axis=1) / np.maximum(n, 1), 0.0)
        gross = gross - benchmark
    previous = np.vstack([np.zeros((1, weights.shape[1])), weights[:-1]])
    turnover = np.abs(weights - previous).sum(axis=1)
    return gross - cfg.cost_bps * 1e-4 * turnover, turnover


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _ratio(x: np.ndarray) -> float | None:
    """``mean / sd`` (ddof 1) of the finite entries; None with fewer than 2 or a zero sd."""
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return None
    sd = np.std(x, ddof=1)
    return _finite(np.mean(x) / sd) if sd > 0 else None


def max_drawdown(net: np.ndarray) -> float:
    """Largest fall of the summed cumulative return ``cumsum(net)`` from its running peak (start 0), >= 0."""
    curve = np.concatenate([[0.0], np.cumsum(net)])
    return float(np.max(np.maximum.accumulate(curve) - curve))


def performance(net: np.ndarray, turnover: np.ndarray) -> dict[str, float | None]:
    """``{"return_ann", "sharpe", "max_drawdown", "turnover"}`` of hourly net returns ``[H]``.

    ``return_ann = mean(net) * 8760`` (arithmetic), ``sharpe = mean / sd (ddof 1) * sqrt(8760)``
    (None for a zero sd, e.g. a flat book), ``max_drawdown`` of the summed curve (a positive
    fraction), ``turnover`` = mean per hour.
    """
    if len(net) == 0:
        return {"return_ann": None, "sharpe": None, "max_drawdown": None, "turnover": None}
    ratio = _ratio(net)
    return {"return_ann": float(np.mean(net) * HOURS_PER_YEAR),
            "sharpe": None if ratio is None else ratio * float(np.sqrt(HOURS_PER_YEAR)),
            "max_drawdown": max_drawdown(net), "turnover": float(np.mean(turnover))}


def model_series(score: np.ndarray, simple_return: np.ndarray, cfg: PortfolioConfig) -> HourSeries:
    """Per-hour IC, Rank IC, net return and turnover of one model's score ``[H, N]``.

    ``simple_return`` ``[H, N]``: each row's label return (``NaN`` without a label); the IC
    uses its log, the portfolio the simple return.
    """
    valid = np.isfinite(score) & np.isfinite(simple_return)
    with np.errstate(invalid="ignore"):
        log_return = np.log1p(simple_return)
    ic, rank_ic = cross_sectional_ic(np.where(valid, score, np.nan), log_return)
    weights = portfolio_weights(score, valid, cfg)
    net, turnover = portfolio_returns(weights, simple_return, valid, cfg)
    return HourSeries(ic=ic, rank_ic=rank_ic, net=net, turnover=turnover)


def summarise(series: HourSeries) -> dict[str, Any]:
    """``{"ic", "rank_ic", "icir", "rank_icir", "ic_hours", "portfolio": performance(...)}``.

    ``icir`` / ``rank_icir``: mean / sd of the per-hour values, per hour (not annualised);
    ``ic_hours``: hours with a defined Rank IC. Undefined values are None.
    """
    def mean(x: np.ndarray) -> float | None:
        return _finite(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else None

    return {"ic": mean(series.ic), "rank_ic": mean(series.rank_ic), "icir": _ratio(series.ic),
            "rank_icir": _ratio(series.rank_ic), "ic_hours": int(np.isfinite(series.rank_ic).sum()),
            "portfolio": performance(series.net, series.turnover)}


def day_sums(x: np.ndarray, day: np.ndarray, n_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per seed and day: count, sum and sum of squares of the finite hourly values.

    Args:
        x: ``[S, H]`` hourly values (``NaN`` = skipped hour).
        day: ``[H]`` day id of each hour (``0 .. n_days - 1``).

    Returns:
        ``(count, sum, sum_sq)``, each ``[S, n_days]``.
    """
    kept = np.isfinite(x)
    v = np.where(kept, x, 0.0)
    onehot = np.zeros((len(day), n_days))
    onehot[np.arange(len(day)), day] = 1.0                   # [H, D]: hours -> their day
    return kept @ onehot, v @ onehot, (v * v) @ onehot


def _mean_stat(count: np.ndarray, total: np.ndarray, _sq: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[R, S]`` mean of the kept hours when day ``d`` is counted ``w[r, d]`` times (``w``: ``[R, D]``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ total.T) / (w @ count.T)


def _sharpe_stat(count: np.ndarray, total: np.ndarray, sq: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``[R, S]`` annualised Sharpe (mean / sd, ddof 1) of the hours drawn with day weights ``w`` ``[R, D]``."""
    n, s1, s2 = w @ count.T, w @ total.T, w @ sq.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 - n * mean * mean, 0.0) / (n - 1)
        sd = np.sqrt(var)
        # a flat book (every drawn return equal) has no Sharpe; float noise in var must not invent one
        flat = var <= 1e-12 * np.maximum(s2 / n, 1e-300)
        return np.where(flat, np.nan, mean / sd) * np.sqrt(HOURS_PER_YEAR)


_STATS = {"rank_ic": ("rank_ic", _mean_stat), "sharpe": ("net", _sharpe_stat)}


def gnn_differences(series: Mapping[str, Sequence[HourSeries]], day: np.ndarray,
                    replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_BOOTSTRAP_SEED,
                    level: float = TRADING_LEVEL, block_days: int = DEFAULT_BLOCK_DAYS) -> dict[str, Any]:
    """GNN minus every other model on Rank IC and Sharpe, with paired seed x 7-day-block intervals.

    The resampling is :mod:`gnn_market.significance`'s, so trading and classification intervals
    count the same noise: :func:`~gnn_market.significance.draw_replicates` draws circular blocks of
    ``block_days`` consecutive test days and the training seeds (inflated for few seeds) in every
    replicate, the same draws for every model. A replicate's statistic is computed on the drawn
    hours (a day drawn twice counts twice), then averaged over seeds with the seed weights.

    Args:
        series: model -> one :class:`HourSeries` per training seed (the same seeds, in the same
            order, and the same ``H`` test hours for every model; must hold ``"gnn"``).
        day: ``[H]`` day id of each test hour, consecutive ids = consecutive days
            (:func:`~gnn_market.significance.day_ids`).

    ``diff`` is the mean over seeds of the per-seed difference on the actual test hours; the
    interval is the percentile interval at ``level``. A difference involving an undefined
    statistic (a flat book's Sharpe) is None. Fewer than 2 test days: no intervals, a
    ``note`` says why.

    Returns:
        ``{"gnn_vs": {model: {"rank_ic": {"diff", "ci_low", "ci_high"}, "sharpe": {...}}},
        "replicates", "bootstrap_seed", "level", "block_days", "days", "hours", "seeds", "seed_noise"}``.
    """
    day = np.asarray(day, dtype=np.int64)
    n_seeds, n_hours = len(series["gnn"]), len(series["gnn"][0].net)
    if len(day) != n_hours:
        raise ValueError(f"{len(day)} day ids for {n_hours} test hours")
    n_days = int(day.max()) + 1 if n_hours else 0
    out: dict[str, Any] = {"gnn_vs": {}, "replicates": replicates, "bootstrap_seed": seed, "level": level,
                           "block_days": block_length(n_days, block_days), "days": n_days, "hours": n_hours,
                           "seeds": n_seeds, "seed_noise": n_seeds > 1,
                           "resampling": "circular blocks of test days x training seeds (paired), as significance.py"}
    if n_days < 2:
        out["note"] = "fewer than 2 test days: no bootstrap interval"
        return out
    day_w, seed_w = draw_replicates(n_days, n_seeds, replicates, seed, block_days, level=level)
    day_w = np.vstack([np.ones((1, n_days)), day_w])           # row 0 = the actual test days
    seed_w = np.vstack([np.ones((1, n_seeds)), seed_w])
    sums = {name: {attr: day_sums(np.stack([getattr(s, attr) for s in runs]), day, n_days)
                   for attr in ("rank_ic", "net")} for name, runs in series.items()}
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    for name in series:
        if name == "gnn":
            continue
        result = {}
        for key, (attr, stat) in _STATS.items():
            per_seed = stat(*sums["gnn"][attr], day_w) - stat(*sums[name][attr], day_w)     # [1 + R, S]
            if not np.isfinite(per_seed[0]).all():
                result[key] = {"diff": None, "ci_low": None, "ci_high": None}
                continue
            diffs = (seed_w * per_seed).sum(axis=1) / n_seeds                             # [1 + R]
            reps = diffs[1:][np.isfinite(diffs[1:])]
            result[key] = {"diff": float(diffs[0]),
                           "ci_low": float(np.percentile(reps, lo)) if len(reps) else None,
                           "ci_high": float(np.percentile(reps, hi)) if len(reps) else None}
        out["gnn_vs"][name] = result
    return out
