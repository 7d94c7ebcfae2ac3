"""Rolling return statistics between pairs: the correlations (and lead-lags) that become edges.

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
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.linalg.blas import dger
from threadpoolctl import threadpool_limits

from .errors import DataError

#: Per-observation variance below this (std < 1e-10 in log return) counts as zero variance.
_MIN_VARIANCE = 1e-20


def _pearson(n: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray,
             min_periods: int) -> np.ndarray:
    """Pearson r from pairwise-complete sums; 0 with fewer than ``min_periods`` observations or ~zero variance."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        r = cov / np.sqrt(vx * vy)
    ok = (n >= min_periods) & (vx > _MIN_VARIANCE * n) & (vy > _MIN_VARIANCE * n) & np.isfinite(r)
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


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
    return _pearson(n, sx, sy, sxx, syy, sxy, min_periods)


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
    return _pearson(n, sa, sb, saa, sbb, sab, min_periods)


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
