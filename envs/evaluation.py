"""Deterministic evaluation of allocation policies on a :class:`~envs.crypto_graph.CryptoGraphEnv`.

A *policy* here is any callable ``policy(env, obs) -> target weights [N + 1]``
(cash first). Rule-based baselines give exact weights (they need not be
expressible through the softmax action); an SB3 agent is wrapped by
:func:`sb3_policy`, which maps its action through the environment's own
mapping. :func:`run_policy` walks the environment hour by hour from a fixed
start to the end of its data, and :func:`summarize` turns the equity curve
into the usual numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .crypto_graph import CryptoGraphEnv

Policy = Callable[[CryptoGraphEnv, Any], np.ndarray]
HOURS_PER_YEAR = 24 * 365


# --------------------------------------------------------------------- policies
def all_cash(env: CryptoGraphEnv, obs: Any) -> np.ndarray:
    """Stay in cash: the zero line every other policy is measured against."""
    w = np.zeros(len(env.symbols) + 1)
    w[0] = 1.0
    return w


def equal_weight_buy_and_hold(env: CryptoGraphEnv, obs: Any) -> np.ndarray:
    """Buy the tradable pairs in equal weights on the first hour, then never trade again.

    Afterwards the target is the drifted holding itself (zero turnover); a pair
    that loses its data is sold to cash by the environment.
    """
    held = env.weights
    if held[0] < 1.0:  # already invested: hold
        return held
    mask = env.current_mask
    w = np.zeros(len(mask) + 1)
    if mask.any():
        w[1:][mask] = 1.0 / mask.sum()
    else:
        w[0] = 1.0
    return w


def gnn_greedy(env: CryptoGraphEnv, obs: Any) -> np.ndarray:
    """Follow the encoder: weight pair ``i`` by the positive part of ``P(UP)_i - P(DOWN)_i``.

    ``w_i = max(s_i, 0) / sum_j max(s_j, 0)`` over the tradable pairs, fully
    invested; all cash when no pair has ``P(UP) > P(DOWN)``. Rebalanced every
    hour, so it pays fees on the signal's churn.
    """
    probs, mask = env.current_probs, env.current_mask
    score = np.where(mask, probs[:, 2] - probs[:, 0], 0.0)
    edge = np.maximum(score, 0.0)
    w = np.zeros(len(mask) + 1)
    if edge.sum() > 0:
        w[1:] = edge / edge.sum()
    else:
        w[0] = 1.0
    return w


def random_policy(seed: int = 0) -> Policy:
    """Uniform random actions in the action box, mapped like an agent's (seeded)."""
    rng = np.random.default_rng(seed)

    def act(env: CryptoGraphEnv, obs: Any) -> np.ndarray:
        return env.action_to_weights(rng.uniform(-1.0, 1.0, env.action_space.shape))

    return act


def sb3_policy(model: Any, deterministic: bool = True) -> Policy:
    """Wrap a Stable-Baselines3 model: its action goes through the environment's softmax mapping."""

    def act(env: CryptoGraphEnv, obs: Any) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=deterministic)
        return env.action_to_weights(action)

    return act


# ------------------------------------------------------------------- running
@dataclass
class EpisodeResult:
    """One pass over the environment: ``values`` has one more entry than the per-step arrays."""

    times: pd.DatetimeIndex   # [S + 1] hour of each value
    values: np.ndarray        # [S + 1] portfolio value, starting at the initial value
    rewards: np.ndarray       # [S]
    turnover: np.ndarray      # [S]
    fees: np.ndarray          # [S] quote units
    funding: np.ndarray       # [S] quote units (> 0 paid)


def run_policy(env: CryptoGraphEnv, policy: Policy, start: Any = 0, max_steps: int | None = None) -> EpisodeResult:
    """Run ``policy`` from ``start`` until the data ends (or ``max_steps``), ignoring truncation."""
    env = getattr(env, "unwrapped", env)
    obs, info = env.reset(options={"start": start})
    times, values = [info["time"]], [info["portfolio_value"]]
    rewards, turnover, fees, funding = [], [], [], []
    while max_steps is None or len(rewards) < max_steps:
        obs, reward, terminated, _, info = env.step_weights(policy(env, obs))
        times.append(info["time"])
        values.append(info["portfolio_value"])
        rewards.append(reward)
        turnover.append(info["turnover"])
        fees.append(info["fees"])
        funding.append(info["funding"])
        if terminated:
            break
    return EpisodeResult(pd.DatetimeIndex(times), np.array(values), np.array(rewards),
                         np.array(turnover), np.array(fees), np.array(funding))


# ------------------------------------------------------------------- metrics
def sharpe_ratio(values: np.ndarray, periods_per_year: int = HOURS_PER_YEAR) -> float:
    """Annualised Sharpe of per-period simple returns (risk-free 0); NaN when returns are constant."""
    r = np.diff(values) / values[:-1]
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    if not sd > 1e-12:
        return float("nan")
    return float(r.mean() / sd * math.sqrt(periods_per_year))


def max_drawdown(values: np.ndarray) -> float:
    """Largest peak-to-trough loss as a fraction of the peak (0 = never below a previous high)."""
    peak = np.maximum.accumulate(values)
    return float(np.max(1.0 - values / peak))


def summarize(result: EpisodeResult) -> dict[str, float]:
    """Total return, annualised Sharpe (hourly returns x sqrt(24*365)), max drawdown, mean hourly
    turnover, and fees / funding as fractions of the initial value."""
    v0 = result.values[0]
    return {
        "total_return": float(result.values[-1] / v0 - 1.0),
        "sharpe": sharpe_ratio(result.values),
        "max_drawdown": max_drawdown(result.values),
        "mean_turnover": float(result.turnover.mean()) if len(result.turnover) else 0.0,
        "fees": float(result.fees.sum() / v0),
        "funding": float(result.funding.sum() / v0),
    }


def gross_return(result: EpisodeResult) -> float:
    """Total return before fees: the same holdings' growth with each hour's fee given back.

    ``prod_t V_{t+1} / (V_t - fee_t) - 1``. The weights' path does not depend on
    the fee (it scales the whole portfolio), so this is the run's return at 0 bps.
    """
    invested = result.values[:-1] - result.fees
    return float(np.prod(result.values[1:] / invested) - 1.0) if len(invested) else 0.0


#: The per-run numbers :func:`across_seeds` aggregates: results.json field prefix -> summarize()/gross key.
SEED_METRICS = {"net_return": "total_return", "gross_return": "gross_return", "sharpe": "sharpe",
                "max_drawdown": "max_drawdown", "turnover": "mean_turnover"}


def run_summary(result: EpisodeResult) -> dict[str, float]:
    """:func:`summarize` plus :func:`gross_return`."""
    return {**summarize(result), "gross_return": gross_return(result)}


def across_seeds(runs: list[dict[str, float]], seeds: list[int], deterministic: bool = False) -> dict[str, Any]:
    """Mean and sample sd (ddof 1) over seeds of each :data:`SEED_METRICS` entry; JSON-ready.

    ``runs`` holds one :func:`run_summary` per seed (one run in all for a
    deterministic policy, whose sd is 0). Undefined values (the Sharpe of all
    cash, an sd over one seed) are None, never NaN.
    """
    out: dict[str, Any] = {}
    for name, key in SEED_METRICS.items():
        x = np.array([r[key] for r in runs], dtype=np.float64)
        mean = float(x.mean()) if np.isfinite(x).all() else math.nan
        sd = 0.0 if deterministic else (float(x.std(ddof=1)) if len(x) > 1 else math.nan)
        out[f"{name}_mean"] = mean if math.isfinite(mean) else None
        out[f"{name}_sd"] = sd if math.isfinite(sd) and math.isfinite(mean) else None
    out["seeds"] = [int(s) for s in seeds]
    return out


def format_seed_table(rows: dict[str, dict[str, Any]], title: str | None = None) -> str:
    """Markdown table of :func:`across_seeds` rows: mean ± sd over seeds (no sd shown where it is 0)."""
    head = ["policy", "net return", "gross return", "Sharpe (ann.)", "max drawdown", "turnover/h"]
    lines = [f"| {' | '.join(head)} |", "|" + "|".join("---" for _ in head) + "|"]

    def cell(row: dict[str, Any], name: str, fmt: str) -> str:
        mean, sd = row[f"{name}_mean"], row.get(f"{name}_sd")
        if mean is None:
            return "n/a"
        return format(mean, fmt) + ("" if sd is None or sd == 0 else " ± " + format(sd, fmt.replace("+", "")))

    for name, r in rows.items():
        cells = [name, cell(r, "net_return", "+.2%"), cell(r, "gross_return", "+.2%"), cell(r, "sharpe", ".2f"),
                 cell(r, "max_drawdown", ".2%"), cell(r, "turnover", ".3f")]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(([title, ""] if title else []) + lines)


def format_table(rows: dict[str, dict[str, float]], title: str | None = None) -> str:
    """A fixed-width table, one row per policy (Markdown-compatible)."""
    head = ["policy", "total return", "Sharpe (ann.)", "max drawdown", "mean turnover/h", "fees (% of V0)"]
    lines = [f"| {' | '.join(head)} |", "|" + "|".join("---" for _ in head) + "|"]

    def pct(x: float) -> str:
        return f"{x:+.2%}"

    for name, m in rows.items():
        sharpe = "n/a" if math.isnan(m["sharpe"]) else f"{m['sharpe']:.2f}"
        cells = [name, pct(m["total_return"]), sharpe, f"{m['max_drawdown']:.2%}",
                 f"{m['mean_turnover']:.3f}", f"{m['fees']:.2%}"]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(([title, ""] if title else []) + lines)
