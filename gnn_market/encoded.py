"""What an encoder hands out, as plain arrays: :class:`EncodedRange` (probabilities and embeddings)
and :class:`NodeFeatures` (the model's normalised inputs).

Kept apart from :mod:`gnn_market.encoder` so that code which only reads
encoder outputs (the environment's cache, :mod:`gnn_market.export`, workers
of a vectorised environment) does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES

__all__ = ["EncodedRange", "NodeFeatures"]


@dataclass
class EncodedRange:
    """Encoder output for T consecutive hours of N pairs.

    ``probs`` are the checkpoint's calibrated probabilities (identical to the
    network's softmax for a checkpoint without calibration). ``rule_weights``
    are its decision rule: the predicted class is ``argmax_k rule_weights_k * probs_k``
    (None = plain argmax). ``filled`` marks the valid pair-hours whose candle at t was
    forward-filled (the pair did not trade that hour: price carried, volume 0, see
    :attr:`gnn_market.panel.Panel.filled`), so the output rests on a stand-in candle;
    None = unknown (outputs saved before the flag existed).
    """

    times: pd.DatetimeIndex   # [T]
    symbols: list[str]        # [N]
    probs: np.ndarray         # [T, N, 3] float32 (0 where mask is False)
    embeddings: np.ndarray    # [T, N, d] float32 (0 where mask is False)
    mask: np.ndarray          # [T, N] bool
    rule_weights: np.ndarray | None = None   # [3] decision-rule weights; None = argmax
    filled: np.ndarray | None = None         # [T, N] bool: valid, but the candle at t is forward-filled

    def predictions(self) -> np.ndarray:
        """``[T, N]`` predicted class ids under the decision rule (meaningless where ``mask`` is False)."""
        weights = np.ones(self.probs.shape[-1]) if self.rule_weights is None else np.asarray(self.rule_weights)
        return np.argmax(self.probs * weights, axis=-1)

    def to_frame(self, embeddings: bool = True) -> pd.DataFrame:
        """Long table, one row per (hour, pair), hours in order and pairs in ``symbols`` order.

        Columns: ``time`` (UTC hour t whose candle is the latest input), ``symbol``,
        ``p_down``, ``p_sideways``, ``p_up`` (calibrated probabilities), ``prediction`` (class name
        chosen by the checkpoint's decision rule, see :meth:`predictions`; missing (NA) where
        ``valid`` is False), ``valid``, ``filled`` (True where the pair's candle at t is a
        forward-filled stand-in, not a trade; missing (NA) when unknown) and, with
        ``embeddings``, ``emb_0 .. emb_{d-1}``.
        """
        n_times, n_pairs = self.mask.shape
        probs = self.probs.reshape(n_times * n_pairs, 3)
        valid = self.mask.reshape(-1)
        prediction = np.asarray(CLASS_NAMES, dtype=object)[self.predictions().reshape(-1)]
        prediction[~valid] = None
        frame = pd.DataFrame({
            "time": self.times.repeat(n_pairs),
            "symbol": np.tile(np.asarray(self.symbols, dtype=object), n_times),
            "p_down": probs[:, 0], "p_sideways": probs[:, 1], "p_up": probs[:, 2],
            "prediction": prediction, "valid": valid,
            "filled": pd.array([pd.NA] * len(valid) if self.filled is None else self.filled.reshape(-1),
                               dtype="boolean"),  # nullable: NA = unknown (outputs saved before the flag)
        })
        if embeddings:
            d = self.embeddings.shape[-1]
            emb = pd.DataFrame(self.embeddings.reshape(n_times * n_pairs, d),
                               columns=[f"emb_{i}" for i in range(d)])
            frame = pd.concat([frame, emb], axis=1)
        return frame


@dataclass
class NodeFeatures:
    """The model's normalised node features for T consecutive hours of N pairs: its input at each hour.

    For a temporal checkpoint this is the last row of each pair's lookback
    window (the window's earlier rows are the same arrays at earlier hours).
    """

    times: pd.DatetimeIndex   # [T]
    symbols: list[str]        # [N]
    names: list[str]          # [F] feature names (the checkpoint's schema)
    values: np.ndarray        # [T, N, F] float32 (0 where mask is False)
    mask: np.ndarray          # [T, N] bool: the pair is a node of hour t's graph
