"""Lookback windows: each pair's last ``L`` hours of (normalised) inputs, for temporal models.

    windows, mask = lookback_windows(x, valid, hours, length=48)
    # windows[h, n, L - 1] is x[hours[h], n]; windows[h, n, 0] is x[hours[h] - L + 1, n]

Used by the GNN's per-node temporal encoder and by the MLP baseline, so both
read exactly the same inputs. A window only reaches back in time (rows
``t - L + 1 .. t``): nothing after hour ``t`` enters it.
"""
from __future__ import annotations

import numpy as np
import torch


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


class NodeWindows:
    r"""Every pair's lookback window, gathered per mini-batch from one shared ``[T, N, F + 1]`` tensor.

    The temporal GNN reads, for each node of a snapshot at hour :math:`t`, the
    sequence :math:`(\tilde{\mathbf{x}}_{t-L+1}, \dots, \tilde{\mathbf{x}}_t)` with
    :math:`\tilde{\mathbf{x}}_s = [\mathbf{x}_s \,\Vert\, m_s]`: the normalised
    features and a validity flag :math:`m_s \in \{0, 1\}` (0 before the first
    hour and wherever the pair has no valid row, where the features are 0 too).
    This is :func:`lookback_windows` with its mask appended as the last channel.

    Why gather instead of storing windows in the snapshots: ``Data.x_seq
    [N, L, F]`` per hour would hold every input hour ``L`` times (three years of
    40 pairs with ``L = 48``: ~3 GB in float32 instead of ~65 MB for the shared
    array), and a batch's windows are one indexing operation away.

    Args:
        values: ``[T, N, F]`` normalised features.
        valid: ``[T, N]`` bool.
        length: ``L >= 1`` hours per window.
        device: where the shared tensor lives (the model's device).

    Shapes:
        - :meth:`gather` input: hours ``[B]`` (indices into T, e.g. ``Batch.hour``)
        - :meth:`gather` output: ``[B * N, L, F + 1]``, node-major in batch order
          (the node order of a ``torch_geometric`` batch of full snapshots)
    """

    def __init__(self, values: np.ndarray, valid: np.ndarray, length: int,
                 device: "torch.device | str" = "cpu") -> None:
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        values = np.asarray(values, dtype=np.float32)
        valid = np.asarray(valid, dtype=bool)
        if values.shape[:2] != valid.shape:
            raise ValueError(f"values {values.shape} and valid {valid.shape} disagree on [T, N]")
        T, N, F = values.shape
        padded = np.zeros((T + length - 1, N, F + 1), dtype=np.float32)   # L - 1 empty hours before t = 0
        padded[length - 1:, :, :F] = np.where(valid[..., None], values, 0.0)
        padded[length - 1:, :, F] = valid
        self.length = int(length)
        self.num_nodes = N
        self.channels = F + 1
        self.values = torch.from_numpy(padded).to(device)
        self._offsets = torch.arange(self.length, device=self.values.device)

    def to(self, device: "torch.device | str") -> "NodeWindows":
        """Move the shared tensor (in place) and return self."""
        self.values = self.values.to(device)
        self._offsets = self._offsets.to(device)
        return self

    def gather(self, hours: torch.Tensor) -> torch.Tensor:
        """Windows ``[B * N, L, F + 1]`` ending at each of ``hours`` ``[B]`` (oldest step first)."""
        hours = hours.reshape(-1).to(self.values.device)
        if len(hours) and (int(hours.min()) < 0 or int(hours.max()) >= len(self.values) - self.length + 1):
            raise ValueError(f"hours must be indices in 0..{len(self.values) - self.length}")
        idx = hours[:, None] + self._offsets[None, :]              # padded row of hour t - L + 1 + k is t + k
        win = self.values[idx]                                    # [B, L, N, C]
        return win.permute(0, 2, 1, 3).reshape(-1, self.length, self.channels)
