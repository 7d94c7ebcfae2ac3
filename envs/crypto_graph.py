"""``CryptoGraph-v0``: hourly long-only allocation over crypto pairs, observed through the GATv2 encoder.

This module is the ``gym.Env`` itself, over precomputed :class:`~envs.market_arrays.MarketArrays`.
``gym.make("CryptoGraph-v0", ...)`` builds one through :func:`envs.factory.make_crypto_graph_env`,
which loads the store, the checkpoint and the encoder cache.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from gnn_market.errors import CryptoGraphError, RangeOverlapError  # noqa: F401  (RangeOverlapError: old import path)
from gnn_market.timeutil import parse_utc

from . import portfolio
from .market_arrays import MarketArrays
from .options import RENDER_MODES, EnvOptions


class CryptoGraphEnv(gym.Env):
    """
    ## Description

    Each step is one hour. At the close of hour ``t`` the agent sees, for each
    of ``N`` Binance pairs, what the pretrained GATv2 encoder makes of the
    cross-asset graph at ``t`` (predicted probabilities of the next hour being
    DOWN / SIDEWAYS / UP, and the node embedding), plus its own portfolio
    weights. It chooses a long-only allocation over cash and the ``N`` pairs,
    moves toward it under the turnover control, pays a proportional fee on
    what it trades, and holds the result for the next hour (plus perpetual
    funding on perp markets). With ``obs_source="raw"`` it sees the encoder's
    normalised input features at ``t`` instead of its outputs (the ablation
    that asks what the graph network adds).

    Encoder outputs for every hour in range are computed once when the
    environment is made (batched) and cached on disk, keyed by a hash of the
    data, the checkpoint bytes and the range; a step only indexes precomputed
    arrays.

    ## Action Space

    ``Box(-1, 1, (N + 1,), float32)``: one score per holding, cash first
    (index 0), then the pairs in :attr:`symbols` order. Scores become target
    weights by a softmax with inverse temperature ``action_scale`` (default 5):
    ``w = softmax(5 * a)`` over cash and the pairs tradable at ``t``; masked
    pairs get weight exactly 0. A zero action is the uniform portfolio; a
    score of 1 against -1 elsewhere puts ~99.9% in one of 31 holdings. Scores
    outside the box are used as given (RL libraries clip to the box
    themselves), so any finite scores work, e.g. ``log(w) / 5`` for exact
    weights ``w > 0``. A NaN/inf action, one of the wrong shape, or one of bool,
    complex or text dtype (never cast) raises ``ValueError``. :meth:`step_weights`
    takes target weights directly.

    ## Turnover control

    An agent's target ``a`` (the softmax of its action) is not traded as it is.
    With ``w`` the weights held (after the last hour's drift), ``s`` the steps
    taken since :meth:`reset`, ``b = rebalance_threshold`` (default 0.05),
    ``r = rebalance_rate`` (default 0.5) and ``k = rebalance_every`` (default 4)::

        D  = sum_{i >= 1} |a_i - w_i|             (the turnover a full move would cost)
        w' = w                    if s mod k != 0 or D < b     (hold: no trade, no fee)
        w' = w + r (a - w)        otherwise                     (turnover r D)

    ``w'`` is what is traded to and held for the hour: an exponential average
    of the agent's targets. The band removes dust trades; the partial move
    lets an agent's hour-to-hour noise cancel (uniformly random actions trade
    1.55 of the portfolio per hour without the control, 0.17 with the
    defaults on 2023-09), while a target held for 8 hours is reached to within
    ``(1 - r)^2 = 25%`` (two trading steps). ``b = 0, r = 1, k = 1`` is the uncontrolled environment.
    :meth:`action_to_weights` returns ``w'``; :meth:`step_weights` trades to
    the weights it is given exactly (rule-based policies state their own trades).

    ## Observation Space

    With ``d`` the encoder's embedding width (``GraphEncoder.embedding_dim``):

    - ``obs_mode="dict"`` (``MultiInputPolicy``): ``Dict`` with
      ``"probs"`` ``(N, 3)`` in [0, 1], ``"embeddings"`` ``(N, d)`` (omitted when
      ``include_embeddings=False``), ``"mask"`` ``(N,)`` 1.0 where the pair has
      data at ``t`` and ``"weights"`` ``(N + 1,)`` the current (drifted) weights,
      cash first. All ``float32``.
    - ``obs_mode="flat"`` (``MlpPolicy``): the same, flattened and concatenated
      in that order into one ``float32`` vector of length ``N*3 + N*d + N + N + 1``.

    With ``obs_source="raw"``, ``"features"`` ``(N, F)`` (the checkpoint's ``F``
    normalised node features at ``t``, exactly the encoder's input row for hour
    ``t``) takes the place of ``"probs"`` and ``"embeddings"``: flat length
    ``N*F + N + N + 1``. A temporal encoder also reads each pair's previous
    ``lookback - 1`` rows and the graph's edges (correlations); ``raw`` gives
    only hour ``t``'s row (see docs/environment.md).

    Pairs without data at ``t`` are masked: zeros and ``mask = 0``; they are
    never dropped, so shapes never change.

    ## Rewards

    ``log(V_{t+1} / V_t)``: the log growth of portfolio value over the hour after
    the decision, net of ``fee_bps / 1e4 x turnover x V_t`` where
    ``turnover = sum_i |w'_i - w_i|`` over the pairs, measured against the
    weights after the previous hour's drift. Prices move by
    ``close[t+1] / close[t]``; on ``market="perp"`` a funding event settling
    inside the held hour is paid by longs when positive (received when negative).
    A position in a pair whose data stop after ``t`` (delisted, or a gap longer
    than the panel's forward-fill limit) is closed to cash at its last price
    ``close[t]`` times ``1 - delist_haircut`` (default 5%); a pair that comes
    back after such a gap starts with no position, never marked across the gap.
    Gaps within the forward-fill limit are filled by the panel with the last
    close, so their return lands on the next real candle. See :mod:`envs.portfolio`.

    ## Starting State

    All cash, value ``initial_value`` (default 1.0), at an hour drawn uniformly
    with ``self.np_random`` (seed it with ``reset(seed=...)``) among those that
    leave a full episode of data. ``reset(options={"start": hour})`` starts at a
    given hour (a timestamp or an int index into :attr:`times`; a bool or float is
    a ``TypeError``). ``options`` must be None or a dict with no other key.

    ## Episode End

    Truncated after ``episode_hours`` steps (default 168, one week; ``None``
    means no limit). Terminated when the next hour has no data left in range.

    ## Arguments

    ``gym.make("CryptoGraph-v0", **kwargs)`` (or :func:`envs.factory.make_crypto_graph_env`)
    takes these keywords, all optional:

    - ``store``: a store folder or :class:`~gnn_market.store.Store` (default: the bundled sample).
    - ``checkpoint``: path of an encoder checkpoint (default: the packaged one).
    - ``market``: ``"spot"`` or ``"perp"`` (default: the checkpoint's market).
    - ``symbols`` / ``top``: the pairs, or the ``top`` pairs by quote volume
      before ``start`` (default: every pair in the store).
    - ``start`` / ``end``: first and last hour, inclusive (UTC). Default: from the
      first UTC midnight after the hours the checkpoint's training run used
      (its train/validation/test splits) to the end of the data.
    - ``episode_hours`` (168), ``fee_bps`` (10), ``action_scale`` (5), ``initial_value`` (1.0).
    - ``obs_source`` (``"gnn"`` or ``"raw"``), ``obs_mode`` (``"flat"`` or ``"dict"``),
      ``include_embeddings`` (True; ignored with ``"raw"``).
    - ``rebalance_threshold`` (0.05), ``rebalance_rate`` (0.5), ``rebalance_every`` (4):
      the turnover control; ``delist_haircut`` (0.05).
    - ``render_mode``: ``"ansi"`` (text) or ``"rgb_array"`` (equity curve and weights).
    - ``allow_overlap``: permit a range overlapping the checkpoint's fit range
      (otherwise :class:`RangeOverlapError`); warns loudly.
    - ``cache_dir``: where encoder outputs are cached (default
      ``gnn_market.sources.cache_dir() / "env"``); ``use_cache=False`` disables it.
      An entry failing its checksum is rebuilt with a warning; a folder that
      cannot be written serves what it holds and encodes the rest uncached,
      with a warning (see :mod:`envs.cache`).
    - Advanced: ``encoder`` (a loaded :class:`~gnn_market.encoder.GraphEncoder`
      or any :class:`~envs.protocols.ObservationEncoder`) and ``panel`` (a loaded
      :class:`~gnn_market.panel.Panel`) instead of ``checkpoint`` and ``store``;
      ``batch_hours`` (64): hours per encoder forward pass.

    A keyword of the wrong type or out of range (``top=True``, ``episode_hours=1.5``,
    ``include_embeddings="no"``, ``market="futures"``) is one
    :class:`~gnn_market.errors.OptionError` (also a ``ValueError``), before anything loads.

    The class itself takes the precomputed arrays and the options:
    ``CryptoGraphEnv(data: MarketArrays, options: EnvOptions)``;
    :func:`envs.factory.build_env` makes both from a panel and an encoder.

    ## Version History

    - v0: initial version. Later, with defaults: ``obs_source``, the turnover
      control (its defaults change an agent's trades: pass ``rebalance_threshold=0,
      rebalance_rate=1`` for the original behaviour) and delisting closes.
      ``env.metadata["options"]`` records every option in force.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, data: MarketArrays, options: EnvOptions = EnvOptions()) -> None:
        # ``options`` checked itself when it was made (EnvOptions.__post_init__): nothing to re-check here
        self._setup(data, options)
        # per instance: the class attribute stays what gym.make reads before an environment exists
        self.metadata = {**type(self).metadata, "options": options.as_dict()}

    # ------------------------------------------------------------------ setup
    def _setup(self, data: MarketArrays, options: EnvOptions) -> None:
        """Spaces and state from precomputed arrays."""
        if len(data.times) < 2:
            raise CryptoGraphError(f"the environment needs at least 2 hours of data, got {len(data.times)}")
        self._data, self._options = data, options
        self.render_mode = options.render_mode
        self.symbols: list[str] = list(data.symbols)
        self.times: pd.DatetimeIndex = data.times
        n = len(self.symbols)
        self._n_hours = len(data.times)
        self._times_py = list(data.times)  # Timestamps made once: info["time"] costs nothing per step
        pf = options.portfolio
        self._fee_rate = pf.fee_rate
        self._scale = pf.action_scale
        self._initial_value = pf.initial_value
        self._threshold, self._rate, self._every = pf.rebalance_threshold, pf.rebalance_rate, pf.rebalance_every
        self._haircut = pf.delist_haircut
        self.obs_source = options.obs_source
        self._obs_arrays = _observation_arrays(data, options)  # name -> [T, N, k], in observation order
        #: encoder embedding width ``d`` (None with obs_source="raw"), and node feature count ``F`` (raw only)
        self.embedding_dim = None if data.embeddings is None else data.embeddings.shape[-1]
        self.feature_dim = None if data.features is None else data.features.shape[-1]
        self._flat = options.obs_mode == "flat"
        self.action_space = spaces.Box(-1.0, 1.0, (n + 1,), np.float32)
        self.observation_space = _observation_space(n, self._obs_arrays, options.obs_mode)
        self._mask_f32 = data.mask.astype(np.float32)
        if self._flat:
            self._flat_parts, self._weights_at = _flat_layout(
                [*self._obs_arrays.values(), self._mask_f32], self._n_hours)
            self._flat_len = self._weights_at + n + 1
        # hot-path handles: a step reads these directly
        self._action_shape = (n + 1,)
        self._offsets, self._growth, self._funding = data.offsets, data.growth, data.funding
        self._stops = data.stops
        self._stop_any = np.zeros(max(self._n_hours - 1, 0), bool) if data.stops is None else data.stops.any(axis=1)
        self._last_t = self._n_hours - 1
        self._limit = options.episode_hours
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
        ``action_scale``, ``initial_value``, the turnover control and ``delist_haircut``.
        """
        i0 = 0 if start is None else self.hour_index(start)
        i1 = self._n_hours - 1 if end is None else self.hour_index(end)
        if i1 <= i0:
            raise CryptoGraphError(f"empty subrange {start} .. {end}")
        return type(self)(self._data.slice(i0, i1), self._options.with_overrides(**overrides))

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
        if self._data.probs is None:
            raise CryptoGraphError("an obs_source='raw' environment has no encoder probabilities")
        return self._data.probs[self._t].copy()

    @property
    def current_mask(self) -> np.ndarray:
        """Pairs tradable at the current hour ``[N]``."""
        return self._data.mask[self._t].copy()

    def hour_index(self, hour: Any) -> int:
        """Index into :attr:`times` of an hour given as an int or a timestamp."""
        _check_hour_type(hour)
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
        """Weights the action would trade to at the current hour, turnover control included (validates it).

        ``step_weights(env.action_to_weights(a))`` is exactly ``step(a)``.
        """
        return self._control(self._scores_to_weights(action))[0]

    # ------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        start = _reset_options(options).get("start")
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
        return self._advance(*self._control(self._scores_to_weights(action)))

    def _control(self, target: np.ndarray) -> tuple[np.ndarray, float]:
        """The turnover control (class docstring): :func:`envs.portfolio.rebalance` at this step."""
        return portfolio.rebalance(target, self._weights, self._threshold, self._rate,
                                   trade_now=self._steps % self._every == 0)

    def step_weights(self, weights: np.ndarray):
        """Step with explicit target weights ``[N + 1]`` (cash first) instead of scores.

        Weights must be finite and >= 0; they are renormalised to sum to 1, and
        pairs masked at the current hour are set to 0 (their weight goes to
        cash). For rule-based policies and evaluation.
        """
        n1 = self.action_space.shape[0]
        w = np.asarray(_real_numbers(weights, "weights"), dtype=np.float64)
        if w.shape != (n1,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {n1} finite non-negative numbers (cash first) with a positive sum")
        total = w.sum()
        if not math.isfinite(total):  # huge finite weights (1e300): scale down first so the sum cannot overflow
            w = w / w.max()
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
        """The action validated, then :func:`envs.portfolio.scores_to_weights` with this hour's mask."""
        _real_numbers(action, "action")
        try:
            z = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action must be {self.action_space.shape[0]} numbers, got {action!r}") from exc
        if z.shape != self._action_shape:
            raise ValueError(f"action must have shape {self._action_shape} (cash + {len(self.symbols)} "
                             f"pair scores), got {z.shape}")
        finite = np.isfinite(z)
        if not np.logical_and.reduce(finite):  # finite.all() without its Python wrapper (the hot path)
            bad = np.flatnonzero(~finite)
            raise ValueError(f"action has NaN/inf scores at positions {bad.tolist()}: {z[bad].tolist()}")
        return portfolio.scores_to_weights(z, scale=self._scale, offsets=self._offsets[self._t])

    def _advance(self, target: np.ndarray, traded: float | None = None):
        """Rebalance to ``target``, hold one hour (:func:`envs.portfolio.step`), build the step's outputs.

        ``traded``: the turnover if the caller already knows it (the turnover control does).
        """
        t = self._t
        if t >= self._last_t:
            raise CryptoGraphError("the episode has ended (no next hour): call reset()")
        value = self._value
        result = portfolio.step(value, self._weights, target, self._growth[t], self._fee_rate,
                                funding=None if self._funding is None else self._funding[t],
                                stops=self._stops[t] if self._stop_any[t] else None,
                                haircut=self._haircut, traded=traded)
        self._value, self._weights, self._t = result.value, result.weights, t + 1
        self._steps += 1
        self._last = (result.turnover, result.fee, result.funding)
        if self._history is not None:
            self._history.append(result.value)
        terminated = t + 1 >= self._last_t
        truncated = not terminated and self._limit is not None and self._steps >= self._limit
        info = {"time": self._times_py[t + 1], "portfolio_value": result.value, "turnover": result.turnover,
                "fees": result.fee, "funding": result.funding, "weights": result.weights.copy()}
        return self._observation(), result.reward, terminated, truncated, info

    def _observation(self) -> np.ndarray | dict[str, np.ndarray]:
        t = self._t
        if self._flat:
            # Assembled per step from the (often memory-mapped, shared) arrays: a private [T, obs]
            # table would cost every worker of a vectorised environment its own copy (~155 MB on 3 years x 40 pairs).
            obs = np.empty(self._flat_len, np.float32)
            for rows, start, stop in self._flat_parts:
                obs[start:stop] = rows[t]
            obs[self._weights_at:] = self._weights
            return obs
        obs = {name: arr[t].copy() for name, arr in self._obs_arrays.items()}
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
        # Imported here, not at the top: matplotlib costs ~0.5 s and memory in every (subprocess)
        # environment, and only rgb_array rendering needs it. No import cycle is involved.
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


RESET_OPTIONS = ("start",)
#: dtype kinds accepted as actions and weights: float, signed and unsigned integers (not bool, complex, text).
_REAL_KINDS = "fiu"


def _reset_options(options: Any) -> dict[str, Any]:
    """``reset(options=...)``: None or a dict with known keys only (a typo must not be ignored silently)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"reset options must be a dict such as {{'start': '2023-10-01T00:00'}} or None, "
                        f"got {type(options).__name__} {options!r}")
    unknown = sorted(map(str, set(options) - set(RESET_OPTIONS)))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; known: {list(RESET_OPTIONS)}")
    return options


def _check_hour_type(hour: Any) -> None:
    """An hour is an int index or a time; bools and other numbers (1.5: nanoseconds since 1970?) are refused."""
    if isinstance(hour, (bool, np.bool_)) or (isinstance(hour, (float, complex, np.number))
                                               and not isinstance(hour, np.integer)):
        raise TypeError(f"an hour must be an int index into the environment's hours or a time (ISO string, "
                        f"datetime, Timestamp), got {type(hour).__name__} {hour!r}")


def _real_numbers(values: Any, what: str) -> Any:
    """``values`` unchanged when they are real numbers; bool, complex, text or object arrays are refused."""
    kind = getattr(values, "dtype", None)
    if not isinstance(kind, np.dtype):
        try:
            kind = np.asarray(values).dtype
        except (TypeError, ValueError):  # ragged: the shape check reports it
            return values
    kind = kind.kind
    if kind not in _REAL_KINDS:
        raise ValueError(f"{what} must be real numbers (float or int), got dtype kind {kind!r} "
                         f"(bool, complex, text and objects are refused, never cast): {values!r}")
    return values


def _observation_arrays(data: MarketArrays, options: EnvOptions) -> dict[str, np.ndarray]:
    """The per-pair observation arrays ``{name: [T, N, k]}`` of ``options.obs_source``, in observation order."""
    if options.obs_source == "raw":
        if data.features is None:
            raise CryptoGraphError("obs_source='raw' needs node features (MarketArrays.build_raw)")
        return {"features": data.features}
    if data.probs is None or data.embeddings is None:
        raise CryptoGraphError("obs_source='gnn' needs encoder outputs (MarketArrays.build)")
    arrays = {"probs": data.probs}
    if options.include_embeddings:
        arrays["embeddings"] = data.embeddings
    return arrays


def _flat_layout(arrays: list[np.ndarray], hours: int) -> tuple[list[tuple[np.ndarray, int, int]], int]:
    """Where each ``[T, ...]`` array lands in the flat observation: ``([(rows [T, width], start, stop)], end)``.

    ``rows`` are plain-ndarray views (no copy; a memory-mapped array stays mapped),
    so the flat observation reads the same pages every process shares.
    """
    parts, at = [], 0
    for arr in arrays:
        rows = np.asarray(arr).reshape(hours, -1)  # a view: every array is C-contiguous over its trailing axes
        parts.append((rows, at, at + rows.shape[1]))
        at += rows.shape[1]
    return parts, at


def _observation_space(n: int, arrays: dict[str, np.ndarray], obs_mode: str) -> spaces.Space:
    parts = {name: spaces.Box(0.0, 1.0, (n, 3), np.float32) if name == "probs"
             else spaces.Box(-np.inf, np.inf, (n, arr.shape[-1]), np.float32) for name, arr in arrays.items()}
    parts["mask"] = spaces.Box(0.0, 1.0, (n,), np.float32)
    parts["weights"] = spaces.Box(0.0, 1.0, (n + 1,), np.float32)
    if obs_mode == "dict":
        return spaces.Dict(parts)
    low = np.concatenate([np.broadcast_to(s.low, s.shape).ravel() for s in parts.values()])
    high = np.concatenate([np.broadcast_to(s.high, s.shape).ravel() for s in parts.values()])
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
