"""Protocol tests that fail on leaks: nothing in a run is fitted or chosen on test rows.

(a) the saved normaliser is exactly the one fitted on the training hours;
(b) changing the test labels changes no trained weight, no baseline prediction, no calibration;
(c) early stopping never reads test: garbage test labels leave the learning history unchanged.
Each was checked by introducing the leak (fit the normaliser on train + val; class weights, a
baseline or the calibration fitted on test rows; early stopping on the test graphs): the test fails.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from gnn_market.checkpoint import load_checkpoint
from gnn_market.classes import IGNORE_INDEX
from gnn_market.normalizer import FeatureNormalizer
from gnn_market.pipeline import MarketData, load_market
from gnn_market.training import TrainConfig, candidate_hours, make_splits, run_fold, run_training
from gnn_market.training.calibrate import RULE_BASED_MODELS, calibrate_fold
from gnn_market.training.graphs import graph_config

from train_fixtures import TINY_TRAIN, tiny_store

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
    assert set(base.calibrations) == set(base.raw.test) - RULE_BASED_MODELS


def test_c_early_stopping_never_reads_test(folds) -> None:
    _, _, runs = folds
    for name in ("permuted", "constant"):
        for model, history in runs["true"].raw.histories.items():
            other = runs[name].raw.histories[model]
            assert (other.train_loss, other.val_macro_f1, other.best_epoch) == \
                   (history.train_loss, history.val_macro_f1, history.best_epoch), (name, model)


def test_majority_probabilities_are_the_training_class_shares(folds) -> None:
    market, split, runs = folds
    # independent reference: the labels of the training hours' valid nodes, from the market itself
    classes = market.labels.classes[split.train][market.features.valid[split.train]]
    classes = classes[classes != IGNORE_INDEX]
    shares = np.bincount(classes, minlength=3) / len(classes)
    for which in ("val", "test"):
        probs = getattr(runs["true"].fold, which)["majority"][1]
        np.testing.assert_allclose(probs, np.tile(shares, (len(probs), 1)), rtol=1e-12)
