"""Vector scaling and the validation-fitted decision rule: recovery of known probabilities, invariants."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss

from gnn_market.calibration import (
    DecisionRule,
    VectorScaling,
    brier_score,
    prior_adjusted,
    reliability_curve,
    rolling_prior,
)


def _market(n: int, seed: int):
    """True probabilities p* (mostly SIDEWAYS) and labels drawn from them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (n, 3)) + np.array([-1.2, 0.8, -1.2])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return p, y


def _distort(p: np.ndarray) -> np.ndarray:
    """What class weighting does: rare classes inflated, over-confident."""
    z = 2.0 * np.log(p) + np.array([1.0, -0.8, 1.0])
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_vector_scaling_recovers_true_probabilities_out_of_sample():
    p_val, y_val = _market(20_000, 0)
    p_test, y_test = _market(20_000, 1)
    cal = VectorScaling().fit(_distort(p_val), y_val)
    fixed = cal.transform(_distort(p_test))
    np.testing.assert_allclose(fixed.sum(1), 1.0, atol=1e-9)
    assert np.abs(fixed - p_test).mean() < 0.01
    assert log_loss(y_test, fixed, labels=[0, 1, 2]) < log_loss(y_test, _distort(p_test), labels=[0, 1, 2]) - 0.05
    assert log_loss(y_test, fixed, labels=[0, 1, 2]) == pytest.approx(log_loss(y_test, p_test, labels=[0, 1, 2]),
                                                                       abs=0.01)
    np.testing.assert_allclose(cal.scale, 0.5, atol=0.05)  # undoes the doubled logits


def test_calibrated_input_stays_put_and_state_round_trips():
    p, y = _market(20_000, 2)
    cal = VectorScaling().fit(p, y)
    np.testing.assert_allclose(cal.scale, 1.0, atol=0.06)
    assert np.abs(cal.transform(p) - p).mean() < 0.01
    back = VectorScaling.from_state_dict(cal.state_dict())
    np.testing.assert_array_equal(back.transform(p), cal.transform(p))
    with pytest.raises(ValueError, match="finite"):
        VectorScaling.from_state_dict({"scale": [1, float("nan"), 1], "bias": [0, 0, 0]})
    with pytest.raises(ValueError, match="at least one"):
        VectorScaling().fit(np.zeros((0, 3)), np.zeros(0, int))


def test_decision_rule_beats_argmax_on_rare_classes_and_is_fitted_on_given_rows_only():
    p_val, y_val = _market(20_000, 3)
    p_test, y_test = _market(20_000, 4)
    rule = DecisionRule().fit(p_val, y_val)
    assert rule.weights[1] == 1.0 and rule.weights[0] > 1 and rule.weights[2] > 1
    plain = f1_score(y_test, p_test.argmax(1), average="macro")
    ruled = f1_score(y_test, rule.predict(p_test), average="macro")
    assert ruled > plain + 0.05
    back = DecisionRule.from_state_dict(rule.state_dict())
    np.testing.assert_array_equal(back.predict(p_test), rule.predict(p_test))
    with pytest.raises(ValueError, match="positive"):
        DecisionRule.from_state_dict({"weights": [1.0, 0.0, 1.0]})


def test_decision_rule_keeps_argmax_when_argmax_is_already_best():
    y = np.array([0, 1, 2] * 50)
    p = np.eye(3)[y] * 0.9 + 0.1 / 3
    assert list(DecisionRule().fit(p, y).weights) == [1.0, 1.0, 1.0]


def test_brier_and_reliability_against_hand_values():
    y = np.array([0, 2])
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])
    # row 0: 0.25 + 0.25 + 0; row 1: 0.04 + 0.04 + 0.16
    assert brier_score(y, p) == pytest.approx((0.5 + 0.24) / 2)
    p_true, y_true = _market(50_000, 5)
    curve = reliability_curve(y_true, p_true, bins=10)
    assert (curve["count"].sum(1) == 50_000).all()
    dense = curve["count"] > 2000
    np.testing.assert_allclose(curve["observed"][dense], curve["predicted"][dense], atol=0.03)


def test_rolling_prior_against_a_loop_and_never_reads_a_later_hour() -> None:
    rng = np.random.default_rng(3)
    hours = rng.integers(100, 160, 400)
    probs = rng.dirichlet([1.0, 2.0, 1.0], 400)
    got = rolling_prior(probs, hours, window=7)
    expected = np.array([probs[(hours > h - 7) & (hours <= h)].mean(0) for h in hours])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # Perturb every row after hour 130: no row at or before 130 changes.
    later = hours > 130
    changed = probs.copy()
    changed[later] = rng.dirichlet([5.0, 1.0, 1.0], later.sum())
    np.testing.assert_array_equal(rolling_prior(changed, hours, 7)[~later], got[~later])
    # window 1: the mean over the row's own hour only
    one = rolling_prior(probs, hours, 1)
    np.testing.assert_allclose(one[0], probs[hours == hours[0]].mean(0))


def test_prior_adjusted_follows_a_shift_in_class_shares_without_labels() -> None:
    """After a move to a regime where class 0 is predicted everywhere, the adjusted probabilities rank
    rows by how far above the new level they are, so argmax picks every class again."""
    rng = np.random.default_rng(4)
    hours = np.repeat(np.arange(200), 10)
    base = rng.dirichlet([1.0, 1.0, 1.0], len(hours))
    after = hours >= 50
    shifted = base.copy()
    shifted[after] *= np.array([20.0, 1.0, 1.0])
    shifted /= shifted.sum(1, keepdims=True)
    assert np.bincount(shifted[after].argmax(1), minlength=3)[1:].sum() < 0.1 * after.sum()  # class 0 everywhere
    adjusted = prior_adjusted(shifted, hours, window=24)
    np.testing.assert_allclose(adjusted.sum(1), 1.0)
    shares = np.bincount(adjusted[hours >= 74].argmax(1), minlength=3) / (hours >= 74).sum()  # past the window
    assert (shares > 0.2).all(), shares


def test_rolling_prior_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="window"):
        rolling_prior(np.full((2, 3), 1 / 3), np.array([0, 1]), 0)
    with pytest.raises(ValueError, match="hours"):
        rolling_prior(np.full((2, 3), 1 / 3), np.array([0, 1, 2]), 5)
    assert rolling_prior(np.zeros((0, 3)), np.zeros(0, np.int64), 5).shape == (0, 3)


def test_reliability_plot_hides_sparse_bins_and_keeps_their_counts():
    from gnn_market.training.report import MIN_BIN_ROWS, drawn_bins

    rng = np.random.default_rng(0)
    # class-UP probabilities: 500 rows near 0.05, 40 near 0.55, 5 near 0.95 (a sparse bin)
    p_up = np.concatenate([np.full(500, 0.05), np.full(40, 0.55), np.full(5, 0.95)])
    probs = np.column_stack([(1 - p_up) / 2, (1 - p_up) / 2, p_up])
    y = rng.integers(0, 3, len(p_up))
    x, observed, counts = drawn_bins(y, probs)[2]
    np.testing.assert_allclose(x, [0.05, 0.55])
    assert counts.tolist() == [500, 40] and (counts >= MIN_BIN_ROWS).all()
    np.testing.assert_allclose(observed, [np.mean(y[:500] == 2), np.mean(y[500:540] == 2)])
