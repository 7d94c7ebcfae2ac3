"""Tabular baselines: each behaves as documented on small constructed data; the stronger ones learn\nplanted signals their plain counterparts cannot see, and are deterministic under a seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import gnn_market.training.baselines as baselines_module
from gnn_market.training.baselines import (
    HistGBBaseline,
    HistGBContextBaseline,
    LogisticBaseline,
    MajorityBaseline,
    MLPBaseline,
    PersistenceBaseline,
    TabularData,
    balanced_weights,
    make_baselines,
    return_class,
)
from gnn_market.training.config import MODEL_ORDER
from gnn_market.training.context import RowInputs, row_windows
from gnn_market.training.metrics import classification_metrics


@pytest.fixture(autouse=True)
def one_thread():
    """One OpenMP / torch thread, as training runs (``--threads 1``): on a shared 2-core machine two
    threads spin-wait and made these fits ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


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
    names = [b.name for b in make_baselines(0.01)]
    assert names == ["majority", "persistence", "logistic", "hist_gb", "hist_gb_context", "mlp"]
    assert MODEL_ORDER[-len(names):] == tuple(names)


# --------------------------------------------------------------------------- the stronger baselines
def classes_of(v: np.ndarray, cut: float = 0.8) -> np.ndarray:
    return np.where(v > cut, 2, np.where(v < -cut, 0, 1)).astype(np.int64)


def planted_rows(T: int = 500, N: int = 16, F: int = 3, seed: int = 0, signal: str = "context",
                 constant: bool = False) -> tuple[TabularData, TabularData]:
    """Train (hours < 0.8 T) and test rows of a T x N panel whose label depends on one planted variable.

    ``signal="context"``: on a market-wide variable of the row's hour (context column 1);
    ``signal="lag5"``: on the pair's own feature 0 five hours earlier; ``"none"``: labels drawn
    independently (shares 0.2 / 0.6 / 0.2). ``constant`` zeroes the features and context.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, N, F)).astype(np.float32)
    market = rng.normal(size=(T, 4))
    if signal == "context":
        y = np.repeat(classes_of(market[:, 1])[:, None], N, axis=1)
    elif signal == "lag5":
        y = np.full((T, N), 1, dtype=np.int64)
        y[5:] = classes_of(x[:-5, :, 0])
    else:
        y = rng.choice(3, size=(T, N), p=[0.2, 0.6, 0.2])
    noise = rng.random((T, N)) < 0.05                       # 5 % label noise
    y = np.where(noise, rng.integers(0, 3, (T, N)), y)
    if constant:
        x[:], market[:] = 0.0, 0.0
    inputs = RowInputs(x=x, valid=np.ones((T, N), bool))
    hour, pair = np.repeat(np.arange(10, T), N), np.tile(np.arange(N), T - 10)
    rows = TabularData(x[hour, pair], y[hour, pair], np.zeros(len(hour)), hour=hour, pair=pair,
                       context=market[hour], inputs=inputs)
    cut = int(0.8 * T)
    return rows.take(np.flatnonzero(hour < cut)), rows.take(np.flatnonzero(hour >= cut))


def macro_f1(model, test: TabularData) -> float:
    return classification_metrics(test.y, model.predict(test))["macro_f1"]


def test_hist_gb_context_learns_a_market_wide_signal_plain_hist_gb_cannot_see() -> None:
    train, test = planted_rows(signal="context")
    plain = HistGBBaseline(seed=0, max_iter=60).fit(train)
    ctx = HistGBContextBaseline(seed=0, max_iter=60).fit(train)
    assert macro_f1(ctx, test) > 0.85 and macro_f1(plain, test) < 0.45
    assert macro_f1(ctx, test) > macro_f1(plain, test) + 0.4


def test_mlp_learns_a_five_hour_lag_the_current_features_cannot_show() -> None:
    train, test = planted_rows(signal="lag5")
    logistic = LogisticBaseline(seed=0).fit(train)
    mlp = MLPBaseline(window=8, seed=0).fit(train)
    assert macro_f1(mlp, test) > 0.8 and macro_f1(logistic, test) < 0.45
    assert macro_f1(mlp, test) > macro_f1(logistic, test) + 0.35
    probs = mlp.predict_proba(test)
    assert probs.shape == (len(test.y), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: HistGBContextBaseline(class_weighted=False, seed=0, max_iter=60),
                                  lambda: MLPBaseline(window=8, class_weighted=False, seed=0)],
                         ids=["hist_gb_context", "mlp"])
def test_uninformative_inputs_give_about_the_majority_rate(make) -> None:
    train, test = planted_rows(signal="none", constant=True)
    majority = (test.y == np.bincount(train.y).argmax()).mean()
    accuracy = (make().fit(train).predict(test) == test.y).mean()
    assert abs(accuracy - majority) < 0.02, (accuracy, majority)


@pytest.mark.parametrize("make", [lambda seed: HistGBContextBaseline(seed=seed, max_iter=30, max_rows=3000),
                                  lambda seed: MLPBaseline(window=6, seed=seed, max_rows=3000, max_epochs=5)],
                         ids=["hist_gb_context", "mlp"])
def test_new_baselines_are_deterministic_under_a_seed(make) -> None:
    train, test = planted_rows(signal="lag5", T=300)
    torch.manual_seed(123)                      # the global RNG state must not matter ...
    a = make(0).fit(train).predict_proba(test)
    before = torch.random.get_rng_state()
    b = make(0).fit(train).predict_proba(test)
    assert torch.equal(before, torch.random.get_rng_state())   # ... nor be consumed
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make(1).fit(train).predict_proba(test))


def test_new_baselines_need_their_inputs() -> None:
    plain = data()
    with pytest.raises(ValueError, match="context"):
        HistGBContextBaseline().fit(plain)
    with pytest.raises(ValueError, match="inputs"):
        MLPBaseline().fit(plain)


def test_mlp_caps_training_rows_by_memory(monkeypatch) -> None:
    train, _ = planted_rows(signal="lag5", T=200)
    mlp = MLPBaseline(window=8, max_rows=10_000, memory_mb=500 * 8 * 3 * 4 / 2**20)   # room for 500 windows
    assert mlp._row_cap(train.inputs) == 500
    seen = []
    real = row_windows

    def spy(inputs, hour, pair, length, **kw):
        seen.append(len(hour))
        return real(inputs, hour, pair, length, **kw)

    monkeypatch.setattr(baselines_module, "row_windows", spy)
    mlp.max_epochs = 1
    mlp.fit(train).predict_proba(train)
    assert max(seen) <= 500 and sum(seen[2:]) == len(train.y)   # fit: 500 + 125 early-stopping rows


def test_hist_gb_context_ignores_a_context_column_missing_from_training() -> None:
    train, test = planted_rows(signal="context", T=200)
    train.context[:, 3] = np.nan                                  # e.g. no BTCUSDT in the panel
    model = HistGBContextBaseline(seed=0, max_iter=20).fit(train)
    assert len(model.columns_) == train.X.shape[1] + train.context.shape[1] - 1
    assert model.predict_proba(test).shape == (len(test.y), 3)
