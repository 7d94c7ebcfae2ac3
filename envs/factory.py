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
from dataclasses import fields, replace
from typing import Any

import pandas as pd

from gnn_market.errors import OptionError
from gnn_market.panel import Panel, load_panel, rank_top_before
from gnn_market.sources import open_store
from gnn_market.store import Store
from gnn_market.store_schema import unique_symbols
from gnn_market.timeutil import HOUR, parse_utc

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

__all__ = ["EnvOptions", "PortfolioConfig", "SourceOptions", "build_env", "check_overlap", "default_start",
           "make_crypto_graph_env", "resolve_range"]


def make_crypto_graph_env(
    store: str | os.PathLike | Store | None = None,
    checkpoint: str | os.PathLike | None = None,
    market: str | None = None,
    symbols: list[str] | None = None,
    top: int | None = None,
    start: Any = None,
    end: Any = None,
    *,
    env_options: EnvOptions | None = None,
    portfolio_config: PortfolioConfig | None = None,
    source_options: SourceOptions | None = None,
    encoder: ObservationEncoder | None = None,
    panel: Panel | None = None,
    **options: Any,
) -> CryptoGraphEnv:
    """The ``CryptoGraph-v0`` entry point: ``gym.make("CryptoGraph-v0", **kwargs)`` calls it.

    :param store: market store folder or :class:`~gnn_market.store.Store` (None: the bundled sample).
    :param checkpoint: ``model.pt`` of a training run (None: the packaged checkpoint).
    :param market: ``"spot"`` or ``"perp"`` (None: the checkpoint's market).
    :param symbols: the pairs (None: every pair of the market in the store).
    :param top: keep the ``top`` most liquid of ``symbols``, ranked on stored hours before the range only.
    :param start: first hour (UTC; None: the first midnight after every hour the checkpoint was fitted on).
    :param end: last hour (None: the last stored hour).
    :param env_options: episode length, observation source and layout, rendering
        (:class:`~envs.options.EnvOptions`; its ``portfolio`` is replaced by ``portfolio_config`` if given).
    :param portfolio_config: fees, action scale, initial value, turnover control, delisting haircut
        (:class:`~envs.portfolio.PortfolioConfig`).
    :param source_options: ``market``/``top`` defaults, encoder batch size, overlap rule and cache
        (:class:`~envs.options.SourceOptions`; the ``market`` and ``top`` arguments win when given).
    :param encoder: an :class:`~envs.protocols.ObservationEncoder` instead of ``checkpoint``.
    :param panel: a :class:`~gnn_market.panel.Panel` in memory instead of ``store``/``symbols``/``top``.
    :param options: any field of the three settings objects by name, flat, as ``gym.make`` passes
        them: ``episode_hours``, ``obs_mode``, ``include_embeddings``, ``render_mode``,
        ``obs_source`` (EnvOptions); ``fee_bps``, ``action_scale``, ``initial_value``,
        ``rebalance_threshold``, ``rebalance_rate``, ``rebalance_every``, ``delist_haircut``
        (PortfolioConfig); ``batch_hours``, ``allow_overlap``, ``use_cache``, ``cache_dir``
        (SourceOptions). A flat keyword overrides the same field of a settings object.
        Their meaning and defaults: :class:`CryptoGraphEnv`, "Arguments".
    :return: the environment over ``[start, end]``, encoded (and cached) once.

    Every keyword's type and range is checked once, when the settings are made, before anything
    is loaded (:class:`~gnn_market.errors.OptionError`); the range is resolved once.
    """
    source, env_opts = settings_from(options, env_options, portfolio_config, source_options, market, top)
    # a file where the cache folder should be: refused before the slow loading too
    cache = (check_cache_dir(source.cache_dir if source.cache_dir is not None else default_cache_dir())
             if source.use_cache else None)
    symbols = None if symbols is None else unique_symbols(symbols)  # a repeated pair: refused, not de-duplicated
    encoder = _resolve_encoder(encoder, checkpoint)
    panel, start_ts, end_ts = _resolve_panel(panel, store, source.market or encoder.market or "spot", symbols,
                                             source.top, parse_utc(start), parse_utc(end), encoder)
    return _build(panel, encoder, start_ts, end_ts, env_opts, source, cache)


def settings_from(flat: dict[str, Any], env_options: EnvOptions | None = None,
                  portfolio_config: PortfolioConfig | None = None, source_options: SourceOptions | None = None,
                  market: str | None = None, top: int | None = None) -> tuple[SourceOptions, EnvOptions]:
    """The grouped settings of :func:`make_crypto_graph_env`: objects, then flat keywords by field name.

    Unknown keywords are one :class:`~gnn_market.errors.OptionError` naming them; each settings
    object validates itself when made (once).
    """
    groups = {"env": {f.name for f in fields(EnvOptions)} - {"portfolio"},
              "portfolio": {f.name for f in fields(PortfolioConfig)},
              "source": {f.name for f in fields(SourceOptions)} - {"market", "top"}}
    unknown = set(flat) - set().union(*groups.values())
    if unknown:
        raise OptionError(f"unknown keyword(s) {sorted(unknown)} for CryptoGraph-v0; see "
                          f"help(envs.factory.make_crypto_graph_env)")
    for name, given in (("env_options", env_options), ("portfolio_config", portfolio_config),
                        ("source_options", source_options)):
        expected = {"env_options": EnvOptions, "portfolio_config": PortfolioConfig,
                    "source_options": SourceOptions}[name]
        if given is not None and not isinstance(given, expected):
            raise OptionError(f"{name} must be a {expected.__name__}, got {type(given).__name__}")
    pick = {g: {k: v for k, v in flat.items() if k in names} for g, names in groups.items()}
    for name, value in (("market", market), ("top", top)):
        if value is not None:
            pick["source"][name] = value
    source = _made(SourceOptions, source_options, pick["source"])
    pf = _made(PortfolioConfig, portfolio_config or (env_options.portfolio if env_options else None),
               pick["portfolio"])
    return source, _made(EnvOptions, env_options, {**pick["env"], "portfolio": pf})


def _made(cls: type, given: Any, values: dict[str, Any]) -> Any:
    """``given`` with ``values`` replaced, or ``cls(**values)``: each object is made (and validated) once."""
    if given is None:
        return cls(**values)
    changed = {k: v for k, v in values.items() if getattr(given, k) is not v}
    return replace(given, **changed) if changed else given


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
    source = SourceOptions(batch_hours=batch_hours, allow_overlap=allow_overlap, cache_dir=cache_dir)
    start_ts, end_ts = resolve_range(panel, encoder, parse_utc(start), parse_utc(end))
    return _build(panel, encoder, start_ts, end_ts, options, source, cache_dir)


def _build(panel: Panel, encoder: ObservationEncoder, start: pd.Timestamp, end: pd.Timestamp,
           options: EnvOptions, source: SourceOptions, cache_dir: str | os.PathLike | None) -> CryptoGraphEnv:
    """The environment from validated settings and a resolved range: overlap rule, encoding, arrays."""
    check_overlap(encoder, start, end, source.allow_overlap)
    if options.obs_source == "raw":
        if not isinstance(encoder, FeatureEncoder):
            raise TypeError(f"obs_source='raw' needs an encoder with node_features() (envs.protocols.FeatureEncoder), "
                            f"got {type(encoder).__name__}")
        return CryptoGraphEnv(MarketArrays.build_raw(panel, encoder.node_features(panel, start, end)), options)
    encoded = encode_cached(encoder, panel, start, end, source.batch_hours, cache_dir)
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
    """The given panel, or one loaded from ``store`` with all history up to ``end``; and the range, resolved.

    The range is resolved once: on the given panel's hours, or, from a store, (and refused with a clear message) from
    the stored time columns before anything slow is loaded. ``top`` keeps the
    most liquid of ``symbols`` (default: all of the market) on the stored hours
    before the range only (:func:`~envs.ranges.rank_window`).
    """
    if panel is not None:
        if store is not None or symbols is not None or top is not None:
            raise ValueError("pass either panel= or store=/symbols=/top=, not both")
        return (panel, *resolve_range(panel, encoder, start, end))
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
