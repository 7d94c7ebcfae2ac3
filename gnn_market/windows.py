"""Lookback windows: each pair's last ``L`` hours of (normalised) inputs, for temporal models.

    windows, mask = lookback_windows(x, valid, hours, length=48)
    # windows[h, n, L - 1] is x[hours[h], n]; windows[h, n, 0] is x[hours[h] - L + 1, n]

Used by the GNN's per-node temporal encoder and by the MLP baseline, so both
read exactly the same inputs. A window only reaches back in time (rows
``t - L + 1 .. t``): nothing after hour ``t`` enters it.
"""
from __future__ import annotations

import numpy as np


def lookback_windows(x: np.ndarray, valid: np.ndarray, hours: np.ndarray,
                     length: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``[H, N, L, F]`` windows ending at each of ``hours`` (oldest first).

    Args:
        x: ``[T, N, F]`` inputs (e.g. normalised features, 0 where invalid).
        valid: ``[T, N]`` bool, True where the pair has a valid row.
        hours: ``[H]`` indices into T of the windows' last hour.
        length: ``L >= 1`` hours per window.

    Returns:
        ``windows [H, N, L, F]`` (same dtype as ``x``; 0 before the first hour and
        wherever ``valid`` is False) and ``mask [H, N, L]`` (bool).
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    hours = np.asarray(hours, dtype=np.int64).reshape(-1)
    offsets = np.arange(length - 1, -1, -1, dtype=np.int64)          # L-1 .. 0
    idx = hours[:, None] - offsets[None, :]                          # [H, L]
    inside = idx >= 0
    safe = np.maximum(idx, 0)
    mask = valid[safe] & inside[..., None]                           # [H, L, N]
    windows = np.where(mask[..., None], x[safe], 0).astype(x.dtype, copy=False)  # [H, L, N, F]
    return np.ascontiguousarray(windows.transpose(0, 2, 1, 3)), np.ascontiguousarray(mask.transpose(0, 2, 1))
