"""Paired bootstrap over test days: is model A's macro-F1 (or MCC) really above model B's?

Hours of the same day share news, regimes and market-wide moves, so test rows
are not independent; resampling single rows would make intervals too narrow.
:func:`paired_day_bootstrap` resamples whole **days** with replacement (the
same days for both models: a paired test) and, when several training seeds
were run, computes each seed's difference on the resampled days and averages
the differences over seeds, so the interval covers both the data noise and the
seed noise that averaging leaves.

Everything is computed from per-day confusion matrices: a replicate is a
weighted sum of day matrices (weights = how often each day was drawn), so
1,000 replicates over a year of hours cost milliseconds.

    result = paired_day_bootstrap(y, preds_a, preds_b, days)   # preds: [S, M] class ids
    result.macro_f1.diff, result.macro_f1.ci_low, result.macro_f1.ci_high
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import NUM_CLASSES

DEFAULT_REPLICATES = 1000
DEFAULT_BOOTSTRAP_SEED = 20231201


@dataclass(frozen=True)
class Interval:
    """A paired difference ``A - B`` with its percentile bootstrap interval."""

    diff: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {"diff": self.diff, "ci_low": self.ci_low, "ci_high": self.ci_high}

    @property
    def verdict(self) -> str:
        """``"A better"``, ``"B better"`` or ``"tie"`` (the interval contains 0)."""
        if self.ci_low > 0:
            return "A better"
        if self.ci_high < 0:
            return "B better"
        return "tie"


@dataclass(frozen=True)
class BootstrapResult:
    macro_f1: Interval
    mcc: Interval
    replicates: int
    days: int

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"macro_f1": self.macro_f1.to_dict(), "mcc": self.mcc.to_dict()}


def day_confusions(y: np.ndarray, pred: np.ndarray, day: np.ndarray, n_days: int) -> np.ndarray:
    """``[n_days, K, K]`` confusion counts (rows: true class) of the rows of each day.

    Args:
        y: ``[M]`` true class ids in ``0..K-1``.
        pred: ``[M]`` predicted class ids.
        day: ``[M]`` day ids in ``0..n_days-1``.
    """
    k = NUM_CLASSES
    flat = (day.astype(np.int64) * k + y.astype(np.int64)) * k + pred.astype(np.int64)
    return np.bincount(flat, minlength=n_days * k * k).reshape(n_days, k, k).astype(np.float64)


def macro_f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 of ``[..., K, K]`` confusion matrices; a class absent from truth and predictions scores 0
    (scikit-learn's ``zero_division=0``)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(-1) + cm.sum(-2)  # true count + predicted count = 2 tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), 0.0)
    return f1.mean(-1)


def mcc_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Multi-class Matthews correlation (Gorodkin's R_K, as scikit-learn) of ``[..., K, K]`` matrices;
    0 where undefined (a constant prediction or a single true class)."""
    t = cm.sum(-1)            # true counts per class
    p = cm.sum(-2)            # predicted counts per class
    c = np.trace(cm, axis1=-2, axis2=-1)
    s = cm.sum((-2, -1))
    cov_ytyp = c * s - (t * p).sum(-1)
    cov_ypyp = s * s - (p * p).sum(-1)
    cov_ytyt = s * s - (t * t).sum(-1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cov_ytyp / np.where(denom > 0, denom, 1.0), 0.0)


def day_ids(times: np.ndarray) -> tuple[np.ndarray, int]:
    """Map each row's hour (datetime64 or pandas timestamps, UTC) to a dense day id; returns ``(ids, n_days)``."""
    days = np.asarray(times, dtype="datetime64[ns]").astype("datetime64[D]")
    _, ids = np.unique(days, return_inverse=True)
    return ids.astype(np.int64), int(ids.max()) + 1 if len(ids) else 0


def paired_day_bootstrap(y: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, day: np.ndarray,
                         replicates: int = DEFAULT_REPLICATES,
                         seed: int = DEFAULT_BOOTSTRAP_SEED, level: float = 0.95) -> BootstrapResult:
    """Seed-averaged difference A - B of macro-F1 and MCC with a day-block bootstrap interval.

    Args:
        y: ``[M]`` true classes of the test rows (the same rows for every model and seed).
        preds_a: ``[S, M]`` (or ``[M]``) predicted classes of model A, one row per training seed.
        preds_b: ``[S, M]`` (or ``[M]``) of model B; a model that does not depend on the seed may be
            given once (``[M]`` or ``[1, M]``) and is then compared with every seed of A.
        day: ``[M]`` day id of each row (see :func:`day_ids`).
        replicates: bootstrap replicates (>= 1000 for a published interval).
        seed: RNG seed of the resampling (fixed: the same call gives the same interval).
        level: coverage of the percentile interval.

    Returns:
        :class:`BootstrapResult`; ``diff`` is the point estimate on the actual test days,
        ``ci_low``/``ci_high`` the percentile interval of the replicates.
    """
    y = np.asarray(y)
    a, b = np.atleast_2d(preds_a), np.atleast_2d(preds_b)
    if a.shape[1] != len(y) or b.shape[1] != len(y) or len(day) != len(y):
        raise ValueError(f"rows differ: y {len(y)}, A {a.shape}, B {b.shape}, day {len(day)}")
    if b.shape[0] == 1 and a.shape[0] > 1:
        b = np.repeat(b, a.shape[0], axis=0)
    if b.shape[0] != a.shape[0]:
        raise ValueError(f"A has {a.shape[0]} seeds, B {b.shape[0]}: give B once or once per seed")
    day = np.asarray(day, dtype=np.int64)
    n_days = int(day.max()) + 1 if len(day) else 0
    if n_days < 2:
        raise ValueError("the bootstrap needs test rows on at least 2 days")
    k2 = NUM_CLASSES * NUM_CLASSES
    # [S, D, K*K] per-day confusion counts of each seed's model
    conf_a = np.stack([day_confusions(y, p, day, n_days).reshape(n_days, k2) for p in a])
    conf_b = np.stack([day_confusions(y, p, day, n_days).reshape(n_days, k2) for p in b])
    rng = np.random.default_rng(seed)
    # weights[r, d] = how often day d is drawn in replicate r (a multinomial draw of n_days days)
    weights = rng.multinomial(n_days, np.full(n_days, 1.0 / n_days), size=replicates).astype(np.float64)
    weights = np.vstack([np.ones((1, n_days)), weights])  # row 0 = the actual test days
    shape = (len(weights), NUM_CLASSES, NUM_CLASSES)
    out = {}
    for name, fn in (("macro_f1", macro_f1_from_confusion), ("mcc", mcc_from_confusion)):
        diffs = np.mean([fn((weights @ ca).reshape(shape)) - fn((weights @ cb).reshape(shape))
                         for ca, cb in zip(conf_a, conf_b)], axis=0)   # [1 + R]
        lo, hi = np.quantile(diffs[1:], [(1 - level) / 2, (1 + level) / 2])
        out[name] = Interval(float(diffs[0]), float(lo), float(hi))
    return BootstrapResult(out["macro_f1"], out["mcc"], replicates, n_days)
