"""Rolling return correlations -> edges -> hourly ``torch_geometric`` snapshots.

The statistics live in :mod:`gnn_market.correlations`, the feature scaling in
:mod:`gnn_market.normalizer`; this module turns them into graphs.

Edges carry the correlation at hour ``t`` (and, with ``GraphConfig(lead_lag=True)``,
the lead-lag correlation): ``edge_attr [E, 1]`` or ``[E, 2]``. Only return rows
``<= t`` enter them (see :mod:`gnn_market.correlations` for the definitions).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from .classes import IGNORE_INDEX
from .correlations import correlation_matrix, iter_correlations, iter_lead_lag, lead_lag_matrix
from .errors import DataError
from .feature_generator import Features, Labels
from .normalizer import NORM_MODES, FeatureNormalizer
from .timeutil import to_utc_index

__all__ = ["GraphConfig", "edges_from_correlation", "iter_edge_sets", "build_snapshot", "HourlyGraphDataset",
           "hours_between"]

_EDGE_MODES = ("correlation", "none")


@dataclass(frozen=True)
class GraphConfig:
    """How hourly graphs are built."""

    window: int = 100  # log returns in the correlation window
    min_periods: int = 50  # fewer common returns -> correlation 0
    top_k: int | None = None  # keep each node's k strongest |corr| neighbours (made symmetric)
    edges: str = "correlation"  # or "none": self-loops only (the no-graph ablation)
    normalisation: str = "global"  # or "cross_sectional"
    lead_lag: bool = False  # second edge feature: corr(r_j[s-1], r_i[s]) for edge j -> i

    def __post_init__(self) -> None:
        if self.window < 2 or self.min_periods < 2:
            raise DataError(f"window and min_periods must be >= 2, got {self.window}, {self.min_periods}")
        if self.top_k is not None and self.top_k < 1:
            raise DataError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.edges not in _EDGE_MODES:
            raise DataError(f"edges must be one of {_EDGE_MODES}, got {self.edges!r}")
        if self.normalisation not in NORM_MODES:
            raise DataError(f"normalisation must be one of {NORM_MODES}, got {self.normalisation!r}")

    @property
    def edge_dim(self) -> int:
        """Edge features per edge: 1 (correlation) or 2 (+ lead-lag)."""
        return 2 if self.lead_lag else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GraphConfig":
        """Rebuild from :meth:`to_dict`; a dict without ``lead_lag`` (older checkpoints) means no lead-lag."""
        return cls(**{"lead_lag": False, **d})


# --------------------------------------------------------------------------- edges
def _edge_arrays(corr: np.ndarray | None, node_mask: np.ndarray, top_k: int | None,
                 edges: str) -> tuple[np.ndarray, np.ndarray]:
    """NumPy core of :func:`edges_from_correlation`: ``([2, E] int64, [E] float32)``."""
    nodes = np.flatnonzero(node_mask)
    if edges == "none":
        return np.stack([nodes, nodes]).astype(np.int64), np.ones(len(nodes), np.float32)
    if edges != "correlation":
        raise DataError(f"edges must be one of {_EDGE_MODES}, got {edges!r}")
    n = len(nodes)
    sub = np.asarray(corr, dtype=np.float32)[np.ix_(nodes, nodes)]
    keep = ~np.eye(n, dtype=bool)
    if top_k is not None and top_k < n - 1:
        strength = np.abs(sub)
        np.fill_diagonal(strength, -1.0)
        best = np.argsort(-strength, axis=1, kind="stable")[:, :top_k]  # ties -> lower index
        keep = np.zeros((n, n), dtype=bool)
        keep[np.repeat(np.arange(n), top_k), best.ravel()] = True
        keep |= keep.T  # symmetric: an edge both ways if either end picked it
    src, dst = np.nonzero(keep)
    return np.stack([nodes[src], nodes[dst]]).astype(np.int64), sub[src, dst]


def edges_from_correlation(corr: np.ndarray | None, node_mask: np.ndarray, top_k: int | None = None,
                           edges: str = "correlation") -> tuple[torch.Tensor, torch.Tensor]:
    """Edges among the nodes where ``node_mask`` is True.

    Args:
        corr: ``[N, N]`` correlation (ignored when ``edges="none"``).
        node_mask: ``[N]`` bool; other nodes get no edges at all.
        top_k: keep each node's ``k`` largest ``|corr|`` neighbours, then symmetrise.
        edges: ``"correlation"`` (all ordered pairs i != j, both directions) or
            ``"none"`` (one self-loop per node, weight 1).
    Returns ``edge_index`` ``[2, E]`` long (row 0 source, row 1 target) and
    ``edge_attr`` ``[E, 1]`` float32 (correlation, sign kept).
    """
    index, attr = _edge_arrays(corr, np.asarray(node_mask, dtype=bool), top_k, edges)
    return torch.from_numpy(index), torch.from_numpy(np.ascontiguousarray(attr)).reshape(-1, 1)


def iter_edge_sets(log_ret: np.ndarray, node_mask: np.ndarray, start: int = 0, stop: int | None = None,
                   config: "GraphConfig" = GraphConfig(), chunk_hours: int = 128
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Edge sets for hours ``start .. stop-1``: yields ``(t, edge_index [2, E] int64, edge_attr [E] float32)``.

    Contemporaneous correlation only (``config.lead_lag`` is not read here).

    Dense edges of consecutive hours with the same node set share one index
    array and gather their weights in one batched take (arrays are reused:
    copy them if you keep them).
    """
    T, N = log_ret.shape
    stop = T if stop is None else min(stop, T)
    if config.edges == "none":
        for t in range(start, stop):
            yield (t, *_edge_arrays(None, node_mask[t], None, "none"))
        return
    cache_key, cache = None, None
    for t0, corr in iter_correlations(log_ret, start, stop, config.window, config.min_periods, chunk_hours):
        if config.top_k is not None:
            for k in range(len(corr)):
                yield (t0 + k, *_edge_arrays(corr[k], node_mask[t0 + k], config.top_k, "correlation"))
            continue
        flat_corr = corr.reshape(len(corr), N * N)
        k = 0
        while k < len(corr):  # runs of hours with an identical node set
            row = node_mask[t0 + k]
            end = k + 1
            while end < len(corr) and np.array_equal(node_mask[t0 + end], row):
                end += 1
            key = row.tobytes()
            if key != cache_key:
                nodes = np.flatnonzero(row)
                src, dst = np.nonzero(~np.eye(len(nodes), dtype=bool))
                index = np.stack([nodes[src], nodes[dst]]).astype(np.int64)
                cache_key, cache = key, (index, index[0] * N + index[1])
            attrs = np.take(flat_corr[k:end], cache[1], axis=1)
            for j in range(end - k):
                yield t0 + k + j, cache[0], attrs[j]
            k = end


# --------------------------------------------------------------------------- snapshots
def build_snapshot(x: np.ndarray, corr: np.ndarray | None, y: np.ndarray, node_mask: np.ndarray,
                   time, symbols: list[str], config: GraphConfig = GraphConfig(), hour: int = -1,
                   lag: np.ndarray | None = None) -> Data:
    """One hour's graph with all ``N`` nodes.

    Args:
        x: ``[N, F]`` (normalised) features; y: ``[N]`` class indices;
        node_mask: ``[N]`` bool; corr: ``[N, N]`` or None when ``config.edges == "none"``;
        time: the hour (Timestamp or ns since epoch); hour: its index into T;
        lag: ``[N, N]`` lead-lag matrix (:func:`lead_lag_matrix`), required when
            ``config.lead_lag`` and edges are built.
    Returns ``Data(x [N, F] f32, edge_index [2, E] long, edge_attr [E, D] f32, y [N] long,
    node_mask [N] bool, time [1] long ns, hour [1] long, symbols list[str])`` with
    ``D = config.edge_dim``: column 0 the correlation, column 1 (lead-lag only) ``lag[j, i]``
    for the edge ``j -> i``; self-loops of the ``"none"`` mode carry 1 in every column.
    Invalid nodes have x = 0, y = IGNORE_INDEX and no edges.
    """
    mask = np.asarray(node_mask, dtype=bool)
    xs = np.where(mask[:, None], np.asarray(x, dtype=np.float32), np.float32(0.0))
    ys = np.where(mask, np.asarray(y, dtype=np.int64), IGNORE_INDEX)
    index, attr = _edge_arrays(corr, mask, config.top_k, config.edges)
    if config.lead_lag:
        if config.edges == "none":
            second = np.ones(len(attr), np.float32)
        elif lag is None:
            raise DataError("GraphConfig(lead_lag=True) needs the hour's lead-lag matrix")
        else:
            second = np.asarray(lag, dtype=np.float32)[index[0], index[1]]
        attr = np.stack([attr, second], axis=1)
    edge_attr = torch.from_numpy(np.ascontiguousarray(attr, dtype=np.float32)).reshape(-1, config.edge_dim)
    ns = time.value if isinstance(time, pd.Timestamp) else int(time)
    return Data(x=torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)), edge_index=torch.from_numpy(index),
                edge_attr=edge_attr, y=torch.from_numpy(ys), node_mask=torch.from_numpy(mask.copy()),
                time=torch.tensor([ns], dtype=torch.long), hour=torch.tensor([int(hour)], dtype=torch.long),
                symbols=list(symbols))


def hours_between(times: pd.DatetimeIndex, start=None, end=None) -> np.ndarray:
    """Indices into ``times`` with ``start <= time <= end`` (inclusive; None = open)."""
    lo = 0 if start is None else int(times.searchsorted(to_utc_index([start], "t")[0], "left"))
    hi = len(times) if end is None else int(times.searchsorted(to_utc_index([end], "t")[0], "right"))
    return np.arange(lo, hi, dtype=np.int64)


def normalised_node_features(features: Features, normalizer: FeatureNormalizer) -> np.ndarray:
    """What the model reads as node features: ``normalizer.transform`` of ``features``, 0 where invalid.

    ``[T, N, F]`` float32. The one place both the graph snapshots (and the
    temporal windows built from them) and ``CryptoGraph-v0``'s ``obs_source="raw"``
    get their node features from, so the two can never disagree.
    """
    x = normalizer.transform(features.values, features.valid)
    x[~features.valid] = 0.0
    return x


class HourlyGraphDataset(torch.utils.data.Dataset):
    """Lazily built hourly snapshots; batch with ``torch_geometric.loader.DataLoader``.

    Normalised features and masked labels are precomputed once (``[T, N, F]``
    float32); ``__getitem__`` only computes hour ``t``'s correlation from its
    log-return window and builds the edges.

    Shapes: item i is one :func:`build_snapshot` ``Data`` of hour ``t = hours[i]``
    with ``x [N, F]``, ``edge_index [2, E]``, ``edge_attr [E, 1]``, ``y [N]``,
    ``node_mask [N]`` (``edge_attr [E, 2]`` with ``config.lead_lag``). Without labels (``labels=None``, inference) ``y`` is still
    there, all ``IGNORE_INDEX``: snapshots keep one layout, so batching, the model
    and the loss code never branch on whether labels exist.

    Args:
        features: from :func:`compute_features` on one panel.
        labels: from :func:`make_labels` on the same panel, or None (inference).
        log_ret: ``[T, N]`` from :func:`log_returns` on the same panel.
        hours: indices into T of the snapshots (item i is hour ``hours[i]``).
        config: graph options.
        normalizer: fitted :class:`FeatureNormalizer` (global mode: fit on the
            training hours only); None is allowed for ``normalisation="cross_sectional"``.
        cache_mb: precompute the correlations (and lead-lag matrices) of all ``hours``
            (float32, via :func:`iter_correlations` / :func:`iter_lead_lag`) when they fit
            in this many MB; 0 = always lazy.
    """

    def __init__(self, features: Features, labels: Labels | None, log_ret: np.ndarray, hours,
                 config: GraphConfig = GraphConfig(), normalizer: FeatureNormalizer | None = None,
                 cache_mb: float = 256.0) -> None:
        T, N = features.valid.shape
        classes = np.full((T, N), IGNORE_INDEX, dtype=np.int64) if labels is None else labels.classes
        if classes.shape != (T, N) or log_ret.shape != (T, N):
            raise DataError(f"features {features.valid.shape}, labels {classes.shape} and log returns "
                            f"{log_ret.shape} must come from the same panel")
        if normalizer is None:
            if config.normalisation != "cross_sectional":
                raise DataError("global normalisation needs a FeatureNormalizer fitted on the training hours")
            normalizer = FeatureNormalizer("cross_sectional").fit(features, np.arange(0))
        if normalizer.mode != config.normalisation:
            raise DataError(f"normaliser mode {normalizer.mode!r} != config.normalisation {config.normalisation!r}")
        self.hours = np.asarray(hours, dtype=np.int64).reshape(-1)
        if len(self.hours) and (self.hours.min() < 0 or self.hours.max() >= T):
            raise DataError(f"hours must be indices in 0..{T - 1}")
        self.config, self.normalizer = config, normalizer
        self.times, self.symbols = features.times, list(features.symbols)
        self.valid = features.valid
        self.x = normalised_node_features(features, normalizer)
        self.y = np.where(self.valid, classes, IGNORE_INDEX)
        self.log_ret = log_ret
        self._corr: dict[int, np.ndarray] | None = None
        self._lag: dict[int, np.ndarray] | None = None
        matrices = 2 if config.lead_lag else 1
        if config.edges != "none" and len(self.hours) and len(self.hours) * N * N * 4 * matrices <= cache_mb * 2**20:
            self._corr = self._precompute(iter_correlations)
            if config.lead_lag:
                self._lag = self._precompute(iter_lead_lag)

    def _precompute(self, chunks) -> dict[int, np.ndarray]:
        wanted = set(self.hours.tolist())
        out = {}
        lo, hi = int(self.hours.min()), int(self.hours.max()) + 1
        for t0, chunk in chunks(self.log_ret, lo, hi, self.config.window, self.config.min_periods):
            for k in range(len(chunk)):
                if t0 + k in wanted:
                    out[t0 + k] = chunk[k]  # views into fresh chunks: no copy needed
        return out

    def __len__(self) -> int:
        return len(self.hours)

    def __getitem__(self, i: int) -> Data:
        t = int(self.hours[i])
        corr = lag = None
        if self._corr is not None:
            corr = self._corr[t]
            lag = None if self._lag is None else self._lag[t]
        elif self.config.edges != "none":
            corr = correlation_matrix(self.log_ret, t, self.config.window, self.config.min_periods)
            if self.config.lead_lag:
                lag = lead_lag_matrix(self.log_ret, t, self.config.window, self.config.min_periods)
        return build_snapshot(self.x[t], corr, self.y[t], self.valid[t], self.times[t], self.symbols,
                              self.config, hour=t, lag=lag)
