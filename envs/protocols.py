"""What the environment needs from an encoder, as typed protocols.

:class:`gnn_market.encoder.GraphEncoder` satisfies :class:`ObservationEncoder`
as it is; test doubles and benchmarks' stand-ins implement the same members.
Properties are used for read-only members so that both plain attributes and
properties satisfy them.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from gnn_market.panel import Panel


class EncoderOutput(Protocol):
    """Encoder outputs for ``T`` hours and ``N`` pairs (:class:`gnn_market.encoder.EncodedRange`)."""

    @property
    def times(self) -> pd.DatetimeIndex: ...        # [T]

    @property
    def symbols(self) -> Sequence[str]: ...          # [N]

    @property
    def probs(self) -> np.ndarray: ...               # [T, N, 3] float32, 0 where masked

    @property
    def embeddings(self) -> np.ndarray: ...          # [T, N, d] float32, 0 where masked

    @property
    def mask(self) -> np.ndarray: ...                # [T, N] bool


class CheckpointInfo(Protocol):
    """The part of a checkpoint the environment reads: the hours its training run used."""

    @property
    def ranges(self) -> Mapping[str, Sequence[Any] | None]: ...  # {"train"|"val"|"test": [first, last] or None}


@runtime_checkable
class ObservationEncoder(Protocol):
    """A trained encoder as the environment uses it.

    - ``encode_range``: outputs for every hour of ``panel`` in ``[start, end]``,
      using only candles up to each hour; ``progress`` asks for a progress bar
      (``None``: only on a terminal) and may be ignored.
    - ``embedding_dim``: ``d``; ``market``: the market it was trained on.
    - ``fit_range``: first training .. last validation hour (None if unknown:
      the overlap rule cannot be checked, and the environment warns).
    - ``checkpoint``: its ``ranges`` (train/val/test) set the default start; None if unknown.
    - ``fingerprint()``: a stable identity of the model for the encoder cache;
      None means unknown, and outputs are then never cached.
    """

    def encode_range(self, panel: Panel, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                     batch_hours: int = 64, progress: bool | None = False) -> EncoderOutput: ...

    @property
    def embedding_dim(self) -> int: ...

    @property
    def market(self) -> str: ...

    @property
    def fit_range(self) -> tuple[Any, Any] | None: ...

    @property
    def checkpoint(self) -> CheckpointInfo | None: ...

    def fingerprint(self) -> str | None: ...


class NodeFeatureOutput(Protocol):
    """Normalised node features for ``T`` hours and ``N`` pairs (:class:`gnn_market.encoder.NodeFeatures`)."""

    @property
    def times(self) -> pd.DatetimeIndex: ...        # [T]

    @property
    def symbols(self) -> Sequence[str]: ...          # [N]

    @property
    def values(self) -> np.ndarray: ...              # [T, N, F] float32, 0 where masked

    @property
    def mask(self) -> np.ndarray: ...                # [T, N] bool


@runtime_checkable
class FeatureEncoder(Protocol):
    """An encoder that can also hand out its normalised input features (``obs_source="raw"``).

    ``node_features(panel, start, end)``: what the model reads at every hour of
    ``[start, end]``, from candles up to each hour only.
    """

    def node_features(self, panel: Panel, start: pd.Timestamp | None = None,
                      end: pd.Timestamp | None = None) -> NodeFeatureOutput: ...
