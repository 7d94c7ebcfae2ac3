"""training.calibrate: every model (the class-share references majority and persistence too) is calibrated and
decided from its validation rows only."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from gnn_market.calibration import DecisionRule, VectorScaling
from gnn_market.training.calibrate import RULE_BASED_MODELS, calibrate_fold, is_calibrated
from gnn_market.training.evaluation import score_seed
from gnn_market.training.folds import FoldResult
from gnn_market.training.metrics import safe_log_loss


def probs_for(y: np.ndarray, rng: np.random.Generator, sharp: float) -> np.ndarray:
    """Over-confident, class-shifted probabilities that carry some signal about ``y`` ``[M]`` -> ``[M, 3]``."""
    logits = rng.normal(size=(len(y), 3)) + sharp * np.eye(3)[y] + np.array([1.0, -1.0, 1.0])
    p = np.exp(2.0 * logits)
    return p / p.sum(1, keepdims=True)


def fold(seed: int = 0) -> FoldResult:
    rng = np.random.default_rng(seed)
    y_val = rng.choice(3, size=900, p=[0.15, 0.7, 0.15])
    y_test = rng.choice(3, size=700, p=[0.2, 0.6, 0.2])
    out = {}
    for name, rows in (("val", y_val), ("test", y_test)):
        gnn = probs_for(rows, rng, 1.0)
        prior = np.tile([0.15, 0.7, 0.15], (len(rows), 1))
        out[name] = {"gnn": (gnn.argmax(1), gnn), "logistic": (gnn.argmax(1), gnn[:, ::-1].copy()),
                     "majority": (np.ones(len(rows), np.int64), prior),
                     "persistence": (rng.choice(3, size=len(rows)), prior[:, ::-1].copy())}
    return FoldResult(split=None, test=out["test"], val=out["val"], y_test=y_test, y_val=y_val, histories={},
                      model=None, normalizer=None, timings={}, test_hours=np.arange(len(y_test)))


def test_every_model_gets_validation_fitted_scaling_and_rule() -> None:
    f = fold()
    cal = calibrate_fold(f)
    assert set(cal.calibrations) == {"gnn", "logistic", "majority", "persistence"}
    for name in ("gnn", "logistic", "majority", "persistence"):
        # independent reference: the building blocks fitted by hand on the validation rows
        scaling = VectorScaling().fit(f.val[name][1], f.y_val)
        own_rule = name in RULE_BASED_MODELS   # their classes stay their own rule (plain weights)
        rule = DecisionRule() if own_rule else DecisionRule().fit(scaling.transform(f.val[name][1]), f.y_val)
        for which in ("val", "test"):
            expect = scaling.transform(getattr(f, which)[name][1])
            pred, probs = getattr(cal.fold, which)[name]
            np.testing.assert_allclose(probs, expect, atol=1e-12)
            np.testing.assert_array_equal(pred, getattr(f, which)[name][0] if own_rule else rule.predict(expect))
        np.testing.assert_allclose(cal.calibrations[name].state_dict()["weights"], rule.weights)
        assert cal.raw.test[name] is f.test[name]
    # the GNN's probabilities were shifted towards UP/DOWN: calibration must lower the validation NLL
    nll = lambda p, y: -np.mean(np.log(p[np.arange(len(y)), y]))  # noqa: E731
    assert nll(cal.fold.val["gnn"][1], f.y_val) < nll(f.val["gnn"][1], f.y_val) - 0.05


def test_rule_based_models_are_recalibrated_like_learned_ones() -> None:
    assert RULE_BASED_MODELS == {"majority", "persistence"}
    for name in (*RULE_BASED_MODELS, "gnn", "hist_gb_context", "gnn_no_temporal"):
        assert is_calibrated(name)


def share_fold(n_val: int = 1000, n_test: int = 600) -> FoldResult:
    """Majority trained on shares 25/50/25 %; validation and test both hold exactly 15/70/15 %."""
    def labels(n: int) -> np.ndarray:
        return np.repeat([0, 1, 2], [15 * n // 100, 70 * n // 100, n - 85 * n // 100])

    y_val, y_test = labels(n_val), labels(n_test)
    train_shares = np.array([0.25, 0.5, 0.25])
    out = {name: {"majority": (np.ones(len(y), np.int64), np.tile(train_shares, (len(y), 1)))}
           for name, y in (("val", y_val), ("test", y_test))}
    return FoldResult(split=None, test=out["test"], val=out["val"], y_test=y_test, y_val=y_val, histories={},
                      model=None, normalizer=None, timings={}, test_hours=np.arange(len(y_test)))


def test_recalibrated_majority_is_the_validation_class_share_constant() -> None:
    """Test shares equal validation shares but differ from training shares: the recalibrated majority must
    score the log-loss of the validation class-share constant, below the raw training-share one."""
    f = share_fold()
    cal = calibrate_fold(f)
    raw = safe_log_loss(f.y_test, f.test["majority"][1])
    calibrated = safe_log_loss(f.y_test, cal.fold.test["majority"][1])
    # independent reference: the constant validation class shares, from the labels alone
    shares = np.bincount(f.y_val, minlength=3) / len(f.y_val)
    reference = safe_log_loss(f.y_test, np.tile(shares, (len(f.y_test), 1)))
    assert calibrated < raw - 0.05
    assert abs(calibrated - reference) < 1e-6
    # its classes stay its own rule: the training majority class for every row
    np.testing.assert_array_equal(cal.fold.test["majority"][0], f.test["majority"][0])
    # and its uncalibrated log-loss stays visible in the metrics, beside the calibrated one
    metrics = score_seed([cal], "test")["majority"]
    assert metrics["log_loss"] == calibrated and metrics["log_loss_uncalibrated"] == raw


def test_test_labels_and_test_probabilities_never_shape_the_maps() -> None:
    f = fold()
    base = calibrate_fold(f)
    rng = np.random.default_rng(9)
    garbage_test = {name: (pred, rng.dirichlet(np.ones(3), size=len(pred))) for name, (pred, _) in f.test.items()}
    other = calibrate_fold(replace(f, y_test=(f.y_test + 1) % 3, test=garbage_test))
    for name, c in base.calibrations.items():
        assert c.state_dict() == other.calibrations[name].state_dict()
