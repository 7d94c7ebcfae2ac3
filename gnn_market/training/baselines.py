"""Non-graph baselines scored on exactly the GNN's split and labelled nodes.

Every baseline sees one row per labelled (hour, pair): the same normalised
node features the GNN gets (``X [M, F]``), the label (``y [M]``) and, for
persistence, the current candle's simple return (``current_return [M]``,
``close[t] / close[t-1] - 1``, known at t). Fits use training rows only.

- :class:`MajorityBaseline` - always the most frequent training class;
  probabilities = training class shares.
- :class:`PersistenceBaseline` - "next hour = this hour": the class of the
  current candle's return under the same threshold as the labels;
  probabilities = training transition frequencies P(next class | this class).
- :class:`LogisticBaseline` - multinomial logistic regression.
- :class:`HistGBBaseline` - scikit-learn ``HistGradientBoostingClassifier``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from ..classes import NUM_CLASSES


@dataclass
class TabularData:
    """Flat view of a set of hours: one row per labelled (hour, pair)."""

    X: np.ndarray               # [M, F] float32, normalised node features
    y: np.ndarray               # [M] int64 class index
    current_return: np.ndarray  # [M] float64, this hour's simple return (NaN if unknown)
    hour: np.ndarray | None = None  # [M] int64 hour index (panel T axis) of each row; None if unknown

    def __post_init__(self) -> None:
        if not (len(self.X) == len(self.y) == len(self.current_return)):
            raise ValueError("X, y and current_return must have the same number of rows")

    def subsample(self, max_rows: int | None, seed: int) -> "TabularData":
        """A seeded random subset of at most ``max_rows`` rows (for slow fits)."""
        if max_rows is None or len(self.y) <= max_rows:
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self.y), size=max_rows, replace=False))
        return TabularData(self.X[idx], self.y[idx], self.current_return[idx])


def return_class(ret: np.ndarray, threshold: float) -> np.ndarray:
    """Class index of simple returns: DOWN 0 (< -thr), SIDEWAYS 1, UP 2 (> +thr); NaN -> SIDEWAYS."""
    ret = np.nan_to_num(np.asarray(ret, dtype=np.float64), nan=0.0)
    return np.where(ret > threshold, 2, np.where(ret < -threshold, 0, 1)).astype(np.int64)


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-class weights ``M / (3 * count_k)`` (scikit-learn's "balanced"); absent classes get 0."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=NUM_CLASSES).astype(np.float64)
    weights = np.zeros(NUM_CLASSES)
    present = counts > 0
    weights[present] = counts.sum() / (NUM_CLASSES * counts[present])
    return weights


def _full_proba(model, X: np.ndarray) -> np.ndarray:
    """``predict_proba`` widened to all three classes even if training lacked one."""
    out = np.zeros((len(X), NUM_CLASSES))
    out[:, model.classes_] = model.predict_proba(X)
    return out


class MajorityBaseline:
    name = "majority"

    def fit(self, data: TabularData) -> "MajorityBaseline":
        counts = np.bincount(data.y, minlength=NUM_CLASSES).astype(np.float64)
        self.prior_ = counts / counts.sum()
        self.class_ = int(np.argmax(counts))
        return self

    def predict_proba(self, data: TabularData) -> np.ndarray:
        return np.tile(self.prior_, (len(data.y), 1))

    def predict(self, data: TabularData) -> np.ndarray:
        return np.full(len(data.y), self.class_, dtype=np.int64)


class PersistenceBaseline:
    name = "persistence"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def fit(self, data: TabularData) -> "PersistenceBaseline":
        # Laplace-smoothed transition counts so no probability is exactly 0.
        now = return_class(data.current_return, self.threshold)
        counts = np.ones((NUM_CLASSES, NUM_CLASSES))
        np.add.at(counts, (now, data.y), 1.0)
        self.transition_ = counts / counts.sum(axis=1, keepdims=True)
        return self

    def predict(self, data: TabularData) -> np.ndarray:
        return return_class(data.current_return, self.threshold)

    def predict_proba(self, data: TabularData) -> np.ndarray:
        return self.transition_[self.predict(data)]


class LogisticBaseline:
    name = "logistic"

    def __init__(self, class_weighted: bool = True, seed: int = 0, max_iter: int = 300) -> None:
        self.model = LogisticRegression(
            C=1.0, max_iter=max_iter, random_state=seed,
            class_weight="balanced" if class_weighted else None,
        )

    def fit(self, data: TabularData) -> "LogisticBaseline":
        self.model.fit(data.X, data.y)
        return self

    def predict_proba(self, data: TabularData) -> np.ndarray:
        return _full_proba(self.model, data.X)

    def predict(self, data: TabularData) -> np.ndarray:
        return np.argmax(self.predict_proba(data), axis=1)


class HistGBBaseline:
    name = "hist_gb"

    def __init__(self, class_weighted: bool = True, seed: int = 0, max_iter: int = 150,
                 max_rows: int | None = 120_000) -> None:
        # No internal early stopping: its validation split would be random
        # rows, i.e. hours interleaved with training hours.
        self.model = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=50,
            l2_regularization=1.0, early_stopping=False, random_state=seed,
            class_weight="balanced" if class_weighted else None,
        )
        self.seed = seed
        self.max_rows = max_rows

    def fit(self, data: TabularData) -> "HistGBBaseline":
        sub = data.subsample(self.max_rows, self.seed)
        self.model.fit(sub.X, sub.y)
        return self

    def predict_proba(self, data: TabularData) -> np.ndarray:
        return _full_proba(self.model, data.X)

    def predict(self, data: TabularData) -> np.ndarray:
        return np.argmax(self.predict_proba(data), axis=1)


def make_baselines(threshold: float, class_weighted: bool = True, seed: int = 0,
                   hist_gb_max_rows: int | None = 120_000) -> list:
    """The four tabular baselines, in results-table order."""
    return [
        MajorityBaseline(),
        PersistenceBaseline(threshold),
        LogisticBaseline(class_weighted=class_weighted, seed=seed),
        HistGBBaseline(class_weighted=class_weighted, seed=seed, max_rows=hist_gb_max_rows),
    ]
