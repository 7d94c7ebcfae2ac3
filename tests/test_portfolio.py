"""Portfolio arithmetic, checked against numbers computed by hand."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from envs.portfolio import PortfolioConfig, logit_offsets, price_growth, scores_to_weights, step, turnover


def test_zero_scores_give_uniform_weights_over_cash_and_tradable_pairs():
    w = scores_to_weights(np.zeros(4), mask=np.array([True, False, True]))
    np.testing.assert_allclose(w, [1 / 3, 1 / 3, 0.0, 1 / 3])


def test_softmax_mapping_by_hand():
    # scores (cash, A, B) = (0, 0.2, -0.2), scale 5 -> logits (0, 1, -1)
    w = scores_to_weights(np.array([0.0, 0.2, -0.2]), scale=5.0)
    e = np.array([1.0, math.e, 1 / math.e])
    np.testing.assert_allclose(w, e / e.sum())
    assert w.sum() == pytest.approx(1.0)


def test_masked_pairs_get_exactly_zero_weight_even_with_huge_scores():
    w = scores_to_weights(np.array([-1.0, 1.0, 1.0]), mask=np.array([False, True]), scale=100.0)
    assert w[1] == 0.0
    assert w[2] == pytest.approx(1.0)


def test_offsets_fast_path_matches_mask_path():
    rng = np.random.default_rng(0)
    mask = rng.random(7) > 0.3
    scores = rng.uniform(-1, 1, 8)
    np.testing.assert_array_equal(scores_to_weights(scores, mask=mask),
                                  scores_to_weights(scores, offsets=logit_offsets(mask)))


def test_price_growth_cash_is_one_and_unknown_next_price_is_flat():
    close = np.array([[100.0, 10.0], [110.0, np.nan], [99.0, 12.0]])
    mask = np.array([[True, True], [True, False], [True, True]])
    g = price_growth(close, mask)
    np.testing.assert_allclose(g, [[1.0, 1.1, 1.0], [1.0, 0.9, 1.0]])


def test_turnover_excludes_cash():
    # cash 0.5 -> 0.2 and B 0 -> 0.5, A 0.5 -> 0.3: pairs traded |0.3-0.5| + |0.5-0| = 0.7
    assert turnover(np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.5, 0.0])) == pytest.approx(0.7)


def test_two_asset_step_by_hand_fees_drift_and_cash():
    # V=1000 held as (cash 0.5, A 0.5, B 0); target (0.2, 0.3, 0.5); A +10%, B -10%; 10 bps.
    # turnover 0.7 -> fee 0.001 * 0.7 * 1000 = 0.7 -> invested 999.3
    # end of hour per unit: cash 0.2, A 0.3*1.1 = 0.33, B 0.5*0.9 = 0.45 -> total 0.98
    # V1 = 999.3 * 0.98 = 979.314; weights (0.2, 0.33, 0.45) / 0.98
    r = step(1000.0, np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5]),
             np.array([1.0, 1.1, 0.9]), fee_rate=PortfolioConfig(fee_bps=10).fee_rate)
    assert r.turnover == pytest.approx(0.7)
    assert r.fee == pytest.approx(0.7)
    assert r.funding == 0.0
    assert r.value == pytest.approx(979.314)
    np.testing.assert_allclose(r.weights, [0.2 / 0.98, 0.33 / 0.98, 0.45 / 0.98])
    assert r.reward == pytest.approx(math.log(979.314 / 1000.0))
    # reward decomposes into fee drag + market growth
    assert r.reward == pytest.approx(math.log(1 - 0.0007) + math.log(0.98))


def test_funding_long_pays_positive_and_receives_negative_by_hand():
    # same hour; A's funding +0.1% (long pays), B's -0.05% (long receives)
    # paid = 999.3 * (0.33 * 0.001 + 0.45 * -0.0005) = 999.3 * 0.000105 = 0.1049265
    # end: cash 0.2, A 0.33 * 0.999 = 0.32967, B 0.45 * 1.0005 = 0.450225 -> 0.979895
    r = step(1000.0, np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5]),
             np.array([1.0, 1.1, 0.9]), fee_rate=0.001, funding=np.array([0.0, 0.001, -0.0005]))
    assert r.funding == pytest.approx(0.1049265)
    assert r.value == pytest.approx(999.3 * 0.979895)
    assert r.value == pytest.approx(979.314 - 0.1049265)
    np.testing.assert_allclose(r.weights, np.array([0.2, 0.32967, 0.450225]) / 0.979895)


def test_all_cash_is_flat_and_free():
    r = step(5.0, np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.array([1.0, 3.0]), fee_rate=0.001)
    assert (r.value, r.fee, r.turnover, r.reward) == (5.0, 0.0, 0.0, 0.0)


def test_holding_without_trading_tracks_prices():
    # buy-and-hold: rebalancing to the drifted weights costs nothing
    held = np.array([0.0, 0.5, 0.5])
    r1 = step(1.0, np.array([1.0, 0.0, 0.0]), held, np.array([1.0, 2.0, 1.0]), fee_rate=0.0)
    r2 = step(r1.value, r1.weights, r1.weights, np.array([1.0, 1.0, 0.5]), fee_rate=0.01)
    assert r2.fee == 0.0
    assert r2.value == pytest.approx(0.5 * 2.0 + 0.5 * 0.5)


@pytest.mark.parametrize("kwargs", [{"fee_bps": -1}, {"fee_bps": float("nan")}, {"action_scale": 0},
                                    {"initial_value": 0}])
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        PortfolioConfig(**kwargs)


def test_controlled_target_band_partial_move_and_grid():
    from envs.portfolio import controlled_target

    held, target = np.array([1.0, 0.0, 0.0]), np.array([0.2, 0.8, 0.0])
    np.testing.assert_allclose(controlled_target(target, held, 0.05, 0.25), [0.8, 0.2, 0.0])  # 1/4 of the way
    np.testing.assert_allclose(controlled_target(target, held, 0.0, 1.0), target)
    np.testing.assert_array_equal(controlled_target(target, held, 0.81, 0.25), held)  # D = 0.8 < band
    np.testing.assert_array_equal(controlled_target(target, held, 0.0, 1.0, trade_now=False), held)


def test_data_stops_and_the_step_that_closes_a_stopped_position():
    from envs.portfolio import data_stops, price_growth, step

    mask = np.array([[True, True], [True, False], [False, False], [True, True]])
    np.testing.assert_array_equal(data_stops(mask), [[False, False, True], [False, True, False],
                                                     [False, False, False]])
    close = np.array([[10.0, 5.0], [11.0, np.nan], [np.nan, np.nan], [1e-3, 6.0]])
    np.testing.assert_array_equal(price_growth(close, mask)[:, 1:], [[1.1, 1.0], [1.0, 1.0], [1.0, 1.0]])
    # hold half in each pair over row 0: pair 1 stops -> closed at 5 less 10%; pair 0 +10%
    res = step(1.0, np.array([0.0, 0.5, 0.5]), np.array([0.0, 0.5, 0.5]), np.array([1.0, 1.1, 1.0]), 0.001,
               stops=np.array([False, False, True]), haircut=0.1)
    assert res.value == pytest.approx(0.5 * 1.1 + 0.5 * 0.9) and res.fee == 0.0
    np.testing.assert_allclose(res.weights, [0.45 / 1.0, 0.55 / 1.0, 0.0])


def test_no_trade_band_boundary_a_move_of_exactly_the_band_trades():
    """``D < b`` holds, ``D >= b`` trades: D = 0.5 exactly against b = 0.5 and its float neighbours."""
    from envs.portfolio import controlled_target

    held, target = np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.25, 0.25])  # D = 0.25 + 0.25, exact in binary
    moved = np.array([0.875, 0.0625, 0.0625])  # held + 0.25 (target - held), exact
    np.testing.assert_array_equal(controlled_target(target, held, 0.5, 0.25), moved)  # D == b
    np.testing.assert_array_equal(controlled_target(target, held, np.nextafter(0.5, 0.0), 0.25), moved)  # D > b
    np.testing.assert_array_equal(controlled_target(target, held, np.nextafter(0.5, 1.0), 0.25), held)  # D < b


def test_turnover_defaults_are_the_published_grid_choice():
    """The defaults are what benchmarks/turnover_grid.py chose on 2023-09 (outside every PPO evaluation window)."""
    import json
    from pathlib import Path

    from envs import portfolio

    grid = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/turnover_grid.json").read_text())
    assert grid["range"][0].startswith("2023-09-01") and grid["range"][1].startswith("2023-09-30")
    chosen = grid["chosen"]
    assert (chosen["b"], chosen["r"], chosen["k"]) == (portfolio.REBALANCE_THRESHOLD, portfolio.REBALANCE_RATE,
                                                       portfolio.REBALANCE_EVERY)
    cfg = portfolio.PortfolioConfig()
    assert (cfg.rebalance_threshold, cfg.rebalance_rate, cfg.rebalance_every) == (0.05, 0.5, 4)


def test_softmax_without_the_shift_equals_the_shifted_one_and_huge_scores_stay_finite():
    rng = np.random.default_rng(3)
    scores = rng.uniform(-1, 1, 31)
    mask = rng.random(30) > 0.2
    z = 5.0 * scores + logit_offsets(mask)
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(scores_to_weights(scores, mask=mask), expected, rtol=1e-12, atol=0)
    huge = np.array([1e200, 0.0, -1e200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way (a dot product of these would warn)
        w = scores_to_weights(huge)
        np.testing.assert_array_equal(w, [1.0, 0.0, 0.0])
        edge = np.array([600.0, 599.0, 0.0]) / 5.0  # |z| = 600: the unshifted path, still finite
        np.testing.assert_allclose(scores_to_weights(edge), np.exp([0.0, -1.0, -600.0]) / np.exp([0.0, -1.0, -600.0]).sum(),
                                   rtol=1e-12)
