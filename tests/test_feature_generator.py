"""Node features and labels: against a per-symbol pandas reference, edge cases, no look-ahead."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gnn_market.classes import IGNORE_INDEX
from gnn_market.feature_generator import FEATURE_NAMES, FeatureConfig, compute_features, make_labels, neutral_values
from gnn_market.panel import load_panel
from gnn_market.sample import sample_store
from gnn_market.store import Store

from graph_fixtures import START, build_store, random_book, random_funding, random_klines, reference_features

H = pd.Timedelta(hours=1)
SAMPLE_SYMBOLS = ["BTCUSDT", "DOGEUSDT", "LUNAUSDT", "SHIBUSDT"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return build_store(tmp_path_factory.mktemp("feature_store"))


@pytest.fixture(scope="module")
def panel(store):
    return load_panel(store)


@pytest.fixture(scope="module")
def sample_panel():
    return load_panel(sample_store(), symbols=SAMPLE_SYMBOLS, end="2023-05-31 23:00")


def assert_matches_reference(panel, feats):
    for symbol in panel.symbols:
        ref = reference_features(panel, symbol)
        got = feats.values[:, feats.symbols.index(symbol), :]
        for j, name in enumerate(feats.names):
            np.testing.assert_allclose(got[:, j], ref[name].to_numpy(), rtol=1e-6, atol=1e-6,
                                       err_msg=f"{symbol} {name}")
        assert (feats.valid[:, feats.symbols.index(symbol)] == ref["valid"].to_numpy()).all()


def test_schema_and_shapes(panel):
    feats = compute_features(panel)
    assert tuple(feats.names) == FEATURE_NAMES
    assert feats.values.shape == (len(panel.times), len(panel.symbols), len(FEATURE_NAMES))
    assert feats.values.dtype == np.float32 and np.isfinite(feats.values).all()
    frame = feats.to_frame()
    assert frame.index.names == ["time", "symbol"] and len(frame) == feats.values.shape[0] * feats.values.shape[1]
    assert frame.loc[(panel.times[30], "AAAUSDT"), "ret_1h"] == feats.column("ret_1h")[30, 0]


def test_features_match_pandas_reference_on_sample(sample_panel):
    assert_matches_reference(sample_panel, compute_features(sample_panel))


def test_features_match_pandas_reference_on_edge_case_store(panel):
    # book + funding, a mid-panel listing, delisting, short and long gaps, zero volume, flat prices
    assert_matches_reference(panel, compute_features(panel))


def test_features_match_pandas_reference_on_synthetic_market(tmp_path):
    synthetic = pytest.importorskip("gnn_market.synthetic")
    config = synthetic.SyntheticConfig(n_symbols=6, hours=600, seed=3, n_sectors=2, leaders_per_sector=1)
    store = synthetic.write_synthetic_store(tmp_path / "syn", config)
    for market in ("spot", "perp"):
        if market in store.markets():
            p = load_panel(store, market=market)
            assert_matches_reference(p, compute_features(p))


def test_edge_cases_are_finite_with_documented_neutral_values(panel):
    feats = compute_features(panel)
    col = {n: feats.column(n) for n in feats.names}
    a, b, c, d = (panel.symbols.index(s) for s in ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"))
    neutral = neutral_values()
    # before listing: neutral values, not valid
    assert not feats.valid[:120, c].any()
    for name in ("ret_1h", "vol_24h", "rsi_14", "volume_ratio", "funding_rate"):
        assert (col[name][:120, c] == neutral[name]).all()
    # first hours after listing: candle present but not enough history for every feature
    assert not feats.valid[120:144, c].any() and feats.valid[144:, c].all()
    assert (col["ret_24h"][120:144, c] == 0).all() and (col["rsi_14"][120:134, c] == 50).all()
    # constant prices over 40 hours: zero returns and volatility; Wilder's averages decay
    # together, so the RSI freezes at its last value
    flat = slice(120 + 40 + 25, 120 + 80)
    assert np.allclose(col["vol_24h"][flat, c], 0, atol=1e-7) and (col["ret_4h"][flat, c] == 0).all()
    assert np.allclose(col["rsi_14"][flat, c], col["rsi_14"][flat.start, c], atol=1e-4)
    assert (col["spread_ar"][flat, c] == 0).all()
    # zero volume stretch: ratio 0 while some volume is in the window, never NaN
    assert (col["volume_ratio"][102:112, b] == 0).all()  # rows 100..109 of BBB after its 2-hour gap
    # empty ask side -> imbalance capped
    assert (col["book_imbalance"][30:40, b] == FeatureConfig().imbalance_cap).all()
    # no book / no funding -> neutral plus flag
    assert (col["has_book"][:, c] == 0).all() and (col["spread"][:, c] == 0).all()
    assert (col["book_imbalance"][:, c] == 1).all()
    assert (col["has_funding"][:, b] == 0).all() and (col["funding_rate"][:, b] == 0).all()
    assert col["has_funding"][120:, c].all() and col["has_book"][:, a].all()
    # long gap: invalid until 24 h after the candles resume; filled hours flagged
    assert not feats.valid[203:230, b].any() and feats.valid[230, b]
    assert (col["is_filled"][200:203, b] == 1).all()
    assert not feats.valid[343:, d].any()


def test_zero_and_constant_panel_is_finite(tmp_path):
    times = pd.date_range(START, periods=60, freq="h", tz="UTC")
    s = Store(tmp_path)
    s.write_klines("ZZUSDT", pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0},
                                          index=pd.DatetimeIndex(times, name="open_time")))
    s.write_book("ZZUSDT", pd.DataFrame({"best_bid": 0.0, "best_ask": 0.0, "bid_qty": 0.0, "ask_qty": 0.0},
                                        index=pd.DatetimeIndex(times + H, name="snapshot_time")))
    feats = compute_features(load_panel(s))
    assert np.isfinite(feats.values).all()
    assert (feats.column("volume_ratio") == 1).all() and (feats.column("rsi_14") == 50).all()
    assert (feats.column("has_book") == 0).all()  # a zero mid is not a usable book


def test_rsi_bounds_and_direction():
    times = pd.date_range(START, periods=40, freq="h", tz="UTC")
    rising = np.linspace(1, 2, 40)
    from gnn_market.panel import Panel
    nan = np.full((40, 1), np.nan)
    p = Panel(times=times, symbols=["UPUSDT"], market="spot", open=rising[:, None], high=rising[:, None],
              low=rising[:, None], close=rising[:, None], volume=np.ones((40, 1)), quote_volume=nan,
              trades=nan, mask=np.ones((40, 1), bool), filled=np.zeros((40, 1), bool), funding_rate=nan,
              has_funding=np.zeros((40, 1), bool), best_bid=nan, best_ask=nan, bid_qty=nan, ask_qty=nan,
              has_book=np.zeros((40, 1), bool))
    rsi = compute_features(p).column("rsi_14")[:, 0]
    assert (rsi[14:] == 100).all() and (rsi[:14] == 50).all()


def _perturb_after(store: Store, dst, t_last: pd.Timestamp, seed: int = 9) -> Store:
    """Copy ``store`` into ``dst`` with every value known only after ``t_last`` (+1 h decision time) changed."""
    rng = np.random.default_rng(seed)
    out = Store(dst)
    for sym in store.symbols("spot"):
        k = store.klines(sym).copy()
        later = k.index > t_last
        scale = np.exp(rng.normal(0, 0.05, later.sum()))
        for c in ("open", "high", "low", "close"):
            k.loc[later, c] *= scale
        k.loc[later, "volume"] *= rng.uniform(0, 3, later.sum())
        out.write_klines(sym, k)
        book = store.book(sym)
        if len(book):
            late = book.index >= t_last + 2 * H  # belongs to rows after t_last
            book.loc[late, ["best_bid", "best_ask"]] *= 1.01
            book.loc[late, "ask_qty"] = 0.0
            out.write_book(sym, book)
        fund = store.funding(sym)
        if len(fund):
            fund.loc[fund.index > t_last + H, "funding_rate"] += 0.01
            out.write_funding(sym, fund)
    return out


@pytest.mark.parametrize("t", [130, 201, 250])
def test_no_look_ahead_in_features_and_labels(store, panel, tmp_path, t):
    t_last = panel.times[t]
    changed = load_panel(_perturb_after(store, tmp_path / "perturbed", t_last))
    assert changed.times.equals(panel.times)
    f0, f1 = compute_features(panel), compute_features(changed)
    assert np.array_equal(f0.values[: t + 1], f1.values[: t + 1])
    assert np.array_equal(f0.valid[: t + 1], f1.valid[: t + 1])
    assert not np.array_equal(f0.values[t + 1:], f1.values[t + 1:])  # the perturbation did something
    l0, l1 = make_labels(panel), make_labels(changed)
    assert np.array_equal(l0.classes[:t], l1.classes[:t])  # label at t legitimately uses t+1


def test_labels_rule_and_ignored_hours(panel):
    labels = make_labels(panel, threshold=0.01)
    r = labels.next_return
    known = labels.classes != IGNORE_INDEX
    assert (labels.classes[known & (r > 0.01)] == 2).all()
    assert (labels.classes[known & (r < -0.01)] == 0).all()
    assert (labels.classes[known & (np.abs(r) <= 0.01)] == 1).all()
    assert (labels.classes[-1] == IGNORE_INDEX).all()  # last hour: no next candle
    b, c = panel.symbols.index("BBBUSDT"), panel.symbols.index("CCCUSDT")
    assert (labels.classes[49:52, b] == IGNORE_INDEX).all()  # next candle filled / hour is filled
    assert labels.classes[52, b] != IGNORE_INDEX
    assert (labels.classes[:120, c] == IGNORE_INDEX).all()
    close = panel.close[:, b]
    np.testing.assert_allclose(r[10, b], close[11] / close[10] - 1)
    balance = labels.balance()
    assert set(balance) == {"DOWN", "SIDEWAYS", "UP"} and abs(sum(balance.values()) - 1) < 1e-12
    zero = make_labels(panel, threshold=0.0)
    assert (zero.classes[known] == np.where(r[known] > 0, 2, np.where(r[known] < 0, 0, 1))).all()


def test_sample_class_balance_sideways_dominates():
    labels = make_labels(load_panel(sample_store()))
    balance = labels.balance()
    print("sample class balance:", {k: round(v, 4) for k, v in balance.items()}, labels.counts())
    assert balance["SIDEWAYS"] > 0.8 and 0.03 < balance["UP"] < 0.15 and 0.03 < balance["DOWN"] < 0.15


def test_synthetic_book_and_funding_flags(tmp_path):
    rng = np.random.default_rng(5)
    times = pd.date_range(START, periods=48, freq="h", tz="UTC")
    s = Store(tmp_path)
    k = random_klines(rng, times)
    s.write_klines("QQUSDT", k)
    s.write_book("QQUSDT", random_book(rng, k).iloc[:24])
    s.write_funding("QQUSDT", random_funding(rng, times[10:]))
    feats = compute_features(load_panel(s))
    assert feats.column("has_book")[:24, 0].all() and not feats.column("has_book")[24:, 0].any()
    assert not feats.column("has_funding")[:15, 0].any() and feats.column("has_funding")[15:, 0].all()
