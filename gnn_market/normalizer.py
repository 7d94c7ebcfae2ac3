"""Feature scaling fitted on training hours only (global), or per hour across pairs (cross-sectional).

The fitted state travels in checkpoints (:meth:`FeatureNormalizer.state_dict`), so
inference scales inputs exactly as training did.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError
from .feature_generator import FLAG_FEATURES, Features

#: Features the normalisers leave unchanged: 0/1 flags and the bounded hour-of-day clock.
PASSTHROUGH_FEATURES: tuple[str, ...] = (*FLAG_FEATURES, "hour_sin", "hour_cos")
NORM_MODES = ("global", "cross_sectional")


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
        if mode not in NORM_MODES:
            raise DataError(f"normalisation must be one of {NORM_MODES}, got {mode!r}")
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
