"""Paired seed x block bootstrap: is model A's macro-F1 (or MCC) really above model B's?

Two sources of noise decide whether a difference is real, and the interval
resamples both in every replicate:

- **Test period.** Hours of one day share news and regimes, and daily label
  shares are persistent (autocorrelation about 0.67 at 1 day and 0.48 at 7 days
  on the sample), so neither hours nor single days are independent. Days are
  resampled in **blocks of consecutive UTC days** (default 7) with a *circular
  block bootstrap* (Politis & Romano 1992): a replicate draws
  ``ceil(D / L)`` block starts uniformly among the ``D`` test days, each block
  takes ``L`` consecutive test days (wrapping from the last day to the first),
  and the blocks laid end to end are cut at ``D`` days. Fixed length ``L = 7``
  keeps every weekday once in each full block, so weekly patterns stay intact
  (a stationary bootstrap's random lengths would break them), and wrapping gives
  every day the same chance to be drawn (a moving block bootstrap draws the
  first and last ``L - 1`` days less often). The same days are used for both
  models (a paired test).
- **Training seeds.** Each seed's model is one draw of the training noise.
  A replicate draws ``S`` seed indices with replacement, the same indices for
  model A and model B when both have ``S`` seeds (paired); a model that does not
  depend on the seed (given once) stays fixed. Because a bootstrap of ``S``
  values spreads only ``(S - 1) / S`` as much as a mean of ``S`` new seeds, the
  seed draw counts are inflated about 1 by ``sqrt(S / (S - 1))`` (weights
  ``1 + k (count - 1)``; see :func:`draw_replicates`). With **one** seed, seed
  noise cannot be estimated: the interval covers the test days only, and the
  result says so (``seed_noise = False``).

What the interval does not cover: persistence longer than a block is only
partly resampled, and the choice of test period (another year may differ).

Everything is computed from per-day confusion matrices: a replicate is a
weighted sum of day matrices per seed (weights = how often each day was
drawn), then a weighted mean over seeds of the metric differences, so 1,000
replicates over a year of hours cost milliseconds.

    result = paired_day_bootstrap(y, preds_a, preds_b, days)   # preds: [S, M] class ids
    result.macro_f1.diff, result.macro_f1.ci_low, result.macro_f1.ci_high, result.seed_noise
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from .classes import NUM_CLASSES

DEFAULT_REPLICATES = 1000
DEFAULT_BOOTSTRAP_SEED = 20231201
#: Days per resampled block: one week (daily label shares stay correlated for over a week).
DEFAULT_BLOCK_DAYS = 7


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


def percentile_interval(point: float, replicates: np.ndarray, level: float) -> Interval:
    """``point`` with the ``level`` percentile interval of ``replicates`` (the point is not one of them)."""
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(point), float(lo), float(hi))


@dataclass(frozen=True)
class BootstrapResult:
    """Intervals of ``A - B`` and how they were drawn.

    ``block_days`` is the block length used (shortened to ``days // 2`` when the
    test rows span fewer than two blocks); ``seeds`` the training seeds of A;
    ``seed_noise`` whether seeds were resampled (False with one seed: the
    interval then covers the test days only). The replicate differences are
    kept (``draws``, not compared) for other levels, e.g. a Bonferroni level.
    """

    macro_f1: Interval
    mcc: Interval
    replicates: int
    days: int
    block_days: int = 1
    seeds: int = 1
    seed_noise: bool = False
    draws: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"macro_f1": self.macro_f1.to_dict(), "mcc": self.mcc.to_dict()}

    def at_level(self, level: float) -> dict[str, Interval]:
        """The same replicates' percentile intervals at another ``level``."""
        return {name: percentile_interval(getattr(self, name).diff, draws, level)
                for name, draws in self.draws.items()}


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


METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"macro_f1": macro_f1_from_confusion,
                                                          "mcc": mcc_from_confusion}


def day_ids(times: np.ndarray) -> tuple[np.ndarray, int]:
    """Map each row's hour (datetime64 or pandas timestamps, UTC) to a dense day id; returns ``(ids, n_days)``.

    Ids follow the calendar, so consecutive ids are consecutive test days (days
    without test rows are skipped).
    """
    days = np.asarray(times, dtype="datetime64[ns]").astype("datetime64[D]")
    _, ids = np.unique(days, return_inverse=True)
    return ids.astype(np.int64), int(ids.max()) + 1 if len(ids) else 0


def block_length(n_days: int, block_days: int) -> int:
    """The block length used: ``block_days``, shortened to ``n_days // 2`` so that at least two blocks fit."""
    return max(1, min(block_days, n_days // 2))


def _counts(index: np.ndarray, size: int) -> np.ndarray:
    """``[R, size]``: how often each value ``0..size-1`` occurs in each row of ``index [R, n]``."""
    rows = index.shape[0]
    flat = (np.arange(rows)[:, None] * size + index).ravel()
    return np.bincount(flat, minlength=rows * size).reshape(rows, size).astype(np.float64)


def seed_inflation(n_seeds: int, level: float) -> float:
    """Factor on the resampled seeds' deviation: ``sqrt(S / (S - 1)) * t_{S-1}(q) / z(q)``, ``q = (1 + level) / 2``.

    ``sqrt(S / (S - 1))`` undoes the bootstrap's shrinkage (resampling ``S`` values
    spreads their mean by ``(S - 1) / S`` of the variance of a mean of ``S`` new seeds);
    the quantile ratio turns the normal-like percentile into Student's t with ``S - 1``
    degrees of freedom, because the seed spread is estimated from ``S`` seeds only
    (with 3 seeds, t = 4.30 against z = 1.96: without it, a seed-dominated difference
    of two equal models is called significant about 19 % of the time instead of 5 %).
    """
    q = (1 + level) / 2
    return float(np.sqrt(n_seeds / (n_seeds - 1)) * student_t.ppf(q, n_seeds - 1) / norm.ppf(q))


def draw_replicates(n_days: int, n_seeds: int, replicates: int, seed: int, block_days: int,
                    resample_seeds: bool = True, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Day and seed weights of each replicate: ``([R, n_days], [R, n_seeds])``.

    The draw protocol (what an independent recomputation must repeat):
    ``rng = np.random.default_rng(seed)``; ``L = block_length(n_days, block_days)``;
    ``starts = rng.integers(0, n_days, size=(R, ceil(n_days / L)))``; replicate
    ``r`` takes days ``(starts[r, j] + i) % n_days`` for ``i < L``, blocks in order,
    cut at the first ``n_days`` days; day weight = how often a day is taken (each
    row sums to ``n_days``). Then, when seeds are resampled (``resample_seeds``
    and ``n_seeds > 1``), ``picks = rng.integers(0, n_seeds, size=(R, n_seeds))``,
    ``count[s]`` = how often seed ``s`` is picked, and the seed weight is
    ``1 + seed_inflation(S, level) * (count - 1)`` (mean 1, sum ``S``; see
    :func:`seed_inflation`); otherwise every seed weight is 1.
    """
    rng = np.random.default_rng(seed)
    length = block_length(n_days, block_days)
    n_blocks = -(-n_days // length)
    starts = rng.integers(0, n_days, size=(replicates, n_blocks))
    taken = ((starts[:, :, None] + np.arange(length)) % n_days).reshape(replicates, -1)[:, :n_days]
    day_weights = _counts(taken, n_days)
    if not resample_seeds or n_seeds < 2:
        return day_weights, np.ones((replicates, n_seeds))
    picks = _counts(rng.integers(0, n_seeds, size=(replicates, n_seeds)), n_seeds)
    return day_weights, 1.0 + seed_inflation(n_seeds, level) * (picks - 1.0)


def bootstrap_confusions(conf_a: np.ndarray, conf_b: np.ndarray, *, replicates: int, seed: int, level: float,
                         block_days: int, resample_seeds: bool) -> BootstrapResult:
    """:func:`paired_day_bootstrap` on per-day confusion counts ``[S, D, K, K]`` of A and of B.

    Every setting is required here: the defaults live in :func:`paired_day_bootstrap` only.

    B has ``S`` seeds (paired with A's, seed by seed) or one (seed-independent, kept fixed).
    The point estimate is the mean over seeds of the per-seed difference on the actual
    test days; it is not one of the replicates.
    """
    n_seeds, n_days = conf_a.shape[:2]
    if conf_b.shape[0] not in (1, n_seeds) or conf_b.shape[1:] != conf_a.shape[1:]:
        raise ValueError(f"A has {n_seeds} seeds, B {conf_b.shape[0]}: give B once or once per seed")
    if n_days < 2:
        raise ValueError("the bootstrap needs test rows on at least 2 days")
    seed_noise = resample_seeds and n_seeds > 1
    day_w, seed_w = draw_replicates(n_days, n_seeds, replicates, seed, block_days, resample_seeds, level)
    day_w = np.vstack([np.ones((1, n_days)), day_w])          # row 0 = the actual test days
    seed_w = np.vstack([np.ones((1, n_seeds)), seed_w])
    k2 = NUM_CLASSES * NUM_CLASSES
    # [S, 1 + R, K, K]: each seed's confusion over each replicate's days
    shape = (-1, len(day_w), NUM_CLASSES, NUM_CLASSES)
    drawn_a = np.einsum("rd,sdk->srk", day_w, conf_a.reshape(n_seeds, n_days, k2)).reshape(shape)
    drawn_b = np.einsum("rd,sdk->srk", day_w, conf_b.reshape(conf_b.shape[0], n_days, k2)).reshape(shape)
    intervals, draws = {}, {}
    for name, fn in METRICS.items():
        per_seed = fn(drawn_a) - fn(drawn_b)                   # [S, 1 + R] (B broadcast when given once)
        diffs = (seed_w * per_seed.T).sum(1) / n_seeds         # [1 + R] weighted mean over seeds
        intervals[name] = percentile_interval(diffs[0], diffs[1:], level)
        draws[name] = diffs[1:]
    return BootstrapResult(intervals["macro_f1"], intervals["mcc"], replicates, n_days,
                           block_length(n_days, block_days), n_seeds, seed_noise, draws)


def paired_day_bootstrap(y: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, day: np.ndarray,
                         replicates: int = DEFAULT_REPLICATES,
                         seed: int = DEFAULT_BOOTSTRAP_SEED, level: float = 0.95,
                         block_days: int = DEFAULT_BLOCK_DAYS, resample_seeds: bool = True) -> BootstrapResult:
    """Seed-averaged difference A - B of macro-F1 and MCC with a seed x day-block bootstrap interval.

    Each replicate resamples the test days in circular blocks of ``block_days``
    consecutive days and the training seeds with replacement (see the module
    docstring and :func:`draw_replicates` for the exact protocol).

    Args:
        y: ``[M]`` true classes of the test rows (the same rows for every model and seed).
        preds_a: ``[S, M]`` (or ``[M]``) predicted classes of model A, one row per training seed.
        preds_b: ``[S, M]`` (or ``[M]``) of model B, row ``s`` trained with the same seed as A's row ``s``;
            a model that does not depend on the seed may be given once (``[M]`` or ``[1, M]``) and stays
            fixed while A's seeds are resampled.
        day: ``[M]`` day id of each row, consecutive ids = consecutive days (see :func:`day_ids`).
        replicates: bootstrap replicates (>= 1000 for a published interval).
        seed: RNG seed of the resampling (fixed: the same call gives the same interval).
        level: coverage of the percentile interval.
        block_days: days per block (1 = single days).
        resample_seeds: False keeps the trained seeds fixed (the interval then ignores seed noise).

    Returns:
        :class:`BootstrapResult`; ``diff`` is the mean over seeds of the per-seed difference on the
        actual test days, ``ci_low``/``ci_high`` the percentile interval of the replicates;
        ``seed_noise`` is False with one seed (seed noise cannot be estimated).
    """
    y = np.asarray(y)
    a, b = np.atleast_2d(preds_a), np.atleast_2d(preds_b)
    if a.shape[1] != len(y) or b.shape[1] != len(y) or len(day) != len(y):
        raise ValueError(f"rows differ: y {len(y)}, A {a.shape}, B {b.shape}, day {len(day)}")
    if b.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"A has {a.shape[0]} seeds, B {b.shape[0]}: give B once or once per seed")
    day = np.asarray(day, dtype=np.int64)
    n_days = int(day.max()) + 1 if len(day) else 0
    if n_days < 2:
        raise ValueError("the bootstrap needs test rows on at least 2 days")
    conf_a = np.stack([day_confusions(y, p, day, n_days) for p in a])
    conf_b = np.stack([day_confusions(y, p, day, n_days) for p in b])
    return bootstrap_confusions(conf_a, conf_b, replicates=replicates, seed=seed, level=level,
                                block_days=block_days, resample_seeds=resample_seeds)
