"""Synthetic market: determinism, schema, invariants and the planted structure."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from gnn_market.errors import DataError
from gnn_market.store import Store
from gnn_market.store_layout import LAYOUT_VERSION
from gnn_market.store_schema import BOOK_COLUMNS, FUNDING_COLUMNS, KLINE_COLUMNS, is_valid_symbol
from gnn_market.synthetic import SyntheticConfig, SyntheticMarket, simulate_market, write_synthetic_store


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return simulate_market(SyntheticConfig())


def spot_matrix(market: SyntheticMarket, column: str = "close") -> np.ndarray:
    """[T, N] column of every symbol's spot klines."""
    return np.column_stack([market.klines["spot"][s][column].to_numpy() for s in market.symbols])


def log_returns(market: SyntheticMarket) -> np.ndarray:
    """[T-1, N] close-to-close log returns recomputed from the written candles."""
    close = spot_matrix(market)
    return np.diff(np.log(close), axis=0)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# ------------------------------------------------------------ determinism
def test_same_seed_same_market_and_different_seed_differs():
    small = SyntheticConfig(hours=200, n_symbols=12, n_sectors=3, leaders_per_sector=1)
    a, b = simulate_market(small), simulate_market(small)
    for sym in a.symbols:
        pd.testing.assert_frame_equal(a.klines["spot"][sym], b.klines["spot"][sym])
        pd.testing.assert_frame_equal(a.klines["perp"][sym], b.klines["perp"][sym])
        pd.testing.assert_frame_equal(a.funding[sym], b.funding[sym])
        pd.testing.assert_frame_equal(a.book["spot"][sym], b.book["spot"][sym])
    other = simulate_market(SyntheticConfig(hours=200, n_symbols=12, n_sectors=3, leaders_per_sector=1, seed=1))
    assert not np.allclose(other.log_returns, a.log_returns)


def test_fingerprint_is_stable_and_sensitive():
    fp = SyntheticConfig().fingerprint()
    assert fp == SyntheticConfig().fingerprint() and len(fp) == 12 and int(fp, 16) >= 0
    assert SyntheticConfig(seed=1).fingerprint() != fp
    assert SyntheticConfig(lead_beta=0.5).fingerprint() != fp
    with pytest.raises(dataclasses.FrozenInstanceError):
        SyntheticConfig().seed = 3  # frozen


def test_switching_off_funding_and_book_keeps_prices():
    small = SyntheticConfig(hours=100)
    bare = simulate_market(SyntheticConfig(hours=100, with_funding=False, with_book=False))
    full = simulate_market(small)
    assert bare.funding == {} and bare.book == {}
    np.testing.assert_array_equal(bare.log_returns, full.log_returns)


@pytest.mark.parametrize("kwargs", [
    {"n_symbols": 7},                       # 4 sectors x (2 leaders + 1 follower) needs 12
    {"hours": 1}, {"tail_df": 2.0}, {"regime_vols": ()}, {"start": "2024-01-01 00:30"},
    {"funding_interval_hours": 5},
])
def test_invalid_config_is_a_data_error(kwargs):
    with pytest.raises(DataError):
        SyntheticConfig(**kwargs)


# ----------------------------------------------------------------- schema
def test_schema_and_time_grid(market):
    cfg = market.config
    assert len(market.symbols) == cfg.n_symbols == 24
    assert all(is_valid_symbol(s) for s in market.symbols) and market.symbols[0] == "SYN00USDT"
    assert set(market.leaders) | set(market.followers) == set(market.symbols)
    assert len(market.leaders) == cfg.n_sectors * cfg.leaders_per_sector
    for name in ("spot", "perp"):
        for df in market.klines[name].values():
            assert list(df.columns) == list(KLINE_COLUMNS) and df.index.name == "open_time"
            assert str(df.index.tz) == "UTC" and len(df) == cfg.hours
            assert (np.diff(df.index.asi8) == pd.Timedelta(hours=1).value).all()
            assert not df.isna().any().any()  # every column filled, trades included
    first = market.times[0]
    assert first == pd.Timestamp("2024-01-01", tz="UTC")
    fund = market.funding["SYN03USDT"]
    assert list(fund.columns) == list(FUNDING_COLUMNS) and fund.index.name == "funding_time"
    assert (fund.index.hour % 8 == 0).all() and (np.diff(fund.index.asi8) == pd.Timedelta(hours=8).value).all()
    assert fund.index[0] == first + pd.Timedelta(hours=8)          # first settlement after a full interval
    assert fund.index[-1] <= market.times[-1] + pd.Timedelta(hours=1)  # never after the last close
    for name in ("spot", "perp"):
        book = market.book[name]["SYN03USDT"]
        assert list(book.columns) == list(BOOK_COLUMNS) and book.index.name == "snapshot_time"
        assert (book.index == market.times + pd.Timedelta(hours=1)).all()  # taken at the candle's close


def test_ohlc_volume_and_book_invariants(market):
    for name in ("spot", "perp"):
        for sym, df in market.klines[name].items():
            o, h, low, c = (df[k].to_numpy() for k in ("open", "high", "low", "close"))
            assert (low > 0).all() and (h >= np.maximum(o, c)).all() and (low <= np.minimum(o, c)).all()
            assert (o[1:] == c[:-1]).all()  # continuous trading: open = previous close
            v, qv = df["volume"].to_numpy(), df["quote_volume"].to_numpy()
            assert (v > 0).all() and (df["trades"].to_numpy(dtype="int64") >= 1).all()
            price = qv / v  # implied average price lies inside the candle
            assert (price >= low * (1 - 1e-12)).all() and (price <= h * (1 + 1e-12)).all()
            assert (df["taker_buy_volume"] < v).all() and (df["taker_buy_quote_volume"] < qv).all()
            book = market.book[name][sym]
            assert (book["best_ask"] > book["best_bid"]).all() and (book["best_bid"] > 0).all()
            np.testing.assert_allclose(book["spread"], book["best_ask"] - book["best_bid"])
            assert (book["bid_qty"] >= book["best_bid_qty"]).all() and (book["levels"] == 20).all()
            np.testing.assert_allclose((book["best_bid"] + book["best_ask"]) / 2, c)


# ------------------------------------------------------- planted structure
def test_sector_mates_correlate_more_than_other_sectors(market):
    corr_mat = np.corrcoef(log_returns(market).T)
    sec = np.array([market.sectors[s] for s in market.symbols])
    same = sec[:, None] == sec[None, :]
    off_diag = ~np.eye(len(sec), dtype=bool)
    within, across = corr_mat[same & off_diag], corr_mat[~same]
    assert within.mean() > across.mean() + 0.3
    assert abs(across.mean()) < 0.15  # only the weak market factor links sectors
    # Every leader-follower pair of a sector is clearly positively correlated,
    # so correlation edges connect followers to their leaders.
    idx = {s: i for i, s in enumerate(market.symbols)}
    lf = [corr_mat[idx[f], idx[lead]] for f in market.followers for lead in market.leaders_of(f)]
    assert min(lf) > 0.2


def test_lead_lag_is_planted_and_own_past_is_uninformative(market):
    r = log_returns(market)
    idx = {s: i for i, s in enumerate(market.symbols)}
    expected = market.expected_lead_corr()
    assert 0.5 < expected < 0.75
    lead_lag = [corr(r[:-1, idx[lead]], r[1:, idx[f]]) for f in market.followers for lead in market.leaders_of(f)]
    assert abs(np.mean(lead_lag) - expected) < 0.05 and min(lead_lag) > expected - 0.15
    # ...and the relation runs one way: followers don't lead their leaders.
    reverse = [corr(r[:-1, idx[f]], r[1:, idx[lead]]) for f in market.followers for lead in market.leaders_of(f)]
    assert max(np.abs(reverse)) < 0.1
    own = [corr(r[:-1, i], r[1:, i]) for i in range(r.shape[1])]
    assert max(np.abs(own)) < 0.1
    # The other sectors' leaders carry nothing.
    foreign = [corr(r[:-1, idx[lead]], r[1:, idx[f]]) for f in market.followers for lead in market.leaders
               if market.sectors[lead] != market.sectors[f]]
    assert max(np.abs(foreign)) < 0.1


def _follower_dataset(market: SyntheticMarket, with_leaders: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled follower rows: features at t, next-hour class, and a time-ordered train flag."""
    close = spot_matrix(market)
    r = np.diff(np.log(close), axis=0)                       # r[k] = return of candle k+1
    simple_next = close[2:] / close[1:-1] - 1                # return of candle k+2 (the label of row k)
    idx = {s: i for i, s in enumerate(market.symbols)}
    rows = np.arange(24, len(r) - 1)
    x_parts, y_parts, train_parts = [], [], []
    for f in market.followers:
        i = idx[f]
        own = r[:, i]
        vol24 = pd.Series(own).rolling(24).std().to_numpy()
        cols = [own[rows], own[rows - 1], own[rows - 2], np.abs(own[rows]), vol24[rows]]
        if with_leaders:
            lead_mean = r[:, [idx[lead] for lead in market.leaders_of(f)]].mean(axis=1)
            cols += [lead_mean[rows], np.abs(lead_mean[rows])]
        nxt = simple_next[rows]  # simple_next[k] pairs with r[k]
        nxt = nxt[:, i]
        x_parts.append(np.column_stack(cols))
        y_parts.append(np.where(nxt > 0.01, 2, np.where(nxt < -0.01, 0, 1)))
        train_parts.append(np.arange(len(rows)) < int(0.7 * len(rows)))
    return np.vstack(x_parts), np.concatenate(y_parts), np.concatenate(train_parts)


def test_oracle_leaders_returns_predict_followers_next_class(market):
    scores = {}
    for with_leaders in (False, True):
        x, y, train = _follower_dataset(market, with_leaders)
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        clf = LogisticRegression(max_iter=1000).fit((x[train] - mu) / sd, y[train])
        scores[with_leaders] = f1_score(y[~train], clf.predict((x[~train] - mu) / sd), average="macro")
    balance = np.bincount(y, minlength=3) / len(y)
    assert 0.2 < balance[0] < 0.35 and 0.2 < balance[2] < 0.35  # UP/DOWN are common enough
    assert scores[False] < 0.35          # own past: little better than always SIDEWAYS
    assert scores[True] > scores[False] + 0.15, scores


def test_regimes_fat_tails_funding_and_book_follow_the_model(market):
    assert len(np.unique(market.regimes)) == len(market.config.regime_vols)
    r = market.log_returns
    vol = market.regime_vol
    calm, wild = vol == vol.min(), vol == vol.max()
    assert r[wild].std() > 1.8 * r[calm].std()
    z = r / r.std(axis=0) / vol[:, None] * np.sqrt((vol ** 2).mean())
    kurtosis = float(((z - z.mean()) ** 4).mean() / z.var() ** 2)
    assert kurtosis > 4.0  # Gaussian would be 3
    # Funding follows recent returns (positive after rallies).
    sym = "SYN10USDT"
    close = market.klines["perp"][sym]["close"]
    trailing = np.log(close / close.shift(8)).reindex(market.funding[sym].index - pd.Timedelta(hours=1))
    rate = market.funding[sym]["funding_rate"].to_numpy()
    ok = ~np.isnan(trailing.to_numpy())
    assert corr(rate[ok], trailing.to_numpy()[ok]) > 0.3
    assert np.abs(rate).max() <= 3e-3
    # Spreads widen in volatile hours.
    book = market.book["spot"][sym]
    rel_spread = (book["spread"] / ((book["best_bid"] + book["best_ask"]) / 2)).to_numpy()
    assert corr(rel_spread, vol) > 0.3


# ---------------------------------------------------------------- store
def test_write_synthetic_store_round_trip_and_idempotence(tmp_path):
    cfg = SyntheticConfig(hours=48, n_symbols=6, n_sectors=3, leaders_per_sector=1, seed=5)
    store = write_synthetic_store(tmp_path / "syn", cfg)
    assert isinstance(store, Store) and (tmp_path / "syn" / "STORE.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "syn"]  # temporary folder renamed away
    market = simulate_market(cfg)
    assert store.markets() == ["spot", "perp"]
    assert store.symbols("spot") == store.symbols("perp") == market.symbols
    assert store.funding_symbols() == market.symbols and store.book_symbols("perp") == market.symbols
    for sym in market.symbols[:3]:
        pd.testing.assert_frame_equal(store.klines(sym, "perp"), market.klines["perp"][sym], check_freq=False)
        pd.testing.assert_frame_equal(store.funding(sym), market.funding[sym], check_freq=False)
        pd.testing.assert_frame_equal(store.book(sym, "spot"), market.book["spot"][sym], check_freq=False)
    assert store.gaps("SYN00USDT").empty
    before = store.klines("SYN01USDT")
    write_synthetic_store(tmp_path / "syn", cfg)  # existing store: upserts, nothing duplicated
    pd.testing.assert_frame_equal(store.klines("SYN01USDT"), before)


def test_open_store_synthetic_uses_cache(tmp_path, monkeypatch):
    from gnn_market.sources import open_store

    monkeypatch.setenv("CRYPTOGRAPH_CACHE", str(tmp_path))
    store = open_store(data="synthetic")
    assert store.root == tmp_path / f"synthetic-{SyntheticConfig().fingerprint()}-f{LAYOUT_VERSION}"
    assert len(store.symbols("spot")) == 24 and len(store.klines("SYN00USDT")) == 24 * 120
    again = open_store(data="synthetic")  # second call reuses the folder
    assert again.root == store.root


def test_open_store_synthetic_is_seeded_and_cached_per_seed(tmp_path, monkeypatch):
    """``--data synthetic --seed S`` draws market S (same config otherwise), cached in its own folder."""
    from gnn_market.sources import open_store

    monkeypatch.setenv("CRYPTOGRAPH_CACHE", str(tmp_path))
    zero, three = open_store(data="synthetic", seed=0), open_store(data="synthetic", seed=3)
    assert zero.root == tmp_path / f"synthetic-{SyntheticConfig(seed=0).fingerprint()}-f{LAYOUT_VERSION}"
    assert three.root == tmp_path / f"synthetic-{SyntheticConfig(seed=3).fingerprint()}-f{LAYOUT_VERSION}" != zero.root
    # the market is not made easier: the default config is the one the issue-12 numbers were measured on
    assert SyntheticConfig().fingerprint() == "5c0643ae11d1"
    a, b = zero.klines("SYN05USDT"), three.klines("SYN05USDT")
    assert len(a) == len(b) == 24 * 120 and not np.allclose(a["close"], b["close"])
    expected = simulate_market(SyntheticConfig(seed=3)).klines["spot"]["SYN05USDT"]
    pd.testing.assert_frame_equal(b, expected, check_freq=False)
    assert open_store(data="synthetic", seed=3).root == three.root


def test_tail_shocks_stay_inside_the_store_limits():
    """A Student-t shock of 100 sd used to give quote volumes and trade counts the store refuses
    (a 450-pair market of 1,200 hours drew one); the simulator caps them below the store's limits."""
    from gnn_market import store_schema
    from gnn_market.synthetic import MAX_QUOTE_VOLUME, MAX_TRADES, _candles, _quote_volume

    rng = np.random.default_rng(0)
    z = np.array([[0.0, 100.0], [-100.0, 1.0]])
    qv = _quote_volume(np.array([2e7, 2e6]), np.array([1.0, 4.0]), z, rng)
    assert qv.max() == MAX_QUOTE_VOLUME and qv.min() > 0 and MAX_QUOTE_VOLUME < store_schema.MAX_NOTIONAL
    price = np.full((2, 2), 100.0)
    cols = _candles(price, price, np.full((2, 2), 0.01), qv * 2.5, rng, np.array([150.0, 150.0]))
    assert cols["trades"].max() == MAX_TRADES < store_schema.MAX_TRADES and cols["trades"].min() >= 1
