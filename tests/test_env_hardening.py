"""CryptoGraph-v0 against hostile inputs (issue 11): huge weights, non-dict reset options, bool/complex
actions, numeric starts, absurd prices, non-finite encoder outputs. Each failed before its fix."""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from envs.crypto_graph import RESET_OPTIONS
from gnn_market.errors import CryptoGraphError, DataError
from gnn_market.store_schema import MAX_PRICE
from gnn_market.timeutil import parse_utc

from env_fakes import FakeEncoder, make_env, make_panel


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def env():
    # turnover control off: action_to_weights is then the plain mapping these checks compute by hand
    e = make_env(rebalance_threshold=0.0, rebalance_rate=1.0)
    e.reset(options={"start": 50})
    return e


@pytest.mark.parametrize("weights", [[1e300] * 5, [1.7e308] * 5, [1e308, 0, 1e308, 0, 0]])
def test_huge_finite_weights_are_normalised_and_leave_a_sound_state(env, weights) -> None:
    expect = np.asarray(weights) / np.sum(np.asarray(weights) / 1e300) / 1e300
    _, reward, *_ = env.step_weights(np.array(weights))
    assert math.isfinite(reward) and env.portfolio_value > 0
    assert np.isfinite(env.weights).all() and env.weights.sum() == pytest.approx(1.0)
    env.reset(options={"start": 50})
    np.testing.assert_allclose(env.action_to_weights(np.log(np.maximum(expect, 1e-300)) / 5.0), expect, atol=1e-12)
    _, reward, *_ = env.step(np.zeros(5))  # the next step works
    assert math.isfinite(reward)


def test_a_step_that_would_break_the_portfolio_changes_nothing(env) -> None:
    value, weights, t = env.portfolio_value, env.weights, env.current_time
    env._growth = env._growth.copy()
    env._growth[env._t] = 0.0  # cash too: the hour would leave nothing
    with pytest.raises(CryptoGraphError, match="nothing was changed"):
        env.step_weights(np.array([1.0, 0, 0, 0, 0]))
    assert env.portfolio_value == value and env.current_time == t
    np.testing.assert_array_equal(env.weights, weights)


@pytest.mark.parametrize("options, error, match", [
    ("start", TypeError, "must be a dict"),
    (["start", 3], TypeError, "must be a dict"),
    ({"strat": 3}, ValueError, r"unknown reset option\(s\) \['strat'\]"),
    ({"start": 1.5}, TypeError, "got float 1.5"),
    ({"start": True}, TypeError, "got bool True"),
    ({"start": np.float64(3.0)}, TypeError, "got float64"),
])
def test_bad_reset_options_are_clear_errors(env, options, error, match) -> None:
    with pytest.raises(error, match=match):
        env.reset(options=options)
    assert RESET_OPTIONS == ("start",)
    env.reset(options={"start": 3})  # ints and times still work
    env.reset(options={"start": env.times[7]})
    assert env.current_time == env.times[7]


@pytest.mark.parametrize("action", [
    np.array([True, False, True, False, False]),
    np.array([1 + 0j, 0, 0, 0, 0]),
    np.array([1 + 1j, 0, 0, 0, 0]),
    np.array(["1", "0", "0", "0", "0"]),
    [True, False, False, False, False],
    np.array([1.0, 0, 0, 0, 0], dtype=object),
])
def test_bool_complex_text_actions_are_refused_not_cast(env, action) -> None:
    with pytest.raises(ValueError, match="must be real numbers"):
        env.step(action)
    with pytest.raises(ValueError, match="must be real numbers"):
        env.step_weights(action)
    env.step([1, 0, 0, 0, 0])  # ints and float16 are real numbers
    env.step(np.zeros(5, np.float16))


@pytest.mark.parametrize("start", [1.5, 1, True, np.int64(1_704_067_200)])
def test_numeric_start_is_refused_not_read_as_nanoseconds_since_1970(start) -> None:
    with pytest.raises(DataError, match="is a number, not a time"):
        make_env(start=start)
    with pytest.raises(DataError, match="is a number, not a time"):
        parse_utc(start, "start")


class _CleanEncoder(FakeEncoder):
    """Encodes a clean panel of the same hours and pairs: a real encoder's outputs stay finite on
    absurd prices (its features are clipped); only the environment's price path is under test."""

    def __init__(self, clean, **kwargs):
        super().__init__(**kwargs)
        self.clean = clean

    def encode_range(self, panel, *args, **kwargs):
        return super().encode_range(self.clean, *args, **kwargs)


@pytest.mark.parametrize("price", [1e300, 2 * MAX_PRICE, np.inf, -5.0])
def test_absurd_prices_are_masked_never_traded_at(price) -> None:
    clean = make_panel()
    bad = dataclasses.replace(clean, close=clean.close.copy())
    bad.close[260, 0] = price
    env = make_env(panel=bad, encoder=_CleanEncoder(clean), episode_hours=None)
    assert not env._data.mask[env.hour_index(clean.times[260]), 0]
    env.reset(options={"start": env.hour_index(clean.times[250])})
    done = False
    while not done:  # all in on the pair with the bad price
        _, reward, terminated, truncated, _ = env.step(np.array([-1.0, 1.0, -1.0, -1.0, -1.0]))
        assert math.isfinite(reward)
        done = terminated or truncated
    ratio = np.nanmax(clean.close[250:, 0]) / np.nanmin(clean.close[250:, 0])
    assert 0 < env.portfolio_value < 2 * ratio  # was 8.8e295 with a 1e300 close


class _NanEncoder(FakeEncoder):
    def encode_range(self, panel, *args, **kwargs):
        out = super().encode_range(panel, *args, **kwargs)
        probs = out.probs.copy()
        probs[10, 1] = np.nan
        assert out.mask[10, 1]
        return dataclasses.replace(out, probs=probs)


def test_non_finite_encoder_outputs_never_become_observations() -> None:
    with pytest.raises(CryptoGraphError, match="non-finite probabilities or embeddings"):
        make_env(encoder=_NanEncoder())
