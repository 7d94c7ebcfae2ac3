"""Classification metrics for the three-class next-hour task (scikit-learn based).

Every model in the results table (GNN, ablation, baselines) is scored by
:func:`classification_metrics` on exactly the same labelled nodes, so the
numbers are comparable. Labels equal to ``IGNORE_INDEX`` must be removed by
the caller (:func:`select_labelled` does it).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
)

from ..calibration import brier_score
from ..classes import CLASS_NAMES, IGNORE_INDEX, LABELS

# Probabilities are clipped before the log so a single confident miss gives a
# large but finite loss (as scikit-learn does).
PROB_EPS = 1e-7


def select_labelled(y: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop entries whose label is ``IGNORE_INDEX`` from ``y`` and aligned arrays."""
    keep = np.asarray(y) != IGNORE_INDEX
    return (np.asarray(y)[keep],) + tuple(np.asarray(a)[keep] for a in arrays)


def class_balance(y: np.ndarray) -> dict[str, float]:
    """Share of each class among ``y`` (keys ``DOWN``, ``SIDEWAYS``, ``UP``)."""
    y = np.asarray(y)
    total = max(len(y), 1)
    return {name: float(np.sum(y == k)) / total for k, name in enumerate(CLASS_NAMES)}


def safe_log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped to [eps, 1]."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), PROB_EPS, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return float(log_loss(y, probs, labels=LABELS))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           probs: np.ndarray | None = None) -> dict[str, Any]:
    """Score predicted classes (and optionally probabilities) against labels.

    Args:
        y_true: ``[M]`` int class indices in {0, 1, 2}.
        y_pred: ``[M]`` predicted class indices.
        probs: ``[M, 3]`` predicted probabilities; ``log_loss`` is ``None`` without them.

    Returns:
        ``accuracy``, ``macro_f1``, ``f1`` (per class name), ``mcc``,
        ``log_loss`` and ``brier`` (multi-class Brier score; both ``None``
        without ``probs``), ``confusion`` (3x3 list, rows = true class, columns =
        predicted), ``class_balance`` (of ``y_true``), ``pred_balance``, ``n``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal 1-D shapes")
    if len(y_true) == 0:
        raise ValueError("no labelled samples to score")
    per_class = f1_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(np.mean(per_class)),
        "f1": {name: float(v) for name, v in zip(CLASS_NAMES, per_class)},
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "log_loss": None if probs is None else safe_log_loss(y_true, probs),
        "brier": None if probs is None else brier_score(y_true, probs),
        "confusion": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
        "class_balance": class_balance(y_true),
        "pred_balance": class_balance(y_pred),
    }
