"""Rolling return correlations -> edges -> hourly ``torch_geometric`` snapshots.

The correlation at hour ``t`` is Pearson's r between two pairs' hourly log
returns ``r_s = ln(close_s / close_{s-1})`` for ``s`` in ``t-window+1 .. t``,
over the hours where both returns exist (pairwise complete). Fewer than
``min_periods`` common returns, or a (near-)zero variance over them, give 0;
the diagonal is 1. Only rows ``<= t`` are read: no look-ahead.

Two ways to compute it, both without a per-pair loop:

* :func:`correlation_matrix` for one hour (the dataset calls it lazily):
  masked sums as matrix products (counts ``M^T M``, sums ``X^T M``, ...).
* :func:`iter_correlations` for many hours (benchmarks, precomputation): in
  float32 chunks ``[K, N, N]``; pairs whose windows are complete take the fast
  path (running sums of ``r r^T`` updated by a rank-2 step per hour), rows of
  pairs with holes are patched with the masked-sum formula. A year is never
  held as a ``T x N x N`` array.

Optional **lead-lag** edge feature (``GraphConfig(lead_lag=True)``): for an
edge ``j -> i`` at hour ``t``, the Pearson r of ``(r_{j,s-1}, r_{i,s})`` over
the pairs of consecutive hours inside the same window (``s`` in
``t-window+2 .. t``), pairwise complete with the same ``min_periods`` and
zero-variance rules: how well j's previous hour has announced i's hour.
:func:`lead_lag_matrix` (one hour) and :func:`iter_lead_lag` (chunks, batched
matrix products) compute it; snapshots then carry ``edge_attr [E, 2]`` =
(correlation, lead-lag).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from scipy.linalg.blas import dger
from threadpoolctl import threadpool_limits
from torch_geometric.data import Data

from .classes import IGNORE_INDEX
from .errors import DataError
from .feature_generator import FLAG_FEATURES, Features, Labels, log_returns
from .timeutil import to_utc_index

__all__ = ["GraphConfig", "log_returns", "correlation_matrix", "iter_correlations", "lead_lag_matrix",
           "iter_lead_lag", "edges_from_correlation",
           "iter_edge_sets", "FeatureNormalizer", "build_snapshot", "HourlyGraphDataset", "hours_between",
           "PASSTHROUGH_FEATURES"]

#: Features the normalisers leave unchanged: 0/1 flags and the bounded hour-of-day clock.
PASSTHROUGH_FEATURES: tuple[str, ...] = (*FLAG_FEATURES, "hour_sin", "hour_cos")
_EDGE_MODES = ("correlation", "none")
_NORM_MODES = ("global", "cross_sectional")
#: Per-observation variance below this (std < 1e-10 in log return) counts as zero variance.
_MIN_VARIANCE = 1e-20


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
        if self.normalisation not in _NORM_MODES:
            raise DataError(f"normalisation must be one of {_NORM_MODES}, got {self.normalisation!r}")

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


# --------------------------------------------------------------------------- correlations
def _window(log_ret: np.ndarray, t: int, window: int) -> np.ndarray:
    """Rows ``t-window+1 .. t`` of ``log_ret`` (fewer at the start), float64."""
    if not 0 <= t < len(log_ret):
        raise DataError(f"hour index {t} outside 0..{len(log_ret) - 1}")
    return np.asarray(log_ret[max(0, t - window + 1): t + 1], dtype=np.float64)


def _pairwise_rows(x: np.ndarray, rows: np.ndarray, min_periods: int) -> np.ndarray:
    """Pairwise-complete Pearson r of columns ``rows`` against all columns.

    Args:
        x: ``[W, N]`` window, NaN where a return is missing.
        rows: ``[P]`` column indices.
    Returns ``[P, N]`` float64, 0 where undefined (diagonal not set).
    """
    m = np.isfinite(x)
    mf = m.astype(np.float64)
    count = mf.sum(0)
    # shift each column by its mean over the window: r is shift-invariant and the sums lose less precision
    mean = np.where(count > 0, np.where(m, x, 0.0).sum(0) / np.maximum(count, 1), 0.0)
    x0 = np.where(m, x - mean, 0.0)
    return _pairwise_from(x0, mf, x0 * x0, rows, min_periods)


def _pairwise_from(x0: np.ndarray, mf: np.ndarray, x0sq: np.ndarray, rows: np.ndarray,
                   min_periods: int) -> np.ndarray:
    """Masked-sum core of :func:`_pairwise_rows`: ``x0`` ``[W, N]`` with 0 where missing,
    ``mf`` its 0/1 presence, ``x0sq = x0**2``. Only small ``[P, W] @ [W, N]`` products."""
    p = len(rows)
    xp, mp = x0[:, rows], mf[:, rows]
    left = np.concatenate([mp, xp, x0sq[:, rows]], axis=1).T  # [3P, W]: three products share one call
    n, sx, sxx = np.split(left @ mf, 3)  # common observations; sums of x_p, x_p^2 where j exists
    sy, sxy = np.split(left[: 2 * p] @ x0, 2)  # sum of x_j where p exists; sum of x_p x_j
    syy = mp.T @ x0sq
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        r = cov / np.sqrt(vx * vy)
    ok = (n >= min_periods) & (vx > _MIN_VARIANCE * n) & (vy > _MIN_VARIANCE * n) & np.isfinite(r)
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


def correlation_matrix(log_ret: np.ndarray, t: int, window: int = 100, min_periods: int = 50) -> np.ndarray:
    """Correlation ``[N, N]`` float32 of the ``window`` log returns ending at hour ``t``.

    Pairwise over common non-missing returns; 0 with fewer than
    ``min_periods`` of them or zero variance; diagonal 1.
    """
    x = _window(log_ret, t, window)
    n = x.shape[1]
    corr = _pairwise_rows(x, np.arange(n), min_periods)
    np.fill_diagonal(corr, 1.0)
    return corr.astype(np.float32)


def iter_correlations(log_ret: np.ndarray, start: int = 0, stop: int | None = None, window: int = 100,
                      min_periods: int = 50, chunk_hours: int = 128,
                      workers: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """Correlations for hours ``start .. stop-1`` in chunks.

    Yields ``(t0, corr)`` with ``corr`` ``[K, N, N]`` float32 for hours
    ``t0 .. t0+K-1``; each slice equals :func:`correlation_matrix` (up to
    rounding, < 1e-6). Columns present at every hour of the window where any
    column is present ("complete") use running sums ``S = sum r r^T``,
    ``s = sum r`` updated by one rank-2 step per hour (recomputed exactly at
    each chunk start, so rounding cannot drift); rows of columns with holes
    are patched with the pairwise formula. Memory: about ``workers + 1``
    chunks plus O(N^2).

    Chunks are independent, so ``workers`` threads compute them ahead of the
    consumer (NumPy and BLAS release the GIL). While the generator is alive,
    BLAS runs single-threaded: for these O(N^2) kernels OpenBLAS threading
    costs far more than it saves.
    """
    T, N = log_ret.shape
    stop = T if stop is None else min(stop, T)
    finite = np.isfinite(log_ret)
    r0 = np.where(finite, log_ret, 0.0)
    prep = _Prepared(r0=r0, r0sq=r0 * r0, mf=finite.astype(np.float64),
                     cum=np.concatenate([np.zeros((1, N)), np.cumsum(finite, axis=0, dtype=np.float64)]),
                     cum_any=np.concatenate([[0.0], np.cumsum(finite.any(axis=1), dtype=np.float64)]),
                     window=window, min_periods=min_periods)
    starts = list(range(start, stop, chunk_hours))
    bounds = [(t0, min(t0 + chunk_hours, stop)) for t0 in starts]
    with threadpool_limits(1, user_api="blas"):
        if workers <= 1:
            for t0, t1 in bounds:
                yield t0, _correlation_chunk(prep, t0, t1)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = deque()
            for t0, t1 in bounds:
                pending.append((t0, pool.submit(_correlation_chunk, prep, t0, t1)))
                if len(pending) > workers:
                    t, fut = pending.popleft()
                    yield t, fut.result()
            while pending:
                t, fut = pending.popleft()
                yield t, fut.result()


@dataclass(frozen=True)
class _Prepared:
    """Whole-panel arrays shared by the chunk workers (read-only)."""

    r0: np.ndarray  # [T, N] log returns, 0 where missing
    r0sq: np.ndarray  # [T, N] r0 ** 2
    mf: np.ndarray  # [T, N] 1.0 where the return exists
    cum: np.ndarray  # [T + 1, N] cumulative count of returns
    cum_any: np.ndarray  # [T + 1] cumulative count of rows with any return
    window: int
    min_periods: int


def _correlation_chunk(prep: _Prepared, t0: int, t1: int) -> np.ndarray:
    """Correlations ``[t1 - t0, N, N]`` float32 for hours ``t0 .. t1-1``."""
    window, min_periods = prep.window, prep.min_periods
    N = prep.r0.shape[1]
    hours = np.arange(t0, t1)
    lo = np.maximum(hours + 1 - window, 0)
    count = prep.cum[hours + 1] - prep.cum[lo]  # [K, N] returns of each column in the window
    n_any = prep.cum_any[hours + 1] - prep.cum_any[lo]  # [K] rows with any return
    # a column with as many returns as there are non-empty rows is present on exactly those rows
    full = (count == n_any[:, None]) & (count > 0) & (n_any[:, None] >= min_periods)
    corr = np.empty((len(hours), N, N), dtype=np.float32)
    corr[~full.any(axis=1)] = 0.0  # hours with a complete column are fully written below
    if full.any():
        _complete_block(prep.r0, hours, window, n_any, full, corr)
    for k in np.nonzero(((count > 0) & ~full).any(axis=1))[0]:  # hours with gappy columns
        rows = np.nonzero((count[k] > 0) & ~full[k])[0]
        w = slice(max(0, int(hours[k]) - window + 1), int(hours[k]) + 1)
        patch = _pairwise_from(prep.r0[w], prep.mf[w], prep.r0sq[w], rows, min_periods)
        corr[k, rows, :] = patch
        corr[k, :, rows] = patch
    diag = np.arange(N)
    corr[:, diag, diag] = 1.0
    return corr


def _complete_block(r0: np.ndarray, hours: np.ndarray, window: int, n_any: np.ndarray, full: np.ndarray,
                    out: np.ndarray) -> None:
    """Pearson r among complete columns from running sums, written into ``out`` ``[K, N, N]``.

    Args:
        r0: ``[T, N]`` log returns with 0 for missing; hours: ``[K]`` consecutive;
        n_any: ``[K]`` observations per complete column; full: ``[K, N]``.
    Rows/columns of incomplete or constant columns stay 0.
    """
    first = int(hours[0])
    rows = r0[max(0, first - window + 1): first + 1]
    S = np.asfortranarray(rows.T @ rows)  # [N, N] sum of r r^T over the window
    s = rows.sum(axis=0)  # [N]
    buf = np.empty_like(S, order="F")
    for k, t in enumerate(hours):
        if k:
            new = r0[t]
            S = dger(1.0, new, new, a=S, overwrite_a=1)
            s = s + new
            if t - window >= 0:
                old = r0[t - window]
                S = dger(-1.0, old, old, a=S, overwrite_a=1)
                s = s - old
        if not full[k].any():
            continue
        n = n_any[k]
        var = np.diagonal(S) - s * s / n  # n x variance
        d = np.where(full[k] & (var > _MIN_VARIANCE * n), 1.0 / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
        np.multiply(S, d[:, None], out=buf)
        buf = dger(-1.0 / n, s * d, s, a=buf, overwrite_a=1)  # d_i (S_ij - s_i s_j / n)
        # column scaling fused with the float32 cast; the matrix is symmetric, so write through
        # the transposed (Fortran-ordered) view of the C-ordered output slice
        np.multiply(buf, d[None, :], out=out[k].T, casting="same_kind")
    # no clip: |r| exceeds 1 by rounding only (< 1e-6), not worth another pass over the chunk


def _lead_lag_from(a: np.ndarray, b: np.ndarray, min_periods: int) -> np.ndarray:
    """Pairwise-complete Pearson r of ``a[..., :, j]`` with ``b[..., :, i]`` -> ``[..., N, N]`` (j, i).

    ``a``, ``b``: ``[..., S, N]`` with NaN where missing (``a`` the lagged
    returns, ``b`` the returns one hour later); 0 where undefined.
    """
    ma, mb = np.isfinite(a), np.isfinite(b)
    fa, fb = ma.astype(np.float64), mb.astype(np.float64)
    # shift every column by its mean over the window: r is shift-invariant and the sums lose less precision
    a0 = np.where(ma, a - (np.where(ma, a, 0.0).sum(-2, keepdims=True) / np.maximum(fa.sum(-2, keepdims=True), 1)),
                  0.0)
    b0 = np.where(mb, b - (np.where(mb, b, 0.0).sum(-2, keepdims=True) / np.maximum(fb.sum(-2, keepdims=True), 1)),
                  0.0)
    at = np.swapaxes(a0, -1, -2)
    fat = np.swapaxes(fa, -1, -2)
    n = fat @ fb
    sa, sb = at @ fb, fat @ b0
    saa, sbb = np.swapaxes(a0 * a0, -1, -2) @ fb, fat @ (b0 * b0)
    sab = at @ b0
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = saa - sa * sa / n
        vb = sbb - sb * sb / n
        r = cov / np.sqrt(va * vb)
    ok = (n >= min_periods) & (va > _MIN_VARIANCE * n) & (vb > _MIN_VARIANCE * n) & np.isfinite(r)
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


def lead_lag_matrix(log_ret: np.ndarray, t: int, window: int = 100, min_periods: int = 50) -> np.ndarray:
    """Lead-lag correlation ``[N, N]`` float32 at hour ``t``: entry ``[j, i]`` = r(``r_{j,s-1}``, ``r_{i,s}``).

    Over the ``window`` log returns ending at ``t`` (``window - 1`` consecutive
    pairs), pairwise over pairs where both returns exist; 0 with fewer than
    ``min_periods`` of them or zero variance. The diagonal is each pair's own
    lag-1 autocorrelation (not used as an edge).
    """
    x = _window(log_ret, t, window)
    return _lead_lag_from(x[:-1], x[1:], min_periods).astype(np.float32)


def iter_lead_lag(log_ret: np.ndarray, start: int = 0, stop: int | None = None, window: int = 100,
                  min_periods: int = 50, chunk_hours: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """Lead-lag matrices for hours ``start .. stop-1`` in chunks: yields ``(t0, lag [K, N, N] float32)``.

    Each slice equals :func:`lead_lag_matrix` (up to rounding); a chunk is a
    handful of batched ``[K, N, W] @ [K, W, N]`` products (no per-pair or
    per-hour loop).
    """
    T, N = log_ret.shape
    stop = T if stop is None else min(stop, T)
    padded = np.concatenate([np.full((window - 1, N), np.nan), np.asarray(log_ret, dtype=np.float64)])
    offsets = np.arange(window)
    with threadpool_limits(1, user_api="blas"):
        for t0 in range(start, stop, chunk_hours):
            hours = np.arange(t0, min(t0 + chunk_hours, stop))
            win = padded[hours[:, None] + offsets[None, :]]            # [K, W, N]: rows t-W+1 .. t
            yield t0, _lead_lag_from(win[:, :-1], win[:, 1:], min_periods).astype(np.float32)


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


# --------------------------------------------------------------------------- normalisation
class FeatureNormalizer:
    """Feature scaling fitted on training hours only.

    ``mode="global"``: ``(x - mean) / std`` per feature, with mean and std
    (ddof=0, std clipped to >= 1e-8) over the valid (hour, node) entries of the
    training hours. ``mode="cross_sectional"``: per-hour z-score across that
    hour's valid nodes (uses nothing from other hours; no fit needed).
    Both leave :data:`PASSTHROUGH_FEATURES` unchanged and clip the result to
    ``[-clip, clip]``. The state is a plain dict of lists, floats and strings.
    """

    def __init__(self, mode: str = "global", clip: float = 10.0) -> None:
        if mode not in _NORM_MODES:
            raise DataError(f"normalisation must be one of {_NORM_MODES}, got {mode!r}")
        self.mode = mode
        self.clip = float(clip)
        self.names: list[str] = []
        self.mean: np.ndarray | None = None  # [F]
        self.std: np.ndarray | None = None  # [F]

    @property
    def fitted(self) -> bool:
        return self.mode == "cross_sectional" or self.mean is not None

    def _passthrough(self) -> np.ndarray:
        return np.array([n in PASSTHROUGH_FEATURES for n in self.names], dtype=bool)

    def fit(self, features: Features, hours: np.ndarray) -> "FeatureNormalizer":
        """Fit on ``features`` at ``hours`` (indices into T; training hours only)."""
        self.names = list(features.names)
        if self.mode == "cross_sectional":
            return self
        hours = np.asarray(hours, dtype=np.int64)
        sel = features.values[hours][features.valid[hours]].astype(np.float64)  # [M, F]
        if not len(sel):
            raise DataError("cannot fit the normaliser: no valid node in the training hours")
        mean, std = sel.mean(axis=0), np.maximum(sel.std(axis=0), 1e-8)
        keep = self._passthrough()
        self.mean, self.std = np.where(keep, 0.0, mean), np.where(keep, 1.0, std)
        return self

    def transform(self, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Scale ``values`` ``[..., N, F]`` (e.g. ``[T, N, F]`` or ``[N, F]``) -> float32.

        ``valid`` ``[..., N]`` selects the nodes the cross-sectional statistics
        use (default: all); ignored by the global mode.
        """
        if not self.fitted:
            raise DataError("FeatureNormalizer is not fitted")
        v = np.asarray(values, dtype=np.float64)
        if self.names and v.shape[-1] != len(self.names):
            raise DataError(f"normaliser expects {len(self.names)} features, got {v.shape[-1]}")
        if self.mode == "global":
            out = (v - self.mean) / self.std
        else:
            w = np.ones(v.shape[:-1], bool) if valid is None else np.asarray(valid, bool)
            wf = w[..., None].astype(np.float64)
            n = np.maximum(wf.sum(axis=-2, keepdims=True), 1.0)
            mean = (v * wf).sum(axis=-2, keepdims=True) / n
            var = (((v - mean) ** 2) * wf).sum(axis=-2, keepdims=True) / n
            out = (v - mean) / np.maximum(np.sqrt(var), 1e-8)
            keep = self._passthrough() if self.names else np.zeros(v.shape[-1], bool)
            out = np.where(keep, v, out)
        keep = self._passthrough() if self.names else np.zeros(v.shape[-1], bool)
        out = np.where(keep, v, np.clip(out, -self.clip, self.clip))
        return out.astype(np.float32)

    def state_dict(self) -> dict:
        """Plain dict (lists, floats, strings): safe for ``torch.load(weights_only=True)``."""
        return {"mode": self.mode, "clip": self.clip, "names": list(self.names),
                "mean": None if self.mean is None else [float(a) for a in self.mean],
                "std": None if self.std is None else [float(a) for a in self.std]}

    @classmethod
    def from_state_dict(cls, d: dict) -> "FeatureNormalizer":
        norm = cls(mode=str(d["mode"]), clip=float(d.get("clip", 10.0)))
        norm.names = [str(n) for n in d.get("names", [])]
        if d.get("mean") is not None:
            norm.mean = np.asarray(d["mean"], dtype=np.float64).reshape(-1)
            norm.std = np.asarray(d["std"], dtype=np.float64).reshape(-1)
        return norm


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
        self.x = normalizer.transform(features.values, features.valid)
        self.x[~self.valid] = 0.0
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
