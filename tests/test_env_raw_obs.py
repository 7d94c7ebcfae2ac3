"""CryptoGraph-v0 with ``obs_source="raw"``: the encoder's normalised input features at t instead of its outputs."""
from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.factory import make_crypto_graph_env
from envs.protocols import FeatureEncoder
from gnn_market.errors import CryptoGraphError

from env_fakes import FakeEncoder, make_env, make_panel

F = 3  # the fake encoder's node features: ret[t], ret[t-1], ret[t-2] x 100


@pytest.fixture(autouse=True)
def _quiet_checker_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value.*")
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        yield


def test_spaces_layout_and_masks_flat_and_dict():
    panel = make_panel()
    n = len(panel.symbols)
    flat = make_env(panel=panel, obs_source="raw")
    assert flat.observation_space.shape == (n * F + n + n + 1,) and flat.feature_dim == F
    assert flat.embedding_dim is None
    obs, _ = flat.reset(options={"start": 5})  # pair 2 lists at hour 30: masked
    feats = FakeEncoder().encode_range(panel).embeddings[5, :, :F]  # the fake's features at hour 5, by hand
    np.testing.assert_array_equal(obs[: n * F].reshape(n, F), feats)
    assert not obs[2 * F:3 * F].any()
    np.testing.assert_array_equal(obs[n * F:n * F + n], [1, 1, 0, 1])
    np.testing.assert_array_equal(obs[-(n + 1):], [1, 0, 0, 0, 0])

    d = make_env(panel=panel, obs_source="raw", obs_mode="dict")
    obs, _ = d.reset(options={"start": 5})
    assert list(obs) == ["features", "mask", "weights"]
    assert obs["features"].shape == (n, F) and obs["features"].dtype == np.float32
    np.testing.assert_array_equal(obs["features"], feats)
    _, _, _, _, info = d.step(np.array([-1, -1, -1, 1, -1], np.float32))  # all-in on the masked pair
    assert info["weights"][3] == 0.0


def test_same_range_pairs_masks_prices_and_fees_as_the_gnn_environment():
    panel = make_panel(market="perp")
    gnn, raw = make_env(panel=panel, market="perp"), make_env(panel=panel, market="perp", obs_source="raw")
    assert raw.symbols == gnn.symbols and raw.times.equals(gnn.times)
    for name in ("mask", "offsets", "growth", "funding", "stops"):
        np.testing.assert_array_equal(getattr(raw._data, name), getattr(gnn._data, name))
    for env in (gnn, raw):
        env.reset(options={"start": 40})
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-1, 1, 5)
        assert gnn.step(a)[1:4] == raw.step(a)[1:4]  # reward, terminated, truncated
    assert gnn.portfolio_value == raw.portfolio_value


@pytest.mark.parametrize("obs_mode", ["flat", "dict"])
def test_passes_gymnasium_and_sb3_env_checkers(obs_mode):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(make_env(obs_mode=obs_mode, obs_source="raw"))
    sb3_check_env(make_env(obs_mode=obs_mode, obs_source="raw"), warn=True)


# Determinism under a seed: tests/test_crypto_graph_env.py::test_deterministic_under_seed[raw].


def test_no_look_ahead_perturbing_the_future_changes_nothing_before():
    panel = make_panel()
    cut = 120
    future = dataclasses.replace(panel, close=panel.close.copy())
    future.close[cut + 1:] *= np.exp(np.random.default_rng(1).normal(0, 0.05, future.close[cut + 1:].shape))
    a, b = (make_env(panel=p, obs_source="raw", episode_hours=None) for p in (panel, future))
    np.testing.assert_array_equal(a._data.features[: cut + 1], b._data.features[: cut + 1])
    assert not np.array_equal(a._data.features[cut + 1:], b._data.features[cut + 1:])


def test_raw_needs_an_encoder_that_gives_its_features():
    class OutputsOnly(FakeEncoder):
        node_features = None  # type: ignore[assignment]

    assert not isinstance(OutputsOnly(), FeatureEncoder)
    with pytest.raises(TypeError, match="node_features"):
        make_env(encoder=OutputsOnly(), obs_source="raw")
    with pytest.raises(ValueError, match="obs_source must be one of"):
        make_env(obs_source="pixels")
    env = make_env(obs_source="raw")
    env.reset(seed=0)
    with pytest.raises(CryptoGraphError, match="no encoder probabilities"):
        _ = env.current_probs


# ------------------------------------------------------------------ the real encoder and its normaliser
@pytest.fixture(scope="module")
def real():
    encoder_module = pytest.importorskip("gnn_market.encoder")
    if not encoder_module.PACKAGED_CHECKPOINT.is_file():
        pytest.skip("packaged checkpoint not built yet")
    from gnn_market.panel import load_panel
    from gnn_market.sources import open_store

    encoder = encoder_module.GraphEncoder.load()
    panel = load_panel(open_store(None), market=encoder.market, end="2023-09-06 23:00")
    return encoder, panel.select(panel.symbols[:6])


START, END = pd.Timestamp("2023-09-01", tz="UTC"), pd.Timestamp("2023-09-06 23:00", tz="UTC")


def test_real_raw_observation_is_exactly_what_the_encoder_reads_at_t(real):
    from gnn_market.graph_builder import HourlyGraphDataset
    from gnn_market.windows import NodeWindows

    encoder, panel = real
    env = make_crypto_graph_env(panel=panel, encoder=encoder, start=START, end=END, obs_source="raw",
                                obs_mode="dict", use_cache=False)
    assert env.feature_dim == len(encoder.feature_names)
    market = encoder._prepare(panel)  # the encoder's own path: features -> checkpoint normaliser -> graphs
    hours = market.times.get_indexer(env.times)
    dataset = HourlyGraphDataset(market.features, None, market.log_ret, hours, encoder.graph_config,
                                 encoder.normalizer, cache_mb=0)
    windows = None
    if encoder.model.config.temporal:
        windows = NodeWindows(dataset.x, dataset.valid, encoder.model.config.lookback, "cpu")
    for i in (0, 37, len(hours) - 2):
        obs, _ = env.reset(options={"start": i})
        snapshot = dataset[i]
        assert obs["mask"].sum() >= 5 and np.abs(obs["features"]).max() > 0.5  # real, normalised numbers
        np.testing.assert_array_equal(obs["features"], snapshot.x.numpy())  # the model's node input at t
        np.testing.assert_array_equal(obs["mask"].astype(bool), snapshot.node_mask.numpy())
        if windows is not None:  # and the last row of each pair's lookback window
            import torch

            last = windows.gather(torch.tensor([hours[i]]))[:, -1, :-1].numpy()  # [N, L, F + 1]: step t, no flag
            np.testing.assert_array_equal(obs["features"], last)


def test_real_raw_no_look_ahead_and_env_checker(real):
    from gymnasium.utils.env_checker import check_env

    encoder, panel = real
    cut = pd.Timestamp("2023-09-03 12:00", tz="UTC")
    later = np.asarray(panel.times > cut)
    future = dataclasses.replace(panel, **{k: getattr(panel, k).copy() for k in ("open", "high", "low", "close",
                                                                                 "volume", "quote_volume")})
    shock = np.exp(np.random.default_rng(0).normal(0, 0.05, (later.sum(), len(panel.symbols))))
    for k in ("open", "high", "low", "close"):
        getattr(future, k)[later] *= shock
    future.volume[later] *= 3.0
    future.quote_volume[later] *= 3.0

    def env_on(p):
        return make_crypto_graph_env(panel=p, encoder=encoder, start=START, end=END, obs_source="raw",
                                     use_cache=False, episode_hours=None)

    a, b = env_on(panel), env_on(future)
    k = a.hour_index(cut)
    np.testing.assert_array_equal(a._data.features[: k + 1], b._data.features[: k + 1])
    assert not np.array_equal(a._data.features[k + 1:], b._data.features[k + 1:])
    check_env(a)
    env = gym.make("CryptoGraph-v0", panel=panel, encoder=encoder, start=START, end=END, obs_source="raw",
                   use_cache=False)
    assert env.unwrapped.metadata["options"]["obs_source"] == "raw"
