"""Scores over several training seeds and the GNN-vs-model significance tests of a run.

- :func:`score_seed`: one seed's metrics per model, folds pooled, on the
  calibrated predictions, plus the uncalibrated log-loss / Brier of calibrated models.
- :func:`aggregate_seeds`: ``metrics.json``'s ``test``/``val`` tables: the mean
  over seeds of every scalar metric with its sample standard deviation
  (``<metric>_sd``, ddof 1; 0.0 for one seed).
- :func:`pooled_test`: the test rows of a seed (labels, hours) and each
  model's pooled class predictions, checked to be the same rows for every seed.
- :func:`significance_vs_gnn`: :func:`~gnn_market.significance.paired_day_bootstrap`
  of the GNN against every other model over the UTC days of the test rows.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..calibration import brier_score
from ..significance import DEFAULT_BOOTSTRAP_SEED, DEFAULT_REPLICATES, day_ids, paired_day_bootstrap
from .calibrate import CalibratedFold
from .config import MODEL_ORDER
from .metrics import safe_log_loss
from .report import score

#: Level of the bootstrap intervals in ``metrics.json``'s ``significance``.
SIGNIFICANCE_LEVEL = 0.95
#: Metrics that count rows (identical for every seed), not scores: averaged without an ``_sd``.
COUNT_KEYS = frozenset({"n"})


def score_seed(folds: Sequence[CalibratedFold], which: str) -> dict[str, dict[str, Any]]:
    """One seed's metrics per model on ``which`` (``"test"`` or ``"val"``), folds pooled.

    Scored on the calibrated probabilities and decided classes; calibrated
    models also get ``log_loss_uncalibrated`` and ``brier_uncalibrated`` of their raw probabilities.
    """
    out = score([f.fold for f in folds], which)
    y = np.concatenate([getattr(f.raw, f"y_{which}") for f in folds])
    for name, m in out.items():
        if name in folds[0].calibrations:
            raw = np.concatenate([getattr(f.raw, which)[name][1] for f in folds])
            m["log_loss_uncalibrated"] = safe_log_loss(y, raw)
            m["brier_uncalibrated"] = brier_score(y, raw)
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
    ``None`` in any seed stays ``None``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]:
        runs = [seed[name] for seed in per_seed]
        agg: dict[str, Any] = {}
        for key in runs[0]:
            values = [r[key] for r in runs]
            if key in COUNT_KEYS:
                if len(set(values)) != 1:
                    raise AssertionError(f"{name}: {key} differs between seeds: {values}")
                agg[key] = values[0]
            elif any(v is None for v in values):
                agg[key] = None
            elif all(_is_scalar(v) for v in values):
                agg[key] = float(np.mean(values))
                agg[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            else:
                agg[key] = _mean_nested(values)
        out[name] = agg
    return out


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


def significance_vs_gnn(y: np.ndarray, preds: dict[str, np.ndarray], times: pd.DatetimeIndex | np.ndarray,
                        replicates: int = DEFAULT_REPLICATES,
                        seed: int = DEFAULT_BOOTSTRAP_SEED) -> dict[str, Any]:
    """GNN minus every other model, macro-F1 and MCC, with day-block paired bootstrap intervals.

    Args:
        y: ``[M]`` test labels (the same rows for every model and seed).
        preds: model -> ``[S, M]`` class predictions, one row per training seed (must hold ``"gnn"``).
        times: ``[M]`` UTC hour of each row; rows are grouped by their UTC calendar day.

    Returns:
        ``{"gnn_vs": {model: {"macro_f1": {"diff", "ci_low", "ci_high"}, "mcc": {...}}},
        "replicates", "bootstrap_seed", "level", "days", "seeds"}``; ``gnn_vs`` is empty
        (with a ``note``) when the test rows span fewer than 2 days.
    """
    utc = pd.DatetimeIndex(times)
    utc = utc.tz_convert("UTC").tz_localize(None) if utc.tz is not None else utc   # naive UTC: the UTC day
    day, n_days = day_ids(utc.to_numpy())
    out: dict[str, Any] = {"gnn_vs": {}, "replicates": replicates, "bootstrap_seed": seed,
                           "level": SIGNIFICANCE_LEVEL, "days": n_days, "seeds": int(preds["gnn"].shape[0])}
    if n_days < 2:
        out["note"] = "the test rows span fewer than 2 UTC days: no bootstrap"
        return out
    order = {name: k for k, name in enumerate(MODEL_ORDER)}  # the results tables' order, whatever the fit order
    for name in sorted(preds, key=lambda n: (order.get(n, len(order)), n)):
        if name == "gnn":
            continue
        result = paired_day_bootstrap(y, preds["gnn"], preds[name], day, replicates=replicates, seed=seed,
                                      level=SIGNIFICANCE_LEVEL)
        out["gnn_vs"][name] = result.to_dict()
    return out
