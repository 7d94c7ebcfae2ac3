"""Everything about a :class:`~envs.crypto_graph.CryptoGraphEnv` that is not data."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .portfolio import PortfolioConfig

OBS_MODES = ("flat", "dict")
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

    def validate(self, render_modes: list[str]) -> None:
        """Raise ``ValueError`` for an unknown ``obs_mode``/``obs_source``/``render_mode`` or ``episode_hours < 1``."""
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.obs_source not in OBS_SOURCES:
            raise ValueError(f"obs_source must be one of {OBS_SOURCES}, got {self.obs_source!r}")
        if self.render_mode is not None and self.render_mode not in render_modes:
            raise ValueError(f"render_mode must be None or one of {render_modes}, got {self.render_mode!r}")
        if self.episode_hours is not None and int(self.episode_hours) < 1:
            raise ValueError(f"episode_hours must be >= 1 or None, got {self.episode_hours}")

    def with_overrides(self, **overrides: Any) -> "EnvOptions":
        """A copy with some fields changed; :class:`PortfolioConfig`'s fields go to the portfolio.

        ``obs_source`` cannot change: the observation arrays are built for one source.
        """
        pf_keys = {f.name for f in fields(PortfolioConfig)}
        own = {k: v for k, v in overrides.items() if k not in pf_keys}
        unknown = set(own) - {"episode_hours", "obs_mode", "include_embeddings", "render_mode"}
        if unknown:
            raise TypeError(f"unknown overrides: {sorted(unknown)}")
        pf = replace(self.portfolio, **{k: v for k, v in overrides.items() if k in pf_keys})
        return replace(self, portfolio=pf, **own)

    def as_dict(self) -> dict[str, Any]:
        """Every option in force, flat (the portfolio's fields next to the others): ``metadata["options"]``."""
        out = {k: v for k, v in asdict(self).items() if k != "portfolio"}
        out.update(asdict(self.portfolio))
        return out
