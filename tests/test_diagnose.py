"""``python -m gnn_market.diagnose``: does the correlation graph add to each pair's own history?

Values against independent per-hour references (scipy / pandas / numpy loops),
no look-ahead (perturbed future), a planted lead-lag market against independent
random walks, the train bridge, and one-line refusals.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from gnn_market import diagnose as dg
from gnn_market import rank_ic as ric
from gnn_market.cli import run_cli
from gnn_market.correlations import correlation_matrix, lead_lag_matrix
from gnn_market.errors import DataError, OptionError
from gnn_market.panel import Panel
from gnn_market.store import Store
from gnn_market.synthetic import SyntheticConfig, simulate_market, write_market

FAST = dg.DiagnoseConfig(progress=False, replicates=500, chunk_hours=16)


def panel_from_returns(r: np.ndarray, start: str = "2024-01-01", gaps: bool = False, seed: int = 0) -> Panel:
    """A spot panel whose closes follow the log returns ``r`` ``[T, N]``; ``gaps`` masks some candles."""
    T, N = r.shape
    close = 100.0 * np.exp(np.cumsum(r, axis=0))
    mask = np.ones((T, N), bool)
    filled = np.zeros((T, N), bool)
    if gaps:
        rng = np.random.default_rng(seed)
        mask[:60, 0] = False  # listed late
        for _ in range(6):
            t, n = rng.integers(1, T - 5), rng.integers(1, N)
            mask[t: t + rng.integers(1, 4), n] = False
        filled[T // 2, 1] = True  # a forward-filled candle: its price is not a trade
    close = np.where(mask, close, np.nan)
    nan = np.full((T, N), np.nan)
    no = np.zeros((T, N), bool)
    times = pd.date_range(start, periods=T, freq="h", tz="UTC", name="time")
    return Panel(times=times, symbols=[f"S{n:02d}USDT" for n in range(N)], market="spot", open=close.copy(),
                 high=close.copy(), low=close.copy(), close=close, volume=np.where(mask, 1.0, np.nan),
                 quote_volume=nan, trades=nan, mask=mask, filled=filled, funding_rate=nan, has_funding=no,
                 best_bid=nan, best_ask=nan, bid_qty=nan, ask_qty=nan, has_book=no)


def market_returns(T: int, N: int, seed: int, common: float = 0.006) -> np.ndarray:
    """One market factor plus noise: correlated pairs, nothing predictable."""
    rng = np.random.default_rng(seed)
    return common * rng.standard_normal((T, 1)) + 0.01 * rng.standard_normal((T, N))


# ------------------------------------------------------------------ values against references
def test_edge_defaults_are_the_graphs() -> None:
    from gnn_market.graph_builder import GraphConfig

    assert (dg.EDGE_WINDOW, dg.EDGE_MIN_PERIODS) == (GraphConfig().window, GraphConfig().min_periods)


def test_rank_ic_equals_a_scipy_spearman_loop_with_ties_and_holes() -> None:
    rng = np.random.default_rng(1)
    T, N = 40, 12
    x = np.round(rng.standard_normal((T, N)), 1)  # rounding makes ties, as zero returns of quiet pairs do
    y = rng.standard_normal((T, N)) + 0.3 * x
    valid = rng.random((T, N)) > 0.2
    got = ric.rank_ic_series(x, y, valid)
    for t in range(T):
        ref = spearmanr(x[t, valid[t]], y[t, valid[t]]).statistic
        assert got[t] == pytest.approx(ref, abs=1e-12), t


def test_incremental_rank_ic_equals_a_per_hour_lstsq_loop() -> None:
    rng = np.random.default_rng(2)
    T, N = 30, 15
    own, mom = rng.standard_normal((T, N)), rng.standard_normal((T, N))
    graph = 0.7 * own + rng.standard_normal((T, N))
    y = rng.standard_normal((T, N)) + 0.2 * graph
    valid = rng.random((T, N)) > 0.1
    got = ric.incremental_rank_ic_series(graph, [own, mom], y, valid)
    for t in range(T):
        v = valid[t]
        ranks = [pd.Series(a[t, v]).rank().to_numpy() for a in (graph, own, mom)]
        X = np.column_stack([np.ones(v.sum()), ranks[1], ranks[2]])
        coef, *_ = np.linalg.lstsq(X, ranks[0], rcond=None)
        ref = spearmanr(ranks[0] - X @ coef, y[t, v]).statistic
        assert got[t] == pytest.approx(ref, abs=1e-9), t


def test_graph_signals_equal_an_explicit_per_hour_reference() -> None:
    """Neighbour return, residual and lead-lag signal recomputed hour by hour with pandas and loops over pairs."""
    T, N = 260, 7
    panel = panel_from_returns(market_returns(T, N, seed=3), gaps=True)
    sig = dg.compute_signals(panel, FAST)
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(panel.close)
        real = np.where(panel.mask & ~panel.filled, logc, np.nan)
    graph_r = pd.DataFrame(logc).diff().to_numpy()  # the graph's returns (forward-filled prices included)
    now = pd.DataFrame(real).diff().to_numpy()      # the signals' returns (real candles only)
    checked = 0
    for t in list(range(0, T, 13)) + [T - 1]:
        win = pd.DataFrame(graph_r[max(0, t - 99): t + 1])
        corr = win.corr(min_periods=50).fillna(0.0).to_numpy()
        sd = win.std(ddof=0).to_numpy()
        sd = np.where(win.count().to_numpy() >= 50, sd, np.nan)
        pairs = pd.DataFrame(np.hstack([win.shift(1).to_numpy(), win.to_numpy()]))
        for i in range(N):
            nb = [j for j in range(N) if j != i and np.isfinite(now[t, j])]
            den = sum(abs(corr[i, j]) for j in nb)
            if den == 0:
                assert np.isnan(sig.values["nbr_return"][t, i])
                continue
            nbr = sum(corr[i, j] * now[t, j] for j in nb) / den
            beta = sum(corr[i, j] / den * corr[i, j] * sd[j] for j in nb if np.isfinite(sd[j])) / sd[i]
            lag = [pairs[j].corr(pairs[N + i], min_periods=50) for j in range(N)]
            lag = [0.0 if not np.isfinite(v) else v for v in lag]
            lag_den = sum(abs(lag[j]) for j in nb)
            lead = sum(lag[j] * now[t, j] for j in nb) / lag_den if lag_den > 0 else np.nan
            assert sig.values["nbr_return"][t, i] == pytest.approx(nbr, rel=2e-5, abs=1e-9, nan_ok=True)
            assert sig.values["lead_lag"][t, i] == pytest.approx(lead, rel=2e-5, abs=1e-9, nan_ok=True)
            if np.isfinite(now[t, i]):
                assert sig.values["nbr_residual"][t, i] == pytest.approx(nbr - beta * now[t, i], rel=1e-4, abs=1e-8,
                                                                           nan_ok=True)
            checked += 1
    assert checked > 80
    np.testing.assert_array_equal(sig.values["own_1h"], now)
    np.testing.assert_array_equal(sig.label[:-1], now[1:])
    np.testing.assert_array_equal(sig.values["own_mom_24h"][24:], real[24:] - real[:-24])


def test_chunked_matrices_equal_the_correlation_modules_one_hour_functions() -> None:
    """The lead-lag block of the stacked panel is lead_lag_matrix; the other call is correlation_matrix."""
    panel = panel_from_returns(market_returns(300, 9, seed=4), gaps=True)
    from gnn_market.feature_generator import log_returns

    r = log_returns(panel)
    n = r.shape[1]
    for t0, corr, aug in dg._chunks(r, FAST):
        for k in range(0, len(corr), 5):
            t = t0 + k
            np.testing.assert_allclose(corr[k], correlation_matrix(r, t), atol=2e-6)
            np.testing.assert_allclose(aug[k, n:, :n], lead_lag_matrix(r, t), atol=2e-6)
            np.testing.assert_allclose(aug[k, :n, n:].T, lead_lag_matrix(r, t), atol=2e-6)  # the block read


def test_block_bootstrap_is_paired_and_widens_with_persistent_days() -> None:
    rng = np.random.default_rng(5)
    days, per_day = 120, 24
    day = np.repeat(np.arange(days), per_day)
    day_effect = np.zeros(days)
    for d in range(1, days):  # strongly persistent day effects (AR(1), 0.9)
        day_effect[d] = 0.9 * day_effect[d - 1] + rng.standard_normal()
    x = day_effect[day] * 0.01 + 0.01 * rng.standard_normal(len(day))
    series = np.column_stack([x, x + 0.5, np.full(len(day), 0.25)])
    mean, lo, hi = ric.block_bootstrap_means(series, day, days, 7, 2000, 0, 0.95)
    np.testing.assert_allclose(mean, series.mean(0))
    assert lo[2] == pytest.approx(0.25) and hi[2] == pytest.approx(0.25)  # a constant has no noise
    assert hi[1] - lo[1] == pytest.approx(hi[0] - lo[0])  # a shift moves the interval, same draws
    _, lo1, hi1 = ric.block_bootstrap_means(series, day, days, 1, 2000, 0, 0.95)
    assert hi[0] - lo[0] > 1.5 * (hi1[0] - lo1[0])  # one-day blocks ignore the persistence: far too narrow


# ------------------------------------------------------------------ no look-ahead
def test_signals_at_or_before_t_ignore_every_later_price() -> None:
    T, N, t0 = 300, 8, 180
    base = panel_from_returns(market_returns(T, N, seed=6), gaps=True)
    before = dg.compute_signals(base, FAST)
    shock = np.exp(np.random.default_rng(7).normal(0, 0.05, (T - t0 - 1, N)))
    perturbed = replace(base, **{k: getattr(base, k).copy() for k in ("open", "high", "low", "close")})
    for k in ("open", "high", "low", "close"):
        getattr(perturbed, k)[t0 + 1:] *= shock
    after = dg.compute_signals(perturbed, FAST)
    for name in dg.SIGNALS:
        np.testing.assert_array_equal(after.values[name][: t0 + 1], before.values[name][: t0 + 1], err_msg=name)
        assert not np.allclose(after.values[name][t0 + 2:], before.values[name][t0 + 2:], equal_nan=True), name
    np.testing.assert_array_equal(after.label[:t0], before.label[:t0])
    assert not np.allclose(after.label[t0], before.label[t0])  # the label is the next hour: it must move


# ------------------------------------------------------------------ planted structure vs none
def _synthetic_store(tmp_path, **overrides) -> Store:
    config = SyntheticConfig(n_symbols=24, hours=24 * 45, seed=11, with_funding=False, with_book=False, **overrides)
    return write_market(Store(tmp_path / "syn"), simulate_market(config))


def test_a_planted_lead_lag_market_shows_a_clearly_positive_graph_signal(tmp_path) -> None:
    store = _synthetic_store(tmp_path, leaders_per_sector=2)
    report = dg.run(replace(FAST, store=str(store.root), out=str(tmp_path / "d.json")))
    lead = report["signals"]["lead_lag"]["rank_ic"]
    assert lead["ci_low"] > 0.03 and lead["verdict"] == "better"
    assert report["incremental_rank_ic"]["lead_lag"]["ci_low"] > 0.03
    assert report["primary"]["verdict"] == "better"  # own history predicts nothing here; the graph does
    assert "the graph adds" in report["verdict"] and "above 0" in report["verdict"]
    assert json.loads((tmp_path / "d.json").read_text())["primary"] == report["primary"]


def test_independent_random_walks_give_a_tie() -> None:
    rng = np.random.default_rng(12)
    panel = panel_from_returns(0.01 * rng.standard_normal((24 * 45, 24)))
    report = dg.evaluate(dg.compute_signals(panel, FAST), FAST)
    assert report["primary"]["verdict"] == "tie"
    for g in dg.GRAPH_SIGNALS:
        assert report["incremental_rank_ic"][g]["verdict"] == "tie", g
        assert report["signals"][g]["rank_ic"]["ci_low"] < 0 < report["signals"][g]["rank_ic"]["ci_high"], g
    text = dg.verdict_text({**report, "momentum_hours": 24})
    assert "tie (inside the noise)" in text and "no graph signal keeps" in text


# ------------------------------------------------------------------ command line
def test_start_reads_the_warm_up_history_and_scores_from_start(tmp_path) -> None:
    store = _synthetic_store(tmp_path)
    report = dg.run(replace(FAST, store=str(store.root), start="2024-01-20"))
    assert report["first_hour"] == "2024-01-20T00:00:00+00:00"  # signals exist at once: history before it was read


def test_bundled_sample_runs_and_writes_every_number(tmp_path, capsys) -> None:
    out = tmp_path / "sample.json"
    assert dg.main(["--data", "sample", "--no-progress", "--replicates", "500", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["pairs"] == 30 and report["days"] > 300
    assert set(report["signals"]) == set(dg.SIGNALS)
    assert report["primary"]["comparison"] == f"{report['best_graph']} - {report['best_own']}"
    assert f"{report['primary']['mean']:+.4f}" in printed and report["verdict"] in printed


def test_train_bridge_uses_trains_data_flags(tmp_path, capsys) -> None:
    from gnn_market.train import build_parser

    store = _synthetic_store(tmp_path)
    args = build_parser().parse_args(["--store", str(store.root), "--out", str(tmp_path / "run"),
                                      "--symbols", ",".join(f"SYN{i:02d}USDT" for i in range(8)), "--no-progress"])
    assert dg.main_from_train_args(args) == 0
    assert json.loads((tmp_path / "run" / "diagnose.json").read_text())["pairs"] == 8
    args = build_parser().parse_args(["--store", str(store.root), "--top", "5"])
    with pytest.raises(DataError, match="--top"):
        dg.main_from_train_args(args)
    # and through the CLI flag: train --diagnose trains nothing, writes diagnose.json
    from gnn_market.train import main as train_main

    assert train_main(["--diagnose", "--store", str(store.root), "--out", str(tmp_path / "flag"), "--no-progress",
                       "--symbols", ",".join(f"SYN{i:02d}USDT" for i in range(8))]) == 0
    assert sorted(p.name for p in (tmp_path / "flag").iterdir()) == ["diagnose.json"]


@pytest.mark.parametrize("case", ["empty", "one_symbol", "unknown_symbol", "too_short", "bad_start"])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, case) -> None:
    store = tmp_path / "s"
    store.mkdir()
    argv = ["--store", str(store), "--no-progress"]
    if case != "empty":
        market = simulate_market(SyntheticConfig(n_symbols=8, hours=24 * 10, n_sectors=2, leaders_per_sector=1,
                                                 with_funding=False, with_book=False))
        write_market(Store(store), market)
    if case == "one_symbol":
        argv += ["--symbols", "SYN00USDT"]
    elif case == "unknown_symbol":
        argv += ["--symbols", "SYN00USDT,NOPEUSDT"]
    elif case == "bad_start":
        argv += ["--start", "yesterday-ish"]
    assert run_cli(dg.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    expected = {"empty": "empty store", "one_symbol": "at least 5", "unknown_symbol": "NOPEUSDT",
                "too_short": "block bootstrap needs", "bad_start": "--start"}[case]
    assert expected in err[0]


def test_config_refuses_nonsense_options() -> None:
    with pytest.raises(OptionError, match="window=2"):
        dg.DiagnoseConfig(window=2)
    with pytest.raises(OptionError, match="min_pairs=2"):
        dg.DiagnoseConfig(min_pairs=2)
