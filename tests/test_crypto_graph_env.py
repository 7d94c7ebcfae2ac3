"""CryptoGraph-v0 on a small fake panel and encoder (see env_fakes.py); a real-checkpoint smoke test at the end."""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.crypto_graph import CryptoGraphEnv, RangeOverlapError
from envs.factory import default_start, make_crypto_graph_env
from envs.protocols import ObservationEncoder
from gnn_market.errors import CryptoGraphError
from gnn_market.panel import load_panel
from gnn_market.store import Store

from env_fakes import NO_CONTROL, FakeCheckpoint, FakeEncoder, make_env, make_panel

FEE = 0.001  # 10 bps, the default


@pytest.fixture(autouse=True)
def _quiet_checker_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value.*")
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")  # (N, 3) by design; SB3 flattens
        yield


@pytest.mark.parametrize("obs_mode", ["flat", "dict"])
def test_passes_gymnasium_and_sb3_env_checkers(obs_mode):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(make_env(obs_mode=obs_mode))
    sb3_check_env(make_env(obs_mode=obs_mode), warn=True)


def test_spaces_and_observation_layout():
    panel = make_panel(n_pairs=4)
    env = make_env(panel=panel, obs_mode="dict")
    obs, _ = env.reset(seed=0, options={"start": 10})
    assert env.action_space.shape == (5,)
    assert obs["probs"].shape == (4, 3) and obs["embeddings"].shape == (4, 6)
    assert obs["mask"].shape == (4,) and obs["weights"].shape == (5,)
    assert all(v.dtype == np.float32 for v in obs.values())
    flat = make_env(panel=panel)
    fobs, _ = flat.reset(seed=0, options={"start": 10})
    expected = np.concatenate([obs["probs"].ravel(), obs["embeddings"].ravel(), obs["mask"], obs["weights"]])
    np.testing.assert_array_equal(fobs, expected)
    assert flat.observation_space.shape == (4 * 3 + 4 * 6 + 4 + 5,)
    no_emb = make_env(panel=panel, include_embeddings=False)
    assert no_emb.observation_space.shape == (4 * 3 + 4 + 5,)


def test_masked_pairs_are_zeros_with_mask_and_never_bought():
    env = make_env(obs_mode="dict")  # pair 2 has no data for the first 30 hours
    obs, _ = env.reset(options={"start": 5})
    assert obs["mask"][2] == 0.0
    assert not obs["probs"][2].any() and not obs["embeddings"][2].any()
    _, _, _, _, info = env.step(np.array([-1, -1, -1, 1, -1], np.float32))  # all-in on the masked pair
    assert info["weights"][3] == 0.0
    assert info["weights"].sum() == pytest.approx(1.0)


def test_reward_arithmetic_matches_prices_fees_and_drift():
    panel = make_panel()
    env = make_env(panel=panel)
    k = 50
    env.reset(options={"start": k})
    c = panel.close
    # all cash -> 100% pair 0: turnover 1, fee 10 bps, then pair 0 moves close[k+1]/close[k]
    _, r1, _, _, i1 = env.step_weights(np.array([0, 1, 0, 0, 0.0]))
    g = c[k + 1, 0] / c[k, 0]
    assert i1["turnover"] == pytest.approx(1.0) and i1["fees"] == pytest.approx(FEE)
    assert r1 == pytest.approx(math.log(1 - FEE) + math.log(g))
    assert i1["portfolio_value"] == pytest.approx((1 - FEE) * g)
    # 50/50 cash and pair 3: sells all of pair 0 (1.0), buys 0.5 of pair 3 -> turnover 1.5
    _, r2, _, _, i2 = env.step_weights(np.array([0.5, 0, 0, 0, 0.5]))
    g3 = c[k + 2, 3] / c[k + 1, 3]
    assert i2["turnover"] == pytest.approx(1.5)
    assert i2["fees"] == pytest.approx(1.5 * FEE * i1["portfolio_value"])
    assert r2 == pytest.approx(math.log(1 - 1.5 * FEE) + math.log(0.5 + 0.5 * g3))
    # drift: cash share after the hour is 0.5 / (0.5 + 0.5 g3); holding it costs nothing
    assert i2["weights"][0] == pytest.approx(0.5 / (0.5 + 0.5 * g3))
    _, r3, _, _, i3 = env.step_weights(i2["weights"])
    assert i3["fees"] == 0.0
    assert r3 == pytest.approx(math.log(i2["weights"][0] + i2["weights"][4] * c[k + 3, 3] / c[k + 2, 3]))


def test_zero_action_is_uniform_over_cash_and_tradable_pairs():
    env = make_env(**NO_CONTROL)
    env.reset(options={"start": 5})  # pair 2 masked
    np.testing.assert_allclose(env.action_to_weights(np.zeros(5)), [0.25, 0.25, 0.25, 0.0, 0.25])


def test_funding_on_perp_positions_settles_inside_the_held_hour():
    panel = make_panel(market="perp")
    env = make_env(panel=panel, market="perp")
    # Deciding at the close of row k-1 holds over (times[k], times[k] + 1h]: row k's settlement window.
    k = int(np.flatnonzero(panel.funding_events[:, 0])[3])
    env.reset(options={"start": k - 1})
    _, r, _, _, info = env.step_weights(np.array([0, 1, 0, 0, 0.0]))
    f, g = panel.funding_events[k, 0], panel.close[k, 0] / panel.close[k - 1, 0]
    assert f != 0.0
    assert info["funding"] == pytest.approx((1 - FEE) * g * f)
    assert r == pytest.approx(math.log(1 - FEE) + math.log(g * (1 - f)))
    _, _, _, _, quiet = env.step_weights(info["weights"])  # next hour: no settlement
    assert quiet["funding"] == 0.0


def test_perp_env_from_a_store_pays_the_panels_funding_events(tmp_path):
    """Funding reaches the environment through the panel only: row t + 1's events for the hour held after t."""
    times = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC", name="open_time")
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(4)
    for sym in ("P0USDT", "P1USDT"):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, len(times))))
        store.write_klines(sym, pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                                              "volume": 1.0}, index=times), market="perp")
    settle = pd.DatetimeIndex(["2024-01-01 08:00", "2024-01-01 16:00:00.005", "2024-01-02 00:00"], tz="UTC")
    store.write_funding("P0USDT", pd.DataFrame({"funding_rate": [1e-4, -2e-4, 3e-4], "mark_price": np.nan},
                                               index=settle.rename("funding_time")))
    env = make_crypto_graph_env(store=tmp_path / "store", encoder=FakeEncoder(market="perp"), market="perp",
                                start="2024-01-01 02:00", use_cache=False, episode_hours=None)
    events = load_panel(store, market="perp").funding_events
    # Events fall in panel rows 7 (08:00 = 07:00 + 1h), 16 (just after 16:00) and 23. Environment hour i is
    # panel row i + 2 and pays, over the hour held after it, the events of row i + 3.
    np.testing.assert_array_equal(env._data.funding[:, 1:], events[3:3 + len(env.times) - 1])
    assert np.flatnonzero(env._data.funding[:, 1]).tolist() == [4, 13, 20]
    assert not env._data.funding[:, [0, 2]].any()  # cash, and the pair without funding
    env.reset(options={"start": "2024-01-01 06:00"})  # holds over (07:00, 08:00]: the 08:00 settlement
    _, _, _, _, info = env.step_weights(np.array([0, 1, 0.0]))
    assert info["funding"] == pytest.approx(info["portfolio_value"] / (1 - 1e-4) * 1e-4)


def test_perp_panel_without_funding_events_is_refused():
    """No inference from the forward-filled latest rate: a perp panel must carry its funding events."""
    bare = dataclasses.replace(make_panel(market="perp"), funding_events=None)
    with pytest.raises(CryptoGraphError, match="funding_events"):
        make_env(panel=bare, market="perp")


def test_spot_pays_no_funding():
    env = make_env()
    env.reset(seed=0)
    for _ in range(20):
        assert env.step(env.action_space.sample())[4]["funding"] == 0.0


@pytest.mark.parametrize("obs_source", ["gnn", "raw"])
def test_deterministic_under_seed(obs_source):
    def rollout(seed):
        env = make_env(obs_source=obs_source)
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        out = [obs]
        for _ in range(30):
            obs, r, *_ = env.step(env.action_space.sample())
            out += [obs, np.array([r])]
        return info["time"], np.concatenate(out)

    t1, a = rollout(7)
    t2, b = rollout(7)
    t3, _ = rollout(8)
    assert t1 == t2 and t1 != t3
    np.testing.assert_array_equal(a, b)


def test_random_starts_leave_full_episodes_and_truncate():
    env = make_env(episode_hours=24)
    for seed in range(20):
        env.reset(seed=seed)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
            done = terminated or truncated
        assert steps == 24


def test_terminates_at_end_of_data():
    env = make_env(episode_hours=None)
    env.reset(options={"start": len(env.times) - 4})
    flags = [env.step(np.zeros(5))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (True, False)]
    with pytest.raises(Exception, match="reset"):
        env.step(np.zeros(5))


def test_no_look_ahead_perturbing_the_future_changes_nothing_before():
    panel = make_panel()
    cut = 120
    future = dataclasses.replace(panel, close=panel.close.copy())
    future.close[cut + 1:] *= np.exp(np.random.default_rng(1).normal(0, 0.05, future.close[cut + 1:].shape))

    def rollout(p):
        env = make_env(panel=p, episode_hours=None)
        obs, _ = env.reset(options={"start": 0})
        obs_seq, rewards = [obs], []
        rng = np.random.default_rng(0)
        for _ in range(cut + 20):
            obs, r, *_ = env.step(rng.uniform(-1, 1, 5))
            obs_seq.append(obs)
            rewards.append(r)
        return np.array(obs_seq), np.array(rewards)

    obs_a, rew_a = rollout(panel)
    obs_b, rew_b = rollout(future)
    np.testing.assert_array_equal(obs_a[: cut + 1], obs_b[: cut + 1])  # observations at hours <= cut
    np.testing.assert_array_equal(rew_a[:cut], rew_b[:cut])  # rewards of hours ending at <= cut
    assert not np.array_equal(rew_a[cut], rew_b[cut])  # the candle after cut is the reward, not the obs
    assert not np.array_equal(obs_a[cut + 2:], obs_b[cut + 2:])  # and the perturbation is seen later


def test_refuses_range_overlapping_the_checkpoint_fit_range():
    panel = make_panel(start="2024-01-01")
    inside = FakeEncoder(fit_range=(pd.Timestamp("2023-06-01", tz="UTC"), pd.Timestamp("2024-01-05", tz="UTC")))
    env = make_env(panel=panel, encoder=inside)  # default start: the first midnight after the fit range
    assert env.times[0] == pd.Timestamp("2024-01-06", tz="UTC")
    with pytest.raises(RangeOverlapError, match="allow_overlap"):
        make_env(panel=panel, encoder=inside, start="2024-01-03")
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch the standard type
        make_env(panel=panel, encoder=inside, start="2024-01-01")
    with pytest.warns(UserWarning, match="overlaps"):
        env = make_env(panel=panel, encoder=inside, start="2024-01-03", allow_overlap=True)
    assert env.times[0] == pd.Timestamp("2024-01-03", tz="UTC")


def test_default_start_is_after_the_checkpoint_test_split_too():
    enc = FakeEncoder(fit_range=(pd.Timestamp("2023-06-01", tz="UTC"), pd.Timestamp("2024-01-02 05:00", tz="UTC")))
    enc.checkpoint = FakeCheckpoint(ranges={"train": ["2023-06-01T00:00:00+00:00", "2023-12-01T00:00:00+00:00"],
                                             "val": ["2023-12-02T00:00:00+00:00", "2024-01-02T05:00:00+00:00"],
                                             "test": ["2024-01-03T00:00:00+00:00", "2024-01-04T22:00:00+00:00"]})
    env = make_env(encoder=enc)
    assert env.times[0] == pd.Timestamp("2024-01-05", tz="UTC")
    make_env(encoder=enc, start="2024-01-03")  # the test split is not fitted on: allowed when asked for


@pytest.mark.parametrize("action, match", [
    (np.array([0, np.nan, 0, 0, 0]), "NaN/inf"),
    (np.array([0, 0, np.inf, 0, 0]), "NaN/inf"),
    (np.zeros(4), "shape"),
    (np.zeros((1, 5)), "shape"),
])
def test_bad_actions_are_clear_errors(action, match):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_scores_outside_the_box_are_used_as_given_without_overflow():
    env = make_env(**NO_CONTROL)
    env.reset(options={"start": 50})
    w = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    np.testing.assert_allclose(env.action_to_weights(np.log(w) / 5.0), w)  # exact weights via log-scores
    huge = env.action_to_weights(np.array([0, 1e6, -1e300, 0, 0]))
    np.testing.assert_allclose(huge, [0, 1, 0, 0, 0])


def test_fast_step_matches_the_reference_portfolio_arithmetic():
    from envs import portfolio

    panel = make_panel(market="perp")
    env = make_env(panel=panel, market="perp", episode_hours=None, rebalance_every=2)
    env.reset(options={"start": 20})  # crosses pair 2's listing, pair 1's hole (a stop) and settlements
    rng = np.random.default_rng(5)
    value, held = 1.0, np.eye(5)[0]
    for step in range(250):
        t = env.hour_index(env.current_time)
        action = rng.uniform(-1.5, 1.5, 5) * (0.02 if step % 7 == 0 else 1.0)  # some inside the no-trade band
        target = portfolio.scores_to_weights(action, mask=env.current_mask)
        target = portfolio.controlled_target(target, held, portfolio.REBALANCE_THRESHOLD, portfolio.REBALANCE_RATE,
                                             trade_now=step % 2 == 0)  # the default band and rate
        ref = portfolio.step(value, held, target, env._data.growth[t], FEE, env._data.funding[t],
                             stops=env._data.stops[t], haircut=0.05)
        _, reward, terminated, _, info = env.step(action)
        assert reward == pytest.approx(ref.reward, abs=1e-12)
        assert info["portfolio_value"] == pytest.approx(ref.value, rel=1e-12)
        assert info["funding"] == pytest.approx(ref.funding, rel=1e-9, abs=1e-15)
        np.testing.assert_allclose(info["weights"], ref.weights, atol=1e-12)
        value, held = ref.value, ref.weights
        if terminated:
            break


def test_encoder_outputs_are_cached_on_disk_keyed_by_data_and_model(tmp_path):
    panel, enc = make_panel(), FakeEncoder()
    a = make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    b = make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    assert len(enc.calls) == 1 and len(list(tmp_path.glob("encoded-*"))) == 1
    a.reset(seed=1)
    b.reset(seed=1)
    np.testing.assert_array_equal(a.step(np.zeros(5))[0], b.step(np.zeros(5))[0])
    other = dataclasses.replace(panel, close=panel.close * 1.01)
    make_env(panel=other, encoder=enc, cache_dir=tmp_path)  # different data
    make_env(panel=panel, encoder=dataclasses.replace(enc, model_id="another-model"), cache_dir=tmp_path)
    make_env(panel=panel, encoder=enc, cache_dir=tmp_path, start="2024-01-02")  # different range
    assert len(enc.calls) == 4
    for entry in tmp_path.glob("encoded-*"):
        for f in entry.iterdir():
            f.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="checksum.json is unreadable.*rebuilding it"):
        make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    assert len(enc.calls) == 5


def test_half_written_cache_entry_is_recreated(tmp_path):
    panel, enc = make_panel(), FakeEncoder()
    make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("encoded-*")
    (entry / "embeddings.npy").write_bytes((entry / "embeddings.npy").read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="embeddings.npy changed.*rebuilding it"):
        env = make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    left = [p.name for p in tmp_path.iterdir() if p.name != f".{entry.name}.lock"]  # the lock file stays
    assert len(enc.calls) == 2 and left == [entry.name]  # no temporaries left
    np.testing.assert_array_equal(env._data.embeddings, make_env(panel=panel, encoder=enc)._data.embeddings)


def test_environments_built_on_one_cache_entry_share_its_memory_map(tmp_path):
    panel, enc = make_panel(), FakeEncoder()
    first = make_env(panel=panel, encoder=enc, cache_dir=tmp_path)  # encodes, writes, maps the entry
    second = make_env(panel=panel, encoder=enc, cache_dir=tmp_path, obs_mode="dict")  # maps it, no encoding
    assert len(enc.calls) == 1
    (entry,) = tmp_path.glob("encoded-*")
    for name in ("probs", "embeddings"):
        a, b = getattr(first._data, name), getattr(second._data, name)
        assert isinstance(a, np.memmap) and isinstance(b, np.memmap) and not a.flags.writeable
        assert Path(a.filename) == Path(b.filename) == entry / f"{name}.npy"
    assert isinstance(second.subrange(start=10)._data.embeddings, np.memmap)  # subrange keeps the map
    fresh = make_env(panel=panel, encoder=enc)  # uncached: the same observations
    for env in (first, fresh):
        env.reset(options={"start": 40})
    np.testing.assert_array_equal(first.step(np.zeros(5))[0], fresh.step(np.zeros(5))[0])


def test_fake_and_real_encoders_satisfy_the_protocol():
    assert isinstance(FakeEncoder(), ObservationEncoder)
    assert not isinstance(object(), ObservationEncoder)
    with pytest.raises(TypeError, match="ObservationEncoder"):
        make_env(encoder=object())


def test_unknown_model_identity_is_never_cached(tmp_path):
    enc = FakeEncoder(model_id=None)
    make_env(encoder=enc, cache_dir=tmp_path)
    make_env(encoder=enc, cache_dir=tmp_path)
    assert len(enc.calls) == 2 and not list(tmp_path.iterdir())


def test_subrange_shares_arrays_and_splits_hours():
    env = make_env(episode_hours=None)
    mid = env.times[200]
    train, test = env.subrange(end=mid - pd.Timedelta(hours=1), episode_hours=24), env.subrange(start=mid)
    assert train.times[-1] < test.times[0] == mid and test.times[-1] == env.times[-1]
    assert np.shares_memory(train._data.probs, env._data.probs)
    env.reset(options={"start": mid})
    test.reset(options={"start": 0})
    np.testing.assert_array_equal(env.step(np.zeros(5))[0], test.step(np.zeros(5))[0])


def test_gym_make_both_registration_styles():
    kwargs = {"panel": make_panel(), "encoder": FakeEncoder(), "use_cache": False}
    for env_id in ("CryptoGraph-v0", "envs:CryptoGraph-v0"):
        env = gym.make(env_id, **kwargs)
        assert isinstance(env.unwrapped, CryptoGraphEnv)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env.close()


@pytest.mark.parametrize("mode", ["ansi", "rgb_array"])
def test_render(mode):
    env = make_env(render_mode=mode)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    out = env.render()
    if mode == "ansi":
        assert "value" in out and "cash" in out
    else:
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


def test_subproc_vec_env_with_two_workers():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = SubprocVecEnv([lambda: make_env(), lambda: make_env()], start_method="fork")
    try:
        vec.seed(0)
        obs = vec.reset()
        for _ in range(5):
            obs, rewards, dones, infos = vec.step(np.zeros((2, 5), np.float32))
        assert obs.shape == (2, make_env().observation_space.shape[0]) and np.isfinite(rewards).all()
        assert "portfolio_value" in infos[0]
    finally:
        vec.close()


@pytest.fixture
def one_torch_thread():
    """Tiny MLPs: intra-op threads only add synchronisation (and crawl on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("obs_mode, policy", [("flat", "MlpPolicy"), ("dict", "MultiInputPolicy")])
def test_ppo_runs_end_to_end(obs_mode, policy, one_torch_thread):
    from stable_baselines3 import PPO

    env = make_env(obs_mode=obs_mode, episode_hours=48)
    model = PPO(policy, env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32]})
    model.learn(total_timesteps=256)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))
    env.step(action)


def test_real_checkpoint_on_bundled_sample(tmp_path):
    """gym.make("CryptoGraph-v0") on the bundled sample and packaged checkpoint (one week, to stay fast)."""
    pytest.importorskip("gnn_market.panel")
    encoder_module = pytest.importorskip("gnn_market.encoder")
    if not encoder_module.PACKAGED_CHECKPOINT.is_file():
        pytest.skip("packaged checkpoint not built yet")
    encoder = encoder_module.GraphEncoder.load()
    assert isinstance(encoder, ObservationEncoder)
    assert encoder.fit_range[1] < pd.Timestamp("2023-09-01", tz="UTC")
    assert default_start(encoder) == pd.Timestamp("2023-09-01", tz="UTC")  # after train, val and test
    env = gym.make("CryptoGraph-v0", start="2023-09-01", end="2023-09-07 23:00", cache_dir=tmp_path)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert len(env.unwrapped.symbols) == 30 and env.unwrapped.embedding_dim == encoder.embedding_dim
    for _ in range(24):
        obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        assert math.isfinite(r) and env.observation_space.contains(obs)
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped.subrange(obs_mode="dict"))
    with pytest.raises(RangeOverlapError):
        make_crypto_graph_env(encoder=encoder, start="2023-06-01", end="2023-06-07")


def test_top_pairs_are_ranked_on_history_before_start(tmp_path):
    pytest.importorskip("gnn_market.panel")
    from gnn_market.store import Store

    times = pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC", name="open_time")
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(0)
    for sym, early, late in [("AAAUSDT", 100.0, 100.0), ("BBBUSDT", 50.0, 50.0), ("CCCUSDT", 1.0, 1e6)]:
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, len(times))))
        volume = np.where(times < pd.Timestamp("2024-01-08", tz="UTC"), early, late)
        store.write_klines(sym, pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                                              "volume": volume}, index=times))
    env = make_crypto_graph_env(store=tmp_path / "store", encoder=FakeEncoder(), top=2, start="2024-01-08",
                                use_cache=False)
    assert env.symbols == ["AAAUSDT", "BBBUSDT"]  # CCC only becomes liquid inside the range


# ----------------------------------------------------------------------------- the cache under damage (issue 21)
def _tamper(entry: Path, name: str, change) -> None:
    """Rewrite ``entry/name.npy`` with ``change(values)`` applied: same shape and dtype, valid .npy file."""
    values = np.load(entry / f"{name}.npy")
    change(values)
    np.save(entry / f"{name}.npy", values, allow_pickle=False)


def _first_tradable(entry: Path) -> tuple[int, int]:
    mask = np.load(entry / "mask.npy")
    h, i = np.argwhere(mask)[0]
    return int(h), int(i)


@pytest.mark.parametrize("damage", ["same-shape values", "NaN on a tradable pair", "extra file", "no checksum"])
def test_altered_cache_entry_is_rebuilt_with_a_warning_never_served(tmp_path, damage):
    panel, enc = make_panel(), FakeEncoder()
    make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("encoded-*")
    h, i = _first_tradable(entry)
    if damage == "same-shape values":
        _tamper(entry, "probs", lambda p: p.__setitem__((h, i), p[h, i][::-1]))  # DOWN and UP swapped
    elif damage == "NaN on a tradable pair":
        _tamper(entry, "embeddings", lambda e: e.__setitem__((h + 3, i, 0), np.nan))
    elif damage == "extra file":  # a file the reader would use (filled.npy) that was never written with the entry
        (entry / "filled.npy").unlink(missing_ok=True)
        np.save(entry / "filled.npy", np.ones(np.load(entry / "mask.npy").shape, bool))
    else:
        for f in entry.glob("checksum*"):
            f.unlink()
    with pytest.warns(UserWarning, match=r"rebuilding it"):
        env = make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    assert len(enc.calls) == 2  # encoded again, not served
    fresh = make_env(panel=panel, encoder=FakeEncoder())  # uncached
    for name in ("probs", "embeddings", "mask"):
        np.testing.assert_array_equal(getattr(env._data, name), getattr(fresh._data, name))
    for e in (env, fresh):
        e.reset(options={"start": 40})
    np.testing.assert_array_equal(env.step(np.zeros(5))[0], fresh.step(np.zeros(5))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry passes its check: served silently, not re-encoded
        make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    assert len(enc.calls) == 2


def test_cache_dir_that_is_a_file_is_one_clear_error(tmp_path):
    from gnn_market.errors import CacheError

    afile = tmp_path / "cache"
    afile.write_text("not a folder")
    for where in (afile, afile / "sub"):
        with pytest.raises(CacheError, match=r"is a file, not a folder.*use_cache=False") as info:
            make_env(cache_dir=where)
        assert "\n" not in str(info.value)
    assert afile.read_text() == "not a folder"


def test_cache_lock_that_is_a_directory_is_one_clear_error(tmp_path):
    from envs.cache import entry_path, lock_path
    from gnn_market.errors import CacheError

    panel, enc = make_panel(), FakeEncoder()
    make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("encoded-*")
    lock = lock_path(entry)
    lock.unlink()
    lock.mkdir()
    make_env(panel=panel, encoder=enc, cache_dir=tmp_path)  # a sound entry is served without the lock
    import shutil

    shutil.rmtree(entry)  # now the entry must be created, under the lock
    with pytest.raises(CacheError, match=r"is a directory.*remove it") as info:
        make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    assert "\n" not in str(info.value) and str(lock) in str(info.value)
    assert entry_path(tmp_path, panel, enc.fingerprint(), *_range(enc, panel)) == entry


def _range(enc, panel):
    env = make_env(panel=panel, encoder=enc)
    return env.times[0], env.times[-1]


def _erofs(*_args, **_kwargs):
    import errno

    raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize("fails", ["lock", "write"])
def test_read_only_cache_falls_back_to_no_caching_with_a_warning(tmp_path, monkeypatch, fails):
    import envs.cache

    panel, enc = make_panel(), FakeEncoder()
    if fails == "lock":  # the lock file cannot be created (a read-only folder or file system)
        monkeypatch.setattr(envs.cache, "FileLock", _erofs)
    else:  # the lock can be taken, the entry cannot be written
        monkeypatch.setattr("gnn_market.atomic.tempfile.mkdtemp", _erofs)
    with pytest.warns(UserWarning, match=r"cannot write to the cache.*without caching"):
        env = make_env(panel=panel, encoder=enc, cache_dir=tmp_path)
    assert len(enc.calls) == 1 and not list(tmp_path.glob("encoded-*"))
    fresh = make_env(panel=panel, encoder=FakeEncoder())
    np.testing.assert_array_equal(env._data.embeddings, fresh._data.embeddings)


def test_read_only_cache_folder_serves_its_entries_and_encodes_the_rest(tmp_path):
    panel, enc = make_panel(), FakeEncoder()
    make_env(panel=panel, encoder=enc, cache_dir=tmp_path)  # written while writable
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores permissions
            pytest.skip("this user can write to read-only folders")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            make_env(panel=panel, encoder=enc, cache_dir=tmp_path)  # served: no lock, no warning
        assert len(enc.calls) == 1
        with pytest.warns(UserWarning, match=r"cannot write to the cache.*without caching"):
            make_env(panel=panel, encoder=enc, cache_dir=tmp_path, start="2024-01-03")  # another range
        assert len(enc.calls) == 2
    finally:
        tmp_path.chmod(0o755)
