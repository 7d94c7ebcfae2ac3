"""Post-processing of a fold: calibrated probabilities and a validation-fitted decision rule per model.

For every model, the class-share references of :data:`RULE_BASED_MODELS` included:

1. :class:`~gnn_market.calibration.VectorScaling` fitted on the model's
   **validation** probabilities and labels, applied to its validation and test
   probabilities;
2. :class:`~gnn_market.calibration.DecisionRule` fitted on the *calibrated*
   validation probabilities (per-class weights maximising validation
   macro-F1), which then makes the model's class predictions on validation and test.

Test rows are only transformed, never fitted on. ``majority`` and
``persistence`` get the same two maps: the bias term alone re-learns the
validation class shares, which every learned model's calibration does too, so
exempting them would compare the learned models' log-loss with a stale
(training-share) reference. Recalibrated, ``majority`` is the constant
validation class shares and predicts the most frequent validation class; the
raw scores stay in ``cal.raw`` (``log_loss_uncalibrated`` in ``metrics.json``).

    cal = calibrate_fold(result)      # result: FoldResult from run_fold
    cal.fold.test["gnn"]              # (decided classes [M_test], calibrated probs [M_test, 3])
    cal.raw.test["gnn"]               # what the network output
    cal.calibrations["gnn"].state_dict()
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..calibration import DecisionRule, VectorScaling
from .folds import FoldResult

#: Models whose raw predictions come from a fixed rule (class shares, "next hour = this hour"), not learned
#: probabilities. Calibrated like every other model (see the module docstring).
RULE_BASED_MODELS = frozenset({"majority", "persistence"})


def is_calibrated(model: str) -> bool:
    """Whether ``model`` gets vector scaling and a decision rule: every model, rule-based ones included."""
    return True


@dataclass
class ModelCalibration:
    """One model's post-hoc maps, both fitted on its validation rows."""

    scaling: VectorScaling
    rule: DecisionRule

    @classmethod
    def fit(cls, val_probs: np.ndarray, y_val: np.ndarray) -> "ModelCalibration":
        """Fit on validation probabilities ``[M_val, 3]`` and labels ``[M_val]``."""
        scaling = VectorScaling().fit(val_probs, y_val)
        return cls(scaling, DecisionRule().fit(scaling.transform(val_probs), y_val))

    def apply(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(classes [M], calibrated probs [M, 3])`` of raw probabilities ``[M, 3]``."""
        calibrated = self.scaling.transform(probs)
        return self.rule.predict(calibrated).astype(np.int64), calibrated

    def state_dict(self) -> dict[str, Any]:
        """``{"scale": [3], "bias": [3], "weights": [3]}`` as plain floats (``metrics.json``, checkpoints)."""
        return {**self.scaling.state_dict(), **self.rule.state_dict()}


@dataclass
class CalibratedFold:
    """A fold after calibration: ``fold`` holds the scored predictions, ``raw`` the models' own."""

    fold: FoldResult                           # test/val: (decided classes, calibrated probs); others as raw
    raw: FoldResult                            # as returned by run_fold
    calibrations: dict[str, ModelCalibration]  # every model of ``raw``


def calibrate_fold(result: FoldResult) -> CalibratedFold:
    """Fit each model's maps on ``result.val`` and apply them to its val and test predictions."""
    calibrations: dict[str, ModelCalibration] = {}
    test, val = dict(result.test), dict(result.val)
    for name, (_, val_probs) in result.val.items():
        cal = ModelCalibration.fit(val_probs, result.y_val)
        calibrations[name] = cal
        val[name] = cal.apply(val_probs)
        test[name] = cal.apply(result.test[name][1])
    return CalibratedFold(replace(result, test=test, val=val), result, calibrations)
