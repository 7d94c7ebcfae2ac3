"""Trading metrics (gnn_market.trading_metrics): IC / Rank IC, the costed portfolio, the GNN-difference
bootstrap, and their place in a run's metrics (evaluation.trading_rows / score_seed / aggregate_seeds).

References are independent: scipy's pearsonr / spearmanr in an explicit per-hour loop, portfolios
worked out by hand, look-ahead checks by perturbing the future.
"""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from gnn_market.classes import IGNORE_INDEX
from gnn_market.trading_metrics import (
    HourSeries,
    PortfolioConfig,
    cross_sectional_ic,
    gnn_differences,
    max_drawdown,
    model_series,
    performance,
    portfolio_returns,
    portfolio_weights,
    probability_score,
    summarise,
    to_matrix,
)
from gnn_market.training import TrainConfig, run_training
from gnn_market.training.evaluation import aggregate_seeds, trading_rows

from train_fixtures import TINY_TRAIN, tiny_store

LS = PortfolioConfig(long_short=True, k_fraction=0.25, band=1.0, cost_bps=10.0)
LONG = PortfolioConfig(long_short=False, k_fraction=0.25, band=1.0, cost_bps=10.0)


def _panel(rng: np.random.Generator, hours: int = 40, pairs: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Scores with ties and gaps, returns with gaps; a few hours too thin or constant to score."""
    score = np.round(rng.normal(size=(hours, pairs)), 1)            # rounding makes ties
    ret = rng.normal(scale=0.01, size=(hours, pairs)) + 0.3 * 0.01 * score
    score[rng.random((hours, pairs)) < 0.15] = np.nan
    ret[rng.random((hours, pairs)) < 0.15] = np.nan
    score[3, 2:] = np.nan                                           # 2 valid pairs: skipped
    score[5] = 0.25                                                 # constant score: skipped
    ret[7, :] = np.nan
    ret[7, :4] = 0.001 * np.arange(4)                               # 4 valid returns (may lose some to score gaps)
    return score, ret


def test_ic_and_rank_ic_equal_scipy_per_hour():
    score, ret = _panel(np.random.default_rng(0))
    ic, rank_ic = cross_sectional_ic(score, ret)
    checked = 0
    for t in range(score.shape[0]):
        ok = np.isfinite(score[t]) & np.isfinite(ret[t])
        s, r = score[t, ok], ret[t, ok]
        if ok.sum() < 3 or np.ptp(s) == 0 or np.ptp(r) == 0:
            assert np.isnan(ic[t]) and np.isnan(rank_ic[t]), t
            continue
        assert ic[t] == pytest.approx(pearsonr(s, r)[0], abs=1e-12), t
        assert rank_ic[t] == pytest.approx(spearmanr(s, r)[0], abs=1e-12), t
        checked += 1
    assert checked >= 30
    assert np.isnan(ic[3]) and np.isnan(ic[5])


def test_summary_icir_is_per_hour_mean_over_sd():
    score, ret = _panel(np.random.default_rng(1))
    series = model_series(score, np.expm1(ret), LS)   # model_series takes simple returns, IC uses their log
    ic, rank_ic = cross_sectional_ic(score, ret)
    m = summarise(series)
    assert m["ic"] == pytest.approx(np.nanmean(ic), abs=1e-12)
    assert m["rank_ic"] == pytest.approx(np.nanmean(rank_ic), abs=1e-12)
    assert m["icir"] == pytest.approx(np.nanmean(ic) / np.nanstd(ic, ddof=1), abs=1e-12)
    assert m["rank_icir"] == pytest.approx(np.nanmean(rank_ic) / np.nanstd(rank_ic, ddof=1), abs=1e-12)
    assert m["ic_hours"] == int(np.isfinite(rank_ic).sum())


def test_probability_score_is_up_minus_down():
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    np.testing.assert_allclose(probability_score(probs), [0.1, -0.5])


def test_long_short_pnl_by_hand():
    # 4 pairs, k = floor(0.25 * 4) = 1: long the best, short the worst, +-0.5 each, plain top-k (band 1)
    score = np.array([[3.0, 2.0, 1.0, 0.0],     # long 0, short 3
                      [3.0, 2.0, 1.0, 0.0],     # same book: no turnover
                      [0.0, 2.0, 1.0, 3.0]])    # long 3, short 0: every weight flips
    r = np.array([[0.02, 0.00, 0.00, -0.01],
                  [0.01, 0.05, 0.05, 0.03],
                  [0.00, 0.00, 0.00, 0.04]])
    valid = np.ones_like(score, dtype=bool)
    w = portfolio_weights(score, valid, LS)
    np.testing.assert_allclose(w, [[0.5, 0, 0, -0.5], [0.5, 0, 0, -0.5], [-0.5, 0, 0, 0.5]])
    net, turnover = portfolio_returns(w, r, valid, LS)
    np.testing.assert_allclose(turnover, [1.0, 0.0, 2.0])
    # hour 0: 0.5*0.02 + 0.5*0.01 - 10bps*1 ; hour 1: 0.5*0.01 - 0.5*0.03 ; hour 2: 0.5*0.04 - 10bps*2
    np.testing.assert_allclose(net, [0.015 - 0.001, -0.010, 0.020 - 0.002], atol=1e-15)
    perf = performance(net, turnover)
    assert perf["return_ann"] == pytest.approx(np.mean([0.014, -0.010, 0.018]) * 8760)
    assert perf["sharpe"] == pytest.approx(np.mean([0.014, -0.010, 0.018]) / np.std([0.014, -0.010, 0.018], ddof=1)
                                           * math.sqrt(8760))
    assert perf["max_drawdown"] == pytest.approx(0.010)       # summed curve 0.014 -> 0.004
    assert perf["turnover"] == pytest.approx(1.0)


def test_long_only_excess_by_hand():
    score = np.array([[1.0, 3.0, 2.0, 0.0], [1.0, 3.0, 2.0, 0.0]])
    r = np.array([[0.01, 0.03, -0.01, 0.01], [0.0, -0.02, 0.0, np.nan]])
    valid = np.isfinite(r)
    w = portfolio_weights(score, valid, LONG)
    np.testing.assert_allclose(w, [[0, 1, 0, 0], [0, 1, 0, 0]])
    net, turnover = portfolio_returns(w, r, valid, LONG)
    # hour 0: 0.03 - mean(0.01, 0.03, -0.01, 0.01) - 10 bps; hour 1: -0.02 - mean(0, -0.02, 0) (pair 3 has no label)
    np.testing.assert_allclose(net, [0.03 - 0.01 - 0.001, -0.02 + 0.02 / 3], atol=1e-15)
    np.testing.assert_allclose(turnover, [1.0, 0.0])


def test_pnl_equals_an_explicit_loop_over_hours():
    rng = np.random.default_rng(2)
    score, ret = _panel(rng, hours=30, pairs=10)
    r = np.expm1(ret)
    valid = np.isfinite(score) & np.isfinite(r)
    cfg = PortfolioConfig(long_short=True, band=2.0, cost_bps=25.0)
    net, turnover = portfolio_returns(portfolio_weights(score, valid, cfg), r, valid, cfg)
    previous = np.zeros(10)
    for t in range(30):
        w = portfolio_weights(score[: t + 1], valid[: t + 1], cfg)[t]
        expected_turnover = np.abs(w - previous).sum()
        expected = sum(w[n] * r[t, n] for n in range(10) if valid[t, n]) - 25e-4 * expected_turnover
        assert turnover[t] == pytest.approx(expected_turnover, abs=1e-12)
        assert net[t] == pytest.approx(expected, abs=1e-12)
        previous = w


def test_hysteresis_holds_a_name_inside_the_band():
    # 10 pairs, k = 2, band 2: a held name stays while it ranks in the top 4
    cfg = PortfolioConfig(long_short=True, k_fraction=0.2, band=2.0)
    first = np.arange(10, 0, -1, dtype=float)      # pair 0 best ... pair 9 worst
    second = first.copy()
    second[[1, 2]] = second[[2, 1]]               # pair 1 drops to 3rd: still held
    third = first.copy()
    third[1] = -5.0                                # pair 1 falls out of the top 4 (to the bottom)
    score = np.vstack([first, second, third])
    w = portfolio_weights(score, np.ones_like(score, dtype=bool), cfg)
    assert set(np.flatnonzero(w[0] > 0)) == {0, 1} and set(np.flatnonzero(w[0] < 0)) == {8, 9}
    assert set(np.flatnonzero(w[1] > 0)) == {0, 1}                  # no trade: 1 is still in the band
    assert set(np.flatnonzero(w[2] > 0)) == {0, 2}                  # 1 left the band: sold, 2 bought
    assert set(np.flatnonzero(w[2] < 0)) == {8, 9}                  # the held shorts are still in the bottom 4
    plain = portfolio_weights(score[:2], np.ones((2, 10), dtype=bool), PortfolioConfig(long_short=True, band=1.0))
    assert set(np.flatnonzero(plain[1] > 0)) == {0, 2}              # band 1 trades at once
    np.testing.assert_allclose(np.abs(w).sum(axis=1), 1.0)           # gross 1


def test_constant_ranking_has_no_turnover_after_entry():
    rng = np.random.default_rng(3)
    base = rng.normal(size=12)
    score = np.tile(base, (50, 1))
    r = rng.normal(scale=0.01, size=(50, 12))
    valid = np.ones_like(score, dtype=bool)
    for cfg in (LS, LONG, PortfolioConfig(long_short=True)):
        _, turnover = portfolio_returns(portfolio_weights(score, valid, cfg), r, valid, cfg)
        assert turnover[0] == pytest.approx(1.0)      # entry is charged
        assert np.all(turnover[1:] == 0)


def test_flat_score_is_flat_long_short_and_the_benchmark_long_only():
    score = np.full((5, 6), 0.3)
    r = np.random.default_rng(10).normal(scale=0.01, size=(5, 6))
    valid = np.ones_like(score, dtype=bool)
    net, turnover = portfolio_returns(portfolio_weights(score, valid, LS), r, valid, LS)
    assert np.all(net == 0) and np.all(turnover == 0)
    assert performance(net, turnover)["sharpe"] is None
    valid[3, 5] = False                                  # a pair without a label: the benchmark changes
    w = portfolio_weights(score, valid, LONG)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    net, turnover = portfolio_returns(w, r, valid, LONG)
    # hour 3: 1/6 -> 1/5 on five pairs and 1/6 -> 0 on the sixth; hour 4: back
    np.testing.assert_allclose(turnover, [1.0, 0.0, 0.0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(net, -1e-3 * turnover, atol=1e-15)   # no excess over itself but the costs


def test_weights_do_not_look_ahead():
    rng = np.random.default_rng(4)
    score, ret = _panel(rng, hours=30, pairs=10)
    valid = np.isfinite(score) & np.isfinite(ret)
    cfg = PortfolioConfig(long_short=True)
    w = portfolio_weights(score, valid, cfg)
    later = score.copy()
    later[15:] = rng.normal(size=later[15:].shape)
    w2 = portfolio_weights(later, valid, cfg)
    np.testing.assert_array_equal(w2[:15], w[:15])
    assert not np.array_equal(w2[15:], w[15:])


def test_return_earned_at_t_is_the_label_return_of_t():
    rng = np.random.default_rng(5)
    score = rng.normal(size=(10, 8))
    r = rng.normal(scale=0.01, size=(10, 8))
    valid = np.ones_like(score, dtype=bool)
    w = portfolio_weights(score, valid, LS)
    net, turnover = portfolio_returns(w, r, valid, LS)
    np.testing.assert_allclose(net, (w * r).sum(axis=1) - 1e-3 * turnover)
    bumped = r.copy()
    bumped[6] += 0.05 * np.sign(w[6])                 # only hour 6's label return changes
    net2, _ = portfolio_returns(w, bumped, valid, LS)
    changed = np.flatnonzero(net2 != net)
    np.testing.assert_array_equal(changed, [6])


def test_max_drawdown_of_the_summed_curve():
    assert max_drawdown(np.array([0.1, -0.05, -0.1, 0.2, -0.02])) == pytest.approx(0.15)
    assert max_drawdown(np.array([-0.03, 0.01])) == pytest.approx(0.03)       # from the start (0)
    assert max_drawdown(np.array([0.01, 0.02])) == 0.0


def test_to_matrix_places_rows_and_leaves_nan():
    m = to_matrix(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 2]), np.array([1, 3, 0]), 3, 4)
    assert m[0, 1] == 1.0 and m[0, 3] == 2.0 and m[2, 0] == 3.0
    assert np.isnan(m).sum() == 9


DAYS = 28


def _days(hours: int) -> np.ndarray:
    """Day id of each of ``hours`` consecutive test hours."""
    return np.arange(hours) // 24


def _series(rng: np.random.Generator, hours: int, edge: float, noise: float = 1.0) -> HourSeries:
    return HourSeries(ic=rng.normal(edge, 0.1, hours), rank_ic=rng.normal(edge, 0.1 * noise, hours),
                      net=rng.normal(edge * 1e-2, 1e-3, hours), turnover=np.zeros(hours))


def test_gnn_differences_identical_models_tie_at_zero():
    rng = np.random.default_rng(6)
    runs = [_series(rng, 24 * DAYS, 0.02) for _ in range(3)]
    out = gnn_differences({"gnn": runs, "copy": runs}, _days(24 * DAYS), replicates=200)
    for key in ("rank_ic", "sharpe"):
        assert out["gnn_vs"]["copy"][key] == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert out["seeds"] == 3 and out["hours"] == 24 * DAYS and out["days"] == DAYS and out["block_days"] == 7


def test_gnn_differences_find_a_clear_edge_and_mean_over_seeds():
    rng = np.random.default_rng(7)
    gnn = [_series(rng, 24 * DAYS, 0.05) for _ in range(3)]      # 3 seeds: with 2, t(1) makes any interval wide
    other = [_series(rng, 24 * DAYS, 0.0) for _ in range(3)]
    out = gnn_differences({"gnn": gnn, "other": other}, _days(24 * DAYS), replicates=300)
    rank = out["gnn_vs"]["other"]["rank_ic"]
    expected = np.mean([g.rank_ic.mean() - o.rank_ic.mean() for g, o in zip(gnn, other)])
    assert rank["diff"] == pytest.approx(expected)
    assert 0 < rank["ci_low"] < rank["diff"] < rank["ci_high"]
    sharpe = out["gnn_vs"]["other"]["sharpe"]
    ann = np.sqrt(8760)
    expected_sharpe = np.mean([g.net.mean() / g.net.std(ddof=1) - o.net.mean() / o.net.std(ddof=1)
                               for g, o in zip(gnn, other)]) * ann
    assert sharpe["diff"] == pytest.approx(expected_sharpe, rel=1e-9)
    assert sharpe["ci_low"] > 0


def test_gnn_differences_replicate_equals_statistic_on_the_drawn_hours():
    # independent reference: rebuild one replicate's hours by repeating each drawn day, then
    # compute Rank IC and Sharpe directly on them
    from gnn_market.significance import draw_replicates

    rng = np.random.default_rng(10)
    hours, seeds = 24 * 15, 2
    gnn = [_series(rng, hours, 0.03) for _ in range(seeds)]
    other = [_series(rng, hours, 0.0) for _ in range(seeds)]
    day = _days(hours)
    day[5] = -1                                            # not a day id: refused below
    with pytest.raises(ValueError):
        gnn_differences({"gnn": gnn, "other": other}, day[:-1])
    day = _days(hours)
    gnn[0].rank_ic[[3, 50, 51]] = np.nan                   # skipped hours stay skipped in replicates
    day_w, seed_w = draw_replicates(15, seeds, 1, 20231201, 7)
    picked = np.repeat(np.arange(15), day_w[0].astype(int))
    take = np.concatenate([np.flatnonzero(day == d) for d in picked])
    ann = np.sqrt(8760)

    def stats(s: HourSeries) -> tuple[float, float]:
        r, x = s.rank_ic[take], s.net[take]
        return np.nanmean(r), x.mean() / x.std(ddof=1) * ann

    per_seed = np.array([np.subtract(stats(g), stats(o)) for g, o in zip(gnn, other)])   # [S, 2]
    expected = (seed_w[0][:, None] * per_seed).sum(axis=0) / seeds
    # with one replicate the percentile interval collapses onto that replicate
    out = gnn_differences({"gnn": gnn, "other": other}, day, replicates=1)["gnn_vs"]["other"]
    assert out["rank_ic"]["ci_low"] == pytest.approx(expected[0], rel=1e-9)
    assert out["sharpe"]["ci_high"] == pytest.approx(expected[1], rel=1e-9)


def test_gnn_differences_resample_seeds():
    # the per-hour series agree on average; the seeds disagree: the interval must cover the seed spread
    rng = np.random.default_rng(8)
    hours = 24 * DAYS
    base = _series(rng, hours, 0.0)
    shifted = [HourSeries(base.ic, base.rank_ic + shift, base.net, base.turnover) for shift in (-0.02, 0.0, 0.02)]
    out = gnn_differences({"gnn": shifted, "other": [base] * 3}, _days(hours), replicates=500)
    rank = out["gnn_vs"]["other"]["rank_ic"]
    assert rank["diff"] == pytest.approx(0.0, abs=1e-12)
    assert rank["ci_low"] < -0.005 and rank["ci_high"] > 0.005
    assert out["seed_noise"] is True


def test_gnn_differences_too_few_days_and_flat_books():
    rng = np.random.default_rng(9)
    short = gnn_differences({"gnn": [_series(rng, 20, 0.0)], "other": [_series(rng, 20, 0.0)]}, _days(20))
    assert short["gnn_vs"] == {} and "fewer than 2 test days" in short["note"]
    hours = 24 * 14
    flat = HourSeries(np.full(hours, np.nan), np.full(hours, np.nan), np.zeros(hours), np.zeros(hours))
    out = gnn_differences({"gnn": [_series(rng, hours, 0.0)], "majority": [flat]}, _days(hours), replicates=50)
    assert out["gnn_vs"]["majority"]["sharpe"]["diff"] is None
    assert out["gnn_vs"]["majority"]["rank_ic"]["diff"] is None
    assert out["seed_noise"] is False


def test_aggregate_seeds_gives_portfolio_sd():
    def seed(sharpe: float, ic: float | None) -> dict:
        return {"m": {"n": 5, "ic": ic, "rank_ic": 0.01,
                      "portfolio": {"return_ann": 0.1, "sharpe": sharpe, "max_drawdown": 0.2, "turnover": 0.3}}}

    agg = aggregate_seeds([seed(1.0, 0.02), seed(3.0, 0.04)])["m"]
    assert agg["portfolio"]["sharpe"] == pytest.approx(2.0)
    assert agg["portfolio"]["sharpe_sd"] == pytest.approx(math.sqrt(2.0))
    assert agg["portfolio"]["turnover_sd"] == 0.0 and agg["ic_sd"] == pytest.approx(math.sqrt(2.0) * 0.01)
    assert aggregate_seeds([seed(1.0, None), seed(3.0, 0.04)])["m"]["ic"] is None


def test_portfolio_config_refuses_nonsense():
    with pytest.raises(ValueError):
        PortfolioConfig(long_short=True, k_fraction=0.7)
    with pytest.raises(ValueError):
        PortfolioConfig(long_short=False, band=0.5)


# --------------------------------------------------------------------------- a run's test cells and metrics.json


def _fold(split_test: np.ndarray, classes: np.ndarray, probs: np.ndarray | None = None) -> SimpleNamespace:
    h_idx, pair = np.nonzero(classes[split_test] != IGNORE_INDEX)
    hour = split_test[h_idx]
    probs = np.full((len(hour), 3), 1 / 3) if probs is None else probs
    fold = SimpleNamespace(split=SimpleNamespace(test=split_test), test_hours=hour, y_test=classes[hour, pair],
                           test={"gnn": (probs.argmax(1), probs)})
    return SimpleNamespace(fold=fold)


def _market() -> SimpleNamespace:
    close = np.array([[10.0, 20.0, 5.0], [11.0, 19.0, 5.0], [12.1, 19.0, np.nan], [12.1, 20.9, 6.0],
                      [13.31, 20.9, 6.0]])
    nxt = np.full_like(close, np.nan)
    nxt[:-1] = close[1:] / close[:-1] - 1
    classes = np.where(np.isfinite(nxt), np.where(nxt > 0.01, 2, np.where(nxt < -0.01, 0, 1)), IGNORE_INDEX)
    labels = SimpleNamespace(classes=classes, next_return=nxt, symbols=["A", "B", "C"])
    return SimpleNamespace(require_labels=lambda: labels, labels=labels)


def test_trading_rows_use_the_label_return_of_each_test_cell():
    market = _market()
    classes = market.labels.classes
    folds = [_fold(np.array([1, 2]), classes), _fold(np.array([3]), classes)]
    rows = trading_rows(folds, market)
    np.testing.assert_array_equal(rows.hours, [1, 2, 3])
    # hour 1: close[2] / close[1] - 1 = +10 %, 0 %, C has no close at 2 (no label); hour 2: C has no close
    expected = np.array([[0.1, 0.0, np.nan], [0.0, 0.1, np.nan], [0.1, 0.0, 0.0]])
    np.testing.assert_allclose(rows.simple_return, expected, atol=1e-12)
    assert len(rows.pair) == int(np.isfinite(expected).sum())


def test_trading_rows_refuse_rows_that_are_not_the_labelled_cells():
    market = _market()
    fold = _fold(np.array([1, 2]), market.labels.classes)
    fold.fold.test_hours = fold.fold.test_hours[::-1].copy()
    with pytest.raises(AssertionError, match="test rows"):
        trading_rows([fold], market)


def test_a_run_writes_the_trading_fields_and_report(tmp_path):
    store = tiny_store(tmp_path)
    cfg = TrainConfig(store=str(store.root), out=str(tmp_path / "run"), ablation=False, baselines=False,
                      **{**TINY_TRAIN, "select_encoder": False})
    metrics = run_training(cfg)
    gnn = metrics["test"]["gnn"]
    for key in ("ic", "rank_ic", "icir", "rank_icir"):
        assert key in gnn and f"{key}_sd" in gnn
    assert set(gnn["portfolio"]) >= {"return_ann", "sharpe", "max_drawdown", "turnover", "sharpe_sd"}
    assert metrics["trading"]["portfolio"]["long_short"] is False          # the tiny store is spot
    assert metrics["trading"]["hours"] == sum(f["test"]["hours"] for f in metrics["split"]["folds"])
    assert gnn["ic_hours"] <= metrics["trading"]["hours"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["gnn"]["portfolio"] == pytest.approx(gnn["portfolio"])
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Trading metrics (test)" in report and "![portfolio equity](equity.png)" in report
    assert (tmp_path / "run" / "equity.png").stat().st_size > 0
