"""Tabular baselines: each behaves as documented on small constructed data."""
from __future__ import annotations

import numpy as np
import pytest

from gnn_market.training.baselines import (
    HistGBBaseline,
    LogisticBaseline,
    MajorityBaseline,
    PersistenceBaseline,
    TabularData,
    balanced_weights,
    make_baselines,
    return_class,
)


def data(n: int = 600, seed: int = 0) -> TabularData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    # the class is a deterministic function of feature 0
    y = np.where(X[:, 0] > 0.7, 2, np.where(X[:, 0] < -0.7, 0, 1)).astype(np.int64)
    return TabularData(X, y, rng.normal(scale=0.02, size=n))


def test_return_class_uses_strict_threshold() -> None:
    r = np.array([0.02, 0.01, -0.01, -0.0101, np.nan, 0.0])
    assert return_class(r, 0.01).tolist() == [2, 1, 1, 0, 1, 1]


def test_majority_predicts_training_mode_with_prior_probs() -> None:
    train = data()
    b = MajorityBaseline().fit(train)
    test = data(seed=1)
    assert (b.predict(test) == 1).all()
    np.testing.assert_allclose(b.predict_proba(test)[0], np.bincount(train.y, minlength=3) / len(train.y))


def test_persistence_predicts_current_class_and_transition_probs() -> None:
    now = np.array([0.05, -0.05, 0.0, 0.05])
    train = TabularData(np.zeros((4, 1), np.float32), np.array([2, 0, 1, 1]), now)
    b = PersistenceBaseline(threshold=0.01).fit(train)
    test = TabularData(np.zeros((3, 1), np.float32), np.array([1, 1, 1]), np.array([0.02, -0.02, 0.001]))
    assert b.predict(test).tolist() == [2, 0, 1]
    probs = b.predict_proba(test)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    # after an UP hour the training data went UP once and SIDEWAYS once (+1 Laplace each)
    np.testing.assert_allclose(probs[0], [1 / 5, 2 / 5, 2 / 5])


@pytest.mark.parametrize("cls", [LogisticBaseline, HistGBBaseline])
def test_learned_baselines_learn_a_simple_rule(cls) -> None:
    b = cls(seed=0).fit(data())
    test = data(seed=1)
    assert (b.predict(test) == test.y).mean() > 0.9
    probs = b.predict_proba(test)
    assert probs.shape == (len(test.y), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_learned_baselines_handle_a_missing_class() -> None:
    d = data()
    keep = d.y != 0
    sub = TabularData(d.X[keep], d.y[keep], d.current_return[keep])
    probs = LogisticBaseline().fit(sub).predict_proba(data(seed=2))
    assert probs.shape[1] == 3 and (probs[:, 0] == 0).all()


def test_hist_gb_subsampling_is_seeded() -> None:
    d = data(n=2000)
    a = HistGBBaseline(seed=3, max_rows=500, max_iter=20).fit(d).predict_proba(d)
    b = HistGBBaseline(seed=3, max_rows=500, max_iter=20).fit(d).predict_proba(d)
    np.testing.assert_array_equal(a, b)


def test_balanced_weights_and_factory() -> None:
    np.testing.assert_allclose(balanced_weights(np.array([1, 1, 1, 2])), [0.0, 4 / 9, 4 / 3])
    assert [b.name for b in make_baselines(0.01)] == ["majority", "persistence", "logistic", "hist_gb"]
