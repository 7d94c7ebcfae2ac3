"""CryptoGraph-v0's trading rules against hand-computed portfolios: turnover control, data stops and gaps.

Every expected number below is written out from the rules in the class
docstring with small round prices, not computed by the package.
"""
from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.factory import make_crypto_graph_env
from envs.options import EnvOptions
from envs.portfolio import PortfolioConfig
from gnn_market.store import Store

from env_fakes import FakeEncoder, make_env, make_panel

FEE = 0.001


def hand_panel(close: np.ndarray):
    """A 2-pair panel with these closes ``[T, 2]`` (NaN = no candle)."""
    close = np.asarray(close, dtype=np.float64)
    base = make_panel(n_hours=len(close), n_pairs=2)
    mask = np.isfinite(close)
    return dataclasses.replace(base, close=close, open=close.copy(), high=close.copy(), low=close.copy(),
                               volume=np.where(mask, 1.0, np.nan), mask=mask)


def exact(w) -> np.ndarray:
    """Scores whose softmax (scale 5) is exactly the weights ``w > 0``."""
    return np.log(np.asarray(w, dtype=np.float64)) / 5.0


# A: 100 -> 100 -> 110 -> 121 -> 110 ...;  B: 50 flat
PRICES = np.array([[100, 50], [100, 50], [110, 50], [121, 50], [110, 50], [110, 50], [99, 50], [99, 50],
                   [99, 50], [99, 50]], dtype=np.float64)


def test_partial_move_and_no_trade_band_hand_computed():
    env = make_env(panel=hand_panel(PRICES), episode_hours=None, rebalance_rate=0.5,
                   rebalance_every=1)  # band 0.05, fee 10 bps, trading every hour
    env.reset(options={"start": 1})
    # step 1: target (cash .2, A .8) from all cash: D = 0.8 -> w' = (.6, .4, 0), turnover .4; A +10%
    _, r, _, _, i = env.step(exact([0.2, 0.8, 1e-12]))
    assert i["turnover"] == pytest.approx(0.4) and i["fees"] == pytest.approx(0.0004)
    v1 = 0.9996 * (0.6 + 0.4 * 1.1)  # = 0.9996 * 1.04
    assert i["portfolio_value"] == pytest.approx(v1) and r == pytest.approx(math.log(v1))
    np.testing.assert_allclose(i["weights"], [0.6 / 1.04, 0.44 / 1.04, 0], atol=1e-9)
    # step 2: same target; held A = .44/1.04 -> w' = held + .5 (target - held); A +10% again
    a_held = 0.44 / 1.04
    a_new = a_held + 0.5 * (0.8 - a_held)
    _, _, _, _, i = env.step(exact([0.2, 0.8, 1e-12]))
    assert i["turnover"] == pytest.approx(a_new - a_held, abs=1e-9)
    v2 = (v1 - FEE * (a_new - a_held) * v1) * ((1 - a_new) + a_new * 1.1)
    assert i["portfolio_value"] == pytest.approx(v2)
    # step 3: a target 0.04 away (inside the 0.05 band): nothing is traded, the holding drifts (A 121 -> 110)
    held = i["weights"]
    target = held + np.array([0.04, -0.04, 0.0])
    _, _, _, _, i = env.step(np.log(target + 1e-300) / 5.0)
    assert i["turnover"] == 0.0 and i["fees"] == 0.0
    assert i["portfolio_value"] == pytest.approx(v2 * (held[0] + held[1] * 110 / 121))


@pytest.mark.parametrize("band, trades", [(0.75, True), (np.nextafter(0.75, 0.0), True),
                                         (np.nextafter(0.75, 1.0), False)])
def test_no_trade_band_boundary_a_move_of_exactly_the_band_trades(band, trades):
    # 3 pairs, all tradable at hour 50, zero action: target 1/4 each, D = 0.75 exactly from all cash
    env = make_env(panel=make_panel(n_pairs=3), episode_hours=None, rebalance_threshold=float(band),
                   rebalance_rate=0.5)
    env.reset(options={"start": 50})
    assert env.current_mask.all()
    expected = [0.625, 0.125, 0.125, 0.125] if trades else [1.0, 0.0, 0.0, 0.0]  # half way, or held
    np.testing.assert_array_equal(env.action_to_weights(np.zeros(4)), expected)
    _, _, _, _, info = env.step(np.zeros(4))
    assert info["turnover"] == (0.375 if trades else 0.0) and info["fees"] == pytest.approx(FEE * info["turnover"])


def test_rebalance_every_k_hours_trades_only_on_the_grid():
    env = make_env(panel=hand_panel(PRICES), episode_hours=None, rebalance_threshold=0.0, rebalance_rate=1.0,
                   rebalance_every=3)
    env.reset(options={"start": 1})
    all_a, all_b = exact([1e-9, 1, 1e-9]), exact([1e-9, 1e-9, 1])
    turnovers = [env.step(all_a if k % 2 == 0 else all_b)[4]["turnover"] for k in range(6)]
    # steps 0 and 3 trade (to A, then A -> B: 2); steps 1, 2, 4, 5 hold whatever the action says
    np.testing.assert_allclose(turnovers, [1, 0, 0, 2, 0, 0], atol=1e-6)


def test_action_to_weights_is_what_step_trades():
    env_a, env_b = (make_env(episode_hours=None) for _ in range(2))
    env_a.reset(options={"start": 40})
    env_b.reset(options={"start": 40})
    rng = np.random.default_rng(3)
    for _ in range(40):
        a = rng.uniform(-1, 1, 5)
        assert env_a.step(a)[1] == env_b.step_weights(env_b.action_to_weights(a))[1]


def test_defaults_cut_a_random_agents_turnover_and_still_trade():
    def mean_turnover(**kw):
        env = make_env(episode_hours=None, **kw)
        env.reset(options={"start": 40})
        rng = np.random.default_rng(0)
        return np.mean([env.step(rng.uniform(-1, 1, 5))[4]["turnover"] for _ in range(200)])

    free, controlled = mean_turnover(rebalance_threshold=0.0, rebalance_rate=1.0), mean_turnover()
    assert controlled < 0.6 * free and controlled > 0.1  # less churn, not buy-and-hold


@pytest.mark.parametrize("kwargs, match", [
    ({"rebalance_threshold": -0.1}, "rebalance_threshold"), ({"rebalance_threshold": 2.5}, "rebalance_threshold"),
    ({"rebalance_threshold": float("nan")}, "rebalance_threshold"), ({"rebalance_rate": 0.0}, "rebalance_rate"),
    ({"rebalance_rate": 1.5}, "rebalance_rate"), ({"rebalance_every": 0}, "rebalance_every"),
    ({"rebalance_every": 1.5}, "rebalance_every"), ({"delist_haircut": 1.0}, "delist_haircut"),
    ({"delist_haircut": -0.01}, "delist_haircut"), ({"obs_source": "pixels"}, "obs_source"),
])
def test_bad_options_are_one_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_env(**kwargs)


def test_options_in_force_are_recorded_in_metadata_and_spec():
    env = gym.make("CryptoGraph-v0", panel=make_panel(), encoder=FakeEncoder(), use_cache=False,
                   rebalance_rate=0.25, rebalance_every=2, obs_source="raw")
    opts = env.unwrapped.metadata["options"]
    expected = {**dataclasses.asdict(PortfolioConfig(rebalance_rate=0.25, rebalance_every=2)),
                "episode_hours": 168, "obs_mode": "flat", "include_embeddings": True, "render_mode": None,
                "obs_source": "raw"}
    assert opts == expected
    assert env.spec.kwargs["rebalance_rate"] == 0.25 and env.spec.kwargs["obs_source"] == "raw"
    sub = env.unwrapped.subrange(fee_bps=5.0, rebalance_threshold=0.1)
    assert sub.metadata["options"]["fee_bps"] == 5.0 and sub.metadata["options"]["rebalance_threshold"] == 0.1
    assert env.unwrapped.metadata["options"]["fee_bps"] == 10.0  # per instance, not shared
    assert "options" not in type(env.unwrapped).metadata
    assert EnvOptions().as_dict()["rebalance_threshold"] == 0.05


# ----------------------------------------------------------------------------- data stops and gaps
def test_position_in_a_pair_whose_data_stop_is_closed_at_its_last_price_less_the_haircut():
    close = np.array([[100, 50], [100, 50], [110, 50], [np.nan, 50], [np.nan, 50], [np.nan, 50]], float)
    for haircut in (0.05, 0.2):
        env = make_env(panel=hand_panel(close), episode_hours=None, delist_haircut=haircut)
        env.reset(options={"start": 1})
        _, _, _, _, i1 = env.step_weights(np.array([0, 1, 0.0]))  # buy A at 100; A -> 110
        assert i1["portfolio_value"] == pytest.approx(0.999 * 1.1)
        obs, r, _, _, i2 = env.step_weights(i1["weights"])  # hold A over its last hour: no price at 3
        assert i2["portfolio_value"] == pytest.approx(0.999 * 1.1 * (1 - haircut))
        assert r == pytest.approx(math.log(1 - haircut))
        np.testing.assert_array_equal(i2["weights"], [1, 0, 0])  # in cash; A is masked from now on
        assert i2["turnover"] == 0.0 and i2["fees"] == 0.0
        assert env.current_mask.tolist() == [False, True]


def _store_with(tmp_path, a_close: np.ndarray, hours: pd.DatetimeIndex) -> Store:
    store = Store(tmp_path / "store")
    for sym, close in (("AAAUSDT", a_close), ("BBBUSDT", np.full(len(hours), 10.0))):
        keep = np.isfinite(close)
        store.write_klines(sym, pd.DataFrame({"open": close[keep], "high": close[keep], "low": close[keep],
                                              "close": close[keep], "volume": 1.0}, index=hours[keep]))
    return store


def test_short_gap_within_the_fill_limit_carries_the_return_to_the_next_price(tmp_path):
    hours = pd.date_range("2024-01-01", periods=12, freq="h", tz="UTC", name="open_time")
    a = np.array([100, 100, 100, 100, 100, np.nan, np.nan, 120, 120, 120, 120, 120], float)  # 2-hour hole
    _store_with(tmp_path, a, hours)
    env = make_crypto_graph_env(store=tmp_path / "store", encoder=FakeEncoder(), use_cache=False,
                                episode_hours=None, start="2024-01-01 03:00")
    env.reset(options={"start": 0})  # 03:00
    _, _, _, _, info = env.step_weights(np.array([0, 1, 0.0]))  # buy A at 100
    for _ in range(3):  # hold across the filled hours 05:00 and 06:00 into 07:00
        _, _, _, _, info = env.step_weights(info["weights"])
    assert info["time"] == pd.Timestamp("2024-01-01 07:00", tz="UTC")
    assert info["portfolio_value"] == pytest.approx(0.999 * 1.2)  # 100 -> 120 across the gap, nothing lost


def test_pair_back_after_a_long_gap_starts_fresh_never_marked_across_it(tmp_path):
    """LUNAUSDT-like: 437 hours without candles, then the 'same' symbol at 1/20,000 of its old price."""
    hours = pd.date_range("2024-01-01", periods=470, freq="h", tz="UTC", name="open_time")
    a = np.full(len(hours), np.nan)
    a[:10] = 100.0
    a[447:] = 0.005
    a[449:] = 0.006
    _store_with(tmp_path, a, hours)
    env = make_crypto_graph_env(store=tmp_path / "store", encoder=FakeEncoder(), use_cache=False,
                                episode_hours=None, start="2024-01-01 05:00")
    assert env._data.growth.max() == pytest.approx(1.2)  # no 1 / 20,000 jump anywhere
    env.reset(options={"start": 0})
    values, weights = [], []
    while True:  # always ask for 100% A; masked hours go to cash
        _, _, terminated, _, info = env.step_weights(np.array([0, 1, 0.0]))
        values.append(info["portfolio_value"])
        weights.append(info["weights"])
        if terminated:
            break
    # bought at 05:00 (fee), closed at 100 less 5% when the panel's 3-hour fill ends (row 12 -> 13),
    # bought again once A is tradable after its return (04:00 + 448h, fee), then 0.005 -> 0.006
    times = env.times
    closed = times.get_loc(pd.Timestamp("2024-01-01 13:00", tz="UTC")) - 1
    assert values[closed] == pytest.approx(0.999 * 0.95)
    assert weights[closed][0] == 1.0
    assert values[-1] == pytest.approx(0.999 * 0.95 * 0.999 * 1.2)


def test_the_env_steps_through_the_one_portfolio_implementation(monkeypatch):
    """Weights, turnover control and the reward exist once, in envs.portfolio: the env calls them."""
    from envs import portfolio

    calls = {"scores_to_weights": 0, "rebalance": 0, "step": 0}
    for name in calls:
        original = getattr(portfolio, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(portfolio, name, counted)
    env = make_env(panel=hand_panel(PRICES), episode_hours=None)
    env.reset(options={"start": 1})
    _, reward, _, _, info = env.step(exact([0.2, 0.8, 1e-12]))
    assert calls == {"scores_to_weights": 1, "rebalance": 1, "step": 1}
    env.step_weights(np.array([0.5, 0.5, 0.0]))
    assert calls == {"scores_to_weights": 1, "rebalance": 1, "step": 2}
    # the step's outputs are the portfolio function's, computed independently here
    weights, traded = portfolio.rebalance(portfolio.scores_to_weights(exact([0.2, 0.8, 1e-12])),
                                          np.array([1.0, 0.0, 0.0]), 0.05, 0.5)
    assert info["turnover"] == pytest.approx(traded) and traded == pytest.approx(0.4)


def test_grouped_settings_equal_the_flat_keywords_and_flat_wins():
    from envs.factory import make_crypto_graph_env
    from envs.options import EnvOptions, SourceOptions
    from gnn_market.errors import OptionError

    panel, enc = hand_panel(PRICES), FakeEncoder()
    flat = make_crypto_graph_env(panel=panel, encoder=enc, use_cache=False, episode_hours=None, fee_bps=5.0,
                                 rebalance_every=2)
    grouped = make_crypto_graph_env(panel=panel, encoder=enc, env_options=EnvOptions(episode_hours=None),
                                    portfolio_config=PortfolioConfig(fee_bps=5.0, rebalance_every=2),
                                    source_options=SourceOptions(use_cache=False))
    assert flat.metadata["options"] == grouped.metadata["options"]
    mixed = make_crypto_graph_env(panel=panel, encoder=enc, use_cache=False,
                                  portfolio_config=PortfolioConfig(fee_bps=5.0), fee_bps=7.0)
    assert mixed.metadata["options"]["fee_bps"] == 7.0 and mixed.metadata["options"]["rebalance_every"] == 4
    with pytest.raises(OptionError, match=r"unknown keyword\(s\) \['fee'\]"):
        make_crypto_graph_env(panel=panel, encoder=enc, fee=5.0)
    with pytest.raises(OptionError, match="portfolio_config must be a PortfolioConfig"):
        make_crypto_graph_env(panel=panel, encoder=enc, portfolio_config={"fee_bps": 5.0})


def test_settings_are_validated_once_and_the_range_resolved_once(monkeypatch):
    from envs import factory, options, portfolio

    counts = {"EnvOptions": 0, "PortfolioConfig": 0, "SourceOptions": 0, "resolve_range": 0}
    for cls in (options.EnvOptions, portfolio.PortfolioConfig, options.SourceOptions):
        original = cls.__post_init__

        def counted(self, _original=original, _name=cls.__name__):
            counts[_name] += 1
            _original(self)

        monkeypatch.setattr(cls, "__post_init__", counted)
    original_resolve = factory.resolve_range

    def resolve(*args, **kwargs):
        counts["resolve_range"] += 1
        return original_resolve(*args, **kwargs)

    monkeypatch.setattr(factory, "resolve_range", resolve)
    factory.make_crypto_graph_env(panel=hand_panel(PRICES), encoder=FakeEncoder(), use_cache=False, fee_bps=5.0,
                                  episode_hours=None, obs_mode="dict")
    assert counts == {"EnvOptions": 1, "PortfolioConfig": 1, "SourceOptions": 1, "resolve_range": 1}


def test_huge_finite_scores_are_an_action_and_nan_is_refused():
    env = make_env(panel=hand_panel(PRICES), episode_hours=None)
    env.reset(options={"start": 1})
    _, _, _, _, info = env.step(np.array([0.0, 1e200, -1e200]))
    assert np.isfinite(info["portfolio_value"])
    with pytest.raises(ValueError, match=r"NaN/inf scores at positions \[1\]"):
        env.step(np.array([0.0, np.nan, 0.0]))
