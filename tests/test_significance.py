"""Seed x day-block paired bootstrap: metric algebra against scikit-learn, an independent recomputation,
invariants, determinism, and the false-verdict rate on simulated equally good models."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.metrics import f1_score, matthews_corrcoef

from gnn_market.significance import (
    DEFAULT_BLOCK_DAYS,
    DEFAULT_BOOTSTRAP_SEED,
    block_length,
    bootstrap_confusions,
    day_confusions,
    day_ids,
    draw_replicates,
    macro_f1_from_confusion,
    mcc_from_confusion,
    paired_day_bootstrap,
    seed_inflation,
)
from gnn_market.training.evaluation import significance_vs_gnn
from gnn_market.training.report import significance_caption, significance_table


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
    blocked = paired_day_bootstrap(y, a, b, day, replicates=400, block_days=1)
    hourly = paired_day_bootstrap(y, a, b, np.arange(len(y)), replicates=400, block_days=1)
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


def _reference_interval(y, preds_a, preds_b, day, replicates, seed, level, block_days):
    """Independent recomputation with scikit-learn on the rows of each replicate's drawn blocks and seeds.

    It shares only the documented draw protocol with the implementation:
    ``rng = default_rng(seed)``; ``L = min(block_days, n_days // 2)``; block starts
    ``rng.integers(0, n_days, (R, ceil(n_days / L)))``, each block ``L`` consecutive days
    wrapping round, the blocks end to end cut at ``n_days`` days; then seed picks
    ``rng.integers(0, S, (R, S))`` (the same for A and B), and a replicate is the mean over
    seeds of ``(1 + k (picks of s - 1)) * diff_s`` with ``k = sqrt(S / (S - 1)) t_{S-1}(q) / z(q)``.
    The point estimate is the actual test days and is not among the replicates.
    """
    n_days, n_seeds = int(day.max()) + 1, len(preds_a)
    rows_of_day = [np.flatnonzero(day == d) for d in range(n_days)]
    rng = np.random.default_rng(seed)
    length = min(block_days, n_days // 2)
    starts = rng.integers(0, n_days, size=(replicates, -(-n_days // length)))
    picks = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    q = (1 + level) / 2
    k = np.sqrt(n_seeds / (n_seeds - 1)) * student_t.ppf(q, n_seeds - 1) / norm.ppf(q)

    def seed_diffs(rows):
        """[S, 2]: each seed's macro-F1 and MCC difference A - B on these rows."""
        def scores(p):
            return (f1_score(y[rows], p[rows], average="macro", labels=[0, 1, 2], zero_division=0),
                    matthews_corrcoef(y[rows], p[rows]))
        return np.array([np.subtract(scores(pa), scores(pb)) for pa, pb in zip(preds_a, preds_b)])

    point = seed_diffs(np.arange(len(y))).mean(0)
    reps = []
    for r in range(replicates):
        days = [(start + i) % n_days for start in starts[r] for i in range(length)][:n_days]
        weights = 1 + k * (np.bincount(picks[r], minlength=n_seeds) - 1)
        reps.append(weights @ seed_diffs(np.concatenate([rows_of_day[d] for d in days])) / n_seeds)
    reps = np.array(reps)
    return point, np.quantile(reps[:, 0], [1 - q, q]), np.quantile(reps[:, 1], [1 - q, q])


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_interval_equals_an_independent_recomputation(level):
    """Pins the interval's value: level, replicate size (n_days days in 7-day circular blocks, S seeds),
    the paired seed draw and its inflation, and the point estimate kept out of the quantiles."""
    rng = np.random.default_rng(7)
    y, a, b, day = _data(7, n_days=17, per_day=12)
    a = np.stack([a, np.where(rng.random(len(y)) < 0.3, rng.integers(0, 3, len(y)), a), _data(8, 17, 12)[1]])
    b = np.stack([b, _data(9, 17, 12)[2], np.where(rng.random(len(y)) < 0.5, y, b)])
    r = paired_day_bootstrap(y, a, b, day, replicates=40, seed=11, level=level)
    (f1_diff, mcc_diff), f1_ci, mcc_ci = _reference_interval(y, a, b, day, 40, 11, level, DEFAULT_BLOCK_DAYS)
    assert r.macro_f1.diff == pytest.approx(f1_diff, abs=1e-12)
    assert r.mcc.diff == pytest.approx(mcc_diff, abs=1e-12)
    assert (r.macro_f1.ci_low, r.macro_f1.ci_high) == pytest.approx(tuple(f1_ci), abs=1e-12)
    assert (r.mcc.ci_low, r.mcc.ci_high) == pytest.approx(tuple(mcc_ci), abs=1e-12)
    assert (r.replicates, r.days, r.block_days, r.seeds, r.seed_noise) == (40, 17, 7, 3, True)


def test_default_level_is_95_percent():
    y, a, b, day = _data(8, n_days=12)
    assert paired_day_bootstrap(y, a, b, day, replicates=100) == paired_day_bootstrap(
        y, a, b, day, replicates=100, level=0.95)
    assert paired_day_bootstrap(y, a, b, day, replicates=100) != paired_day_bootstrap(
        y, a, b, day, replicates=100, level=0.9)


def test_seed_inflation_and_block_length():
    """k = sqrt(S/(S-1)) * t_{S-1}/z: 2.69 for 3 seeds at 95 %, towards 1 with many seeds."""
    assert seed_inflation(3, 0.95) == pytest.approx(np.sqrt(1.5) * 4.302653 / 1.959964, abs=1e-5)
    assert seed_inflation(2, 0.95) == pytest.approx(np.sqrt(2) * 12.706205 / 1.959964, abs=1e-5)
    assert 1 < seed_inflation(200, 0.95) < 1.02
    assert [block_length(n, 7) for n in (2, 9, 13, 14, 55)] == [1, 4, 6, 7, 7]
    assert paired_day_bootstrap(*_data(1, n_days=40), replicates=50).block_days == DEFAULT_BLOCK_DAYS == 7


def test_one_seed_says_seed_noise_is_not_estimated():
    y, a, b, day = _data()
    one = paired_day_bootstrap(y, a, b, day, replicates=200)
    assert one.seeds == 1 and one.seed_noise is False
    fixed = paired_day_bootstrap(y, np.stack([a, b]), b, day, replicates=200, resample_seeds=False)
    assert fixed.seeds == 2 and fixed.seed_noise is False
    assert paired_day_bootstrap(y, np.stack([a, b]), b, day, replicates=200).seed_noise is True


def test_seed_independent_model_given_once_stays_fixed():
    """B given once equals B repeated for every seed: resampling identical rows changes nothing."""
    y, a, b, day = _data(2)
    a3 = np.stack([a, _data(3)[1], _data(4)[1]])
    once = paired_day_bootstrap(y, a3, b, day, replicates=300)
    assert once == paired_day_bootstrap(y, a3, np.stack([b] * 3), day, replicates=300)
    assert once.seed_noise and once.seeds == 3


def test_seed_noise_widens_the_interval():
    """Seeds that disagree (one good, one bad model of A): the fixed-seed interval hides it."""
    y, good, noise, day = _data(5, n_days=60)
    a = np.stack([good, noise, good, noise])
    resampled = paired_day_bootstrap(y, a, noise, day, replicates=400)
    fixed = paired_day_bootstrap(y, a, noise, day, replicates=400, resample_seeds=False)
    assert resampled.macro_f1.diff == fixed.macro_f1.diff
    assert fixed.macro_f1.verdict == "A better" and resampled.macro_f1.verdict == "tie"


def test_replicate_weights_are_circular_blocks_of_consecutive_days():
    """Each replicate is made of whole runs of L consecutive days (mod n_days) and holds n_days days."""
    day_w, seed_w = draw_replicates(20, 3, 50, 4, 7)
    assert day_w.shape == (50, 20) and np.all(day_w.sum(1) == 20)
    assert np.allclose(seed_w.sum(1), 3) and np.allclose(seed_w.mean(), 1, atol=0.2)
    rng = np.random.default_rng(4)
    starts = rng.integers(0, 20, size=(50, 3))
    want = np.stack([np.bincount(((s[:, None] + np.arange(7)) % 20).ravel()[:20], minlength=20) for s in starts])
    assert np.array_equal(day_w, want)


def _latent(rng, n, days, slow=0.98, fast=0.3, w_slow=0.545):
    """[n, days] standard-normal day shocks whose autocorrelation is about 0.67 at 1 day and 0.48 at 7
    (a mix of a slow and a fast AR(1), as the sample's daily label shares)."""
    def ar(phi):
        x = np.empty((n, days))
        x[:, 0] = rng.standard_normal(n)
        e = rng.standard_normal((n, days)) * np.sqrt(1 - phi ** 2)
        for t in range(1, days):
            x[:, t] = phi * x[:, t - 1] + e[:, t]
        return x
    return np.sqrt(w_slow) * ar(slow) + np.sqrt(1 - w_slow) * ar(fast)


def _equal_models(rng, n, days=84, rows=240, seeds=3, skill=0.35):
    """Day confusions ``[n, S, D, 3, 3]`` of two equally good models on ``n`` simulated test periods.

    Persistent day effects: each day's UP / DOWN shares move with a direction shock and a
    volatility shock (both :func:`_latent`). Seed noise: each training seed of each model
    guesses with its own class preference (log-odds ~ N(0, 0.3)) and its own skill (sd 0.005),
    and makes its own row-level errors. Both models draw their seeds from the same law, so
    neither is better in expectation.
    """
    z, v = _latent(rng, n, days), _latent(rng, n, days)
    up = np.clip(0.15 + 0.08 * z + 0.05 * v, 0.02, 0.45)
    down = np.clip(0.15 - 0.08 * z + 0.05 * v, 0.02, 0.45)
    counts = rng.multinomial(rows, np.stack([down, 1 - up - down, up], -1))      # [n, D, 3]
    models = []
    for _ in range(2):
        guess = np.exp(rng.normal(0, 0.3, (n, seeds, 3)))
        guess /= guess.sum(-1, keepdims=True)
        q = np.clip(skill + rng.normal(0, 0.005, (n, seeds)), 0, 1)[..., None, None]
        probs = q * np.eye(3) + (1 - q) * guess[..., None, :]                    # [n, S, 3, 3]
        models.append(rng.multinomial(counts[:, None, :, :], probs[:, :, None]).astype(np.float64))
    return models, np.stack([down, up], -1)


def _false_verdict_rate(a, b, **procedure):
    wrong = [[r.macro_f1.verdict != "tie", r.mcc.verdict != "tie"]
             for r in (bootstrap_confusions(a[i], b[i], seed=DEFAULT_BOOTSTRAP_SEED + i, level=0.95, **procedure)
                       for i in range(len(a)))]
    return np.mean(wrong, axis=0)


def test_false_verdict_rate_of_equally_good_models_is_at_most_7_percent():
    """200 simulated test periods of 12 weeks, two equally good models with 3 seeds each,
    persistent day effects and seed noise: the published procedure (7-day blocks, seeds
    resampled, 95 %) calls a winner at most 7 % of the time; the old one (single days,
    the trained seeds fixed) does so far more often on the same data."""
    (a, b), shares = _equal_models(np.random.default_rng(2026), 200)
    dev = shares - shares.mean(axis=(0, 1))
    acf = [np.mean(dev[:, lag:] * dev[:, :-lag]) / np.mean(dev ** 2) for lag in (1, 7)]
    assert acf == pytest.approx([0.67, 0.48], abs=0.1)          # persistence like the sample's
    published = _false_verdict_rate(a, b, replicates=200, block_days=DEFAULT_BLOCK_DAYS, resample_seeds=True)
    old = _false_verdict_rate(a, b, replicates=200, block_days=1, resample_seeds=False)
    assert np.all(published <= 0.07), published
    assert old[0] >= 0.3 and old[1] >= 0.15, old


def _run_preds(seeds: int = 3, n_days: int = 30):
    """Hours of ``n_days`` UTC days and class predictions of a GNN and three other models."""
    rng = np.random.default_rng(12)
    hours = pd.date_range("2024-03-01", periods=24 * n_days, freq="h", tz="UTC")
    y = rng.choice(3, size=len(hours), p=[0.2, 0.6, 0.2])

    def model(p_right):
        return np.stack([np.where(rng.random(len(y)) < p_right, y, rng.integers(0, 3, len(y)))
                         for _ in range(seeds)])
    return y, hours, {"gnn": model(0.5), "logistic": model(0.45), "hist_gb": model(0.3), "majority": np.ones(
        (seeds, len(y)), int)}


def test_primary_comparison_is_the_best_other_model_on_validation_not_test():
    """logistic is the best other model on test, but hist_gb on validation: hist_gb is primary,
    first in the table and marked; the other two form the Bonferroni family."""
    y, hours, preds = _run_preds()
    val = {"logistic": 0.40, "hist_gb": 0.41, "majority": 0.29}
    out = significance_vs_gnn(y, preds, hours, replicates=200, val_macro_f1=val)
    assert out["primary"] == "hist_gb" and out["comparisons"] == 3
    assert out["adjusted"]["comparisons"] == 2 and set(out["adjusted"]["gnn_vs"]) == {"logistic", "majority"}
    assert out["adjusted"]["level"] == pytest.approx(1 - 0.05 / 2) and out["adjusted"]["method"] == "bonferroni"
    table = significance_table(out).splitlines()
    assert table[2].startswith("hist_gb *") and "primary" in table[2]
    assert [line.split()[0] for line in table[3:]] == ["majority", "logistic"]       # then table order
    assert "primary comparison (first, marked *): gnn vs hist_gb" in significance_caption(out)
    # ties on validation go to the first model in table order
    assert significance_vs_gnn(y, preds, hours, replicates=50,
                               val_macro_f1=dict.fromkeys(val, 0.4))["primary"] == "majority"


def test_bonferroni_interval_is_the_same_bootstrap_at_the_adjusted_level():
    y, hours, preds = _run_preds()
    out = significance_vs_gnn(y, preds, hours, replicates=300,
                              val_macro_f1={"logistic": 0.40, "hist_gb": 0.41, "majority": 0.29})
    day = np.repeat(np.arange(30), 24)
    want = paired_day_bootstrap(y, preds["gnn"], preds["logistic"], day, replicates=300, level=0.975)
    assert out["adjusted"]["gnn_vs"]["logistic"] == want.to_dict()
    plain, wide = out["gnn_vs"]["logistic"]["macro_f1"], out["adjusted"]["gnn_vs"]["logistic"]["macro_f1"]
    assert wide["ci_low"] <= plain["ci_low"] and wide["ci_high"] >= plain["ci_high"]


def test_significance_block_records_blocks_seeds_and_notes():
    y, hours, preds = _run_preds(seeds=3)
    out = significance_vs_gnn(y, preds, hours, replicates=100, val_macro_f1={"logistic": 0.4, "hist_gb": 0.3,
                                                                            "majority": 0.2})
    assert (out["block_days"], out["seeds"], out["seed_noise"], out["days"], out["notes"]) == (7, 3, True, 30, [])
    assert "circular blocks of 7 consecutive days" in significance_caption(out)
    assert "x 3 training seeds resampled, paired" in significance_caption(out)
    assert "; the other 2 comparisons also get a Bonferroni verdict (97.50% interval)" in significance_caption(out)
    one = significance_vs_gnn(y, {k: v[:1] for k, v in preds.items()}, hours, replicates=100)
    assert one["seed_noise"] is False and one["primary"] is None
    assert any("seed noise cannot be estimated" in note for note in one["notes"])
    assert any("no primary comparison" in note for note in one["notes"])
    assert one["adjusted"]["comparisons"] == 3           # without a primary, every comparison is adjusted
    assert "; all 3 comparisons also get a Bonferroni verdict" in significance_caption(one)
    assert "NOT resampled" in significance_caption(one) and "seed noise cannot be estimated" in significance_caption(one)
    short = significance_vs_gnn(y[:24 * 9], {k: v[:, :24 * 9] for k, v in preds.items()}, hours[:24 * 9],
                                replicates=50, block_days=7)
    assert short["block_days"] == 4 and any("shortened to 4" in note for note in short["notes"])
    with pytest.raises(ValueError, match="no validation macro-F1 for \\['majority'\\]"):
        significance_vs_gnn(y, preds, hours, replicates=10, val_macro_f1={"logistic": 0.4, "hist_gb": 0.3})


def test_caption_of_a_block_written_before_the_seed_block_bootstrap():
    old = {"gnn_vs": {"mlp": {"macro_f1": {"diff": 0.01, "ci_low": 0.001, "ci_high": 0.02},
                              "mcc": {"diff": 0.0, "ci_low": -0.01, "ci_high": 0.01}}},
           "replicates": 1000, "bootstrap_seed": 1, "level": 0.95, "days": 55, "seeds": 1}
    assert "single days, the 1 trained seed(s) fixed" in significance_caption(old)
    assert significance_table(old).splitlines()[2].split() == ["mlp", "+0.0100", "[+0.0010,", "+0.0200]", "gnn",
                                                               "better", "+0.0000", "[-0.0100,", "+0.0100]", "tie",
                                                               "-"]
