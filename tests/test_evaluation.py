"""Evaluation policies and metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest

from envs.evaluation import (
    EpisodeResult,
    across_seeds,
    all_cash,
    equal_weight_buy_and_hold,
    format_table,
    gnn_greedy,
    gross_return,
    max_drawdown,
    random_policy,
    run_policy,
    sharpe_ratio,
    summarize,
)

from env_fakes import make_env, make_panel


def test_all_cash_is_flat():
    res = run_policy(make_env(episode_hours=24), all_cash)
    m = summarize(res)
    assert m["total_return"] == 0.0 and m["fees"] == 0.0 and m["mean_turnover"] == 0.0
    assert math.isnan(m["sharpe"]) and m["max_drawdown"] == 0.0


def test_runs_to_end_of_data_ignoring_truncation():
    env = make_env(episode_hours=24)
    res = run_policy(env, all_cash, start=10)
    assert len(res.values) == len(env.times) - 10 and res.times[-1] == env.times[-1]
    assert len(run_policy(env, all_cash, max_steps=5).rewards) == 5


def test_buy_and_hold_pays_one_fee_and_tracks_prices():
    panel = make_panel()
    env = make_env(panel=panel, episode_hours=None)
    start = 40  # all four pairs have data from hour 30 on, pair 1's hole is at 200
    res = run_policy(env, equal_weight_buy_and_hold, start=start, max_steps=100)
    assert res.turnover[0] == pytest.approx(1.0) and not res.turnover[1:].any()
    assert res.fees.sum() == pytest.approx(0.001)
    gross = panel.close[start + 100] / panel.close[start]
    assert res.values[-1] == pytest.approx((1 - 0.001) * gross.mean())
    np.testing.assert_allclose(np.exp(np.cumsum(res.rewards)), res.values[1:])


def test_gnn_greedy_weights_positive_edge_only():
    env = make_env()
    env.reset(options={"start": 50})
    w = gnn_greedy(env, None)
    p = env.current_probs
    edge = np.maximum(p[:, 2] - p[:, 0], 0)
    if edge.sum() > 0:
        np.testing.assert_allclose(w[1:], edge / edge.sum())
        assert w[0] == 0.0
    else:
        assert w[0] == 1.0


def test_random_policy_is_seeded():
    env = make_env()
    a = run_policy(env, random_policy(3), max_steps=20).values
    b = run_policy(env, random_policy(3), max_steps=20).values
    np.testing.assert_array_equal(a, b)


def test_metrics_by_hand():
    v = np.array([1.0, 1.1, 0.99, 1.2])
    assert max_drawdown(v) == pytest.approx(0.1)  # 1.1 -> 0.99
    r = np.array([0.1, -0.1, 0.21 / 0.99])
    assert sharpe_ratio(v) == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(24 * 365))


def test_format_table_lists_every_policy():
    env = make_env()
    rows = {name: summarize(run_policy(env, pol, max_steps=10))
            for name, pol in [("cash", all_cash), ("greedy", gnn_greedy)]}
    table = format_table(rows)
    assert "| cash | +0.00% | n/a |" in table and "greedy" in table


def test_gross_return_gives_each_hours_fee_back():
    # hour 1: buy (fee 0.001 of V0 = 1), asset +10%: V1 = 0.999 * 1.1; hour 2: no trade, -10%
    values = np.array([1.0, 0.999 * 1.1, 0.999 * 1.1 * 0.9])
    res = EpisodeResult(times=None, values=values, rewards=np.zeros(2), turnover=np.array([1.0, 0.0]),
                        fees=np.array([0.001, 0.0]), funding=np.zeros(2))
    assert gross_return(res) == pytest.approx(1.1 * 0.9 - 1.0)


def test_across_seeds_mean_sample_sd_and_nulls():
    def run(r, sharpe):
        return {"total_return": r, "gross_return": r + 0.01, "sharpe": sharpe, "max_drawdown": 0.1,
                "mean_turnover": 0.2}

    row = across_seeds([run(0.1, 1.0), run(0.3, float("nan"))], [0, 1])
    assert row["net_return_mean"] == pytest.approx(0.2)
    assert row["net_return_sd"] == pytest.approx(math.sqrt(0.02))  # ddof 1: (0.01 + 0.01) / 1
    assert row["gross_return_mean"] == pytest.approx(0.21) and row["max_drawdown_sd"] == pytest.approx(0.0)
    assert row["sharpe_mean"] is None and row["sharpe_sd"] is None and row["seeds"] == [0, 1]
    assert across_seeds([run(0.1, 1.0)], [4])["net_return_sd"] is None  # one seed: no sample sd
    assert across_seeds([run(0.1, 1.0)], [0, 1, 2], deterministic=True)["net_return_sd"] == 0.0
