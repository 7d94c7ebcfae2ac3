"""Everything about a :class:`~envs.crypto_graph.CryptoGraphEnv` that is not data, and how its data is chosen.

Both dataclasses (and :class:`~envs.portfolio.PortfolioConfig`) validate types as well
as ranges (:mod:`envs.checks`) when they are made, so an options object that exists is
valid and nothing checks it again: a bad keyword is one
:class:`~gnn_market.errors.OptionError` line (also a ``ValueError``), raised before
anything slow is loaded.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from gnn_market.errors import OptionError
from gnn_market.store_schema import MARKETS

from .checks import check_bool, check_choice, check_int, check_path
from .portfolio import PortfolioConfig

OBS_MODES = ("flat", "dict")
#: ``render_mode`` values the environment draws itself (``"human"`` goes through Gymnasium's wrapper).
RENDER_MODES = ["ansi", "rgb_array"]
#: ``"gnn"``: the encoder's probabilities and embeddings; ``"raw"``: the normalised node features it reads.
OBS_SOURCES = ("gnn", "raw")


@dataclass(frozen=True)
class EnvOptions:
    """Episode length, observation source and layout, rendering and the portfolio's costs and turnover control."""

    episode_hours: int | None = 168
    obs_mode: str = "flat"
    include_embeddings: bool = True
    render_mode: str | None = None
    portfolio: PortfolioConfig = PortfolioConfig()
    obs_source: str = "gnn"

    def __post_init__(self) -> None:
        """Raise ``OptionError`` for an option of the wrong type or an unknown or out-of-range value.

        The portfolio's options are checked when the :class:`PortfolioConfig` is made.
        """
        check_int("episode_hours", self.episode_hours, optional=True, unit=" (steps; None: no limit)")
        check_choice("obs_mode", self.obs_mode, OBS_MODES)
        check_choice("obs_source", self.obs_source, OBS_SOURCES)
        check_bool("include_embeddings", self.include_embeddings)
        check_choice("render_mode", self.render_mode, RENDER_MODES, optional="no rendering")
        if not isinstance(self.portfolio, PortfolioConfig):
            raise OptionError(f"portfolio must be a PortfolioConfig, got {type(self.portfolio).__name__}")

    def with_overrides(self, **overrides: Any) -> "EnvOptions":
        """A copy with some fields changed; :class:`PortfolioConfig`'s fields go to the portfolio.

        ``obs_source`` cannot change: the observation arrays are built for one source.
        """
        pf_keys = {f.name for f in fields(PortfolioConfig)}
        own = {k: v for k, v in overrides.items() if k not in pf_keys}
        unknown = set(own) - {"episode_hours", "obs_mode", "include_embeddings", "render_mode"}
        if unknown:
            raise OptionError(f"unknown overrides: {sorted(unknown)} (obs_source cannot change: make a new "
                              f"environment)")
        pf = replace(self.portfolio, **{k: v for k, v in overrides.items() if k in pf_keys})
        return replace(self, portfolio=pf, **own)

    def as_dict(self) -> dict[str, Any]:
        """Every option in force, flat (the portfolio's fields next to the others): ``metadata["options"]``."""
        out = {k: v for k, v in asdict(self).items() if k != "portfolio"}
        out.update(asdict(self.portfolio))
        return out


@dataclass(frozen=True)
class SourceOptions:
    """The keywords of ``gym.make("CryptoGraph-v0")`` that choose and encode the data (not :class:`EnvOptions`).

    ``symbols`` is checked by :func:`gnn_market.store_schema.unique_symbols`, ``start``/``end``
    by :func:`gnn_market.timeutil.parse_utc`.
    """

    market: str | None = None
    top: int | None = None
    batch_hours: int = 64
    allow_overlap: bool = False
    use_cache: bool = True
    cache_dir: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        """Raise ``OptionError`` for a keyword of the wrong type or out of range (``top=True`` is not 1 pair)."""
        check_choice("market", self.market, MARKETS, optional="the checkpoint's")
        check_int("top", self.top, optional=True, unit=" (pairs; None: every pair)")
        check_int("batch_hours", self.batch_hours, unit=" (hours per encoder pass)")
        check_bool("allow_overlap", self.allow_overlap)
        check_bool("use_cache", self.use_cache)
        check_path("cache_dir", self.cache_dir)
