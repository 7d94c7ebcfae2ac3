"""A trained checkpoint as an encoder: market data -> per-hour probabilities and embeddings.

    from gnn_market.encoder import GraphEncoder
    enc = GraphEncoder.load()                         # packaged checkpoint (bundled sample)
    out = enc.encode_range(store, start="2023-09-01")  # EncodedRange: probs [T,N,3], embeddings [T,N,d]

The data go through exactly the training pipeline (:mod:`gnn_market.pipeline`:
panel -> features, without labels -> normaliser fitted at training time ->
correlation graph, and for temporal models each pair's lookback window of
normalised features), and the output at hour t depends only on candles with
``open_time <= t``: features, edges and windows are causal, and ``GraphNorm``
and the market context only mix the nodes of the same hour.

The packaged checkpoint ``gnn_market/checkpoints/sample_gatv2.pt`` was trained
on the bundled sample with a fit range (train + validation) ending before
2023-09-01; see ``gnn_market/checkpoints/sample_gatv2.json`` and
``docs/model.md`` for the command that rebuilds it.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .checkpoint import PACKAGED_CHECKPOINT, Checkpoint, build_model, load_checkpoint
from .encoded import EncodedRange, NodeFeatures
from .errors import CheckpointError, CryptoGraphError, DataError
from .feature_generator import FeatureConfig
from .graph_builder import GraphConfig, normalised_node_features
from .hour_batches import DenseEdges, HourBatcher
from .normalizer import FeatureNormalizer
from .panel import Panel, load_panel, rank_top_before
from .pipeline import MarketData, prepare_market
from .sources import open_store
from .timeutil import parse_utc
from .windows import NodeWindows

__all__ = ["EncodedRange", "GraphEncoder", "NodeFeatures", "PACKAGED_CHECKPOINT"]


def _config(cls: type, d: dict[str, Any]):
    """Rebuild a config dataclass from its checkpoint dict (unknown fields -> CheckpointError)."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise CheckpointError(f"checkpoint {cls.__name__} has fields this package does not know: "
                              f"{sorted(unknown)} (saved by a newer version?)")
    try:
        return cls.from_dict(d)
    except (TypeError, ValueError, CryptoGraphError) as exc:
        raise CheckpointError(f"checkpoint {cls.__name__} is invalid: {exc}") from exc


class GraphEncoder:
    """Runs a trained :class:`~gnn_market.model.GATv2Classifier` over market data.

    Attributes:
        embedding_dim: width ``d`` of the embeddings.
        feature_names: the feature schema the checkpoint was trained on.
        threshold: the UP/DOWN label threshold of the checkpoint.
        market: ``"spot"`` or ``"perp"``.
        symbols: the pairs of the training data (the encoder accepts any universe).
        fit_range: first training hour .. last validation hour (UTC).
        path: the checkpoint file.
        scaling: the checkpoint's :class:`~gnn_market.calibration.VectorScaling` (identity if it has none),
            applied to every probability the encoder returns.
        rule: its :class:`~gnn_market.calibration.DecisionRule` (plain argmax if none); see :meth:`decide`.
    """

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu",
                 path: str | os.PathLike | None = None) -> None:
        self.checkpoint = checkpoint
        self.path = Path(path) if path is not None else None
        self.device = torch.device(device)
        self.model = build_model(checkpoint).to(self.device)
        self.feature_config = _config(FeatureConfig, checkpoint.feature_config)
        self.graph_config = _config(GraphConfig, checkpoint.graph_config)
        if self.graph_config.edge_dim != self.model.config.edge_dim:
            raise CheckpointError(f"checkpoint graphs carry {self.graph_config.edge_dim} edge feature(s) but its "
                                  f"model reads {self.model.config.edge_dim}")
        try:
            self.normalizer = FeatureNormalizer.from_state_dict(checkpoint.normalizer)
        except Exception as exc:
            raise CheckpointError(f"checkpoint normaliser state is unreadable: {exc}") from exc
        try:
            self.scaling, self.rule = checkpoint.scaling(), checkpoint.rule()
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint calibration or decision rule is malformed: {exc}") from exc
        train, val = checkpoint.range("train"), checkpoint.range("val")
        if train is None:
            raise CheckpointError("checkpoint has no training range")
        self.fit_range: tuple[pd.Timestamp, pd.Timestamp] = (train[0], (val or train)[1])

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "GraphEncoder":
        """Load a checkpoint written by ``python -m gnn_market.train`` (None = the packaged one)."""
        path = PACKAGED_CHECKPOINT if path is None else Path(path)
        if path == PACKAGED_CHECKPOINT and not path.is_file():
            raise CheckpointError(f"the packaged checkpoint {path} is missing; rebuild it (see docs/model.md)")
        return cls(load_checkpoint(path, map_location=device), device=device, path=path)

    # ------------------------------------------------------------ properties
    @property
    def embedding_dim(self) -> int:
        return self.model.embedding_dim

    @property
    def feature_names(self) -> list[str]:
        return list(self.checkpoint.feature_names)

    @property
    def threshold(self) -> float:
        return self.checkpoint.threshold

    @property
    def market(self) -> str:
        return self.checkpoint.market

    @property
    def symbols(self) -> list[str]:
        return list(self.checkpoint.symbols)

    @property
    def calibrated(self) -> bool:
        """Whether the checkpoint carries a calibration (otherwise probabilities are the raw softmax)."""
        return self.checkpoint.calibration is not None

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class ids ``[...]`` of calibrated probabilities ``[..., 3]`` under the checkpoint's decision rule."""
        return self.rule.predict(probs)

    def fingerprint(self) -> str:
        """SHA-256 of the checkpoint file (identifies the model for caches)."""
        if self.path is not None and self.path.is_file():
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        h = hashlib.sha256()
        for k, v in sorted(self.checkpoint.state_dict.items()):
            h.update(k.encode() + v.cpu().numpy().tobytes())
        for key in ("calibration", "decision_rule"):  # absent in older checkpoints: same hash as before
            state = getattr(self.checkpoint, key)
            if state is not None:
                h.update(repr((key, sorted(state.items()))).encode())
        return h.hexdigest()

    # ------------------------------------------------------------ encoding
    def _panel(self, store_or_panel: Any, end: pd.Timestamp | None, panel_kwargs: dict[str, Any]) -> Panel:
        """A Panel up to ``end`` with all history before it (features and edges need warm-up)."""
        if _is_panel(store_or_panel):
            panel_kwargs = dict(panel_kwargs)
            symbols = panel_kwargs.pop("symbols", None)
            if panel_kwargs:
                raise DataError(f"panel options {sorted(panel_kwargs)} only apply when a store is given")
            if symbols is not None:
                store_or_panel = store_or_panel.select(list(symbols))
            if getattr(store_or_panel, "market", self.market) != self.market:
                raise CheckpointError(f"checkpoint was trained on the {self.market!r} market, the panel is "
                                      f"{store_or_panel.market!r}")
            return store_or_panel.slice(end=end) if end is not None else store_or_panel
        store = open_store(store_or_panel)
        return load_panel(store, market=self.market, end=end, **panel_kwargs)

    def _range_panel(self, store_or_panel: Any, start: pd.Timestamp | None, end: pd.Timestamp | None,
                     panel_kwargs: dict[str, Any]) -> Panel:
        """:meth:`_panel` for the range ``[start, end]``, with ``top=`` ranked point in time.

        ``top=N`` keeps the N most liquid pairs (of ``symbols=``, default all)
        on the stored hours *before* ``start``
        (:func:`~gnn_market.panel.rank_top_before`): ranking on the encoded
        hours themselves would choose the pairs with hindsight. ``top=``
        without ``start``, or with nothing stored before it, is a DataError.
        """
        kwargs = dict(panel_kwargs)
        top = kwargs.pop("top", None)
        if top is None or _is_panel(store_or_panel):
            return self._panel(store_or_panel, end, panel_kwargs)  # a panel with top= is refused there
        store = open_store(store_or_panel)
        kwargs["symbols"] = rank_top_before(store, self.market, top, start, kwargs.pop("symbols", None))
        return self._panel(store, end, kwargs)

    def _prepare(self, panel: Panel) -> MarketData:
        """Features and returns of ``panel`` with the checkpoint's feature config (no labels)."""
        market = prepare_market(panel, feature_config=self.feature_config, labels=False)
        names = list(market.features.names)
        if names != self.feature_names:
            missing = [n for n in self.feature_names if n not in names]
            extra = [n for n in names if n not in self.feature_names]
            raise CheckpointError(
                f"feature schema mismatch: the checkpoint was trained on {len(self.feature_names)} features, "
                f"the data give {len(names)} (missing {missing}, unexpected {extra}, or another order); "
                f"retrain the model for this data or package version")
        return market

    @torch.no_grad()
    def _run(self, market: MarketData, hours: np.ndarray, batch_hours: int,
             progress: bool | None = False) -> EncodedRange:
        """Encode ``hours`` ``[H]`` (indices into T), ``batch_hours`` graphs per forward pass.

        Batches are built on demand (:class:`~gnn_market.hour_batches.HourBatcher`): fully
        connected hours go through the dense path, with each batch's edge features computed
        from the returns up to its hours; memory holds one batch of graphs, whatever the range.
        """
        n, d = len(market.panel.symbols), self.embedding_dim
        probs = np.zeros((len(hours), n, 3), np.float32)
        emb = np.zeros((len(hours), n, d), np.float32)
        mask = np.zeros((len(hours), n), bool)
        filled = np.asarray(market.panel.filled, bool)[hours]
        x = normalised_node_features(market.features, self.normalizer)
        valid = np.asarray(market.features.valid, bool)
        windows = None
        if self.model.config.temporal:  # the same normalised [T, N, F] the snapshots read, windows ending at t
            windows = NodeWindows(x, valid, self.model.config.lookback, self.device)
        batcher = HourBatcher(x, valid, None, self.graph_config, device=self.device)
        step = max(1, int(batch_hours))
        bar = tqdm(total=len(hours), desc="encoding", unit="hour", disable=None if progress is None else not progress,
                   file=sys.stderr)
        for row in range(0, len(hours), step):
            chunk = hours[row:row + step]
            batch = batcher.batch(chunk, self._edges(market, chunk))
            log_probs, z = self.model.forward_hours(batch, windows)
            b = len(chunk)
            node_mask = batch.node_mask.view(b, n).cpu().numpy()
            p = log_probs.exp().view(b, n, 3).cpu().numpy()
            if self.calibrated:  # without a stored calibration: the softmax exactly as before
                p = self.scaling.transform(p).astype(np.float32)
            z = z.view(b, n, d).cpu().numpy()
            self._check_finite(p, z, node_mask, market.times[chunk], market.panel.symbols)
            probs[row:row + b] = np.where(node_mask[..., None], p, 0.0)
            emb[row:row + b] = np.where(node_mask[..., None], z, 0.0)
            mask[row:row + b] = node_mask
            bar.update(b)
        bar.close()
        return EncodedRange(market.times[hours], list(market.panel.symbols), probs, emb, mask,
                            rule_weights=None if self.checkpoint.decision_rule is None
                            else np.array(self.rule.weights, dtype=np.float64), filled=filled & mask)

    def _edges(self, market: MarketData, hours: np.ndarray) -> DenseEdges | None:
        """The edge features of exactly the span of ``hours`` (one batch; computed from returns up to each hour)."""
        if self.graph_config.edges == "none":
            return None
        return DenseEdges(market.log_ret, int(hours.min()), int(hours.max()) + 1, self.graph_config,
                          memory_mb=float("inf"), device=self.device)

    def _check_finite(self, probs: np.ndarray, emb: np.ndarray, node_mask: np.ndarray,
                      times: pd.DatetimeIndex, symbols: list[str]) -> None:
        """Refuse to serve NaN/inf: probabilities ``[b, N, 3]`` and embeddings ``[b, N, d]`` where the mask holds."""
        bad = node_mask & ~(np.isfinite(probs).all(-1) & np.isfinite(emb).all(-1))
        if bad.any():
            h, i = np.argwhere(bad)[0]
            raise CheckpointError(
                f"the model of checkpoint {self.path or '(in memory)'} gave non-finite probabilities or "
                f"embeddings (NaN/inf) for {int(bad.sum())} pair-hour(s), first {symbols[i]} at {times[h]}; "
                f"refusing to serve them (damaged weights, or inputs far outside the training data?)")

    def node_features(self, store_or_panel: Any, start: Any = None, end: Any = None,
                      **panel_kwargs: Any) -> NodeFeatures:
        """The normalised node features the model reads at every hour in ``[start, end]`` (inclusive).

        Same pipeline and normaliser as :meth:`encode_range` (no model run):
        features from candles up to each hour only, scaled with the
        checkpoint's normaliser. Used by ``CryptoGraph-v0``'s ``obs_source="raw"``.
        """
        t0, t1 = parse_utc(start, "start"), parse_utc(end, "end")
        market = self._prepare(self._range_panel(store_or_panel, t0, t1, panel_kwargs))  # top=: as encode_range
        hours = self._hours(market.times, t0, t1)
        x = normalised_node_features(market.features, self.normalizer)
        return NodeFeatures(market.times[hours], list(market.panel.symbols), list(market.features.names),
                            np.ascontiguousarray(x[hours]), np.asarray(market.features.valid)[hours])

    @staticmethod
    def _hours(times: pd.DatetimeIndex, t0: pd.Timestamp | None, t1: pd.Timestamp | None) -> np.ndarray:
        """Indices of ``times`` in ``[t0, t1]``; DataError when there are none."""
        if t0 is not None and t1 is not None and t0 > t1:
            raise DataError(f"the range starts at {t0}, after its end {t1}: give start <= end")
        keep = np.ones(len(times), bool)
        if t0 is not None:
            keep &= times >= t0
        if t1 is not None:
            keep &= times <= t1
        hours = np.flatnonzero(keep)
        if len(hours) == 0:
            asked = f"from {t0}" if t1 is None else (f"up to {t1}" if t0 is None else f"between {t0} and {t1}")
            raise DataError(f"no hours {asked} in the data ({times[0]} .. {times[-1]})")
        return hours

    def encode(self, store_or_panel: Any, time: Any = None, **panel_kwargs: Any) -> EncodedRange:
        """Encode one hour (the latest of the data when ``time`` is None); ``T = 1``."""
        t = parse_utc(time, "time")
        market = self._prepare(self._panel(store_or_panel, t, panel_kwargs))
        times = market.times
        if t is None:
            hour = len(times) - 1
        else:
            hour = int(times.searchsorted(t))
            if hour >= len(times) or times[hour] != t:
                raise DataError(f"no hour {t} in the data ({times[0]} .. {times[-1]})")
        return self._run(market, np.array([hour]), 1)

    def encode_range(self, store_or_panel: Any, start: Any = None, end: Any = None, batch_hours: int = 64,
                     progress: bool | None = False, **panel_kwargs: Any) -> EncodedRange:
        """Encode every hour in ``[start, end]`` (inclusive; default: all hours), ``batch_hours`` at a time.

        ``progress``: a progress bar on stderr (True), none (False), or one only
        when stderr is a terminal (None). ``panel_kwargs`` go to
        :func:`~gnn_market.panel.load_panel` (a store only), except ``top=``,
        which ranks the pairs on the stored hours before ``start`` (point in
        time; refused without ``start``).
        """
        t0, t1 = parse_utc(start, "start"), parse_utc(end, "end")
        market = self._prepare(self._range_panel(store_or_panel, t0, t1, panel_kwargs))
        return self._run(market, self._hours(market.times, t0, t1), batch_hours, progress)


def _is_panel(data: Any) -> bool:
    """Data already in memory (a :class:`Panel` or one alike), rather than a store to load it from."""
    return isinstance(data, Panel) or hasattr(data, "close") and hasattr(data, "mask")
