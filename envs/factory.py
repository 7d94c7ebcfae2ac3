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
from typing import Any

import pandas as pd

from gnn_market.panel import Panel, load_panel, rank_top_before
from gnn_market.sources import open_store
from gnn_market.store import Store
from gnn_market.store_schema import unique_symbols
from gnn_market.timeutil import HOUR, parse_utc

from . import portfolio
from .cache import check_cache_dir, default_cache_dir, encode_cached
from .crypto_graph import CryptoGraphEnv
from .market_arrays import MarketArrays
from .options import EnvOptions, SourceOptions
from .portfolio import PortfolioConfig
from .protocols import FeatureEncoder, ObservationEncoder
from .ranges import (
    check_market,
    check_overlap,
    default_start,
    rank_window,
    resolve_range,
    resolve_within,
    store_coverage,
)

__all__ = ["build_env", "check_overlap", "default_start", "make_crypto_graph_env", "resolve_range"]


def make_crypto_graph_env(store: str | os.PathLike | Store | None = None,
                          checkpoint: str | os.PathLike | None = None, market: str | None = None,
                          symbols: list[str] | None = None, top: int | None = None, start: Any = None,
                          end: Any = None, episode_hours: int | None = 168, fee_bps: float = 10.0,
                          obs_mode: str = "flat", include_embeddings: bool = True, render_mode: str | None = None,
                          allow_overlap: bool = False, cache_dir: str | os.PathLike | None = None,
                          use_cache: bool = True, action_scale: float = portfolio.ACTION_SCALE,
                          initial_value: float = 1.0, encoder: ObservationEncoder | None = None,
                          panel: Panel | None = None, batch_hours: int = 64, obs_source: str = "gnn",
                          rebalance_threshold: float = portfolio.REBALANCE_THRESHOLD,
                          rebalance_rate: float = portfolio.REBALANCE_RATE, rebalance_every: int = portfolio.REBALANCE_EVERY,
                          delist_haircut: float = portfolio.DELIST_HAIRCUT) -> CryptoGraphEnv:
    """The ``CryptoGraph-v0`` entry point; the keywords are documented on :class:`CryptoGraphEnv`.

    Every keyword's type and range is checked first (``OptionError``), before anything is loaded.
    """
    source = SourceOptions(market=market, top=top, batch_hours=batch_hours, allow_overlap=allow_overlap,
                           use_cache=use_cache, cache_dir=cache_dir)
    source.validate()
    options = EnvOptions(episode_hours=episode_hours, obs_mode=obs_mode, include_embeddings=include_embeddings,
                         render_mode=render_mode, obs_source=obs_source,
                         portfolio=PortfolioConfig(fee_bps=fee_bps, action_scale=action_scale,
                                                   initial_value=initial_value,
                                                   rebalance_threshold=rebalance_threshold,
                                                   rebalance_rate=rebalance_rate, rebalance_every=rebalance_every,
                                                   delist_haircut=delist_haircut))
    options.validate(CryptoGraphEnv.metadata["render_modes"])  # before the slow loading
    # a file where the cache folder should be: refused before the slow loading too
    cache = check_cache_dir(cache_dir if cache_dir is not None else default_cache_dir()) if use_cache else None
    symbols = None if symbols is None else unique_symbols(symbols)  # a repeated pair: refused, not de-duplicated
    encoder = _resolve_encoder(encoder, checkpoint)
    start_ts, end_ts = parse_utc(start), parse_utc(end)
    panel, start_ts, end_ts = _resolve_panel(panel, store, market or encoder.market or "spot", symbols, top,
                                             start_ts, end_ts, encoder)
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
    ``gym.make``; ``cache_dir=None`` encodes without caching. With
    ``options.obs_source == "raw"`` the encoder only computes its normalised
    input features (:class:`~envs.protocols.FeatureEncoder`; no model run, not cached:
    it costs about as much as reading a cache entry).
    """
    options.validate(CryptoGraphEnv.metadata["render_modes"])
    SourceOptions(batch_hours=batch_hours, allow_overlap=allow_overlap, cache_dir=cache_dir).validate()
    start_ts, end_ts = resolve_range(panel, encoder, parse_utc(start), parse_utc(end))
    check_overlap(encoder, start_ts, end_ts, allow_overlap)
    if options.obs_source == "raw":
        if not isinstance(encoder, FeatureEncoder):
            raise TypeError(f"obs_source='raw' needs an encoder with node_features() (envs.protocols.FeatureEncoder), "
                            f"got {type(encoder).__name__}")
        return CryptoGraphEnv(MarketArrays.build_raw(panel, encoder.node_features(panel, start_ts, end_ts)), options)
    encoded = encode_cached(encoder, panel, start_ts, end_ts, batch_hours, cache_dir)
    return CryptoGraphEnv(MarketArrays.build(panel, encoded), options)


def _resolve_encoder(encoder: ObservationEncoder | None, checkpoint: str | os.PathLike | None) -> ObservationEncoder:
    if encoder is None:
        from gnn_market.encoder import GraphEncoder  # torch: only when a checkpoint is loaded here

        return GraphEncoder.load(checkpoint)
    if checkpoint is not None:
        raise ValueError("pass either encoder= or checkpoint=, not both")
    if not isinstance(encoder, ObservationEncoder):
        raise TypeError(f"encoder= must provide encode_range, embedding_dim, market, fit_range, checkpoint and "
                        f"fingerprint() (envs.protocols.ObservationEncoder), got {type(encoder).__name__}")
    return encoder


def _resolve_panel(panel: Panel | None, store: str | os.PathLike | Store | None, market: str,
                   symbols: list[str] | None, top: int | None, start: pd.Timestamp | None,
                   end: pd.Timestamp | None,
                   encoder: ObservationEncoder) -> tuple[Panel, pd.Timestamp | None, pd.Timestamp | None]:
    """The given panel, or one loaded from ``store`` with all history up to ``end``; and the range.

    From a store, the range is resolved (and refused with a clear message) from
    the stored time columns before anything slow is loaded. ``top`` keeps the
    most liquid of ``symbols`` (default: all of the market) on the stored hours
    before the range only (:func:`~envs.ranges.rank_window`).
    """
    if panel is not None:
        if store is not None or symbols is not None or top is not None:
            raise ValueError("pass either panel= or store=/symbols=/top=, not both")
        return panel, start, end
    st = open_store(store)
    check_market(encoder, market, str(st.root))
    cov = store_coverage(st, market, symbols)
    explicit = start is not None
    start, end = resolve_within(cov, encoder, start, end)
    if top is not None:
        # Rank the universe (of `symbols` too) on history before the range only: no survivorship look-ahead.
        start, ranked_to = rank_window(cov, start, explicit)
        symbols = rank_top_before(st, market, top, ranked_to + HOUR, symbols)
    # Everything up to `end`: the encoder needs the history before `start` to warm up.
    return load_panel(st, market=market, symbols=symbols, end=end), start, end
