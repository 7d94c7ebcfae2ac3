"""Market context and row windows of the stronger baselines: a per-hour pandas reference, NaN rules,
no look-ahead, and the rows' inputs equal to what the GNN sees."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from gnn_market.normalizer import FeatureNormalizer
from gnn_market.panel import load_panel
from gnn_market.pipeline import prepare_market
from gnn_market.store import Store
from gnn_market.training import TrainConfig
from gnn_market.training.context import CONTEXT_NAMES, MARKET_NAMES, RowInputs, market_context, row_inputs, row_windows
from gnn_market.training.graphs import labelled_rows, make_batchers
from gnn_market.windows import lookback_windows

from graph_fixtures import START, random_klines

HOURS = 300


def _bare(inputs, market, cfg: TrainConfig | None = None):
    """The no-edge ablation's batcher of a fold (rows do not depend on edges)."""
    return make_batchers(inputs, market, cfg or TrainConfig(), None, torch.device("cpu"))["none"]


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """BTC with a 10-hour hole (3 filled, 7 masked), ETH listed at hour 60, a pair with a 2-hour filled gap
    and a pair delisted 50 hours before the end."""
    rng = np.random.default_rng(0)
    times = pd.date_range(START, periods=HOURS, freq="h", tz="UTC")
    store = Store(tmp_path_factory.mktemp("context_store"))
    btc = random_klines(rng, times, 30_000.0, 0.01)
    store.write_klines("BTCUSDT", btc.drop(btc.index[150:160]))
    store.write_klines("ETHUSDT", random_klines(rng, times[60:], 2_000.0, 0.012))
    aaa = random_klines(rng, times, 5.0, 0.02)
    store.write_klines("AAAUSDT", aaa.drop(aaa.index[[80, 81]]))
    store.write_klines("BBBUSDT", random_klines(rng, times[: HOURS - 50], 1.0, 0.015))
    return load_panel(store)


def reference_context(panel) -> pd.DataFrame:
    """Every column hour by hour with pandas: returns per symbol, then one cross-section per row."""
    close = pd.DataFrame(np.where(panel.mask, panel.close, np.nan), index=panel.times, columns=panel.symbols)
    filled = pd.DataFrame(panel.filled, index=panel.times, columns=panel.symbols)
    logc = np.log(close)
    rets = {k: (logc - logc.shift(k)).mask(filled) for k in (1, 4, 24)}
    market = prepare_market(panel)
    vol = logc.diff().rolling(24, min_periods=24).std(ddof=1).to_numpy()   # vol_24h in float64
    valid = market.features.valid
    np.testing.assert_allclose(vol[valid], market.features.column("vol_24h")[valid], rtol=1e-5, atol=1e-7)
    out = pd.DataFrame(index=panel.times, columns=list(MARKET_NAMES), dtype=float)
    for t, time in enumerate(panel.times):
        for k in (1, 4, 24):
            row = rets[k].iloc[t].dropna()
            out.loc[time, f"mkt_ret_{k}h"] = row.mean() if len(row) else np.nan
            out.loc[time, f"mkt_disp_{k}h"] = row.std(ddof=1) if len(row) >= 2 else np.nan
        valid = market.features.valid[t]
        out.loc[time, "mkt_vol_24h"] = vol[t][valid].mean() if valid.any() else np.nan
        for symbol, prefix in (("BTCUSDT", "btc"), ("ETHUSDT", "eth")):
            for k in (1, 24):
                out.loc[time, f"{prefix}_ret_{k}h"] = rets[k][symbol].iloc[t] if symbol in panel.symbols else np.nan
    out["mkt_ret_vol_24h"] = out["mkt_ret_1h"].rolling(24, min_periods=24).std(ddof=1)
    return out


@pytest.mark.parametrize("symbols", [None, ["AAAUSDT", "BBBUSDT"]], ids=["with-btc-eth", "without"])
def test_context_matches_per_hour_pandas_reference(panel, symbols) -> None:
    p = panel if symbols is None else panel.select(symbols)
    ctx = market_context(prepare_market(p))
    ref = reference_context(p)
    assert ctx.market.shape == (HOURS, len(MARKET_NAMES))
    for j, name in enumerate(MARKET_NAMES):
        got, want = ctx.market[:, j], ref[name].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
        assert np.isfinite(got).sum() > HOURS // 2 or name.startswith(("btc", "eth")), name
    # the per-pair columns: own return minus the market mean, at the row's hour
    hour, pair = np.repeat(np.arange(HOURS), len(p.symbols)), np.tile(np.arange(len(p.symbols)), HOURS)
    rows = ctx.rows(hour, pair)
    assert rows.shape == (len(hour), len(CONTEXT_NAMES))
    close = np.where(p.mask, p.close, np.nan)
    own = np.full(close.shape, np.nan)
    own[1:] = np.log(close[1:] / close[:-1])
    own[p.filled] = np.nan
    np.testing.assert_allclose(rows[:, CONTEXT_NAMES.index("excess_ret_1h")],
                               own.reshape(-1) - ref["mkt_ret_1h"].to_numpy(dtype=float)[hour],
                               rtol=1e-9, atol=1e-12, equal_nan=True)


def test_missing_reference_pairs_give_nan(panel) -> None:
    ctx = market_context(prepare_market(panel))
    col = {name: ctx.market[:, j] for j, name in enumerate(MARKET_NAMES)}
    assert np.isnan(col["btc_ret_1h"][153:160]).all() and np.isnan(col["btc_ret_1h"][150:153]).all()  # masked, filled
    assert np.isfinite(col["btc_ret_1h"][161:]).all()
    assert np.isnan(col["eth_ret_1h"][:61]).all() and np.isfinite(col["eth_ret_1h"][61:]).all()
    assert np.isnan(col["eth_ret_24h"][:84]).all() and np.isfinite(col["eth_ret_24h"][84:]).all()
    without = market_context(prepare_market(panel.select(["AAAUSDT", "BBBUSDT"])))
    for name in ("btc_ret_1h", "btc_ret_24h", "eth_ret_1h", "eth_ret_24h"):
        assert np.isnan(without.market[:, MARKET_NAMES.index(name)]).all()
    # a single pair has a mean but no dispersion
    single = market_context(prepare_market(panel.select(["AAAUSDT"])))
    assert np.isnan(single.market[:, MARKET_NAMES.index("mkt_disp_1h")]).all()
    assert np.isfinite(single.market[2:, MARKET_NAMES.index("mkt_ret_1h")]).sum() > HOURS - 10


def perturbed_after(panel, t: int, seed: int = 1):
    """A copy of ``panel`` whose candles after hour ``t`` are re-drawn (prices, volumes) and partly deleted."""
    rng = np.random.default_rng(seed)
    later = np.arange(len(panel.times)) > t
    factor = np.where(later[:, None], np.exp(rng.normal(0, 0.05, panel.close.shape)), 1.0)
    mask = panel.mask.copy()
    mask[t + 5: t + 9, 0] = False   # a hole in BTC, later
    arrays = {name: np.where(mask, getattr(panel, name) * factor, np.nan) for name in ("open", "high", "low", "close")}
    volume = np.where(later[:, None], panel.volume * rng.uniform(0.1, 10, panel.volume.shape), panel.volume)
    return replace(panel, mask=mask, volume=volume, **arrays)


@pytest.mark.parametrize("t", [120, 200])
def test_no_look_ahead_in_context_and_the_baselines_inputs(panel, t) -> None:
    a, b = prepare_market(panel), prepare_market(perturbed_after(panel, t))
    ca, cb = market_context(a), market_context(b)
    np.testing.assert_array_equal(ca.market[: t + 1], cb.market[: t + 1])
    np.testing.assert_array_equal(ca.pair_ret[: t + 1], cb.pair_ret[: t + 1])
    assert not np.array_equal(ca.market[t + 1:], cb.market[t + 1:], equal_nan=True)  # the perturbation is real
    # the rows every baseline reads (features, context, MLP windows) for hours <= t, normaliser fitted before t
    cfg = TrainConfig(window=24)
    hours = np.arange(30, t + 1)
    rows = []
    for market in (a, b):
        normalizer = FeatureNormalizer("global").fit(market.features, hours)
        inputs = row_inputs(market, normalizer)
        r = labelled_rows(_bare(inputs, market, cfg), hours, market, inputs)
        rows.append((r, row_windows(inputs, r.hour, r.pair, 24)))
    (ra, wa), (rb, wb) = rows
    for name in ("X", "hour", "pair", "context", "current_return"):
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
    np.testing.assert_array_equal(wa, wb)


def test_rows_carry_the_gnn_inputs_and_their_windows(panel) -> None:
    market = prepare_market(panel)
    hours = np.arange(40, 260)
    normalizer = FeatureNormalizer("global").fit(market.features, hours[:100])
    inputs = row_inputs(market, normalizer)
    rows = labelled_rows(_bare(inputs, market), hours, market, inputs)
    F = market.features.values.shape[-1]
    assert len(rows.y) == len(rows.hour) == len(rows.pair) == len(rows.context) > 0
    assert rows.context.shape[1] == len(CONTEXT_NAMES)
    np.testing.assert_array_equal(inputs.x[rows.hour, rows.pair], rows.X)   # the GNN's node features
    windows = row_windows(inputs, rows.hour, rows.pair, 6)
    np.testing.assert_array_equal(windows[:, -F:], rows.X)                   # last hour of a window = hour t
    # without inputs the same context is computed on the fly
    plain = labelled_rows(_bare(inputs, market), hours, market)
    np.testing.assert_array_equal(plain.context, rows.context)
    assert plain.inputs is None


def test_row_windows_equal_lookback_windows_in_any_row_order_and_chunking() -> None:
    rng = np.random.default_rng(0)
    T, N, F, L = 50, 5, 3, 7
    x = rng.normal(size=(T, N, F)).astype(np.float32)
    valid = rng.random((T, N)) > 0.2
    inputs = RowInputs(x=np.where(valid[..., None], x, 0).astype(np.float32), valid=valid)
    hour, pair = rng.integers(0, T, 200), rng.integers(0, N, 200)          # unsorted, repeated
    full, _ = lookback_windows(inputs.x, valid, np.arange(T), L)
    want = full[hour, pair].reshape(200, L * F)
    for chunk_bytes in (1, N * L * F * 4 * 3, 1 << 30):                    # 1 hour, 3 hours, all at once
        np.testing.assert_array_equal(row_windows(inputs, hour, pair, L, chunk_bytes=chunk_bytes), want)
