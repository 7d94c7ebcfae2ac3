"""CryptoGraph-v0 against hostile inputs (issue 11): huge weights, non-dict reset options, bool/complex
actions, numeric starts, absurd prices, non-finite encoder outputs; keywords of the wrong type (issue 21).
Each failed before its fix."""
from __future__ import annotations

import dataclasses
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.crypto_graph import RESET_OPTIONS
from envs.factory import make_crypto_graph_env
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


# ----------------------------------------------------------------------------- keyword types (issue 21)
def _sample_kwargs() -> dict:
    from gnn_market.sample import sample_store

    return {"store": sample_store(), "encoder": FakeEncoder(), "use_cache": False, "start": "2023-09-10",
            "end": "2023-09-20"}


@pytest.mark.parametrize("kwargs, match", [
    ({"top": 2.5}, r"top must be an integer >= 1 or None .*got float 2\.5"),
    ({"top": True}, r"top must be an integer >= 1 or None .*got bool True"),
    ({"top": 0}, r"top must be an integer >= 1"),
    ({"top": "3"}, r"top must be an integer >= 1 .*got str '3'"),
    ({"include_embeddings": "no"}, r"include_embeddings must be True or False, got str 'no'"),
    ({"include_embeddings": 0}, r"include_embeddings must be True or False, got int 0"),
    ({"episode_hours": 1.5}, r"episode_hours must be an integer >= 1 or None .*got float 1\.5"),
    ({"episode_hours": True}, r"episode_hours must be an integer >= 1 or None .*got bool True"),
    ({"episode_hours": 0}, r"episode_hours must be an integer >= 1"),
    ({"batch_hours": 0}, r"batch_hours must be an integer >= 1 .*got int 0"),
    ({"batch_hours": -1}, r"batch_hours must be an integer >= 1 .*got int -1"),
    ({"batch_hours": 8.0}, r"batch_hours must be an integer >= 1 .*got float 8\.0"),
    ({"batch_hours": None}, r"batch_hours must be an integer >= 1 .*got NoneType None"),
    ({"allow_overlap": "no"}, r"allow_overlap must be True or False, got str 'no'"),
    ({"use_cache": 1}, r"use_cache must be True or False, got int 1"),
    ({"market": "futures"}, r"market must be one of 'spot', 'perp' \(or None: the checkpoint's\), got str "
                            r"'futures'"),
    ({"cache_dir": 5}, r"cache_dir must be a folder path \(str or os.PathLike\) or None, got int 5"),
    ({"fee_bps": True}, r"fee_bps must be a number in \[0, 10000\), got bool True"),
    ({"fee_bps": "10"}, r"fee_bps must be a number in \[0, 10000\), got str '10'"),
    ({"action_scale": True}, r"action_scale must be a number > 0, got bool True"),
    ({"initial_value": "1"}, r"initial_value must be a number > 0, got str '1'"),
    ({"rebalance_every": True}, r"rebalance_every must be an integer >= 1 .*got bool True"),
    ({"rebalance_rate": True}, r"rebalance_rate must be a number in \(0, 1\], got bool True"),
    ({"obs_mode": ["flat"]}, r"obs_mode must be one of 'flat', 'dict', got list \['flat'\]"),
])
def test_keywords_of_a_wrong_type_or_range_are_one_clear_option_error(kwargs, match) -> None:
    from gnn_market.errors import OptionError

    with pytest.raises(OptionError, match=match) as info:
        gym.make("CryptoGraph-v0", **{**_sample_kwargs(), **kwargs})
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_numpy_integers_and_bools_are_accepted_and_used() -> None:
    env = make_env(episode_hours=np.int64(3), include_embeddings=np.bool_(False), batch_hours=np.int32(16),
                   rebalance_every=np.int64(2), fee_bps=5)
    assert env.embedding_dim == 6 and env.observation_space.shape == (4 * 3 + 4 + 5,)  # no embeddings
    env.reset(options={"start": 40})
    for k in range(3):
        *_, truncated, _ = env.step(np.zeros(5))
        assert truncated == (k == 2)
    full = make_env(include_embeddings=True)
    assert full.observation_space.shape == (4 * 3 + 4 * 6 + 4 + 5,)
    top = make_crypto_graph_env(**{**_sample_kwargs(), "top": np.int64(3)})
    assert len(top.symbols) == 3


def test_subrange_and_the_class_check_the_same_types() -> None:
    from envs.crypto_graph import CryptoGraphEnv
    from envs.options import EnvOptions
    from gnn_market.errors import OptionError

    env = make_env()
    with pytest.raises(OptionError, match="episode_hours must be an integer"):
        env.subrange(episode_hours=1.5)
    with pytest.raises(OptionError, match="include_embeddings must be True or False"):
        env.subrange(include_embeddings="no")
    with pytest.raises(OptionError, match="episode_hours must be an integer"):
        CryptoGraphEnv(env._data, EnvOptions(episode_hours=2.5))
