"""Post-processing of a fold: calibrated probabilities and a validation-fitted decision rule per model.

For every model, the class-share references of :data:`RULE_BASED_MODELS` included:

1. :class:`~gnn_market.calibration.VectorScaling` fitted on the model's
   **validation** probabilities and labels, applied to its validation and test
   probabilities;
2. :class:`~gnn_market.calibration.DecisionRule` fitted on the *calibrated*
   validation probabilities (per-class weights maximising validation
   macro-F1), which then makes the model's class predictions on validation and test.

Test rows are only transformed, never fitted on. ``majority`` and
``persistence`` get the same vector scaling: its bias term alone re-learns the
validation class shares, which every learned model's calibration does too, so
exempting them would compare the learned models' log-loss and Brier with a
stale (training-share) reference. Their **classes stay their own rule** (the
training majority class; this hour's class): a decision rule refitted on
validation changes what the baseline *is* (on the bundled sample it made
persistence never predict UP and cut its test macro-F1 from 0.378 to 0.345),
which would tilt every classification margin towards the learned models. So
recalibrated, ``majority`` scores the log-loss of the constant validation
class shares and still predicts its training majority class. The raw scores
stay in ``cal.raw`` (``log_loss_uncalibrated`` in ``metrics.json``).

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
#: probabilities: their probabilities are vector-scaled like every model's, their classes stay the rule's
#: (plain weights, see the module docstring).
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
    def fit(cls, val_probs: np.ndarray, y_val: np.ndarray, fit_rule: bool = True) -> "ModelCalibration":
        """Fit on validation probabilities ``[M_val, 3]`` and labels ``[M_val]``; ``fit_rule=False`` keeps
        plain weights (the rule-based models, whose classes are their own)."""
        scaling = VectorScaling().fit(val_probs, y_val)
        rule = DecisionRule().fit(scaling.transform(val_probs), y_val) if fit_rule else DecisionRule()
        return cls(scaling, rule)

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
        own_rule = name in RULE_BASED_MODELS
        cal = ModelCalibration.fit(val_probs, result.y_val, fit_rule=not own_rule)
        calibrations[name] = cal
        for out, raw in ((val, result.val[name]), (test, result.test[name])):
            classes, probs = cal.apply(raw[1])
            out[name] = (raw[0] if own_rule else classes, probs)
    return CalibratedFold(replace(result, test=test, val=val), result, calibrations)
