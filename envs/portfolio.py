"""Portfolio arithmetic of ``CryptoGraph-v0``: pure numpy, no Gymnasium.

Weights are long-only over ``N + 1`` holdings: index 0 is cash (USDT), index
``1 + i`` is pair ``i``. One environment step is one hour:

1. **Rebalance** at decision time (the close of hour ``t``). The agent's scores
   become target weights ``w`` (:func:`scores_to_weights`). The portfolio
   holds ``w_prev``: the previous target after the previous hour's drift.
   ``turnover = sum_i |w_i - w_prev_i|`` over the *pairs* (cash excluded: a
   move from cash into a pair is one trade, a move from pair A to pair B is
   two). The fee ``fee_rate * turnover * V_t`` (``fee_rate = fee_bps / 1e4``)
   is taken out of the portfolio before the hour starts.
2. **Hold** for the hour. Pair ``i`` grows by ``g_i = close[t+1] / close[t]``;
   cash does not move. Where the pair's data stops after ``t`` (delisted, or a
   gap longer than the panel's forward-fill limit: shorter gaps are filled by
   the panel with the last close, so their return lands on the next real
   candle), the position is closed at its last known price ``close[t]`` less
   a haircut ``h`` (``delist_haircut``): ``w_i (1 - h)`` goes to cash. A pair
   whose data comes back later starts with no position: it is never marked
   across the gap.
3. **Funding** (perpetual markets). A funding event with rate ``f_i``
   settling inside the held hour is paid by a long position on its notional at
   settlement (``f_i > 0``: the long pays; ``f_i < 0``: it receives). It is
   debited from (credited to) the position itself, so weights stay >= 0.

So, with ``V'_t = V_t (1 - fee_rate * turnover)`` (and no pair stopping)::

    V_{t+1} = V'_t * (w_0 + sum_i w_i g_i (1 - f_i))
    reward  = log(V_{t+1} / V_t)
            = log(1 - fee_rate * turnover) + log(w_0 + sum_i w_i g_i (1 - f_i))

and the held weights drift to ``w_i g_i (1 - f_i) / (w_0 + sum_j w_j g_j (1 - f_j))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gnn_market.errors import CryptoGraphError

from .checks import check_int, check_real

#: Default inverse temperature of the score -> weight softmax. With scores in
#: [-1, 1], 5 lets one holding reach ~99.9% of 31 holdings (e^10 : 30), while a
#: zero action is the uniform portfolio over cash and the tradable pairs.
ACTION_SCALE = 5.0
#: ``np.add.reduce`` / ``np.maximum.reduce`` called directly: the same sums and maxima as ``.sum()`` /
#: ``.max()``, bit for bit, without their Python wrappers (a step is ~15 calls on N + 1 floats).
_SUM = np.add.reduce
_ABS_MAX = np.maximum.reduce


#: Default no-trade band: a target less than 5% of the portfolio (L1 over the pairs) away from the
#: holdings is ignored. It removes the hourly dust trades of a jittery policy (and of drift
#: correction) and still lets any real reallocation through.
REBALANCE_THRESHOLD = 0.05
#: Default share of the way to the target moved per trading step, and default trading interval
#: (hours): half-way every 4 hours. Chosen by benchmarks/turnover_grid.py on 2023-09 (the sample month
#: outside every PPO evaluation window) by a rule fixed before looking (highest mean net return of
#: GNN-greedy and random actions): it cut both policies' turnover to a fifth and ~a tenth of the
#: uncontrolled one; see docs/environment.md.
REBALANCE_RATE = 0.5
REBALANCE_EVERY = 4
#: Default haircut on a position closed because its pair's data stop (delisting, long halt): the
#: last price was not necessarily one anybody could sell at.
DELIST_HAIRCUT = 0.05


@dataclass(frozen=True)
class PortfolioConfig:
    """Trading costs and the action mapping.

    Attributes:
        fee_bps: proportional fee per unit of turnover, in basis points
            (10 = 0.1%, Binance's base spot taker fee).
        action_scale: inverse temperature of the softmax mapping scores to
            weights (higher = more concentrated for the same scores).
        initial_value: portfolio value at the start of an episode (quote units).
        rebalance_threshold: no-trade band ``b``: an agent's target whose L1
            distance over the pairs from the holdings is below ``b`` is ignored.
        rebalance_rate: share ``r`` in (0, 1] of the way to the target moved per step.
        rebalance_every: an agent trades only every ``k``-th step of an episode.
        delist_haircut: ``h``: a position whose pair's data stop is closed at
            its last price times ``1 - h``.

    The turnover control (``b``, ``r``, ``k``) acts on an agent's actions, see
    :func:`controlled_target`; ``b = 0, r = 1, k = 1`` trades to every target exactly.
    """

    fee_bps: float = 10.0
    action_scale: float = ACTION_SCALE
    initial_value: float = 1.0
    rebalance_threshold: float = REBALANCE_THRESHOLD
    rebalance_rate: float = REBALANCE_RATE
    rebalance_every: int = REBALANCE_EVERY
    delist_haircut: float = DELIST_HAIRCUT

    def __post_init__(self) -> None:
        """Refuse (:class:`~gnn_market.errors.OptionError`) a value of the wrong type or out of range."""
        check_real("fee_bps", self.fee_bps, lambda x: 0.0 <= x < 1e4, "in [0, 10000)")
        check_real("action_scale", self.action_scale, lambda x: x > 0, "> 0")
        check_real("initial_value", self.initial_value, lambda x: x > 0, "> 0")
        check_real("rebalance_threshold", self.rebalance_threshold, lambda x: 0.0 <= x <= 2.0,
                   "in [0, 2] (an L1 distance between weights)")
        check_real("rebalance_rate", self.rebalance_rate, lambda x: 0.0 < x <= 1.0, "in (0, 1]")
        check_int("rebalance_every", self.rebalance_every, unit=" (steps)")
        check_real("delist_haircut", self.delist_haircut, lambda x: 0.0 <= x < 1.0, "in [0, 1)")

    @property
    def fee_rate(self) -> float:
        return self.fee_bps / 1e4


def logit_offsets(mask: np.ndarray) -> np.ndarray:
    """Additive softmax offsets ``[..., N + 1]``: 0 for cash and tradable pairs, -inf for masked ones.

    Adding these to the scaled scores gives masked pairs exactly zero weight.
    """
    mask = np.asarray(mask, dtype=bool)
    offsets = np.where(mask, 0.0, -np.inf)
    cash = np.zeros(mask.shape[:-1] + (1,))
    return np.concatenate([cash, offsets], axis=-1)


def scores_to_weights(scores: np.ndarray, mask: np.ndarray | None = None,
                      scale: float = ACTION_SCALE, offsets: np.ndarray | None = None) -> np.ndarray:
    """Map ``N + 1`` real scores (cash first) to long-only weights summing to 1.

    ``w = softmax(scale * scores + offsets)`` where ``offsets`` is
    :func:`logit_offsets` of ``mask`` (masked pairs get weight 0). Cash is
    never masked, so the result is always defined.

    Args:
        scores: ``[N + 1]`` finite scores (or ``[B, N + 1]``).
        mask: ``[N]`` tradable pairs; ``None`` = all tradable.
        scale: softmax inverse temperature.
        offsets: precomputed :func:`logit_offsets` (fast path; wins over ``mask``).
    """
    z = scale * np.asarray(scores, dtype=np.float64)  # a new array: everything below is in place
    if offsets is None and mask is not None:
        offsets = logit_offsets(mask)
    # stability: shift by the max unless every |z| <= 600 (exp(600) ~ 4e260: no sum of fewer than 1e47
    # terms overflows; NaN fails the test too); softmax is shift-invariant, so either way gives the same
    # weights up to rounding. A max of |z|, not a dot product: that could overflow and warn on huge scores.
    shift = z.ndim != 1 or not _ABS_MAX(np.abs(z)) <= 600.0
    if offsets is not None:
        z += offsets
    if shift:
        z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True) if z.ndim != 1 else _SUM(z)
    return z


def rebalance(target: np.ndarray, held: np.ndarray, threshold: float, rate: float,
              trade_now: bool = True) -> tuple[np.ndarray, float]:
    """The turnover control: the weights an agent's ``target`` trades to from ``held``, and the turnover.

    Both ``[N + 1]``, cash first. With ``D = sum_{i>=1} |target_i - held_i|``: ``held`` (turnover 0)
    when ``trade_now`` is False (off the ``rebalance_every`` grid) or ``D < threshold`` (the no-trade
    band); otherwise ``held + rate * (target - held)`` with turnover ``rate * D``, and ``target``
    itself, bit for bit, when ``rate == 1`` (so ``b = 0, r = 1`` is the uncontrolled environment).
    A convex combination of two portfolios, so it is one too (masked pairs, 0 in both, stay 0).
    The returned weights are a new array.
    """
    if not trade_now:
        return np.array(held, dtype=np.float64), 0.0
    target = np.asarray(target, dtype=np.float64)
    full = turnover(target, held)
    if full < threshold:
        return np.array(held, dtype=np.float64), 0.0
    if rate == 1.0:
        return target.copy(), full
    return held + rate * (target - held), rate * full


def controlled_target(target: np.ndarray, held: np.ndarray, threshold: float, rate: float,
                      trade_now: bool = True) -> np.ndarray:
    """The weights of :func:`rebalance`, without the turnover."""
    return rebalance(target, held, threshold, rate, trade_now)[0]


def data_stops(mask: np.ndarray) -> np.ndarray:
    """``[T - 1, N + 1]`` bool (cash column False): pair ``i`` has a price at ``t`` and none at ``t + 1``.

    Row ``t`` is the hour held after deciding at ``t``: a position held over it
    is closed at its last price (with the haircut), see the module docstring.
    """
    mask = np.asarray(mask, dtype=bool)
    stops = mask[:-1] & ~mask[1:]
    return np.concatenate([np.zeros((stops.shape[0], 1), bool), stops], axis=1)


def price_growth(close: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-hour growth factors ``[T - 1, N + 1]`` (cash first, always 1).

    ``close[t+1] / close[t]`` for pair ``i`` where both candles exist; 1 where
    either is unknown: a position into a stop is closed at its last price (see
    :func:`data_stops`), and a pair that comes back after a gap starts from its
    new price, never marked against the one before the gap. Row ``t`` is the
    hour held after deciding at ``t``.
    """
    close = np.asarray(close, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) & np.isfinite(close) & (close > 0)
    known = mask[:-1] & mask[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(known, close[1:] / np.where(known, close[:-1], 1.0), 1.0)
    cash = np.ones((growth.shape[0], 1))
    return np.concatenate([cash, growth], axis=1)


def turnover(target: np.ndarray, held: np.ndarray) -> float:
    """Traded fraction of the portfolio: ``sum |target - held|`` over the pairs (index >= 1)."""
    diff = target[1:] - held[1:]
    return float(_SUM(np.abs(diff, out=diff)))


@dataclass
class StepResult:
    """Outcome of one hour (see the module docstring for the formulas).

    Attributes:
        value: portfolio value at the end of the hour, ``V_{t+1}``.
        weights: weights held at the end of the hour (the target after drift).
        turnover: ``sum_i |w_i - w_prev_i|`` over the pairs.
        fee: fee paid, in quote units.
        funding: funding paid (> 0) or received (< 0), in quote units.
        reward: ``log(V_{t+1} / V_t)``.
    """

    value: float
    weights: np.ndarray
    turnover: float
    fee: float
    funding: float
    reward: float


def step(value: float, held: np.ndarray, target: np.ndarray, growth: np.ndarray,
         fee_rate: float, funding: np.ndarray | None = None, stops: np.ndarray | None = None,
         haircut: float = DELIST_HAIRCUT, traded: float | None = None) -> StepResult:
    """Rebalance from ``held`` to ``target``, pay the fee, hold one hour, close stopped pairs, settle funding.

    Args:
        value: portfolio value ``V_t`` before rebalancing.
        held: ``[N + 1]`` weights held before rebalancing (after last hour's drift).
        target: ``[N + 1]`` target weights (>= 0, sum 1).
        growth: ``[N + 1]`` growth factors over the hour (cash 1), see :func:`price_growth`.
        fee_rate: fee per unit of turnover (``fee_bps / 1e4``).
        funding: ``[N + 1]`` funding rates settling inside the hour (cash 0), or ``None``.
        stops: ``[N + 1]`` bool, pairs whose data stop after this hour (:func:`data_stops`), or ``None``.
        haircut: share of a stopped position lost when it is closed.
        traded: the turnover from ``held`` to ``target`` when the caller knows it already
            (:func:`rebalance` returns it); computed otherwise.

    The one implementation of the step: ``CryptoGraph-v0`` calls it. A step that would leave
    no positive, finite value raises :class:`~gnn_market.errors.CryptoGraphError`.
    """
    if traded is None:
        traded = turnover(target, held)
    fee = fee_rate * traded * value
    invested = value - fee
    end = target * growth  # value of each holding at the end of the hour, per unit invested
    if stops is not None and stops.any():
        end[0] += (1.0 - haircut) * float(_SUM(end[stops]))
        end[stops] = 0.0
    paid = 0.0
    if funding is not None:
        paid = invested * float(end @ funding)
        end *= 1.0 - funding
    total = float(_SUM(end))
    new_value = invested * total
    if not (math.isfinite(new_value) and new_value > 0.0 and total > 0.0):
        raise CryptoGraphError(f"the step would make the portfolio value {new_value!r} (value {value!r}, "
                               f"growth {total!r}); nothing was changed")
    end /= total
    return StepResult(value=new_value, weights=end, turnover=traded, fee=fee,
                      funding=paid, reward=math.log(new_value / value))
