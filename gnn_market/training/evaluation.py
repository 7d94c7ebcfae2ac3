"""Scores over several training seeds and the GNN-vs-model significance tests of a run.

- :func:`score_seed`: one seed's metrics per model, folds pooled, on the
  calibrated predictions, plus the uncalibrated log-loss / Brier of calibrated models
  and, given the seed's :func:`trading_series`, the trading metrics
  (:mod:`gnn_market.trading_metrics`: IC, Rank IC, ICIR, Rank ICIR, ``portfolio``).
- :func:`trading_rows` / :func:`trading_series`: the test rows' (hour, pair) cells and
  label returns, and each model's per-hour IC and portfolio returns on them.
- :func:`aggregate_seeds`: ``metrics.json``'s ``test``/``val`` tables: the mean
  over seeds of every scalar metric with its sample standard deviation
  (``<metric>_sd``, ddof 1; 0.0 for one seed).
- :func:`pooled_test`: the test rows of a seed (labels, hours) and each
  model's pooled class predictions, checked to be the same rows for every seed.
- :func:`significance_vs_gnn`: :func:`~gnn_market.significance.paired_day_bootstrap`
  (training seeds x 7-day blocks of UTC test days) of the GNN against every other
  model; the primary comparison is the best other model on validation macro-F1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..calibration import brier_score
from ..classes import IGNORE_INDEX
from ..pipeline import MarketData
from ..significance import (
    DEFAULT_BLOCK_DAYS,
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_REPLICATES,
    block_length,
    day_ids,
    paired_day_bootstrap,
)
from ..trading_metrics import HourSeries, PortfolioConfig, model_series, probability_score, summarise, to_matrix
from .calibrate import CalibratedFold
from .config import MODEL_ORDER
from .metrics import safe_log_loss
from .report import score

#: Level of the bootstrap intervals in ``metrics.json``'s ``significance``.
SIGNIFICANCE_LEVEL = 0.95
#: Metrics that count rows (identical for every seed), not scores: averaged without an ``_sd``.
COUNT_KEYS = frozenset({"n"})
#: Nested metric groups whose scalars are averaged over seeds with an ``_sd`` each, like top-level ones.
GROUP_KEYS = frozenset({"portfolio"})


def score_seed(folds: Sequence[CalibratedFold], which: str,
               trading: Mapping[str, HourSeries] | None = None) -> dict[str, dict[str, Any]]:
    """One seed's metrics per model on ``which`` (``"test"`` or ``"val"``), folds pooled.

    Scored on the calibrated probabilities and decided classes; calibrated
    models also get ``log_loss_uncalibrated`` and ``brier_uncalibrated`` of their raw probabilities.
    ``trading`` (this seed's :func:`trading_series` of the same rows) adds each model's
    ``ic``, ``rank_ic``, ``icir``, ``rank_icir``, ``ic_hours`` and ``portfolio``
    (:func:`~gnn_market.trading_metrics.summarise`).
    """
    out = score([f.fold for f in folds], which)
    y = np.concatenate([getattr(f.raw, f"y_{which}") for f in folds])
    for name, m in out.items():
        if name in folds[0].calibrations:
            raw = np.concatenate([getattr(f.raw, which)[name][1] for f in folds])
            m["log_loss_uncalibrated"] = safe_log_loss(y, raw)
            m["brier_uncalibrated"] = brier_score(y, raw)
        if trading is not None and name in trading:
            m.update(summarise(trading[name]))
    return out


@dataclass
class TradingRows:
    """Where a seed's pooled test rows sit on the trading metrics' ``[H, N]`` grid.

    ``hours [H]``: the distinct test hours (panel T index, ascending); ``hour_pos [M]`` /
    ``pair [M]``: each test row's position in ``hours`` and its pair; ``simple_return [H, N]``:
    the label return ``close[t+1] / close[t] - 1`` of every test row, NaN elsewhere.
    """

    hours: np.ndarray
    hour_pos: np.ndarray
    pair: np.ndarray
    simple_return: np.ndarray


def trading_rows(folds: Sequence[CalibratedFold], market: MarketData) -> TradingRows:
    """The (hour, pair) cells of the pooled test rows of ``folds`` and their label returns.

    The rows are the labelled cells of each fold's test hours, hour by hour and pairs in panel
    order (:func:`.graphs.labelled_rows`); the pairs are recovered from the labels and checked
    against the stored test hours and labels, so resumed parts need no extra field.
    """
    labels = market.require_labels()
    hours, pairs = [], []
    for f in folds:
        h_idx, pair = np.nonzero(labels.classes[f.fold.split.test] != IGNORE_INDEX)
        hour = np.asarray(f.fold.split.test)[h_idx]
        if not (np.array_equal(hour, f.fold.test_hours) and np.array_equal(labels.classes[hour, pair], f.fold.y_test)):
            raise AssertionError("the test rows are not the labelled cells of the test hours in panel order")
        hours.append(hour)
        pairs.append(pair)
    hour, pair = np.concatenate(hours), np.concatenate(pairs)
    distinct, pos = np.unique(hour, return_inverse=True)
    ret = to_matrix(labels.next_return[hour, pair], pos, pair, len(distinct), len(labels.symbols))
    return TradingRows(distinct, pos, pair, ret)


def trading_series(folds: Sequence[CalibratedFold], rows: TradingRows,
                   cfg: PortfolioConfig) -> dict[str, HourSeries]:
    """Each model's per-hour IC, Rank IC and portfolio returns from its calibrated test probabilities."""
    out = {}
    for name in folds[0].fold.test:
        probs = np.concatenate([f.fold.test[name][1] for f in folds])
        if len(probs) != len(rows.pair):
            raise AssertionError(f"{name} scored {len(probs)} test rows, the trading grid has {len(rows.pair)}")
        score = to_matrix(probability_score(probs), rows.hour_pos, rows.pair, *rows.simple_return.shape)
        out[name] = model_series(score, rows.simple_return, cfg)
    return out


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _mean_nested(values: list[Any]) -> Any:
    """Element-wise mean of equally shaped dicts / lists / numbers; identical values are kept as they are."""
    first = values[0]
    if all(v == first for v in values[1:]):
        return first
    if isinstance(first, dict):
        return {k: _mean_nested([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [_mean_nested([v[i] for v in values]) for i in range(len(first))]
    return float(np.mean(values))


def aggregate_seeds(per_seed: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Combine per-seed metric tables (``model -> metrics``) into one.

    Every scalar metric becomes its mean over seeds, followed by ``<metric>_sd``
    (sample standard deviation, ddof 1; 0.0 with one seed). Counts
    (:data:`COUNT_KEYS`) must agree across seeds and are kept. Non-scalar
    metrics (``f1``, ``confusion``, ``pred_balance``, ``class_balance``) are
    averaged element-wise (``confusion`` becomes mean counts per seed; values
    equal in every seed, e.g. ``class_balance``, are kept unchanged). A metric that is
    ``None`` in any seed stays ``None``. Groups (:data:`GROUP_KEYS`: ``portfolio``) are
    aggregated the same way inside, so ``portfolio.sharpe`` gets ``portfolio.sharpe_sd``.
    """
    return {name: _aggregate_runs(name, [seed[name] for seed in per_seed]) for name in per_seed[0]}


def _aggregate_runs(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's (or metric group's) metrics over seeds; see :func:`aggregate_seeds`."""
    agg: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if key in COUNT_KEYS:
            if len(set(values)) != 1:
                raise AssertionError(f"{name}: {key} differs between seeds: {values}")
            agg[key] = values[0]
        elif key in GROUP_KEYS:
            agg[key] = _aggregate_runs(f"{name}.{key}", values)
        elif any(v is None for v in values):
            agg[key] = None
        elif all(_is_scalar(v) for v in values):
            agg[key] = float(np.mean(values))
            agg[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        else:
            agg[key] = _mean_nested(values)
    return agg


def pooled_test(folds: Sequence[CalibratedFold]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(y [M], hours [M], {model: classes [M]})`` of one seed's test rows, folds in order."""
    y = np.concatenate([f.fold.y_test for f in folds])
    hours = np.concatenate([f.fold.test_hours for f in folds])
    preds = {name: np.concatenate([f.fold.test[name][0] for f in folds]) for name in folds[0].fold.test}
    for name, p in preds.items():
        if p.shape != y.shape:
            raise AssertionError(f"{name} scored {p.shape} test rows, the labels have {y.shape}")
    return y, hours, preds


def stack_seeds(seed_folds: Sequence[Sequence[CalibratedFold]]) -> tuple[np.ndarray, np.ndarray,
                                                                          dict[str, np.ndarray]]:
    """``(y [M], hours [M], {model: classes [S, M]})`` over seeds; the test rows must be identical."""
    pooled = [pooled_test(folds) for folds in seed_folds]
    y, hours, _ = pooled[0]
    for y_s, hours_s, _ in pooled[1:]:
        if not (np.array_equal(y_s, y) and np.array_equal(hours_s, hours)):
            raise AssertionError("the test rows differ between seeds")
    return y, hours, {name: np.stack([p[2][name] for p in pooled]) for name in pooled[0][2]}


def primary_comparison(models: Sequence[str], val_macro_f1: Mapping[str, float] | None) -> str | None:
    """The model the GNN is mainly compared with: the best other model on **validation** macro-F1.

    Chosen before looking at test, so the primary interval is not a best-of-many pick.
    Ties go to the first model in table order; ``None`` without validation scores.
    """
    if val_macro_f1 is None or not models:
        return None
    missing = [name for name in models if name not in val_macro_f1]
    if missing:
        raise ValueError(f"no validation macro-F1 for {missing}: give one per compared model")
    return max(models, key=lambda name: val_macro_f1[name])   # max keeps the first of equal scores


def significance_vs_gnn(y: np.ndarray, preds: dict[str, np.ndarray], times: pd.DatetimeIndex | np.ndarray,
                        replicates: int = DEFAULT_REPLICATES,
                        seed: int = DEFAULT_BOOTSTRAP_SEED, val_macro_f1: Mapping[str, float] | None = None,
                        block_days: int = DEFAULT_BLOCK_DAYS) -> dict[str, Any]:
    """GNN minus every other model, macro-F1 and MCC, with seed x day-block paired bootstrap intervals.

    Each interval resamples the UTC test days in circular blocks of ``block_days``
    consecutive days and the training seeds (paired; see
    :func:`~gnn_market.significance.paired_day_bootstrap`). One comparison is
    **primary**: the GNN against the best other model on validation macro-F1
    (``val_macro_f1``, never test). The others are a family of
    ``comparisons - 1`` tests; ``adjusted`` gives their Bonferroni intervals at level
    ``1 - 0.05 / (comparisons - 1)`` (all comparisons without a primary).

    Args:
        y: ``[M]`` test labels (the same rows for every model and seed).
        preds: model -> ``[S, M]`` class predictions, one row per training seed (must hold ``"gnn"``).
        times: ``[M]`` UTC hour of each row; rows are grouped by their UTC calendar day.
        val_macro_f1: model -> validation macro-F1 (mean over seeds) of every compared model; picks the
            primary comparison. ``None``: no primary (a note says so).
        block_days: days per resampled block (default 7).

    Returns:
        ``{"gnn_vs": {model: {"macro_f1": {"diff", "ci_low", "ci_high"}, "mcc": {...}}}, "primary",
        "comparisons", "adjusted": {"method", "level", "comparisons", "gnn_vs"}, "replicates",
        "bootstrap_seed", "level", "days", "block_days", "seeds", "seed_noise", "notes"}``, models in
        table order; ``gnn_vs`` is empty (with a ``note``) when the test rows span fewer than 2 days.
    """
    utc = pd.DatetimeIndex(times)
    utc = utc.tz_convert("UTC").tz_localize(None) if utc.tz is not None else utc   # naive UTC: the UTC day
    day, n_days = day_ids(utc.to_numpy())
    n_seeds = int(preds["gnn"].shape[0])
    order = {name: k for k, name in enumerate(MODEL_ORDER)}  # the results tables' order, whatever the fit order
    models = sorted((n for n in preds if n != "gnn"), key=lambda n: (order.get(n, len(order)), n))
    primary = primary_comparison(models, val_macro_f1)
    out: dict[str, Any] = {"gnn_vs": {}, "primary": primary, "comparisons": len(models),
                           "replicates": replicates, "bootstrap_seed": seed, "level": SIGNIFICANCE_LEVEL,
                           "days": n_days, "block_days": block_length(n_days, block_days), "seeds": n_seeds,
                           "seed_noise": n_seeds > 1, "notes": _notes(n_seeds, n_days, block_days, primary)}
    if n_days < 2:
        out["note"] = "the test rows span fewer than 2 UTC days: no bootstrap"
        return out
    family = [name for name in models if name != primary]
    adjusted_level = 1 - (1 - SIGNIFICANCE_LEVEL) / max(len(family), 1)
    out["adjusted"] = {"method": "bonferroni", "level": adjusted_level, "comparisons": len(family), "gnn_vs": {}}

    def interval(name: str, level: float) -> dict[str, dict[str, float]]:
        return paired_day_bootstrap(y, preds["gnn"], preds[name], day, replicates=replicates, seed=seed,
                                    level=level, block_days=block_days).to_dict()

    for name in models:
        out["gnn_vs"][name] = interval(name, SIGNIFICANCE_LEVEL)
        if name in family:
            out["adjusted"]["gnn_vs"][name] = interval(name, adjusted_level)
    return out


def _notes(n_seeds: int, n_days: int, block_days: int, primary: str | None) -> list[str]:
    """Plain statements of what the intervals cannot cover in this run."""
    notes = []
    if n_seeds < 2:
        notes.append("one training seed: seed noise cannot be estimated, the intervals cover the test days "
                     "only and are too narrow; run --seeds with 3 or more seeds")
    if 2 <= n_days and block_length(n_days, block_days) < block_days:
        notes.append(f"only {n_days} test days: blocks shortened to {block_length(n_days, block_days)} "
                     f"day(s) (at least 2 blocks), day-to-day persistence is under-covered")
    if primary is None:
        notes.append("no validation scores given: no primary comparison, every comparison is adjusted")
    return notes
