"""CryptoGraph-v0's default range on a user's own store, and the one clear message when no hours are left."""
from __future__ import annotations

import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import envs  # noqa: F401  (registers CryptoGraph-v0)
from envs.factory import make_crypto_graph_env
from envs.ranges import RANK_HOURS, default_start
from gnn_market.encoder import GraphEncoder
from gnn_market.errors import CheckpointError, DataError, EmptyRangeError, RangeOverlapError
from gnn_market.panel import load_panel
from gnn_market.store import Store
from gnn_market.timeutil import parse_utc

from env_fakes import FakeEncoder, make_env
from pit_fixtures import late_liquidity, ranked_before, scale_volume
from train_fixtures import TINY_MARKET, tiny_checkpoint, tiny_store

#: A perp store with funding, 600 hours from 2024-01-01; the model sees hours up to TRAIN_END only.
PERP_MARKET = replace(TINY_MARKET, with_funding=True, hours=600)
TRAIN_END = "2024-01-20T23:00"


@pytest.fixture(scope="module")
def perp(tmp_path_factory):
    """(store, checkpoint trained with --market perp --end TRAIN_END, checkpoint trained on the whole store)."""
    root = tmp_path_factory.mktemp("perp")
    store = tiny_store(root, PERP_MARKET)
    early = tiny_checkpoint(root / "early", store.root, market="perp", end=TRAIN_END)
    whole = tiny_checkpoint(root / "whole", store.root, market="perp")
    return store, early, whole


def test_perp_store_with_a_checkpoint_on_its_earlier_hours_needs_no_other_argument(perp, tmp_path):
    store, early, _ = perp
    env = gym.make("CryptoGraph-v0", store=str(store.root), checkpoint=str(early), market="perp", top=50,
                   cache_dir=tmp_path)
    inner = env.unwrapped
    encoder = GraphEncoder.load(early)
    last = load_panel(store, market="perp").times[-1]
    assert inner.times[0] == default_start(encoder) > pd.Timestamp(TRAIN_END, tz="UTC")
    assert inner.times[-1] == last  # to the end of the store
    assert inner.symbols == PERP_MARKET.symbols  # top=50 of 8 pairs: all, ranked before the range
    assert inner._data.funding is not None and inner._data.funding[:, 1:].any()  # perp: funding is paid
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert np.isfinite(reward) and env.observation_space.contains(obs)


def test_checkpoint_trained_on_the_whole_store_says_what_to_pass(perp, tmp_path):
    store, _, whole = perp
    with pytest.raises(EmptyRangeError) as err:
        gym.make("CryptoGraph-v0", store=str(store.root), checkpoint=str(whole), market="perp", cache_dir=tmp_path)
    msg = str(err.value)
    assert "empty range: start" not in msg
    assert f"store {store.root} (perp) covers 2024-01-01 00:00 .. 2024-01-25 23:00 UTC" in msg
    assert str(whole) in msg and "validation 2024-" in msg and "test 2024-" in msg  # what it was fitted on
    for hint in ("start=", "allow_overlap=True", "checkpoint=", f"--store {store.root} --market perp --end"):
        assert hint in msg
    assert "\n" not in msg and isinstance(err.value, ValueError)
    # the hint works: an explicit start inside the store, with the override, gives an environment
    with pytest.warns(UserWarning, match="overlaps"):
        env = make_crypto_graph_env(store=store.root, checkpoint=whole, market="perp", start="2024-01-17",
                                    allow_overlap=True, cache_dir=tmp_path)
    assert env.times[0] == pd.Timestamp("2024-01-17", tz="UTC")


def test_spot_checkpoint_on_a_perp_store_is_one_clear_error(perp):
    store, _, _ = perp
    with pytest.raises(CheckpointError) as err:  # the packaged checkpoint is a spot model (2023 sample)
        gym.make("CryptoGraph-v0", store=str(store.root), market="perp", top=50)
    msg = str(err.value)
    assert "is a spot model" in msg and "perp market" in msg and "train 2023-" in msg
    assert "checkpoint=" in msg and f"--store {store.root} --market perp --end" in msg and "market='spot'" in msg


def _write(root, times: pd.DatetimeIndex, market: str = "spot", names=("AAAUSDT", "BBBUSDT", "CCCUSDT"),
           volumes=(1.0, 2.0, 3.0)) -> Store:
    store = Store(root)
    rng = np.random.default_rng(0)
    for sym, vol in zip(names, volumes):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, len(times))))
        store.write_klines(sym, pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                                              "volume": vol}, index=times.rename("open_time")), market=market)
    return store


def test_store_from_an_earlier_period_names_both_ranges(tmp_path):
    """The packaged-checkpoint situation of issue 13, with a fake encoder fitted after the store's hours."""
    store = _write(tmp_path / "s", pd.date_range("2022-03-01", periods=200, freq="h", tz="UTC"))
    enc = FakeEncoder(fit_range=(pd.Timestamp("2023-01-05", tz="UTC"), pd.Timestamp("2023-07-22", tz="UTC")))
    with pytest.raises(EmptyRangeError, match=r"covers 2022-03-01 00:00 \.\. 2022-03-09 07:00 UTC.*"
                                              r"fitted on train \+ validation 2023-01-05 00:00 \.\. 2023-07-22"
                                              r".*at 2023-07-23 00:00 UTC, which leaves nothing"):
        make_crypto_graph_env(store=store.root, encoder=enc, top=2, use_cache=False)


def test_store_after_the_checkpoint_ranks_top_on_its_first_week(tmp_path):
    """No history before the store's first hour: the first RANK_HOURS rank the pairs, the range follows."""
    times = pd.date_range("2025-01-01", periods=400, freq="h", tz="UTC")
    store = _write(tmp_path / "s", times, volumes=(1.0, 3.0, 2.0))
    env = make_crypto_graph_env(store=store.root, encoder=FakeEncoder(), top=2, use_cache=False)
    assert env.symbols == ["BBBUSDT", "CCCUSDT"]
    assert env.times[0] == (times[0] + pd.Timedelta(hours=RANK_HOURS)).ceil("D") and env.times[-1] == times[-1]
    with pytest.raises(EmptyRangeError, match="ranks pairs by volume on the hours before start"):
        make_crypto_graph_env(store=store.root, encoder=FakeEncoder(), top=2, start="2025-01-01", use_cache=False)
    env = make_crypto_graph_env(store=store.root, encoder=FakeEncoder(), use_cache=False)  # no top: from hour 0
    assert env.times[0] == times[0]


def test_explicit_empty_ranges_and_missing_markets_are_clear(tmp_path):
    store = _write(tmp_path / "s", pd.date_range("2025-01-01", periods=100, freq="h", tz="UTC"), market="perp")
    enc = FakeEncoder(market="perp")
    with pytest.raises(EmptyRangeError, match=r"start=2025-03-01 00:00:00\+00:00 leaves fewer than 2 hours of "
                                              r"store .* \(perp\), which covers 2025-01-01 00:00 \.\. "
                                              r"2025-01-05 03:00 UTC"):
        make_crypto_graph_env(store=store.root, encoder=enc, start="2025-03-01", use_cache=False)
    with pytest.raises(EmptyRangeError, match="end=2024"):
        make_crypto_graph_env(store=store.root, encoder=enc, start="2025-01-02", end="2024-06-01",
                              use_cache=False)
    with pytest.raises(DataError, match=r"holds no spot candles \(it holds perp: pass market='perp'"):
        make_crypto_graph_env(store=store.root, encoder=FakeEncoder(), use_cache=False)


#: A fit range inside the fake panel's hours (2024-01-01 .. 2024-01-17 15:00).
FIT = (pd.Timestamp("2024-01-05 00:00", tz="UTC"), pd.Timestamp("2024-01-08 00:00", tz="UTC"))


@pytest.mark.parametrize("start, end, refused", [
    ("2024-01-08 00:00", "2024-01-12", True),    # start == fit end: one shared hour
    ("2024-01-08 01:00", "2024-01-12", False),   # one hour after it
    ("2024-01-02", "2024-01-05 00:00", True),    # end == fit start
    ("2024-01-02", "2024-01-04 23:00", False),   # one hour before it
])
def test_overlap_boundaries_one_shared_hour_is_refused_the_next_is_not(start, end, refused):
    enc = FakeEncoder(fit_range=FIT)
    if refused:
        with pytest.raises(RangeOverlapError, match="overlaps the checkpoint's fit range"):
            make_env(encoder=enc, start=start, end=end)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even the allow_overlap warning
        env = make_env(encoder=enc, start=start, end=end)
    assert env.times[0] == parse_utc(start) and env.times[-1] == parse_utc(end)


# ----------------------------------------------- symbols= with top=: ranked before the range (issue 22 item 5)
@pytest.fixture(scope="module")
def late(tmp_path_factory):
    """(tiny spot store, its copy where the pairs outside the pre-range top 3 turn liquid at `since`, top 3, since)."""
    root = tmp_path_factory.mktemp("pit_env")
    store = tiny_store(root)
    since = load_panel(store).times[240]
    copy, before = late_liquidity(store, root / "late", 3, since)
    return store, copy, before, since


def test_symbols_with_top_are_ranked_on_the_hours_before_the_range(late):
    store, copy, _, since = late
    names = sorted(store.symbols())[1:]  # the ranking is among these only
    expect = ranked_before(store, 3, since, symbols=names)
    for s in (store, copy):  # in the copy the other pairs are 10^4 x as liquid from `since` on
        env = make_crypto_graph_env(store=s.root, encoder=FakeEncoder(), symbols=names, top=3, start=since,
                                    use_cache=False)
        assert env.symbols == expect and env.times[0] == since


def test_top_ignores_volume_inside_and_after_the_range(late, tmp_path):
    store, copy, before, since = late
    quiet = scale_volume(store, tmp_path / "quiet", before, since, 1e-6)  # the chosen pairs dry up in the range
    for s in (copy, quiet):
        for names in (None, sorted(store.symbols())):
            env = make_crypto_graph_env(store=s.root, encoder=FakeEncoder(), symbols=names, top=3, start=since,
                                        end=since + pd.Timedelta(hours=100), use_cache=False)
            assert env.symbols == before


def test_symbols_with_top_and_no_history_before_the_range_is_refused(late):
    store, _, _, _ = late
    first = load_panel(store).times[0]
    with pytest.raises(EmptyRangeError, match="ranks pairs by volume on the hours before start") as err:
        make_crypto_graph_env(store=store.root, encoder=FakeEncoder(), symbols=sorted(store.symbols())[:4], top=2,
                              start=first, use_cache=False)
    assert "\n" not in str(err.value)
