"""Making a :class:`~envs.crypto_graph.CryptoGraphEnv`: store, checkpoint, range, symbols, cache.

``gym.make("CryptoGraph-v0", **kwargs)`` calls :func:`make_crypto_graph_env`::

    make_crypto_graph_env(store=..., checkpoint=...)     # loads the panel and the encoder
      -> build_env(panel, encoder, start, end, ...)      # range, overlap rule, cached encoding
        -> CryptoGraphEnv(MarketArrays.build(panel, encoded), options)

:func:`build_env` is the entry for data already in memory (a ``Panel`` and an
:class:`~envs.protocols.ObservationEncoder`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from gnn_market.encoder import GraphEncoder
from gnn_market.errors import CryptoGraphError
from gnn_market.panel import Panel, load_panel
from gnn_market.sources import open_store
from gnn_market.store import Store
from gnn_market.store_schema import unique_symbols
from gnn_market.timeutil import HOUR, parse_utc

from . import portfolio
from .cache import default_cache_dir, encode_cached
from .crypto_graph import CryptoGraphEnv, RangeOverlapError
from .market_arrays import MarketArrays
from .options import EnvOptions
from .portfolio import PortfolioConfig
from .protocols import ObservationEncoder


def make_crypto_graph_env(store: str | os.PathLike | Store | None = None,
                          checkpoint: str | os.PathLike | None = None, market: str | None = None,
                          symbols: list[str] | None = None, top: int | None = None, start: Any = None,
                          end: Any = None, episode_hours: int | None = 168, fee_bps: float = 10.0,
                          obs_mode: str = "flat", include_embeddings: bool = True, render_mode: str | None = None,
                          allow_overlap: bool = False, cache_dir: str | os.PathLike | None = None,
                          use_cache: bool = True, action_scale: float = portfolio.ACTION_SCALE,
                          initial_value: float = 1.0, encoder: ObservationEncoder | None = None,
                          panel: Panel | None = None, batch_hours: int = 64) -> CryptoGraphEnv:
    """The ``CryptoGraph-v0`` entry point; the keywords are documented on :class:`CryptoGraphEnv`."""
    options = EnvOptions(episode_hours=episode_hours, obs_mode=obs_mode, include_embeddings=include_embeddings,
                         render_mode=render_mode,
                         portfolio=PortfolioConfig(fee_bps=fee_bps, action_scale=action_scale,
                                                   initial_value=initial_value))
    options.validate(CryptoGraphEnv.metadata["render_modes"])  # before the slow loading
    symbols = None if symbols is None else unique_symbols(symbols)  # a repeated pair: refused, not de-duplicated
    encoder = _resolve_encoder(encoder, checkpoint)
    start_ts, end_ts = parse_utc(start), parse_utc(end)
    panel = _resolve_panel(panel, store, market or encoder.market or "spot", symbols, top, start_ts, end_ts,
                           encoder)
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) if use_cache else None
    return build_env(panel, encoder, start=start_ts, end=end_ts, options=options, allow_overlap=allow_overlap,
                     cache_dir=cache, batch_hours=batch_hours)


# gym.make reads the entry point's metadata to handle render modes the environment lacks
# (render_mode="human" gets the HumanRendering wrapper); a function has none unless given.
make_crypto_graph_env.metadata = CryptoGraphEnv.metadata  # type: ignore[attr-defined]


def build_env(panel: Panel, encoder: ObservationEncoder, start: Any = None, end: Any = None,
              options: EnvOptions = EnvOptions(), allow_overlap: bool = False,
              cache_dir: str | os.PathLike | None = None, batch_hours: int = 64) -> CryptoGraphEnv:
    """An environment over ``panel``'s hours ``[start, end]`` seen through ``encoder``.

    ``panel`` holds all history up to ``end`` (the encoder warms up on the hours
    before ``start``). Default range, overlap rule and caching as for
    ``gym.make``; ``cache_dir=None`` encodes without caching.
    """
    start_ts, end_ts = resolve_range(panel, encoder, parse_utc(start), parse_utc(end))
    check_overlap(encoder, start_ts, end_ts, allow_overlap)
    encoded = encode_cached(encoder, panel, start_ts, end_ts, batch_hours, cache_dir)
    return CryptoGraphEnv(MarketArrays.build(panel, encoded), options)


def default_start(encoder: ObservationEncoder) -> pd.Timestamp | None:
    """First UTC midnight after every hour the checkpoint's training run used.

    That is the fit range (train + validation) and, where the checkpoint
    records it, its test split too: the encoder's own held-out hours were seen
    by whoever chose the model, so the environment's default range starts after
    them (2023-09-01 for the packaged checkpoint on the bundled sample).
    """
    ends = []
    fit = encoder.fit_range
    if fit and fit[1] is not None:
        ends.append(parse_utc(fit[1]))
    ranges = encoder.checkpoint.ranges if encoder.checkpoint is not None else {}
    for span in (ranges or {}).values():
        if span and span[1] is not None:
            ends.append(parse_utc(span[1]))
    return (max(ends) + HOUR).ceil("D") if ends else None


def resolve_range(panel: Panel, encoder: ObservationEncoder, start: pd.Timestamp | None,
                  end: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end]`` within the panel's hours; ``start`` defaults to :func:`default_start`."""
    if len(panel.times) == 0:
        raise CryptoGraphError("the panel holds no hours")
    first, last = panel.times[0], panel.times[-1]
    if start is None:
        start = max(default_start(encoder) or first, first)
    end = last if end is None else min(end, last)
    if start >= end:
        raise CryptoGraphError(f"empty range: start {start} is not before end {end} (data {first} .. {last})")
    return start, end


def check_overlap(encoder: ObservationEncoder, start: pd.Timestamp, end: pd.Timestamp, allow: bool) -> None:
    """Refuse (:class:`RangeOverlapError`) or, with ``allow``, loudly warn about hours the encoder was fitted on."""
    fit = encoder.fit_range
    if not fit or fit[0] is None or fit[1] is None:
        warnings.warn("the encoder reports no fit range: cannot check that the environment's hours are "
                      "unseen by it", stacklevel=3)
        return
    fit_start, fit_end = parse_utc(fit[0]), parse_utc(fit[1])
    if start > fit_end or end < fit_start:
        return
    message = (f"environment range {start} .. {end} overlaps the checkpoint's fit range {fit_start} .. "
               f"{fit_end}: the encoder was trained on those hours, so an agent evaluated there sees "
               f"in-sample predictions")
    if not allow:
        raise RangeOverlapError(message + f". Start after {fit_end}, or pass allow_overlap=True.")
    warnings.warn("!!! " + message + " (allow_overlap=True) — results on these hours are optimistic !!!",
                  UserWarning, stacklevel=3)


def _resolve_encoder(encoder: ObservationEncoder | None, checkpoint: str | os.PathLike | None) -> ObservationEncoder:
    if encoder is None:
        return GraphEncoder.load(checkpoint)
    if checkpoint is not None:
        raise ValueError("pass either encoder= or checkpoint=, not both")
    if not isinstance(encoder, ObservationEncoder):
        raise TypeError(f"encoder= must provide encode_range, embedding_dim, market, fit_range, checkpoint and "
                        f"fingerprint() (envs.protocols.ObservationEncoder), got {type(encoder).__name__}")
    return encoder


def _resolve_panel(panel: Panel | None, store: str | os.PathLike | Store | None, market: str,
                   symbols: list[str] | None, top: int | None, start: pd.Timestamp | None,
                   end: pd.Timestamp | None, encoder: ObservationEncoder) -> Panel:
    """The given panel, or one loaded from ``store`` with all history up to ``end``."""
    if panel is not None:
        if store is not None or symbols is not None or top is not None:
            raise ValueError("pass either panel= or store=/symbols=/top=, not both")
        return panel
    st = open_store(store)
    if top is not None and symbols is None:
        # Rank the universe on history before the range only: no survivorship look-ahead.
        first = start if start is not None else default_start(encoder)
        ranked = load_panel(st, market=market, end=first - HOUR, top=top) if first is not None else None
        if ranked is not None and len(ranked.times):
            symbols, top = list(ranked.symbols), None
    # Everything up to `end`: the encoder needs the history before `start` to warm up.
    return load_panel(st, market=market, symbols=symbols, end=end, top=top)
