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
- :class:`HistGBContextBaseline` - the same model on the features plus the
  cross-sectional market context at t (:mod:`.context`): simple cross-asset
  aggregation, the first thing to beat before crediting message passing.
- :class:`MLPBaseline` - a small seeded torch MLP on each pair's flattened
  lookback window of normalised features (no cross-asset input at all).

The rows carry where they sit in the panel (``hour [M]``, ``pair [M]``), their
context (``context [M, C]``) and a reference to the fold's ``[T, N]`` arrays
(``inputs``) from which the MLP gathers its windows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from ..classes import NUM_CLASSES
from .context import RowInputs, row_windows
from .metrics import classification_metrics


@dataclass
class TabularData:
    """Flat view of a set of hours: one row per labelled (hour, pair)."""

    X: np.ndarray               # [M, F] float32, normalised node features
    y: np.ndarray               # [M] int64 class index
    current_return: np.ndarray  # [M] float64, this hour's simple return (NaN if unknown)
    hour: np.ndarray | None = None      # [M] int64 index into the panel's T axis
    pair: np.ndarray | None = None      # [M] int64 index into its N axis
    context: np.ndarray | None = None   # [M, C] float64 market context at the row's hour (NaN = unknown)
    inputs: RowInputs | None = None     # the fold's [T, N] arrays that hour/pair index into (shared)

    def __post_init__(self) -> None:
        m = len(self.y)
        if not (len(self.X) == m == len(self.current_return)):
            raise ValueError("X, y and current_return must have the same number of rows")
        for name in ("hour", "pair", "context"):
            value = getattr(self, name)
            if value is not None and len(value) != m:
                raise ValueError(f"{name} must have one entry per row ({m}), got {len(value)}")

    def take(self, idx: np.ndarray) -> "TabularData":
        """Rows ``idx`` (every per-row array; ``inputs`` is shared)."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]
        return replace(self, X=self.X[idx], y=self.y[idx], current_return=self.current_return[idx],
                       hour=pick(self.hour), pair=pick(self.pair), context=pick(self.context))

    def subsample(self, max_rows: int | None, seed: int) -> "TabularData":
        """A seeded random subset of at most ``max_rows`` rows (for slow fits), in row order."""
        if max_rows is None or len(self.y) <= max_rows:
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self.y), size=max_rows, replace=False)))


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

    def design(self, data: TabularData) -> np.ndarray:
        """The model's input matrix ``[M, D]``: here the node features."""
        return data.X

    def fit(self, data: TabularData) -> "HistGBBaseline":
        sub = data.subsample(self.max_rows, self.seed)
        design = self.design(sub)
        # a column with no value in training (e.g. btc_ret_1h without BTCUSDT) carries nothing and
        # cannot be binned: drop it, here and at prediction
        self.columns_ = np.flatnonzero(~np.isnan(design).all(axis=0))
        self.model.fit(design[:, self.columns_], sub.y)
        return self

    def predict_proba(self, data: TabularData) -> np.ndarray:
        return _full_proba(self.model, self.design(data)[:, self.columns_])

    def predict(self, data: TabularData) -> np.ndarray:
        return np.argmax(self.predict_proba(data), axis=1)


class HistGBContextBaseline(HistGBBaseline):
    """:class:`HistGBBaseline` on ``[X | context]``: a pair's features plus the market context at its hour.

    Same hyper-parameters, seed and training-row subsample as ``hist_gb``, so
    the difference between the two rows of the table is the context alone.
    Missing context (NaN, e.g. no BTCUSDT in the panel) goes to the trees'
    learned missing-value branch.
    """

    name = "hist_gb_context"

    def design(self, data: TabularData) -> np.ndarray:
        """``[M, F + C]`` float64: node features then :data:`~.context.CONTEXT_NAMES` columns."""
        if data.context is None:
            raise ValueError("hist_gb_context needs rows with a market context (labelled_rows(..., inputs))")
        return np.concatenate([data.X.astype(np.float64), data.context], axis=1)


class MLPBaseline:
    """A small MLP on each pair's own lookback window of normalised features (``L * F`` inputs).

    The windows are the temporal GNN's (:func:`~.context.row_windows`, i.e.
    :func:`gnn_market.windows.lookback_windows` on the fold's normalised
    ``x [T, N, F]``); the MLP sees no other pair. Adam on (class-weighted)
    cross-entropy over at most ``max_rows`` seeded-random training rows (fewer
    if their windows would exceed ``memory_mb``), mini-batches shuffled by a
    seeded generator, early stopping on the macro-F1 of the chronologically
    last ``es_fraction`` of the *training* hours (the best epoch is kept; a
    random slice would interleave hours with the fitted ones). CPU, seeded in
    a forked RNG: deterministic and leaves torch's global RNG alone.

    Defaults (hidden 32, dropout 0.3, weight decay 1e-3) are the more
    regularised of a few variants compared on the sample's *validation* rows:
    with hidden 64 / dropout 0.1 the early-stopping score peaked after one epoch.
    """

    name = "mlp"

    def __init__(self, window: int = 24, class_weighted: bool = True, seed: int = 0,
                 max_rows: int | None = 60_000, hidden: int = 32, dropout: float = 0.3, lr: float = 1e-3,
                 weight_decay: float = 1e-3, batch_size: int = 256, max_epochs: int = 30, patience: int = 4,
                 es_fraction: float = 0.15, memory_mb: float = 256.0) -> None:
        if window < 1:
            raise ValueError(f"mlp window must be >= 1, got {window}")
        self.window, self.class_weighted, self.seed, self.max_rows = window, class_weighted, seed, max_rows
        self.hidden, self.dropout, self.lr, self.weight_decay = hidden, dropout, lr, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.es_fraction, self.memory_mb = es_fraction, memory_mb

    def _inputs(self, data: TabularData) -> RowInputs:
        if data.inputs is None or data.hour is None or data.pair is None:
            raise ValueError("mlp needs rows with hour, pair and inputs (labelled_rows(..., inputs))")
        return data.inputs

    def _row_cap(self, inputs: RowInputs) -> int:
        """Most rows whose ``[L * F]`` float32 windows fit in ``memory_mb`` (and at most ``max_rows``)."""
        cap = max(1, int(self.memory_mb * 2**20) // (self.window * inputs.x.shape[-1] * 4))
        return cap if self.max_rows is None else min(cap, self.max_rows)

    def _windows(self, data: TabularData) -> torch.Tensor:
        return torch.from_numpy(row_windows(self._inputs(data), data.hour, data.pair, self.window))

    def fit(self, data: TabularData) -> "MLPBaseline":
        cap = self._row_cap(self._inputs(data))
        hours = np.unique(data.hour)
        n_es = int(round(self.es_fraction * len(hours)))
        late = data.hour >= hours[len(hours) - n_es] if 0 < n_es < len(hours) else np.zeros(len(data.y), bool)
        train = data.take(np.flatnonzero(~late)).subsample(cap, self.seed)
        stop = data.take(np.flatnonzero(late)).subsample(max(1, cap // 4), self.seed)
        X, y = self._windows(train), torch.from_numpy(train.y.astype(np.int64))
        X_stop = self._windows(stop) if len(stop.y) else None
        weight = (torch.as_tensor(balanced_weights(train.y), dtype=torch.float32)
                  if self.class_weighted else None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = torch.nn.Sequential(
                torch.nn.Linear(X.shape[1], self.hidden), torch.nn.ReLU(), torch.nn.Dropout(self.dropout),
                torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU(), torch.nn.Dropout(self.dropout),
                torch.nn.Linear(self.hidden, NUM_CLASSES))
            optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
            order = torch.Generator().manual_seed(self.seed)
            best_f1, best_state, stale = -1.0, None, 0
            self.val_macro_f1_: list[float] = []
            for epoch in range(1, self.max_epochs + 1):
                net.train()
                for idx in torch.randperm(len(y), generator=order).split(self.batch_size):
                    optimiser.zero_grad()
                    loss_fn(net(X[idx]), y[idx]).backward()
                    optimiser.step()
                if X_stop is None:  # too few hours to hold some out: keep the last epoch
                    best_state, self.best_epoch_ = net.state_dict(), epoch
                    continue
                net.eval()
                with torch.no_grad():
                    f1 = classification_metrics(stop.y, net(X_stop).argmax(1).numpy())["macro_f1"]
                self.val_macro_f1_.append(f1)
                if f1 > best_f1:
                    best_f1, self.best_epoch_, stale = f1, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        net.load_state_dict(best_state)
        self.net_ = net.eval()
        return self

    @torch.no_grad()
    def predict_proba(self, data: TabularData) -> np.ndarray:
        """``[M, 3]`` float64 softmax probabilities, windows gathered in memory-bounded chunks."""
        chunk = self._row_cap(self._inputs(data))
        out = np.empty((len(data.y), NUM_CLASSES))
        for a in range(0, len(data.y), chunk):
            part = data.take(np.arange(a, min(a + chunk, len(data.y))))
            out[a:a + chunk] = torch.softmax(self.net_(self._windows(part)), dim=1).double().numpy()
        return out

    def predict(self, data: TabularData) -> np.ndarray:
        return np.argmax(self.predict_proba(data), axis=1)


def make_baselines(threshold: float, class_weighted: bool = True, seed: int = 0,
                   hist_gb_max_rows: int | None = 120_000, mlp_window: int = 24,
                   mlp_max_rows: int | None = 60_000) -> list:
    """The tabular baselines, in results-table order (:data:`~.config.MODEL_ORDER`)."""
    return [
        MajorityBaseline(),
        PersistenceBaseline(threshold),
        LogisticBaseline(class_weighted=class_weighted, seed=seed),
        HistGBBaseline(class_weighted=class_weighted, seed=seed, max_rows=hist_gb_max_rows),
        HistGBContextBaseline(class_weighted=class_weighted, seed=seed, max_rows=hist_gb_max_rows),
        MLPBaseline(window=mlp_window, class_weighted=class_weighted, seed=seed, max_rows=mlp_max_rows),
    ]
