"""Calibrated probabilities and a fair decision rule, both fitted on validation rows only.

Class-weighted training makes a network over-state the rare UP/DOWN classes:
its probabilities rank well but are not frequencies (P(SIDEWAYS) = 0.34 where
77 % of hours are sideways). Two small post-hoc maps fix this without touching
the network:

- :class:`VectorScaling` (Guo et al., 2017): calibrated log-probabilities
  ``log softmax(a * log p + b)`` with one scale ``a_k`` and one bias ``b_k``
  per class, fitted by minimising the negative log-likelihood on validation
  rows. With ``a = 1, b = 0`` it is the identity; the bias undoes the prior
  shift of class weighting, the scale the over- or under-confidence.
- :class:`DecisionRule`: class ``argmax_k w_k * p_k`` with per-class weights
  ``w`` chosen on the validation rows to maximise macro-F1 (``w_SIDEWAYS = 1``,
  a grid over ``w_DOWN, w_UP``). Calibrated probabilities are frequencies, so
  plain argmax almost never picks a rare class; the rule turns them into
  decisions that weigh every class, as macro-F1 does. The same rule is fitted
  the same way for every model with learned probabilities, so the comparison
  stays fair.

Both have ``state_dict``/``from_state_dict`` (plain floats) for checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .classes import NUM_CLASSES

PROB_FLOOR = 1e-7
#: Grid of log10 decision weights for DOWN and UP (SIDEWAYS fixed at 1).
LOG_WEIGHT_GRID = np.linspace(-1.0, 1.5, 26)
#: L2 pull of the scaling parameters toward the identity (a = 1, b = 0); keeps a fit on few rows sane.
RIDGE = 1e-3
#: Grid weights x rows scored at once by :meth:`DecisionRule.fit` (keeps its memory to ~100 MB).
RULE_CHUNK_ELEMENTS = 4_000_000


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), PROB_FLOOR, 1.0))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass
class VectorScaling:
    """Per-class scale and bias on log-probabilities.

    Shapes:
        probs: ``[M, K]`` rows summing to 1 (K = 3); output ``[M, K]``, rows summing to 1.
    """

    scale: np.ndarray = field(default_factory=lambda: np.ones(NUM_CLASSES))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES))

    def fit(self, probs: np.ndarray, y: np.ndarray) -> "VectorScaling":
        """Minimise the mean NLL of ``y`` (``[M]`` class ids) under the scaled ``probs``."""
        logp, y = _log_probs(probs), np.asarray(y, dtype=np.int64)
        if len(y) == 0:
            raise ValueError("calibration needs at least one labelled validation row")
        onehot = np.eye(NUM_CLASSES)[y]
        k = NUM_CLASSES

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = theta[:k], theta[k:]
            out = _log_softmax(logp * a + b)
            resid = np.exp(out) - onehot                        # d NLL / d logits, [M, K]
            loss = -(out * onehot).sum() / len(y)
            grad_a = (resid * logp).sum(0) / len(y)
            grad_b = resid.sum(0) / len(y)
            loss += RIDGE * (((a - 1) ** 2).sum() + (b ** 2).sum())
            grad = np.concatenate([grad_a + 2 * RIDGE * (a - 1), grad_b + 2 * RIDGE * b])
            return float(loss), grad

        theta0 = np.concatenate([np.ones(k), np.zeros(k)])
        res = minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B")
        self.scale, self.bias = res.x[:k].copy(), res.x[k:].copy()
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        return np.exp(_log_softmax(_log_probs(probs) * self.scale + self.bias))

    def state_dict(self) -> dict[str, list[float]]:
        return {"scale": [float(v) for v in self.scale], "bias": [float(v) for v in self.bias]}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[float]]) -> "VectorScaling":
        scale, bias = np.asarray(state["scale"], float), np.asarray(state["bias"], float)
        if scale.shape != (NUM_CLASSES,) or bias.shape != (NUM_CLASSES,) or not (
                np.isfinite(scale).all() and np.isfinite(bias).all()):
            raise ValueError(f"calibration state needs {NUM_CLASSES} finite scales and biases")
        return cls(scale, bias)


def macro_f1_of_rule(probs: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro-F1 of ``argmax(w * p)`` for each row of ``weights`` (``[G, K]``) at once; returns ``[G]``."""
    pred = np.argmax(probs[None, :, :] * weights[:, None, :], axis=-1)          # [G, M]
    k = NUM_CLASSES
    flat = (np.arange(len(weights))[:, None] * k + y[None, :]) * k + pred
    cm = np.bincount(flat.ravel(), minlength=len(weights) * k * k).reshape(len(weights), k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(2) + cm.sum(1)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1.mean(1)


@dataclass
class DecisionRule:
    """``class = argmax_k weights_k * p_k``; ``weights = (1, 1, 1)`` is plain argmax."""

    weights: np.ndarray = field(default_factory=lambda: np.ones(NUM_CLASSES))

    def fit(self, probs: np.ndarray, y: np.ndarray) -> "DecisionRule":
        """Pick ``w_DOWN, w_UP`` on the grid that maximise macro-F1 of ``y`` (ties: nearest to 1)."""
        probs, y = np.asarray(probs, np.float64), np.asarray(y, np.int64)
        down, up = np.meshgrid(LOG_WEIGHT_GRID, LOG_WEIGHT_GRID, indexing="ij")
        logw = np.stack([down.ravel(), np.zeros(down.size), up.ravel()], axis=1)
        chunk = max(1, RULE_CHUNK_ELEMENTS // max(len(y), 1))   # bounds the [G, M, K] temporary
        scores = np.concatenate([macro_f1_of_rule(probs, y, 10.0 ** logw[i:i + chunk])
                                 for i in range(0, len(logw), chunk)])
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        pick = best[np.argmin(np.abs(logw[best]).sum(1))]  # among equals, the smallest correction
        self.weights = 10.0 ** logw[pick]
        return self

    def predict(self, probs: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(probs) * self.weights, axis=-1)

    def state_dict(self) -> dict[str, list[float]]:
        return {"weights": [float(v) for v in self.weights]}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[float]]) -> "DecisionRule":
        w = np.asarray(state["weights"], float)
        if w.shape != (NUM_CLASSES,) or not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError(f"decision rule needs {NUM_CLASSES} finite positive weights")
        return cls(w)


def rolling_prior(probs: np.ndarray, hours: np.ndarray, window: int) -> np.ndarray:
    """Mean predicted probability of each class over the rows of the last ``window`` hours, per row.

    For a row at hour ``h`` the mean runs over every row whose hour lies in
    ``(h - window, h]``: its own hour (whose predictions all exist at ``h``)
    and the ``window - 1`` hours before it. It reads predictions only, never
    labels, and never a later hour, so a decision made with it at ``h`` is
    available at ``h``.

    Args:
        probs: ``[M, K]`` probabilities.
        hours: ``[M]`` integer hour index of each row (any order; rows of one hour share it).
        window: hours in the mean, ``>= 1``.

    Returns:
        ``[M, K]`` float64.
    """
    probs, hours = np.asarray(probs, np.float64), np.asarray(hours, np.int64)
    if window < 1:
        raise ValueError(f"window must be >= 1 hour, got {window}")
    if probs.ndim != 2 or hours.shape != (len(probs),):
        raise ValueError(f"probs must be [M, K] and hours [M], got {probs.shape} and {hours.shape}")
    if not len(probs):
        return probs.copy()
    slot = hours - hours.min()                                      # 0 .. span
    span = int(slot.max()) + 1
    # per-hour sums and counts, then window sums by differences of cumulative sums over the hour axis
    sums = np.stack([np.bincount(slot, weights=probs[:, k], minlength=span) for k in range(probs.shape[1])], 1)
    counts = np.bincount(slot, minlength=span).astype(np.float64)
    cs = np.vstack([np.zeros((1, probs.shape[1])), np.cumsum(sums, axis=0)])      # [span + 1, K]
    cc = np.concatenate([[0.0], np.cumsum(counts)])
    lo = np.maximum(slot + 1 - window, 0)
    total, n = cs[slot + 1] - cs[lo], cc[slot + 1] - cc[lo]
    return total / n[:, None]


def prior_adjusted(probs: np.ndarray, hours: np.ndarray, window: int) -> np.ndarray:
    """``probs / rolling_prior(probs, hours, window)``, renormalised per row: each class's probability
    relative to its recent average, so a decision rule on it adapts to a shift in class shares
    without labels (a class that became common needs a row above its new level, not the old one)."""
    prior = np.maximum(rolling_prior(probs, hours, window), 1e-12)
    ratio = np.asarray(probs, np.float64) / prior
    return ratio / ratio.sum(axis=1, keepdims=True)


def brier_score(y: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of ``sum_k (p_k - 1[y = k])^2`` (0 best, 2 worst)."""
    onehot = np.eye(NUM_CLASSES)[np.asarray(y, np.int64)]
    return float(((np.asarray(probs, np.float64) - onehot) ** 2).sum(1).mean())


def reliability_curve(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Per class and confidence bin: mean predicted probability, observed frequency, row count.

    Returns arrays of shape ``[K, bins]`` under ``"predicted"``, ``"observed"`` (NaN for empty
    bins) and ``"count"``; the data of a reliability diagram.
    """
    probs, y = np.asarray(probs, np.float64), np.asarray(y, np.int64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)              # [M, K]
    hit = (y[:, None] == np.arange(NUM_CLASSES)[None, :]).astype(np.float64)
    predicted = np.full((NUM_CLASSES, bins), np.nan)
    observed = np.full((NUM_CLASSES, bins), np.nan)
    count = np.zeros((NUM_CLASSES, bins), np.int64)
    for k in range(NUM_CLASSES):  # K = 3: a loop over classes, vectorised over rows
        n = np.bincount(which[:, k], minlength=bins)
        s_p = np.bincount(which[:, k], weights=probs[:, k], minlength=bins)
        s_y = np.bincount(which[:, k], weights=hit[:, k], minlength=bins)
        ok = n > 0
        predicted[k, ok], observed[k, ok], count[k] = s_p[ok] / n[ok], s_y[ok] / n[ok], n
    return {"predicted": predicted, "observed": observed, "count": count}
