"""What an environment step reads, precomputed for every hour: :class:`MarketArrays`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gnn_market.errors import CryptoGraphError
from gnn_market.panel import Panel
from gnn_market.store_schema import MAX_PRICE

from . import portfolio
from .protocols import EncoderOutput, NodeFeatureOutput


@dataclass
class MarketArrays:
    """What a step reads, precomputed for every hour of the range (``T`` hours, ``N`` pairs).

    ``growth[t]``, ``stops[t]`` and ``funding[t]`` describe the hour held after
    deciding at ``t`` (rows ``0 .. T-2``); ``offsets[t]`` are the softmax offsets
    masking pairs without data at ``t``. The observation arrays are the
    encoder's ``probs`` and ``embeddings`` (``obs_source="gnn"``) or the
    normalised node ``features`` (``"raw"``); the others are None. They and
    ``mask`` are read-only: environments made by ``subrange`` share them, and
    those read from the encoder cache stay memory-mapped (one copy for every process).
    """

    times: pd.DatetimeIndex        # [T]
    symbols: list[str]             # [N]
    probs: np.ndarray | None       # [T, N, 3] float32, 0 where masked (gnn)
    embeddings: np.ndarray | None  # [T, N, d] float32, 0 where masked (gnn)
    mask: np.ndarray               # [T, N] bool
    offsets: np.ndarray            # [T, N + 1] float64: 0 or -inf
    growth: np.ndarray             # [T - 1, N + 1] float64, 1 where either price is unknown
    funding: np.ndarray | None     # [T - 1, N + 1] float64 or None (spot)
    stops: np.ndarray | None = None     # [T - 1, N + 1] bool: price at t, none at t + 1 (position closed)
    features: np.ndarray | None = None  # [T, N, F] float32, 0 where masked (raw)

    @classmethod
    def build(cls, panel: Panel, encoded: EncoderOutput) -> "MarketArrays":
        """Line the encoder outputs up with the panel's prices (and funding on perp)."""
        rows, close, has_price = _prices(panel, encoded)
        mask = np.asarray(encoded.mask, dtype=bool) & has_price
        _check_finite_outputs(encoded, mask)
        probs, emb = _masked_outputs(encoded, mask)
        for arr in (probs, emb, mask):
            arr.setflags(write=False)  # shared between environments made by subrange()
        return cls(times=pd.DatetimeIndex(encoded.times), symbols=list(encoded.symbols), probs=probs,
                   embeddings=emb, mask=mask, offsets=portfolio.logit_offsets(mask),
                   growth=portfolio.price_growth(close, has_price), funding=funding_per_hour(panel, rows),
                   stops=portfolio.data_stops(has_price))

    @classmethod
    def build_raw(cls, panel: Panel, nodes: NodeFeatureOutput) -> "MarketArrays":
        """Line the normalised node features up with the panel's prices: the ``obs_source="raw"`` arrays."""
        rows, close, has_price = _prices(panel, nodes)
        mask = np.asarray(nodes.mask, dtype=bool) & has_price
        features = np.where(mask[..., None], nodes.values, 0.0).astype(np.float32)
        for arr in (features, mask):
            arr.setflags(write=False)
        return cls(times=pd.DatetimeIndex(nodes.times), symbols=list(nodes.symbols), probs=None,
                   embeddings=None, mask=mask, offsets=portfolio.logit_offsets(mask),
                   growth=portfolio.price_growth(close, has_price), funding=funding_per_hour(panel, rows),
                   stops=portfolio.data_stops(has_price), features=features)

    def slice(self, i0: int, i1: int) -> "MarketArrays":
        """Hours ``i0 .. i1`` inclusive (views: no copy)."""
        hours, held = slice(i0, i1 + 1), slice(i0, i1)

        def cut(a: np.ndarray | None, rows: slice) -> np.ndarray | None:
            return None if a is None else a[rows]

        return MarketArrays(times=self.times[hours], symbols=self.symbols, probs=cut(self.probs, hours),
                            embeddings=cut(self.embeddings, hours), mask=self.mask[hours],
                            offsets=self.offsets[hours], growth=self.growth[held],
                            funding=cut(self.funding, held), stops=cut(self.stops, held),
                            features=cut(self.features, hours))


def _prices(panel: Panel, out: EncoderOutput | NodeFeatureOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Panel rows of ``out``'s hours ``[T]``, their closes ``[T, N]`` and where a close is known ``[T, N]``."""
    rows = panel.times.get_indexer(out.times)
    if (rows < 0).any() or list(out.symbols) != list(panel.symbols):
        raise CryptoGraphError("encoder output does not line up with the panel (hours or symbols differ)")
    close = np.asarray(panel.close, dtype=np.float64)[rows]
    # the store's value rule: a price outside (0, MAX_PRICE] (corrupt, or a hand-made panel) is no price
    has_price = np.asarray(panel.mask, dtype=bool)[rows] & np.isfinite(close) & (close > 0) & (close <= MAX_PRICE)
    return rows, close, has_price


def _check_finite_outputs(encoded: EncoderOutput, mask: np.ndarray) -> None:
    """Refuse encoder outputs with NaN/inf where ``mask`` holds: they would be observations outside the space."""
    bad = mask & ~(np.isfinite(encoded.probs).all(-1) & np.isfinite(encoded.embeddings).all(-1))
    if bad.any():
        h, i = np.argwhere(bad)[0]
        raise CryptoGraphError(f"the encoder gave non-finite probabilities or embeddings (NaN/inf) for "
                               f"{int(bad.sum())} pair-hour(s), first {encoded.symbols[i]} at "
                               f"{encoded.times[h]}; refusing to build observations from them")


def _masked_outputs(encoded: EncoderOutput, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` clipped to [0, 1] and both arrays zeroed where ``mask`` is False, as float32.

    Read-only inputs that already satisfy this (the encoder cache's memory maps,
    as a rule) are used as they are, so processes mapping one cache entry share
    its pages. Writable inputs are always copied: their owner could change them
    under the environment.
    """
    probs, emb = encoded.probs, encoded.embeddings
    if _already_masked(probs, emb, mask, encoded.mask):
        return probs, emb
    return (np.where(mask[..., None], np.clip(probs, 0.0, 1.0), 0.0).astype(np.float32),
            np.where(mask[..., None], emb, 0.0).astype(np.float32))


def _already_masked(probs: np.ndarray, emb: np.ndarray, mask: np.ndarray, encoder_mask: np.ndarray) -> bool:
    if probs.flags.writeable or emb.flags.writeable or probs.dtype != np.float32 or emb.dtype != np.float32:
        return False
    if not np.array_equal(mask, encoder_mask):  # the panel masks hours the encoder did not
        return False
    if probs.size and not (probs.min() >= 0.0 and probs.max() <= 1.0):  # also False for NaN
        return False
    return not (probs[~mask].any() or emb[~mask].any())


def funding_per_hour(panel: Panel, rows: np.ndarray) -> np.ndarray | None:
    """Funding rate settling inside the hour held after each decision, ``[T - 1, N + 1]`` (cash 0).

    ``rows`` are the panel rows of the environment's hours. Deciding at the
    close of row ``t`` (wall clock ``times[t] + 1h``) holds the position over
    ``(times[t] + 1h, times[t] + 2h]``: the settlement window of row ``t + 1``
    in :attr:`Panel.funding_events`. None on spot.
    """
    if panel.market != "perp":
        return None
    if panel.funding_events is None:
        raise CryptoGraphError("the perp panel has no funding_events (rates settling in each hour); load it "
                               "with gnn_market.panel.load_panel, or set them on a hand-made Panel")
    events = np.asarray(panel.funding_events, dtype=np.float64)
    nxt = rows[:-1] + 1
    held = np.zeros((len(nxt), events.shape[1]))
    inside = nxt < len(events)
    held[inside] = events[nxt[inside]]
    return np.concatenate([np.zeros((len(nxt), 1)), held], axis=1)
