"""Small stand-ins for the environment's inputs, so its tests need no trained model.

``make_panel`` builds a real :class:`~gnn_market.panel.Panel` (random-walk
closes; no book, volumes unknown) and ``FakeEncoder`` implements
:class:`envs.protocols.ObservationEncoder` (see docs/CONTRACTS.md). The fake
encoder uses only candles up to each hour, like the real one, so look-ahead
tests are meaningful.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from envs.factory import make_crypto_graph_env
from gnn_market.panel import Panel

#: Environment options that turn the turnover control off: every target is traded to exactly.
NO_CONTROL = {"rebalance_threshold": 0.0, "rebalance_rate": 1.0}


def make_panel(n_hours: int = 400, n_pairs: int = 4, seed: int = 0, market: str = "spot",
               start: str = "2024-01-01") -> Panel:
    """Random-walk prices; pair 2 lists 30 hours late, pair 1 has a 5-hour hole at hour 200.

    On perp, funding settles at 00:00, 08:00 and 16:00 UTC (``funding_events``
    rows 23h, 7h, 15h) and ``funding_rate`` forward-fills the latest event, as
    :func:`~gnn_market.panel.load_panel` does.
    """
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n_hours, freq="h", tz="UTC")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_hours, n_pairs)), axis=0))
    mask = np.ones((n_hours, n_pairs), bool)
    mask[:30, 2 % n_pairs] = False
    mask[200:205, 1 % n_pairs] = False
    close[~mask] = np.nan
    events = None
    funding = np.full((n_hours, n_pairs), np.nan)
    if market == "perp":
        events = np.zeros((n_hours, n_pairs))
        settle = np.asarray(times.hour % 8 == 7)  # settlements at 00:00, 08:00, 16:00 fall in rows 23h, 7h, 15h
        events[settle] = rng.normal(1e-4, 2e-4, (settle.sum(), n_pairs))
        last = np.maximum.accumulate(np.where(settle, np.arange(n_hours), -1))
        funding = np.where((last >= 0)[:, None], events[np.maximum(last, 0)], np.nan)
    unknown = np.full((n_hours, n_pairs), np.nan)
    no = np.zeros((n_hours, n_pairs), bool)
    return Panel(times=times, symbols=[f"P{i}USDT" for i in range(n_pairs)], market=market, open=close.copy(),
                 high=close.copy(), low=close.copy(), close=close, volume=np.where(mask, 1.0, np.nan),
                 quote_volume=unknown.copy(), trades=unknown.copy(), mask=mask, filled=no.copy(),
                 funding_rate=funding, has_funding=np.isfinite(funding), best_bid=unknown.copy(),
                 best_ask=unknown.copy(), bid_qty=unknown.copy(), ask_qty=unknown.copy(), has_book=no.copy(),
                 funding_events=events)


@dataclass
class FakeEncoded:
    times: pd.DatetimeIndex
    symbols: list[str]
    probs: np.ndarray
    embeddings: np.ndarray
    mask: np.ndarray


@dataclass
class FakeCheckpoint:
    """What the environment reads of a checkpoint: the train/val/test hours, ISO strings."""

    ranges: dict[str, list[str] | None] = field(default_factory=dict)


@dataclass
class FakeEncoder:
    """ObservationEncoder stand-in: probabilities and embeddings from each pair's past returns only.

    ``model_id`` is what ``fingerprint()`` returns (None: unknown identity, never cached).
    """

    fit_range: tuple[pd.Timestamp, pd.Timestamp] | None = (pd.Timestamp("2023-12-01", tz="UTC"),
                                                           pd.Timestamp("2023-12-31 23:00", tz="UTC"))
    embedding_dim: int = 6
    market: str = "spot"
    model_id: str | None = "fake-encoder-v1"
    checkpoint: FakeCheckpoint | None = None
    calls: list = field(default_factory=list)

    def fingerprint(self) -> str | None:
        return self.model_id

    def node_features(self, panel: Panel, start=None, end=None) -> FakeNodeFeatures:
        return fake_node_features(self, panel, start, end)

    def encode_range(self, panel: Panel, start=None, end=None, batch_hours: int = 64,
                     progress: bool | None = False) -> FakeEncoded:
        self.calls.append((start, end))
        keep = np.ones(len(panel.times), bool)
        if start is not None:
            keep &= panel.times >= start
        if end is not None:
            keep &= panel.times <= end
        rows = np.flatnonzero(keep)
        logp = np.log(panel.close)
        ret = np.vstack([np.full((1, logp.shape[1]), np.nan), np.diff(logp, axis=0)])  # ret[t] uses t-1, t
        d = self.embedding_dim
        lags = np.stack([np.roll(ret, k, axis=0) for k in range(d)], axis=-1)  # ret[t-k]
        lags[:d] = np.nan  # rolled-in rows from the end would be look-ahead
        emb = np.nan_to_num(lags[rows] * 100.0).astype(np.float32)
        r = np.nan_to_num(ret[rows]) * 50.0
        logits = np.stack([-r, np.zeros_like(r), r], axis=-1)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        mask = panel.mask[rows] & np.isfinite(ret[rows])
        probs = np.where(mask[..., None], probs, 0.0).astype(np.float32)
        emb = np.where(mask[..., None], emb, 0.0).astype(np.float32)
        return FakeEncoded(panel.times[rows], list(panel.symbols), probs, emb, mask)


@dataclass
class FakeNodeFeatures:
    times: pd.DatetimeIndex
    symbols: list[str]
    names: list[str]
    values: np.ndarray
    mask: np.ndarray


def fake_node_features(encoder: "FakeEncoder", panel: Panel, start=None, end=None) -> FakeNodeFeatures:
    """``F = 3`` features per pair from its past log returns only: ``ret[t], ret[t-1], ret[t-2]`` x 100."""
    out = encoder.encode_range(panel, start, end)
    return FakeNodeFeatures(out.times, out.symbols, ["r0", "r1", "r2"], np.ascontiguousarray(out.embeddings[..., :3]),
                            out.mask)


def make_env(panel: Panel | None = None, encoder: FakeEncoder | None = None, cache_dir=None, **kwargs):
    """``gym.make("CryptoGraph-v0")``'s factory on the fakes; cached only when ``cache_dir`` is given."""
    panel = panel if panel is not None else make_panel()
    encoder = encoder if encoder is not None else FakeEncoder()
    kwargs.setdefault("use_cache", cache_dir is not None)
    return make_crypto_graph_env(panel=panel, encoder=encoder, cache_dir=cache_dir, **kwargs)
