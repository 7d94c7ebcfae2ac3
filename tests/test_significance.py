"""Day-block paired bootstrap: metric algebra against scikit-learn, invariants, determinism."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from gnn_market.significance import (
    day_confusions,
    day_ids,
    macro_f1_from_confusion,
    mcc_from_confusion,
    paired_day_bootstrap,
)


def _data(seed: int = 0, n_days: int = 40, per_day: int = 24):
    rng = np.random.default_rng(seed)
    day = np.repeat(np.arange(n_days), per_day)
    y = rng.choice(3, size=len(day), p=[0.15, 0.7, 0.15])
    good = np.where(rng.random(len(y)) < 0.6, y, rng.integers(0, 3, len(y)))
    noise = rng.integers(0, 3, len(y))
    return y, good, noise, day


@pytest.mark.parametrize("seed", range(5))
def test_confusion_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 200)
    pred = rng.integers(0, 3, 200)
    if seed == 3:
        pred[pred == 2] = 1          # a class never predicted
    if seed == 4:
        pred[:] = 1                  # constant prediction: MCC 0
    cm = day_confusions(y, pred, np.zeros(200, int), 1)[0]
    assert macro_f1_from_confusion(cm) == pytest.approx(
        f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0), abs=1e-12)
    assert mcc_from_confusion(cm) == pytest.approx(matthews_corrcoef(y, pred), abs=1e-12)


def test_a_replicate_is_the_metric_on_the_resampled_days():
    """Weighting day confusions by draw counts equals scoring the rows of the drawn days, repeated."""
    y, a, _, day = _data(1, n_days=10)
    conf = day_confusions(y, a, day, 10)
    counts = np.array([0, 3, 1, 0, 2, 1, 0, 0, 2, 1])
    rows = np.concatenate([np.flatnonzero(day == d).repeat(1) for d in np.repeat(np.arange(10), counts)])
    want = f1_score(y[rows], a[rows], average="macro", labels=[0, 1, 2], zero_division=0)
    got = macro_f1_from_confusion(np.tensordot(counts, conf, axes=1))
    assert got == pytest.approx(want, abs=1e-12)
    assert mcc_from_confusion(np.tensordot(counts, conf, axes=1)) == pytest.approx(
        matthews_corrcoef(y[rows], a[rows]), abs=1e-12)


def test_identical_models_tie_exactly():
    y, a, _, day = _data()
    r = paired_day_bootstrap(y, a, a, day, replicates=200)
    assert (r.macro_f1.diff, r.macro_f1.ci_low, r.macro_f1.ci_high) == (0.0, 0.0, 0.0)
    assert r.mcc.verdict == "tie"


def test_better_model_has_interval_above_zero_and_swap_negates():
    y, good, noise, day = _data()
    r = paired_day_bootstrap(y, good, noise, day, replicates=500)
    assert r.macro_f1.ci_low > 0 and r.mcc.ci_low > 0 and r.macro_f1.verdict == "A better"
    assert r.macro_f1.ci_low <= r.macro_f1.diff <= r.macro_f1.ci_high
    s = paired_day_bootstrap(y, noise, good, day, replicates=500)
    assert s.macro_f1.diff == pytest.approx(-r.macro_f1.diff)
    assert s.macro_f1.ci_high == pytest.approx(-r.macro_f1.ci_low, abs=1e-9)


def test_seed_average_and_determinism():
    y, good, noise, day = _data()
    _, good2, _, _ = _data(seed=7)
    both = paired_day_bootstrap(y, np.stack([good, good2]), noise, day, replicates=300)
    one = paired_day_bootstrap(y, good, noise, day, replicates=300)
    two = paired_day_bootstrap(y, good2, noise, day, replicates=300)
    assert both.macro_f1.diff == pytest.approx((one.macro_f1.diff + two.macro_f1.diff) / 2)
    again = paired_day_bootstrap(y, np.stack([good, good2]), noise, day, replicates=300)
    assert again == both
    other = paired_day_bootstrap(y, np.stack([good, good2]), noise, day, replicates=300, seed=1)
    assert other.macro_f1.ci_low != both.macro_f1.ci_low


def test_day_blocks_widen_the_interval_when_days_move_together():
    """Errors that come in whole days: the day bootstrap must not treat the hours as independent."""
    rng = np.random.default_rng(3)
    n_days, per_day = 30, 24
    day = np.repeat(np.arange(n_days), per_day)
    y = rng.integers(0, 3, len(day))
    bad_day = np.repeat(rng.random(n_days) < 0.5, per_day)       # on half the days A is wrong all day
    a = np.where(bad_day, (y + 1) % 3, y)
    b = np.where(rng.random(len(y)) < 0.5, y, (y + 1) % 3)
    blocked = paired_day_bootstrap(y, a, b, day, replicates=400)
    hourly = paired_day_bootstrap(y, a, b, np.arange(len(y)), replicates=400)
    assert blocked.macro_f1.ci_high - blocked.macro_f1.ci_low > 2 * (hourly.macro_f1.ci_high - hourly.macro_f1.ci_low)


def test_day_ids_and_bad_input():
    times = np.array(["2024-01-01T23:00", "2024-01-02T00:00", "2024-01-01T05:00"], dtype="datetime64[ns]")
    ids, n = day_ids(times)
    assert n == 2 and list(ids) == [0, 1, 0]
    y, a, b, day = _data()
    with pytest.raises(ValueError, match="rows differ"):
        paired_day_bootstrap(y, a[:-1], b, day)
    with pytest.raises(ValueError, match="seeds"):
        paired_day_bootstrap(y, np.stack([a, a]), np.stack([b, b, b]), day)
    with pytest.raises(ValueError, match="2 days"):
        paired_day_bootstrap(y, a, b, np.zeros(len(y), int))


def _reference_interval(y, preds_a, preds_b, day, replicates, seed, level):
    """Independent recomputation with scikit-learn on the rows of each replicate's drawn days.

    It shares only the documented draw protocol with the implementation: one multinomial draw
    of ``n_days`` days (uniform) per replicate from ``default_rng(seed)``; the point estimate
    is the actual test days and is not among the replicates.
    """
    n_days = int(day.max()) + 1
    rows_of_day = [np.flatnonzero(day == d) for d in range(n_days)]
    draws = np.random.default_rng(seed).multinomial(n_days, np.full(n_days, 1.0 / n_days), size=replicates)

    def diff(rows):
        f1 = [f1_score(y[rows], p[rows], average="macro", labels=[0, 1, 2], zero_division=0) for p in (preds_a, preds_b)]
        mcc = [matthews_corrcoef(y[rows], p[rows]) for p in (preds_a, preds_b)]
        return f1[0] - f1[1], mcc[0] - mcc[1]

    point = diff(np.arange(len(y)))
    reps = np.array([diff(np.concatenate([rows_of_day[d] for d in np.repeat(np.arange(n_days), counts)]))
                     for counts in draws])
    q = [(1 - level) / 2, (1 + level) / 2]
    return point, np.quantile(reps[:, 0], q), np.quantile(reps[:, 1], q)


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_interval_equals_an_independent_recomputation(level):
    """Pins the interval's value: level, replicate size (n_days days) and the point estimate
    kept out of the quantiles (each was a surviving mutant of issue 21 item 18)."""
    y, a, b, day = _data(7, n_days=12, per_day=24)
    r = paired_day_bootstrap(y, a, b, day, replicates=150, seed=11, level=level)
    (f1_diff, mcc_diff), f1_ci, mcc_ci = _reference_interval(y, a, b, day, 150, 11, level)
    assert r.macro_f1.diff == pytest.approx(f1_diff, abs=1e-12)
    assert r.mcc.diff == pytest.approx(mcc_diff, abs=1e-12)
    assert (r.macro_f1.ci_low, r.macro_f1.ci_high) == pytest.approx(tuple(f1_ci), abs=1e-12)
    assert (r.mcc.ci_low, r.mcc.ci_high) == pytest.approx(tuple(mcc_ci), abs=1e-12)
    assert r.replicates == 150 and r.days == 12


def test_default_level_is_95_percent():
    y, a, b, day = _data(8, n_days=12)
    assert paired_day_bootstrap(y, a, b, day, replicates=100) == paired_day_bootstrap(
        y, a, b, day, replicates=100, level=0.95)
    assert paired_day_bootstrap(y, a, b, day, replicates=100) != paired_day_bootstrap(
        y, a, b, day, replicates=100, level=0.9)
