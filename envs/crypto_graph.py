"""``CryptoGraph-v0``: hourly long-only allocation over crypto pairs, observed through the GATv2 encoder."""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from gnn_market.errors import CryptoGraphError
from gnn_market.timeutil import HOUR, parse_utc

from . import portfolio
from .portfolio import PortfolioConfig

OBS_MODES = ("flat", "dict")
CACHE_VERSION = 1
#: Panel arrays that define "the data" for the encoder cache key (those that exist are hashed).
_FINGERPRINT_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "mask",
                       "filled", "funding_rate", "has_funding", "best_bid", "best_ask", "bid_qty",
                       "ask_qty", "has_book")


class RangeOverlapError(CryptoGraphError, ValueError):
    """The environment's hours overlap the hours the encoder's checkpoint was fitted on."""


class CryptoGraphEnv(gym.Env):
    """
    ## Description

    Each step is one hour. At the close of hour ``t`` the agent sees, for each
    of ``N`` Binance pairs, what the pretrained GATv2 encoder makes of the
    cross-asset graph at ``t`` (predicted probabilities of the next hour being
    DOWN / SIDEWAYS / UP, and the node embedding), plus its own portfolio
    weights. It chooses a long-only allocation over cash and the ``N`` pairs,
    pays a proportional fee on what it trades, and holds that allocation for
    the next hour (plus perpetual funding on perp markets).

    Encoder outputs for every hour in range are computed once at construction
    (batched) and cached on disk, keyed by a hash of the data, the checkpoint
    bytes and the range; a step only indexes precomputed arrays.

    ## Action Space

    ``Box(-1, 1, (N + 1,), float32)``: one score per holding, cash first
    (index 0), then the pairs in :attr:`symbols` order. Scores become target
    weights by a softmax with inverse temperature ``action_scale`` (default 5):
    ``w = softmax(5 * a)`` over cash and the pairs tradable at ``t``; masked
    pairs get weight exactly 0. A zero action is the uniform portfolio; a
    score of 1 against -1 elsewhere puts ~99.9% in one of 31 holdings. Scores
    outside the box are used as given (RL libraries clip to the box
    themselves), so any finite scores work, e.g. ``log(w) / 5`` for exact
    weights ``w > 0``. A NaN/inf action, or one of the wrong shape, raises
    ``ValueError``. :meth:`step_weights` takes target weights directly.

    ## Observation Space

    With ``d`` the encoder's embedding width (``GraphEncoder.embedding_dim``):

    - ``obs_mode="dict"`` (``MultiInputPolicy``): ``Dict`` with
      ``"probs"`` ``(N, 3)`` in [0, 1], ``"embeddings"`` ``(N, d)`` (omitted when
      ``include_embeddings=False``), ``"mask"`` ``(N,)`` 1.0 where the pair has
      data at ``t`` and ``"weights"`` ``(N + 1,)`` the current (drifted) weights,
      cash first. All ``float32``.
    - ``obs_mode="flat"`` (``MlpPolicy``): the same, flattened and concatenated
      in that order into one ``float32`` vector of length ``N*3 + N*d + N + N + 1``.

    Pairs without data at ``t`` are masked: zeros and ``mask = 0``; they are
    never dropped, so shapes never change.

    ## Rewards

    ``log(V_{t+1} / V_t)``: the log growth of portfolio value over the hour after
    the decision, net of ``fee_bps / 1e4 x turnover x V_t`` where
    ``turnover = sum_i |w_i - w_prev_i|`` over the pairs, measured against the
    weights after the previous hour's drift. Prices move by
    ``close[t+1] / close[t]``; on ``market="perp"`` a funding event settling
    inside the held hour is paid by longs when positive (received when negative).
    See :mod:`envs.portfolio`.

    ## Starting State

    All cash, value ``initial_value`` (default 1.0), at an hour drawn uniformly
    with ``self.np_random`` (seed it with ``reset(seed=...)``) among those that
    leave a full episode of data. ``reset(options={"start": hour})`` starts at a
    given hour (a timestamp or an index into :attr:`times`).

    ## Episode End

    Truncated after ``episode_hours`` steps (default 168, one week; ``None``
    means no limit). Terminated when the next hour has no data left in range.

    ## Arguments

    - ``store``: a store folder or :class:`~gnn_market.store.Store` (default: the bundled sample).
    - ``checkpoint``: path of an encoder checkpoint (default: the packaged one).
    - ``market``: ``"spot"`` or ``"perp"`` (default: the checkpoint's market).
    - ``symbols`` / ``top``: the pairs, or the ``top`` pairs by quote volume
      before ``start`` (default: every pair in the store).
    - ``start`` / ``end``: first and last hour, inclusive (UTC). Default: from the
      first UTC midnight after the hours the checkpoint's training run used
      (its train/validation/test splits) to the end of the data.
    - ``episode_hours`` (168), ``fee_bps`` (10), ``action_scale`` (5), ``initial_value`` (1.0).
    - ``obs_mode`` (``"flat"`` or ``"dict"``), ``include_embeddings`` (True).
    - ``render_mode``: ``"ansi"`` (text) or ``"rgb_array"`` (equity curve and weights).
    - ``allow_overlap``: permit a range overlapping the checkpoint's fit range
      (otherwise :class:`RangeOverlapError`); warns loudly.
    - ``cache_dir``: where encoder outputs are cached (default
      ``gnn_market.sources.cache_dir() / "env"``); ``use_cache=False`` disables it.
    - Advanced: ``encoder`` (a loaded ``GraphEncoder``-like object) and ``panel``
      (a loaded ``Panel``) instead of ``checkpoint`` and ``store``.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, store: Any = None, checkpoint: str | os.PathLike | None = None,
                 market: str | None = None, symbols: list[str] | None = None, top: int | None = None,
                 start: Any = None, end: Any = None, episode_hours: int | None = 168,
                 fee_bps: float = 10.0, obs_mode: str = "flat", include_embeddings: bool = True,
                 render_mode: str | None = None, allow_overlap: bool = False,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 action_scale: float = portfolio.ACTION_SCALE, initial_value: float = 1.0,
                 encoder: Any = None, panel: Any = None, batch_hours: int = 64) -> None:
        options = EnvOptions(episode_hours=episode_hours, obs_mode=obs_mode,
                             include_embeddings=include_embeddings, render_mode=render_mode,
                             portfolio=PortfolioConfig(fee_bps=fee_bps, action_scale=action_scale,
                                                       initial_value=initial_value))
        options.validate(self.metadata["render_modes"])
        encoder = _resolve_encoder(encoder, checkpoint)
        market = market or getattr(encoder, "market", None) or "spot"
        start_ts, end_ts = parse_utc(start), parse_utc(end)
        panel, store_obj = _resolve_panel(panel, store, market, symbols, top, start_ts, end_ts, encoder)
        start_ts, end_ts = _resolve_range(panel, encoder, start_ts, end_ts)
        _check_overlap(encoder, start_ts, end_ts, allow_overlap)
        encoded = _encode_cached(encoder, panel, start_ts, end_ts, checkpoint, batch_hours,
                                 _cache_path(cache_dir) if use_cache else None)
        events = (funding_events_from_store(store_obj, list(panel.symbols), panel.times)
                  if store_obj is not None and panel.market == "perp" else None)
        self._setup(MarketArrays.build(panel, encoded, events), options)

    # ------------------------------------------------------------------ setup
    def _setup(self, data: "MarketArrays", options: "EnvOptions") -> None:
        """Spaces and state from precomputed arrays (shared by ``__init__`` and :meth:`subrange`)."""
        if len(data.times) < 2:
            raise CryptoGraphError(f"the environment needs at least 2 hours of data, got {len(data.times)}")
        self._data, self._options = data, options
        self.render_mode = options.render_mode
        self.symbols: list[str] = list(data.symbols)
        self.times: pd.DatetimeIndex = data.times
        n, d = len(self.symbols), data.embeddings.shape[-1]
        self.embedding_dim = d
        self._n_hours = len(data.times)
        self._times_py = list(data.times)  # Timestamps made once: info["time"] costs nothing per step
        self._fee_rate = options.portfolio.fee_rate
        self._scale = options.portfolio.action_scale
        self._initial_value = options.portfolio.initial_value
        self._emb = options.include_embeddings
        self._flat = options.obs_mode == "flat"
        self.action_space = spaces.Box(-1.0, 1.0, (n + 1,), np.float32)
        self.observation_space = _observation_space(n, d, options)
        if self._flat:
            parts = [data.probs.reshape(self._n_hours, -1)]
            if self._emb:
                parts.append(data.embeddings.reshape(self._n_hours, -1))
            parts.append(data.mask.astype(np.float32))
            parts.append(np.zeros((self._n_hours, n + 1), np.float32))  # the weights' slot, filled per step
            self._features = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
            self._weights_at = self._features.shape[1] - (n + 1)
        self._mask_f32 = data.mask.astype(np.float32)
        # hot-path handles: a step reads these directly
        self._action_shape = (n + 1,)
        self._offsets, self._growth, self._funding = data.offsets, data.growth, data.funding
        self._funding_keep = None if data.funding is None else 1.0 - data.funding
        self._last_t = self._n_hours - 1
        self._limit = options.episode_hours
        self._ones = np.ones(n + 1)
        self._pair_ones = np.ones(n + 1)
        self._pair_ones[0] = 0.0
        self._cash_only = np.zeros(n + 1)
        self._cash_only[0] = 1.0
        self._t = 0
        self._steps = 0
        self._value = self._initial_value
        self._weights = self._cash_only.copy()
        self._last: tuple[float, float, float] = (0.0, 0.0, 0.0)  # turnover, fees, funding of the last step
        self._history: list[float] | None = None  # values this episode, kept only for rendering

    def subrange(self, start: Any = None, end: Any = None, **overrides: Any) -> "CryptoGraphEnv":
        """A new environment over hours ``[start, end]`` of this one, sharing its encoded arrays.

        No re-encoding: used to split one encoded range into training and
        evaluation environments. ``overrides`` may change ``episode_hours``,
        ``fee_bps``, ``obs_mode``, ``include_embeddings``, ``render_mode``,
        ``action_scale`` and ``initial_value``.
        """
        i0 = 0 if start is None else self.hour_index(start)
        i1 = self._n_hours - 1 if end is None else self.hour_index(end)
        if i1 <= i0:
            raise CryptoGraphError(f"empty subrange {start} .. {end}")
        options = self._options.with_overrides(**overrides)
        options.validate(self.metadata["render_modes"])
        env = object.__new__(type(self))
        env._setup(self._data.slice(i0, i1), options)
        return env

    # ------------------------------------------------------------ properties
    @property
    def weights(self) -> np.ndarray:
        """Weights held now (cash first), after the last hour's drift."""
        return self._weights.copy()

    @property
    def portfolio_value(self) -> float:
        return self._value

    @property
    def current_time(self) -> pd.Timestamp:
        return self._times_py[self._t]

    @property
    def current_probs(self) -> np.ndarray:
        """Encoder probabilities ``[N, 3]`` (DOWN, SIDEWAYS, UP) at the current hour (0 where masked)."""
        return self._data.probs[self._t].copy()

    @property
    def current_mask(self) -> np.ndarray:
        """Pairs tradable at the current hour ``[N]``."""
        return self._data.mask[self._t].copy()

    def hour_index(self, hour: Any) -> int:
        """Index into :attr:`times` of an hour given as an int or a timestamp."""
        if isinstance(hour, (int, np.integer)):
            idx = int(hour) + (self._n_hours if hour < 0 else 0)
            if not 0 <= idx < self._n_hours:
                raise CryptoGraphError(f"hour index {hour} outside 0..{self._n_hours - 1}")
            return idx
        ts = parse_utc(hour)
        idx = self.times.get_indexer([ts])[0]
        if idx < 0:
            raise CryptoGraphError(f"{ts} is not an hour of this environment ({self.times[0]} .. {self.times[-1]})")
        return int(idx)

    def action_to_weights(self, action: np.ndarray) -> np.ndarray:
        """Target weights the action would produce at the current hour (validates the action)."""
        return self._scores_to_weights(action)

    # ------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        start = (options or {}).get("start")
        if start is None:
            horizon = self._options.episode_hours or 0
            last_start = max(0, self._n_hours - 1 - horizon)
            self._t = int(self.np_random.integers(0, last_start + 1))
        else:
            self._t = self.hour_index(start)
            if self._t >= self._n_hours - 1:
                raise CryptoGraphError(f"cannot start at the last hour {self.times[-1]}: no next candle")
        self._steps = 0
        self._value = self._initial_value
        self._weights = self._cash_only.copy()
        self._last = (0.0, 0.0, 0.0)
        self._history = [self._value] if self.render_mode is not None else None
        return self._observation(), self._info()

    def step(self, action: np.ndarray):
        return self._advance(self._scores_to_weights(action))

    def step_weights(self, weights: np.ndarray):
        """Step with explicit target weights ``[N + 1]`` (cash first) instead of scores.

        Weights must be finite and >= 0; they are renormalised to sum to 1, and
        pairs masked at the current hour are set to 0 (their weight goes to
        cash). For rule-based policies and evaluation.
        """
        w = np.asarray(weights, dtype=np.float64)
        n1 = self.action_space.shape[0]
        if w.shape != (n1,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {n1} finite non-negative numbers (cash first) with a positive sum")
        total = w.sum()
        if abs(total - 1.0) > 1e-12:  # leave (drifted) weights bit-exact: holding must cost exactly 0
            w = w / total
        masked = ~np.isfinite(self._offsets[self._t])
        if masked.any():
            w = w.copy()
            w[0] += w[masked].sum()
            w[masked] = 0.0
        return self._advance(np.array(w, dtype=np.float64))

    def _scores_to_weights(self, action: Any) -> np.ndarray:
        """``softmax(scale * action + offsets[t])``, validated; the hot path of :meth:`step`.

        Same result as :func:`envs.portfolio.scores_to_weights` in a handful of
        in-place numpy calls (the max-shift is skipped when no score can
        overflow ``exp``).
        """
        try:
            z = np.array(action, dtype=np.float64)  # a fresh copy: everything below is in place
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action must be {self.action_space.shape[0]} numbers, got {action!r}") from exc
        if z.shape != self._action_shape:
            raise ValueError(f"action must have shape {self._action_shape} (cash + {len(self.symbols)} "
                             f"pair scores), got {z.shape}")
        z *= self._scale
        if not z.dot(z) <= 4.9e5:  # false for NaN/inf, or when some |score * scale| may exceed 700
            z = self._checked_shift(z, action)
        z += self._offsets[self._t]
        np.exp(z, out=z)
        z /= z.dot(self._ones)  # a dot with ones: 3x faster than .sum() on 51 floats
        return z

    def _checked_shift(self, z: np.ndarray, action: Any) -> np.ndarray:
        bad = np.flatnonzero(~np.isfinite(z))
        if len(bad):
            raw = np.asarray(action, dtype=np.float64)[bad]
            raise ValueError(f"action has NaN/inf scores at positions {bad.tolist()}: {raw.tolist()}")
        return z - z.max()  # large but finite scores: shift so exp cannot overflow

    def _advance(self, target: np.ndarray):
        """Rebalance to ``target`` (a fresh array, consumed), hold one hour, build the step's outputs.

        Inline version of :func:`envs.portfolio.step` (tests check they agree):
        about a dozen numpy calls on ``N + 1`` floats, sums done as dot products.
        """
        t = self._t
        if t >= self._last_t:
            raise CryptoGraphError("the episode has ended (no next hour): call reset()")
        diff = target - self._weights
        np.abs(diff, out=diff)
        traded = float(diff.dot(self._pair_ones))  # pairs only: cash is the other side of every trade
        value = self._value
        fee = self._fee_rate * traded * value
        invested = value - fee
        target *= self._growth[t]  # value of each holding at the end of the hour, per unit invested
        paid = 0.0
        if self._funding is not None:
            paid = invested * float(target.dot(self._funding[t]))
            target *= self._funding_keep[t]
        gross = float(target.dot(self._ones))
        target /= gross
        new_value = invested * gross
        self._value, self._weights, self._t = new_value, target, t + 1
        self._steps += 1
        self._last = (traded, fee, paid)
        if self._history is not None:
            self._history.append(new_value)
        terminated = t + 1 >= self._last_t
        truncated = not terminated and self._limit is not None and self._steps >= self._limit
        info = {"time": self._times_py[t + 1], "portfolio_value": new_value, "turnover": traded, "fees": fee,
                "funding": paid, "weights": target.copy()}
        return self._observation(), math.log(new_value / value), terminated, truncated, info

    def _observation(self) -> np.ndarray | dict[str, np.ndarray]:
        t = self._t
        if self._flat:
            obs = self._features[t].copy()  # fresh array; copy + one slice write beats concatenate
            obs[self._weights_at:] = self._weights
            return obs
        obs = {"probs": self._data.probs[t].copy()}
        if self._emb:
            obs["embeddings"] = self._data.embeddings[t].copy()
        obs["mask"] = self._mask_f32[t].copy()
        obs["weights"] = self._weights.astype(np.float32)
        return obs

    def _info(self) -> dict[str, Any]:
        traded, fee, paid = self._last
        return {"time": self._times_py[self._t], "portfolio_value": self._value, "turnover": traded,
                "fees": fee, "funding": paid, "weights": self._weights.copy()}

    # ---------------------------------------------------------------- render
    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        return None

    def _render_text(self, top: int = 5) -> str:
        w = self._weights
        order = np.argsort(-w[1:])[:top]
        held = "  ".join(f"{self.symbols[i]} {w[i + 1]:6.1%}" for i in order if w[i + 1] > 0.0005)
        return (f"{self.current_time:%Y-%m-%d %H:%M} UTC  value {self._value:.4f}  "
                f"turnover {self._last[0]:.3f}  fees {self._last[1]:.6f}\n"
                f"  cash {w[0]:6.1%}  {held}")

    def _render_rgb(self) -> np.ndarray:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=80)
        canvas = FigureCanvasAgg(fig)  # off-screen: works without a display, in any process
        ax1, ax2 = fig.subplots(2, 1)
        ax1.plot(self._history or [self._value])
        ax1.set_title(f"portfolio value  {self.current_time:%Y-%m-%d %H:%M} UTC")
        ax2.bar(np.arange(len(self._weights)), self._weights)
        ax2.set_xticks(np.arange(len(self._weights)), ["cash"] + self.symbols, rotation=90, fontsize=5)
        ax2.set_ylim(0, 1)
        fig.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# ---------------------------------------------------------------------- configs
@dataclass(frozen=True)
class EnvOptions:
    """Everything about an environment that is not data."""

    episode_hours: int | None = 168
    obs_mode: str = "flat"
    include_embeddings: bool = True
    render_mode: str | None = None
    portfolio: PortfolioConfig = PortfolioConfig()

    def validate(self, render_modes: list[str]) -> None:
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.render_mode is not None and self.render_mode not in render_modes:
            raise ValueError(f"render_mode must be None or one of {render_modes}, got {self.render_mode!r}")
        if self.episode_hours is not None and int(self.episode_hours) < 1:
            raise ValueError(f"episode_hours must be >= 1 or None, got {self.episode_hours}")

    def with_overrides(self, **overrides: Any) -> "EnvOptions":
        pf_keys = {"fee_bps", "action_scale", "initial_value"}
        own = {k: v for k, v in overrides.items() if k not in pf_keys}
        unknown = set(own) - {"episode_hours", "obs_mode", "include_embeddings", "render_mode"}
        if unknown:
            raise TypeError(f"unknown overrides: {sorted(unknown)}")
        pf = replace(self.portfolio, **{k: v for k, v in overrides.items() if k in pf_keys})
        return replace(self, portfolio=pf, **own)


@dataclass
class MarketArrays:
    """What a step reads, precomputed for every hour of the range (``T`` hours, ``N`` pairs).

    ``growth[t]`` and ``funding[t]`` describe the hour held after deciding at
    ``t`` (rows ``0 .. T-2``); ``offsets[t]`` are the softmax offsets masking
    pairs without data at ``t``.
    """

    times: pd.DatetimeIndex        # [T]
    symbols: list[str]             # [N]
    probs: np.ndarray              # [T, N, 3] float32, 0 where masked
    embeddings: np.ndarray         # [T, N, d] float32, 0 where masked
    mask: np.ndarray               # [T, N] bool
    offsets: np.ndarray            # [T, N + 1] float64: 0 or -inf
    growth: np.ndarray             # [T - 1, N + 1] float64
    funding: np.ndarray | None     # [T - 1, N + 1] float64 or None (spot)

    @classmethod
    def build(cls, panel: Any, encoded: Any, funding_events: np.ndarray | None = None) -> "MarketArrays":
        rows = panel.times.get_indexer(encoded.times)
        if (rows < 0).any() or list(encoded.symbols) != list(panel.symbols):
            raise CryptoGraphError("encoder output does not line up with the panel (hours or symbols differ)")
        close = np.asarray(panel.close, dtype=np.float64)[rows]
        has_price = np.asarray(panel.mask, dtype=bool)[rows] & np.isfinite(close) & (close > 0)
        mask = np.asarray(encoded.mask, dtype=bool) & has_price
        probs = np.where(mask[..., None], np.clip(encoded.probs, 0.0, 1.0), 0.0).astype(np.float32)
        emb = np.where(mask[..., None], encoded.embeddings, 0.0).astype(np.float32)
        for arr in (probs, emb, mask):
            arr.setflags(write=False)  # shared between environments made by subrange()
        return cls(times=pd.DatetimeIndex(encoded.times), symbols=list(encoded.symbols), probs=probs,
                   embeddings=emb, mask=mask, offsets=portfolio.logit_offsets(mask),
                   growth=portfolio.price_growth(close, has_price),
                   funding=_funding_per_hour(panel, rows, funding_events))

    def slice(self, i0: int, i1: int) -> "MarketArrays":
        """Hours ``i0 .. i1`` inclusive."""
        hours, held = slice(i0, i1 + 1), slice(i0, i1)
        return MarketArrays(times=self.times[hours], symbols=self.symbols, probs=self.probs[hours],
                            embeddings=self.embeddings[hours], mask=self.mask[hours],
                            offsets=self.offsets[hours], growth=self.growth[held],
                            funding=None if self.funding is None else self.funding[held])


def _observation_space(n: int, d: int, options: EnvOptions) -> spaces.Space:
    parts = {"probs": spaces.Box(0.0, 1.0, (n, 3), np.float32)}
    if options.include_embeddings:
        parts["embeddings"] = spaces.Box(-np.inf, np.inf, (n, d), np.float32)
    parts["mask"] = spaces.Box(0.0, 1.0, (n,), np.float32)
    parts["weights"] = spaces.Box(0.0, 1.0, (n + 1,), np.float32)
    if options.obs_mode == "dict":
        return spaces.Dict(parts)
    low = np.concatenate([np.broadcast_to(s.low, s.shape).ravel() for s in parts.values()])
    high = np.concatenate([np.broadcast_to(s.high, s.shape).ravel() for s in parts.values()])
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


# ------------------------------------------------------------------- resolving
def _resolve_encoder(encoder: Any, checkpoint: str | os.PathLike | None) -> Any:
    if encoder is not None:
        if checkpoint is not None:
            raise ValueError("pass either encoder= or checkpoint=, not both")
        return encoder
    from gnn_market.encoder import GraphEncoder

    return GraphEncoder.load(checkpoint)


def _resolve_panel(panel: Any, store: Any, market: str, symbols: list[str] | None, top: int | None,
                   start: pd.Timestamp | None, end: pd.Timestamp | None, encoder: Any) -> tuple[Any, Any]:
    """The panel (all history up to ``end``) and the store it came from (``None`` if injected)."""
    if panel is not None:
        if store is not None or symbols is not None or top is not None:
            raise ValueError("pass either panel= or store=/symbols=/top=, not both")
        return panel, None
    from gnn_market.panel import load_panel
    from gnn_market.sources import open_store

    st = open_store(store)
    if top is not None and symbols is None:
        # Rank the universe on history before the range only: no survivorship look-ahead.
        first = start if start is not None else _default_start(encoder)
        ranked = load_panel(st, market=market, end=first - HOUR, top=top) if first is not None else None
        if ranked is not None and len(ranked.times):
            symbols, top = list(ranked.symbols), None
    # Everything up to `end`: the encoder needs the history before `start` to warm up.
    return load_panel(st, market=market, symbols=symbols, end=end, top=top), st


def _default_start(encoder: Any) -> pd.Timestamp | None:
    """First UTC midnight after every hour the checkpoint's training run used.

    That is the fit range (train + validation) and, where the checkpoint
    records it, its test split too: the encoder's own held-out hours were seen
    by whoever chose the model, so the environment's default range starts after
    them (2023-09-01 for the packaged checkpoint on the bundled sample).
    """
    ends = []
    fit = getattr(encoder, "fit_range", None)
    if fit and fit[1] is not None:
        ends.append(parse_utc(fit[1]))
    ranges = getattr(getattr(encoder, "checkpoint", None), "ranges", None) or {}
    for span in ranges.values():
        if span and span[1] is not None:
            ends.append(parse_utc(span[1]))
    return (max(ends) + HOUR).ceil("D") if ends else None


def _resolve_range(panel: Any, encoder: Any, start: pd.Timestamp | None,
                   end: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    if len(panel.times) == 0:
        raise CryptoGraphError("the panel holds no hours")
    first, last = panel.times[0], panel.times[-1]
    if start is None:
        start = max(_default_start(encoder) or first, first)
    end = last if end is None else min(end, last)
    if start >= end:
        raise CryptoGraphError(f"empty range: start {start} is not before end {end} (data {first} .. {last})")
    return start, end


def _check_overlap(encoder: Any, start: pd.Timestamp, end: pd.Timestamp, allow: bool) -> None:
    fit = getattr(encoder, "fit_range", None)
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


def funding_events_from_store(store: Any, symbols: list[str], times: pd.DatetimeIndex) -> np.ndarray:
    """Funding rates settling inside each row's hour, ``[T, N]``: events with ``funding_time`` in
    ``(times[t], times[t] + 1h]`` (summed; 0 where none). Exact, read from the store's funding files."""
    grid = pd.DatetimeIndex(times).as_unit("ns").asi8
    out = np.zeros((len(grid), len(symbols)))
    stored = set(store.funding_symbols())
    for n, sym in enumerate(symbols):
        if sym not in stored:
            continue
        f = store.funding(sym)
        rate = f["funding_rate"].to_numpy(dtype=np.float64)
        when = pd.DatetimeIndex(f.index).as_unit("ns").asi8
        ok = np.isfinite(rate)
        # event at time e belongs to the row t with times[t] < e <= times[t] + 1h
        row = np.searchsorted(grid, when[ok], side="left") - 1
        keep = (row >= 0) & (row < len(grid)) & (when[ok] <= grid[np.clip(row, 0, None)] + HOUR.value)
        np.add.at(out[:, n], row[keep], rate[ok][keep])
    return out


def _funding_events_from_panel(panel: Any) -> np.ndarray:
    """Best effort without a store: a settlement where the panel's latest-funding rate changes.

    The panel forward-fills the latest rate, so two consecutive equal rates look
    like one event; environments built from a store never use this.
    """
    rate = np.asarray(panel.funding_rate, dtype=np.float64)
    has = np.asarray(panel.has_funding, dtype=bool) & np.isfinite(rate)
    prev_rate = np.vstack([np.full((1, rate.shape[1]), np.nan), rate[:-1]])
    prev_has = np.vstack([np.zeros((1, has.shape[1]), bool), has[:-1]])
    new = has & (~prev_has | (rate != prev_rate))
    new[0] = False  # the first row's "latest" event may be long before the grid starts
    return np.where(new, rate, 0.0)


def _funding_per_hour(panel: Any, rows: np.ndarray, events: np.ndarray | None) -> np.ndarray | None:
    """Funding rate settling inside the hour held after each decision, ``[T - 1, N + 1]`` (cash 0).

    Deciding at the close of row ``t`` (wall clock ``times[t] + 1h``) holds the
    position over ``(times[t] + 1h, times[t] + 2h]``: the settlement window of
    row ``t + 1`` in ``events`` (see :func:`funding_events_from_store`).
    """
    if getattr(panel, "market", "spot") != "perp":
        return None
    if events is None:
        events = getattr(panel, "funding_events", None)
    if events is None:
        if getattr(panel, "funding_rate", None) is None:
            return None
        warnings.warn("funding events inferred from the panel's latest-rate column (equal consecutive rates "
                      "are missed); build the environment from a store for exact funding", stacklevel=4)
        events = _funding_events_from_panel(panel)
    events = np.asarray(events, dtype=np.float64)
    nxt = rows[:-1] + 1
    held = np.zeros((len(nxt), events.shape[1]))
    inside = nxt < len(events)
    held[inside] = events[nxt[inside]]
    return np.concatenate([np.zeros((len(nxt), 1)), held], axis=1)


# ---------------------------------------------------------------------- caching
def _cache_path(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from gnn_market.sources import cache_dir as default_cache

    return default_cache() / "env"


def panel_fingerprint(panel: Any) -> str:
    """Hash of the panel's content (hours, symbols, market and every data array)."""
    h = hashlib.sha256()
    h.update(pd.DatetimeIndex(panel.times).as_unit("ns").asi8.tobytes())
    h.update("\0".join(panel.symbols).encode())
    h.update(str(getattr(panel, "market", "")).encode())
    for name in _FINGERPRINT_FIELDS:
        arr = getattr(panel, name, None)
        if arr is not None:
            a = np.ascontiguousarray(np.asarray(arr))
            h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def encoder_fingerprint(encoder: Any, checkpoint: str | os.PathLike | None) -> str | None:
    """Hash of the checkpoint bytes, or the encoder's own ``fingerprint``; ``None`` if unknown."""
    own = getattr(encoder, "fingerprint", None)
    if own is not None:
        return str(own() if callable(own) else own)
    path = checkpoint or getattr(encoder, "path", None) or getattr(encoder, "checkpoint_path", None)
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _encode(encoder: Any, panel: Any, start: pd.Timestamp, end: pd.Timestamp, batch_hours: int) -> Any:
    from gnn_market.encoder import GraphEncoder

    # A progress bar (on a terminal) for the real encoder; duck-typed encoders need not take the argument.
    extra = {"progress": None} if isinstance(encoder, GraphEncoder) else {}
    return encoder.encode_range(panel, start=start, end=end, batch_hours=batch_hours, **extra)


def _encode_cached(encoder: Any, panel: Any, start: pd.Timestamp, end: pd.Timestamp,
                   checkpoint: str | os.PathLike | None, batch_hours: int, cache: Path | None) -> Any:
    model_key = encoder_fingerprint(encoder, checkpoint) if cache is not None else None
    if model_key is None:  # unknown model identity: never risk serving another model's outputs
        return _encode(encoder, panel, start, end, batch_hours)
    key = hashlib.sha256("|".join([str(CACHE_VERSION), panel_fingerprint(panel), model_key,
                                   start.isoformat(), end.isoformat()]).encode()).hexdigest()[:32]
    path = cache / f"encoded-{key}.npz"
    if path.is_file():
        try:
            return _read_encoded(path)
        except Exception as exc:  # a corrupt cache file is re-created, never trusted
            warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=3)
    encoded = _encode(encoder, panel, start, end, batch_hours)
    _write_encoded(path, encoded)
    return encoded


@dataclass
class _Encoded:
    times: pd.DatetimeIndex
    symbols: list[str]
    probs: np.ndarray
    embeddings: np.ndarray
    mask: np.ndarray


def _write_encoded(path: Path, encoded: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:  # write-then-rename: parallel workers never read half a file
        np.savez(f, times=pd.DatetimeIndex(encoded.times).as_unit("ns").asi8,
                 symbols=np.asarray(list(encoded.symbols), dtype=str),
                 probs=np.asarray(encoded.probs, np.float32),
                 embeddings=np.asarray(encoded.embeddings, np.float32),
                 mask=np.asarray(encoded.mask, bool))
    os.replace(tmp, path)


def _read_encoded(path: Path) -> _Encoded:
    with np.load(path, allow_pickle=False) as z:
        return _Encoded(times=pd.DatetimeIndex(pd.to_datetime(z["times"], unit="ns", utc=True)),
                        symbols=[str(s) for s in z["symbols"]], probs=z["probs"],
                        embeddings=z["embeddings"], mask=z["mask"])
