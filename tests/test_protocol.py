"""Protocol tests that fail on leaks: nothing in a run is fitted or chosen on test rows.

(a) the saved normaliser is exactly the one fitted on the training hours;
(b) changing the test labels changes no trained weight, no baseline prediction, no calibration;
(c) early stopping never reads test: garbage test labels leave the learning history unchanged;
(d) no price, volume, book or funding value after validation reaches anything fitted or chosen:
    perturbing them all leaves every weight, validation prediction and calibration bit-identical.
Each was checked by introducing the leak (fit the normaliser on train + val; class weights, a
baseline or the calibration fitted on test rows; early stopping on the test graphs; the baselines'
or the GNN's feature normaliser fitted on all hours): the test fails.
"""
from __future__ import annotations

import dataclasses
import pickle
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from gnn_market.checkpoint import load_checkpoint
from gnn_market.classes import IGNORE_INDEX
from gnn_market.normalizer import FeatureNormalizer
from gnn_market.pipeline import MarketData, load_market
from gnn_market.store import Store
from gnn_market.store_schema import MAX_FUNDING_RATE
from gnn_market.synthetic import SyntheticMarket, simulate_market, write_market
from gnn_market.training import (
    LABEL_HORIZON,
    MODEL_ORDER,
    TrainConfig,
    candidate_hours,
    make_splits,
    run_fold,
    run_training,
)
from gnn_market.training import folds as folds_module
from gnn_market.training.calibrate import calibrate_fold
from gnn_market.training.graphs import graph_config

from train_fixtures import TINY_MARKET, TINY_TRAIN, tiny_store

#: Tiny but with room for early stopping to act (up to 4 epochs, patience 1).
PROTOCOL_TRAIN = {**TINY_TRAIN, "epochs": 4, "patience": 1}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("protocol"))


def config(store, **kw) -> TrainConfig:
    return TrainConfig(store=str(store.root), **{**PROTOCOL_TRAIN, **kw})


def with_test_labels(market: MarketData, hours: np.ndarray, fn) -> MarketData:
    """``market`` with the labelled classes of ``hours`` replaced by ``fn(classes)`` (other hours untouched)."""
    classes = market.labels.classes.copy()
    block = classes[hours]
    labelled = block != IGNORE_INDEX
    block[labelled] = fn(block[labelled])
    classes[hours] = block
    return dataclasses.replace(market, labels=dataclasses.replace(market.labels, classes=classes))


def test_a_saved_normaliser_is_fitted_on_training_hours_only(store, tmp_path) -> None:
    cfg = config(store, out=str(tmp_path / "run"), ablation=False, baselines=False)
    run_training(cfg)
    saved = load_checkpoint(tmp_path / "run" / "model.pt").normalizer
    market = load_market(store)
    split = make_splits(candidate_hours(market, cfg.window), cfg)[-1]
    mode = graph_config(cfg).normalisation
    reference = FeatureNormalizer(mode).fit(market.features, split.train).state_dict()
    assert saved["names"] == reference["names"]
    np.testing.assert_allclose(saved["mean"], reference["mean"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(saved["std"], reference["std"], rtol=1e-12, atol=0)
    # the check can see a leak: with validation hours the fit is measurably different
    leaky = FeatureNormalizer(mode).fit(market.features, np.concatenate([split.train, split.val])).state_dict()
    assert not np.allclose(saved["mean"], leaky["mean"], rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def folds(store):
    """The same fold run on the true market and on markets whose test labels were changed."""
    cfg = config(store)
    market = load_market(store)
    split = make_splits(candidate_hours(market, cfg.window), cfg)[-1]
    device = torch.device("cpu")
    permuted = with_test_labels(market, split.test, lambda c: (c + 1) % 3)   # every test class changed
    constant = with_test_labels(market, split.test, lambda c: np.zeros_like(c))  # all DOWN: garbage
    with threadpool_limits(1, user_api="openmp"):  # as run_training does: no OpenMP spin-waiting
        return market, split, {name: calibrate_fold(run_fold(m, split, cfg, device))
                               for name, m in (("true", market), ("permuted", permuted), ("constant", constant))}


def test_b_test_labels_change_no_weight_prediction_or_calibration(folds) -> None:
    _, _, runs = folds
    base = runs["true"]
    for name in ("permuted", "constant"):
        other = runs[name]
        assert not np.array_equal(other.raw.y_test, base.raw.y_test)  # the perturbation is real
        np.testing.assert_array_equal(other.raw.y_val, base.raw.y_val)
        for key, value in base.raw.model.state_dict().items():
            assert torch.equal(other.raw.model.state_dict()[key], value), key
        for model in base.raw.test:
            for which in ("val", "test"):
                pred, probs = getattr(base.raw, which)[model]
                np.testing.assert_array_equal(getattr(other.raw, which)[model][0], pred, err_msg=model)
                np.testing.assert_array_equal(getattr(other.raw, which)[model][1], probs, err_msg=model)
                np.testing.assert_array_equal(getattr(other.fold, which)[model][0],
                                              getattr(base.fold, which)[model][0], err_msg=model)
        assert {m: c.state_dict() for m, c in other.calibrations.items()} == \
               {m: c.state_dict() for m, c in base.calibrations.items()}
    assert set(base.calibrations) == set(base.raw.test)  # every model, the rule-based ones included


def test_c_early_stopping_never_reads_test(folds) -> None:
    _, _, runs = folds
    for name in ("permuted", "constant"):
        for model, history in runs["true"].raw.histories.items():
            other = runs[name].raw.histories[model]
            assert (other.train_loss, other.val_macro_f1, other.best_epoch) == \
                   (history.train_loss, history.val_macro_f1, history.best_epoch), (name, model)


def test_majority_probabilities_are_the_training_class_shares(folds) -> None:
    """The raw majority is the training class shares; recalibrated on validation it is (up to the
    calibration's small ridge) the validation class shares, the reference the learned models' log-loss meets."""
    market, split, runs = folds

    def shares(hours: np.ndarray) -> np.ndarray:
        # independent reference: the labels of the hours' valid nodes, from the market itself
        classes = market.labels.classes[hours][market.features.valid[hours]]
        classes = classes[classes != IGNORE_INDEX]
        return np.bincount(classes, minlength=3) / len(classes)

    for which in ("val", "test"):
        raw = getattr(runs["true"].raw, which)["majority"][1]
        np.testing.assert_allclose(raw, np.tile(shares(split.train), (len(raw), 1)), rtol=1e-12)
        calibrated = getattr(runs["true"].fold, which)["majority"][1]
        np.testing.assert_allclose(calibrated, np.tile(shares(split.val), (len(raw), 1)), atol=2e-3)


# --- (d) perturbing every price and volume after validation --------------------------------------------------------

#: The tiny market as a perpetual with funding and book snapshots, so that every input source can be perturbed.
PERTURB_MARKET = dataclasses.replace(TINY_MARKET, with_funding=True, with_book=True)


def perturbed_market(market: SyntheticMarket, cut: pd.Timestamp, seed: int = 7) -> SyntheticMarket:
    """``market`` with every price, volume, trade count, book and funding value from ``cut`` on changed.

    Klines with ``open_time >= cut`` (the candle of hour ``cut``); book snapshots and funding events with
    a time ``> cut`` (a snapshot or event at ``cut`` itself is the hour before's, see ``panel.py``).
    Prices of a row share one random factor (so high >= open, close >= low still hold) and volumes
    another; every row and pair draws its own, so returns, volatilities, spreads and volume ratios all move.
    Which values exist (NaN, missing rows) is unchanged: the same hours stay labelled and valid.
    """
    rng = np.random.default_rng(seed)

    def factors(n: int, sd: float) -> np.ndarray:
        return np.exp(rng.normal(0.0, sd, n))

    def kline(df: pd.DataFrame) -> pd.DataFrame:
        df, at = df.copy(), df.index >= cut
        price, size = factors(int(at.sum()), 0.03), factors(int(at.sum()), 0.5)
        for col in ("open", "high", "low", "close"):
            df.loc[at, col] *= price
        for col in ("volume", "taker_buy_volume"):
            df.loc[at, col] *= size
        for col in ("quote_volume", "taker_buy_quote_volume"):
            df.loc[at, col] *= price * size
        trades = df.loc[at, "trades"].astype("float64") * size
        df.loc[at, "trades"] = pd.array(np.maximum(1.0, np.round(trades)), dtype="Int64")
        return df

    def book(df: pd.DataFrame) -> pd.DataFrame:
        df, at = df.copy(), df.index > cut
        price, size, skew = factors(int(at.sum()), 0.03), factors(int(at.sum()), 0.5), factors(int(at.sum()), 0.3)
        df.loc[at, "best_ask"] = df.loc[at, "best_bid"] * price + df.loc[at, "spread"] * price * skew
        df.loc[at, "best_bid"] *= price
        df.loc[at, "spread"] = df.loc[at, "best_ask"] - df.loc[at, "best_bid"]
        for side in ("bid", "ask"):
            qty = size if side == "bid" else size * skew  # the two sides move differently: imbalance changes
            for col in (f"best_{side}_qty", f"{side}_qty"):
                df.loc[at, col] *= qty
            df.loc[at, f"{side}_notional"] *= price * qty
        return df

    def funding(df: pd.DataFrame) -> pd.DataFrame:
        df, at = df.copy(), df.index > cut
        noise = rng.normal(0.0, 5e-4, int(at.sum()))
        df.loc[at, "funding_rate"] = np.clip(df.loc[at, "funding_rate"] + noise, -MAX_FUNDING_RATE, MAX_FUNDING_RATE)
        df.loc[at, "mark_price"] *= factors(int(at.sum()), 0.03)
        return df

    return dataclasses.replace(
        market,
        klines={m: {s: kline(df) for s, df in frames.items()} for m, frames in market.klines.items()},
        book={m: {s: book(df) for s, df in frames.items()} for m, frames in market.book.items()},
        funding={s: funding(df) for s, df in market.funding.items()})


@contextmanager
def recording_fits() -> Iterator[dict[str, Any]]:
    """Record every network ``run_fold`` trains (by name) and every baseline object it fits."""
    fitted: dict[str, Any] = {}
    train_model, make_baselines = folds_module.train_model, folds_module.make_baselines

    def record_train(*args, **kwargs):
        net, history = train_model(*args, **kwargs)
        fitted[args[7] if len(args) > 7 else kwargs["desc"]] = net
        return net, history

    def record_baselines(*args, **kwargs):
        baselines = make_baselines(*args, **kwargs)
        fitted.update({b.name: b for b in baselines})
        return baselines

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(folds_module, "train_model", record_train)
        mp.setattr(folds_module, "make_baselines", record_baselines)
        yield fitted


def fitted_state(model: Any) -> dict[str, Any]:
    """Everything a fit produced, comparable with ``==`` / ``np.array_equal`` / ``torch.equal``."""
    if isinstance(model, torch.nn.Module):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    if hasattr(model, "net_"):                  # the MLP baseline
        return {**fitted_state(model.net_), "best_epoch": model.best_epoch_, "curve": list(model.val_macro_f1_)}
    if hasattr(model, "model"):                 # scikit-learn baselines: the whole fitted estimator, byte for byte
        coefficients = {k: getattr(model.model, k) for k in ("coef_", "intercept_") if hasattr(model.model, k)}
        return {**coefficients, **{k: v for k, v in vars(model).items() if k.endswith("_")},
                "estimator": pickle.dumps(model.model)}
    return {k: v for k, v in vars(model).items() if k.endswith("_")}   # majority, persistence


def assert_same_state(a: dict[str, Any], b: dict[str, Any], name: str) -> None:
    assert a.keys() == b.keys(), name
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), (name, key)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, b[key], err_msg=f"{name}.{key}")
        else:
            assert value == b[key], (name, key)


@pytest.fixture(scope="module")
def price_runs(tmp_path_factory):
    """One fold, run and calibrated on the true perp market and on one whose prices, volumes, book and funding
    all change from the first hour after the last validation label's candle; plus what each run fitted."""
    root = tmp_path_factory.mktemp("perturb")
    simulated = simulate_market(PERTURB_MARKET)
    true = load_market(write_market(Store(root / "true"), simulated), market="perp")
    cfg = TrainConfig(store=str(root / "true"), market="perp", **TINY_TRAIN)
    split = make_splits(candidate_hours(true, cfg.window), cfg)[-1]
    first_changed = int(split.val[-1]) + LABEL_HORIZON + 1
    changed = load_market(write_market(Store(root / "changed"), perturbed_market(simulated, true.times[first_changed])),
                          market="perp")
    runs, fitted = {}, {}
    with threadpool_limits(1, user_api="openmp"):  # as run_training does: no OpenMP spin-waiting
        for name, market in (("true", true), ("changed", changed)):
            with recording_fits() as fitted[name]:
                runs[name] = calibrate_fold(run_fold(market, split, cfg, torch.device("cpu")))
    return true, changed, cfg, split, first_changed, runs, fitted


def test_d_prices_after_validation_change_no_weight_validation_prediction_or_calibration(price_runs) -> None:
    """Every price and volume (klines incl. taker volumes and trades, book, funding) from the first hour
    no training or validation input or label reads is changed; every model's weights, validation
    probabilities, calibration and decision rule must stay bit-identical, and test predictions must move.

    "First hour": the inputs of hour t read candles <= t and the label of t reads close[t + LABEL_HORIZON],
    so the last validation label reads the candle of ``val[-1] + 1``; the perturbation starts one hour later,
    at ``val[-1] + 2``, inside the purge gap and at or before the first test hour (checked below), so it
    covers "from the first test hour onward" and the purge hours after the last validation label as well.
    """
    true, changed, cfg, split, first_changed, runs, fitted = price_runs
    assert split.val[-1] + LABEL_HORIZON < first_changed <= split.test[0]
    # the perturbation is real, reaches every source and starts exactly at first_changed
    for field in ("close", "volume", "trades", "best_bid", "bid_qty", "funding_rate"):
        a, b = getattr(true.panel, field), getattr(changed.panel, field)
        np.testing.assert_array_equal(a[:first_changed], b[:first_changed], err_msg=field)
        assert not np.allclose(a[first_changed:], b[first_changed:], equal_nan=True), field
    # the split itself does not depend on the future: the same hours are usable
    np.testing.assert_array_equal(candidate_hours(changed, cfg.window), candidate_hours(true, cfg.window))

    base, other = runs["true"], runs["changed"]
    models = set(base.raw.test)
    assert models == set(MODEL_ORDER) - {"gnn_gru"}  # the GNN, both ablations, every baseline (gnn_gru: only with selection)
    assert set(fitted["true"]) == set(fitted["changed"]) == models   # every network trained, every baseline fitted
    for name, model in fitted["true"].items():    # their weights
        assert_same_state(fitted_state(model), fitted_state(fitted["changed"][name]), name)
    assert_same_state(fitted_state(base.raw.model), fitted_state(other.raw.model), "kept gnn")
    assert (other.raw.encoder, other.raw.encoder_scores) == (base.raw.encoder, base.raw.encoder_scores)
    for name, history in base.raw.histories.items():
        assert dataclasses.replace(other.raw.histories[name], seconds=0) == dataclasses.replace(history, seconds=0)
    np.testing.assert_array_equal(other.raw.y_val, base.raw.y_val)
    for model in models:                           # validation predictions, raw and calibrated
        for result in ("raw", "fold"):
            for i in (0, 1):
                np.testing.assert_array_equal(getattr(other, result).val[model][i], getattr(base, result).val[model][i],
                                              err_msg=f"{result} {model}")
    assert base.calibrations.keys() == other.calibrations.keys()
    for model, cal in base.calibrations.items():   # vector scaling and decision rule
        assert other.calibrations[model].state_dict() == cal.state_dict(), model
    # ... while the test rows did see the change: every model that reads prices predicts differently
    for model in models - {"majority"}:            # majority's probabilities are the training shares, by design
        assert not np.array_equal(other.raw.test[model][1], base.raw.test[model][1]), model
