"""Does the graph help on my data? A ranked-correlation check, before any training.

    python -m gnn_market.diagnose                                # bundled sample
    python -m gnn_market.diagnose --store DIR --market perp --start 2024-01-01 --out diagnose.json
    python -m gnn_market.diagnose --data synthetic --seed 1      # simulator with planted lead-lag structure

It measures how much the correlation graph adds to each pair's own history at
one hour, the horizon the GNN is trained for, in seconds rather than a training
run. Signals at hour ``t`` use only data available at ``t + 1h`` (up to the
close of candle ``t``); the label is the next hour's log return
``r[t+1] = ln(close[t+1] / close[t])`` (both candles real, as the classifier's labels):

own history
    ``own_1h`` = ``r[t]``; ``own_reversal`` = ``-r[t]``; ``own_mom_24h`` =
    ``ln(close[t] / close[t-24])``.
graph
    ``nbr_return`` = ``sum_j C_ij r_j[t] / sum_j |C_ij|`` over neighbours ``j != i``
    with a return at ``t``, ``C`` = the 100-hour return correlations the graph's
    edges carry (:func:`gnn_market.correlations.iter_correlations`, the same
    window and ``min_periods``); ``nbr_residual`` = ``nbr_return - beta_i r_i[t]``,
    ``beta_i = sum_j w_ij C_ij sd_j / sd_i`` (the slope of the neighbour return
    on the pair's own return implied by the window's correlations and standard
    deviations: what the neighbours did beyond what the pair already did);
    ``lead_lag`` = ``sum_j L_ji r_j[t] / sum_j |L_ji|``, ``L_ji`` =
    ``corr(r_j[s-1], r_i[s])`` over the same window (the graph's second edge
    feature, :func:`gnn_market.correlations.lead_lag_matrix`).

Per hour, the cross-sectional Rank IC of every signal with the label, its
incremental Rank IC beyond the pair's own history and 7-day block-bootstrap
intervals of every paired comparison: :mod:`gnn_market.rank_ic` states them.

A difference whose interval contains 0 is a tie. Everything is vectorised over
hours and pairs: the correlation matrices come in chunks from
:func:`~gnn_market.correlations.iter_correlations`, the lead-lag matrices from
the same function applied to ``[r_t, r_{t-1}]`` (identical to
:func:`~gnn_market.correlations.lead_lag_matrix`, at a fraction of
:func:`~gnn_market.correlations.iter_lead_lag`'s cost at hundreds of pairs).
See ``docs/guide.md`` ("Does the graph help on my data?").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from .atomic import write_text_atomic
from .cli import DefaultsHelpFormatter, parse_symbols, run_cli
from .errors import DataError, OptionError
from .rank_ic import _incremental_from_ranks, _rowwise_pearson, _verdict, block_bootstrap_means, cross_ranks

# ``--help`` answers before scipy, pandas (timeutil), the feature and panel modules load
# (tests/test_cli_help.py): those are imported inside the functions that compute.
if TYPE_CHECKING:
    import pandas as pd

    from .panel import Panel

OWN_SIGNALS = ("own_1h", "own_reversal", "own_mom_24h")
GRAPH_SIGNALS = ("nbr_return", "nbr_residual", "lead_lag")
SIGNALS = OWN_SIGNALS + GRAPH_SIGNALS
#: Own signals regressed out for the incremental Rank IC (``own_reversal`` is ``-own_1h``: the same regressor).
REGRESSED_OUT = ("own_1h", "own_mom_24h")
#: ``GraphConfig().window`` / ``.min_periods`` (a test keeps them equal): not imported, since
#: :mod:`gnn_market.graph_builder` pulls in torch, which would triple this command's start-up time.
EDGE_WINDOW = 100
EDGE_MIN_PERIODS = 50
#: ``--data`` choices: :data:`gnn_market.sources.DATA_SOURCES` (a test keeps them equal), not imported,
#: since :mod:`gnn_market.sources` loads the store and pyarrow, which ``--help`` does not need.
DATA_SOURCES = ("sample", "synthetic")


@dataclass(frozen=True)
class DiagnoseConfig:
    """What to read and how to measure; defaults match the graph the model trains on."""

    store: str | None = None  # a store folder; wins over ``data``
    data: str = "sample"  # or "synthetic"
    seed: int = 0  # the simulated market's seed (data="synthetic")
    market: str = "spot"
    symbols: list[str] | None = None
    start: str | None = None  # first decision hour (ISO, UTC); earlier candles are read as warm-up history
    end: str | None = None  # last candle read (ISO, UTC)
    window: int = EDGE_WINDOW  # hours of returns in each correlation (the graph's edges)
    min_periods: int = EDGE_MIN_PERIODS
    momentum_hours: int = 24
    min_pairs: int = 5  # an hour counts when at least this many pairs have every signal and the label
    block_days: int = 7
    replicates: int = 2000
    level: float = 0.95
    bootstrap_seed: int = 20231201
    chunk_hours: int = 32
    workers: int = 2
    progress: bool = True
    out: str | None = None  # JSON file with every number

    def __post_init__(self) -> None:
        checks = {"window": self.window >= 3, "min_periods": 2 <= self.min_periods <= self.window,
                  "momentum_hours": self.momentum_hours >= 1, "min_pairs": self.min_pairs >= 3,
                  "block_days": self.block_days >= 1, "replicates": self.replicates >= 100,
                  "level": 0.5 <= self.level < 1.0, "chunk_hours": self.chunk_hours >= 1,
                  "workers": self.workers >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise OptionError(f"diagnose: invalid {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)} "
                              "(see python -m gnn_market.diagnose --help)")


@dataclass
class Signals:
    """Every signal ``[T, N]`` of one panel, the label, and the hours that may be scored."""

    times: pd.DatetimeIndex  # [T]
    symbols: list[str]
    values: dict[str, np.ndarray]  # name -> [T, N] float64, NaN where undefined
    label: np.ndarray  # [T, N] r[t+1], NaN where either candle is not real
    scored: np.ndarray = field(default=None)  # [T] bool: decision hours inside the asked range


# ------------------------------------------------------------------ signals
def real_log_returns(panel: Panel) -> np.ndarray:
    """``ln(close[t] / close[t-1])`` over real candles only (a forward-filled price is not a trade): NaN otherwise."""
    real = panel.mask & ~panel.filled
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.where(real, np.log(panel.close), np.nan)
    r = np.full_like(logc, np.nan)
    r[1:] = logc[1:] - logc[:-1]
    return r


def _rolling_sd(r: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Population sd of each column's returns over rows ``t-window+1 .. t``; NaN under ``min_periods`` returns."""
    ok = np.isfinite(r)
    x = np.where(ok, r, 0.0)

    def wsum(a: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(a, axis=0)])
        lo = np.maximum(np.arange(1, len(a) + 1) - window, 0)
        return c[1:] - c[lo]

    n, s, ss = wsum(ok.astype(np.float64)), wsum(x), wsum(x * x)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = ss / n - (s / n) ** 2
    return np.where(n >= min_periods, np.sqrt(np.clip(var, 0.0, None)), np.nan)


def _graph_chunk(corr: np.ndarray, aug: np.ndarray, now: np.ndarray, sd: np.ndarray) -> dict[str, np.ndarray]:
    """The three graph signals ``[K, N]`` for one chunk of hours (batched mat-vecs, no loop over hours or pairs).

    Args:
        corr: ``[K, N, N]`` correlations (overwritten: used as scratch).
        aug: ``[K, 2N, 2N]`` correlations of ``[r_t, r_{t-1}]`` (block ``[:N, N:]`` overwritten on its diagonal);
            block ``[:N, N:]`` holds ``[i, j] = L[j, i]`` (the matrix is symmetric), read in place.
        now: ``[K, N]`` real returns at the decision hours (NaN where none).
        sd: ``[K, N]`` rolling sd of the graph's returns (NaN where too few).
    """
    n = corr.shape[1]
    diag = np.arange(n)
    corr[:, diag, diag] = 0.0  # a pair is not its own neighbour
    aug[:, diag, n + diag] = 0.0  # nor is its own lag-1 autocorrelation graph information
    lag = aug[:, :n, n:]  # a strided view: BLAS reads it with a leading dimension of 2N, no copy
    present = np.isfinite(now).astype(np.float32)
    x = np.where(present > 0, now, 0.0).astype(np.float32)
    sd0 = np.where(np.isfinite(sd), sd, 0.0).astype(np.float32)

    def matvec(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.matmul(w, v[..., None])[..., 0]

    with np.errstate(invalid="ignore", divide="ignore"):
        num = matvec(corr, x)
        absw = np.abs(corr, out=corr)  # corr is not needed signed any more: reuse its memory
        den = matvec(absw, present)
        slope = matvec(np.square(absw, out=absw), sd0 * present)  # sum_j C_ij^2 sd_j
        nbr = np.where(den > 0, num / den, np.nan).astype(np.float64)
        beta = np.where((den > 0) & (sd0 > 0), slope / den / sd0, np.nan)
        resid = nbr - beta * now
        num, den = matvec(lag, x), matvec(np.abs(lag), present)
        lead = np.where(den > 0, num / den, np.nan).astype(np.float64)
    return {"nbr_return": nbr, "nbr_residual": resid, "lead_lag": lead}


def _chunks(graph_ret: np.ndarray, cfg: DiagnoseConfig) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(t0, corr [K, N, N], aug [K, 2N, 2N])`` for every hour, both from :func:`iter_correlations`.

    The lead-lag matrix ``L[j, i] = corr(r_j[s-1], r_i[s])`` over ``s`` in
    ``t-window+2 .. t`` is the correlation of the lagged columns with the current
    ones over a ``window - 1`` hour window of the stacked panel ``[r_t, r_{t-1}]``:
    exactly :func:`lead_lag_matrix` (same pairs of hours, pairwise-complete,
    ``min_periods`` and zero-variance rules), through the running-sum fast path.
    """
    from .correlations import iter_correlations

    T, N = graph_ret.shape
    lagged = np.vstack([np.full((1, N), np.nan), graph_ret[:-1]])
    stacked = np.hstack([graph_ret, lagged])
    common = dict(start=0, stop=T, min_periods=cfg.min_periods, chunk_hours=cfg.chunk_hours, workers=cfg.workers)
    pairs = zip(iter_correlations(graph_ret, window=cfg.window, **common),
                iter_correlations(stacked, window=cfg.window - 1, **common))
    for (t0, corr), (t1, aug) in pairs:
        assert t0 == t1  # both walk the same chunk grid
        yield t0, corr, aug


def compute_signals(panel: Panel, cfg: DiagnoseConfig = DiagnoseConfig()) -> Signals:
    """Every own and graph signal of ``panel`` at every hour, and the next-hour label.

    Row ``t`` of every signal reads candles ``<= t`` only; ``label[t]`` is the
    real log return of candle ``t + 1`` (NaN for the last row).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from .feature_generator import log_returns

    T, N = panel.shape
    now = real_log_returns(panel)
    label = np.full_like(now, np.nan)
    label[:-1] = now[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.where(panel.mask & ~panel.filled, np.log(panel.close), np.nan)
    mom = np.full_like(logc, np.nan)
    h = cfg.momentum_hours
    mom[h:] = logc[h:] - logc[:-h]
    values = {"own_1h": now, "own_reversal": -now, "own_mom_24h": mom}
    graph = {name: np.full((T, N), np.nan) for name in GRAPH_SIGNALS}
    graph_ret = log_returns(panel)  # the graph's own input: correlations equal the edges' weights
    sd = _rolling_sd(graph_ret, cfg.window, cfg.min_periods)
    # one BLAS thread throughout: the chunk workers run in parallel, and nested limits restore in order
    with threadpool_limits(1, user_api="blas"), \
            tqdm(total=T, desc="correlations", unit="hour", disable=not cfg.progress, file=sys.stderr) as bar:
        for t0, corr, aug in _chunks(graph_ret, cfg):
            k = slice(t0, t0 + len(corr))
            for name, sig in _graph_chunk(corr, aug, now[k], sd[k]).items():
                graph[name][k] = sig
            bar.update(len(corr))
    values.update(graph)
    return Signals(times=panel.times, symbols=list(panel.symbols), values=values, label=label,
                   scored=np.ones(T, dtype=bool))


# ------------------------------------------------------------------ rank IC
def common_valid(signals: Signals, min_pairs: int) -> np.ndarray:
    """``[T, N]``: pairs with every signal and the label at scored hours that have at least ``min_pairs`` of them."""
    valid = np.isfinite(signals.label) & signals.scored[:, None]
    for v in signals.values.values():
        valid &= np.isfinite(v)
    valid &= (valid.sum(1) >= min_pairs)[:, None]
    return valid


# ------------------------------------------------------------------ the whole check
def _hourly_ics(signals: Signals, hours: np.ndarray, v: np.ndarray) -> tuple[dict, dict, dict]:
    """Per scored hour ``[H]``: every signal's Rank IC and Pearson IC, and each graph signal's
    incremental Rank IC over the own signals (``v``: ``[H, N]`` pairs scored at each hour)."""
    label = signals.label[hours]
    label_rank = cross_ranks(label, v)
    ranks = {name: cross_ranks(x[hours], v) for name, x in signals.values.items()}  # each ranked once
    ic = {name: _rowwise_pearson(rk, label_rank, v) for name, rk in ranks.items()}
    pearson = {name: _rowwise_pearson(x[hours], label, v) for name, x in signals.values.items()}
    controls = [ranks[c] for c in REGRESSED_OUT]
    incr = {g: _incremental_from_ranks(ranks[g], controls, label_rank, v) for g in GRAPH_SIGNALS}
    return ic, pearson, incr


def evaluate(signals: Signals, cfg: DiagnoseConfig = DiagnoseConfig()) -> dict:
    """Rank ICs, paired differences and incremental Rank ICs with their intervals (every number in a dict)."""
    import pandas as pd

    valid = common_valid(signals, cfg.min_pairs)
    hours = np.nonzero(valid.any(1))[0]
    if not len(hours):
        raise DataError(f"no hour has {cfg.min_pairs} pairs with a {cfg.window}-hour return history and a next-hour "
                        "return: give more pairs or a longer range")
    days_all = signals.times[hours].floor("D")
    first_day = days_all[0]
    day = ((days_all - first_day) // pd.Timedelta(days=1)).to_numpy().astype(np.int64)
    n_days = int(day[-1]) + 1
    if n_days < 2 * cfg.block_days:
        raise DataError(f"only {n_days} days have scorable hours; the {cfg.block_days}-day block bootstrap needs at "
                        f"least {2 * cfg.block_days}: give a longer range (plus {cfg.window} hours of warm-up)")
    ic, pearson, incr = _hourly_ics(signals, hours, valid[hours])
    v = valid[hours]
    mean_ic = {name: float(np.nanmean(s)) for name, s in ic.items()}
    best_own = max(OWN_SIGNALS, key=mean_ic.get)
    best_graph = max(GRAPH_SIGNALS, key=mean_ic.get)

    columns: dict[str, np.ndarray] = {f"rank_ic/{n}": s for n, s in ic.items()}
    columns.update({f"ic/{n}": s for n, s in pearson.items()})
    columns.update({f"diff/{g}": ic[g] - ic[best_own] for g in GRAPH_SIGNALS})
    columns.update({f"incremental/{g}": s for g, s in incr.items()})
    series = np.stack([np.nan_to_num(s) for s in columns.values()], axis=1)  # an undefined hourly IC (ties) counts 0
    mean, lo, hi = block_bootstrap_means(series, day, n_days, cfg.block_days, cfg.replicates, cfg.bootstrap_seed,
                                         cfg.level)
    stat = {key: (float(mean[i]), float(lo[i]), float(hi[i])) for i, key in enumerate(columns)}

    def interval(key: str) -> dict:
        m, low, high = stat[key]
        return {"mean": m, "ci_low": low, "ci_high": high, "verdict": _verdict(low, high)}

    def icir(s: np.ndarray) -> float:
        s = np.nan_to_num(s)
        sd = float(s.std(ddof=1))
        return float(s.mean() / sd) if sd > 0 else 0.0

    table = {name: {"group": "own" if name in OWN_SIGNALS else "graph",
                    "rank_ic": interval(f"rank_ic/{name}"), "rank_icir": icir(ic[name]),
                    "ic": stat[f"ic/{name}"][0], "icir": icir(pearson[name])} for name in signals.values}
    return {
        "hours": int(len(hours)), "days": n_days,
        "first_hour": signals.times[hours[0]].isoformat(), "last_hour": signals.times[hours[-1]].isoformat(),
        "pairs": len(signals.symbols), "mean_pairs_per_hour": float(v.sum(1).mean()),
        "signals": table, "best_own": best_own, "best_graph": best_graph,
        "graph_minus_best_own": {g: interval(f"diff/{g}") for g in GRAPH_SIGNALS},
        "incremental_rank_ic": {g: {**interval(f"incremental/{g}"), "rank_icir": icir(incr[g])}
                                for g in GRAPH_SIGNALS},
        "incremental_controls": list(REGRESSED_OUT),
        "primary": {"comparison": f"{best_graph} - {best_own}", **interval(f"diff/{best_graph}"),
                    "incremental": interval(f"incremental/{best_graph}")},
        "n_comparisons": len(GRAPH_SIGNALS),
        "interval": (f"{cfg.level:.0%} percentile interval, circular block bootstrap over days ({cfg.block_days}-day "
                     f"blocks, {cfg.replicates} replicates, seed {cfg.bootstrap_seed}); paired: every statistic uses "
                     "the same resampled days"),
    }


# ------------------------------------------------------------------ text
def format_table(report: dict) -> str:
    """The per-signal table, then the comparisons with the best own signal."""
    def ci(d: dict) -> str:
        return f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"

    lines = [f"{'signal':<14}{'group':<7}{'Rank IC [95% CI]':>32}{'Rank ICIR':>11}{'IC':>9}",
             "-" * 73]
    for name, row in report["signals"].items():
        lines.append(f"{name:<14}{row['group']:<7}{ci(row['rank_ic']):>32}{row['rank_icir']:>11.3f}{row['ic']:>+9.4f}")
    lines += ["", f"{'graph signal':<14}{'minus ' + report['best_own']:>32}{'incremental Rank IC':>32}", "-" * 78]
    for g in GRAPH_SIGNALS:
        lines.append(f"{g:<14}{ci(report['graph_minus_best_own'][g]):>32}{ci(report['incremental_rank_ic'][g]):>32}")
    return "\n".join(lines)


def verdict_text(report: dict) -> str:
    """One plain-English paragraph: does the graph add to the pair's own history here?"""
    p, g, o = report["primary"], report["best_graph"], report["best_own"]
    diff = f"{p['mean']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}]"
    if p["verdict"] == "better":
        head = f"the graph adds {diff} Rank IC over the pair's own history; the interval is above 0, so this is more " \
               "than noise"
    elif p["verdict"] == "worse":
        head = f"on its own, the graph's best signal ranks worse than the pair's own history: {diff} Rank IC, " \
               "an interval below 0"
    else:
        head = f"the graph adds {diff} Rank IC over the pair's own history; this is a tie (inside the noise)"
    ci = {k: f"{v['mean']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]"
          for k, v in report["incremental_rank_ic"].items()}
    above = [k for k, v in report["incremental_rank_ic"].items() if v["verdict"] == "better"]
    controls = f"each pair's own last-hour return and {report.get('momentum_hours', 24)}-hour momentum"
    if above:
        tail = (f"After regressing out {controls} hour by hour, "
                + ", ".join(f"{k} keeps {ci[k]}" for k in above)
                + " Rank IC (above 0): the neighbours carry information the pair's own history does not, so a "
                  "graph model has something to learn here; whether it is enough to trade is for the trading "
                  "metrics of a trained model to say.")
    else:
        tail = (f"After regressing out {controls} hour by hour, no graph signal keeps a Rank IC distinguishable "
                f"from 0 ({g}: {ci[g]}): expect a graph model to tie per-pair models at one hour on this data.")
    s, own = report["signals"][g]["rank_ic"], report["signals"][o]["rank_ic"]
    return (f"Over {report['hours']} hours ({report['days']} days, {report['first_hour'][:10]} to "
            f"{report['last_hour'][:10]}) of {report['pairs']} {report.get('market', '')} pairs, the best graph "
            f"signal ({g}, Rank IC {s['mean']:+.4f}) against the best own-history signal ({o}, {own['mean']:+.4f}): "
            f"{head}. {tail} Intervals: {report['interval']}; {report['n_comparisons']} graph-vs-own comparisons, "
            "the best of each group chosen on these same hours.")


# ------------------------------------------------------------------ data + CLI
def load_diagnose_panel(cfg: DiagnoseConfig) -> Panel:
    """The asked market, plus ``window + momentum`` hours of history before ``--start`` as warm-up."""
    from .panel import load_panel
    from .sources import open_store
    from .timeutil import HOUR, parse_utc

    store = open_store(cfg.store, cfg.data, seed=cfg.seed)
    start = None
    if cfg.start is not None:
        start = parse_utc(cfg.start, "--start") - (cfg.window + cfg.momentum_hours) * HOUR
    panel = load_panel(store, cfg.market, symbols=cfg.symbols, start=start, end=cfg.end)
    if len(panel.symbols) < cfg.min_pairs:
        raise DataError(f"{len(panel.symbols)} {cfg.market} pair(s) loaded ({', '.join(panel.symbols)}); a "
                        f"cross-sectional Rank IC needs at least {cfg.min_pairs}: give more --symbols or another store")
    return panel


def run(cfg: DiagnoseConfig) -> dict:
    """Load, compute, evaluate; the report dict (also written to ``cfg.out``)."""
    from .timeutil import parse_utc

    t0 = time.perf_counter()
    panel = load_diagnose_panel(cfg)
    t1 = time.perf_counter()
    signals = compute_signals(panel, cfg)
    if cfg.start is not None:
        signals.scored = np.asarray(signals.times >= parse_utc(cfg.start, "--start"))
    t2 = time.perf_counter()
    report = evaluate(signals, cfg)
    t3 = time.perf_counter()
    report.update(market=cfg.market, momentum_hours=cfg.momentum_hours, window=cfg.window,
                  source=cfg.store or cfg.data, config={k: v for k, v in asdict(cfg).items() if k != "progress"},
                  timings={"load_s": t1 - t0, "signals_s": t2 - t1, "evaluate_s": t3 - t2, "total_s": t3 - t0})
    report["verdict"] = verdict_text(report)
    if cfg.out:
        write_text_atomic(Path(cfg.out), json.dumps(report, indent=2) + "\n", DataError)
    return report


def build_parser() -> argparse.ArgumentParser:
    """The data-source flags of ``python -m gnn_market.train`` plus the check's own."""
    d = DiagnoseConfig()
    p = argparse.ArgumentParser(prog="python -m gnn_market.diagnose", description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", help="market store folder (default: the bundled sample)")
    src.add_argument("--data", choices=DATA_SOURCES, default=d.data)
    p.add_argument("--seed", type=int, default=d.seed, help="market seed of --data synthetic")
    p.add_argument("--market", default=d.market, choices=("spot", "perp"))
    p.add_argument("--symbols", help="comma-separated symbols (default: all in the store)")
    p.add_argument("--start", help="first decision hour (ISO, UTC); the warm-up history before it is read too")
    p.add_argument("--end", help="last hour (ISO, UTC)")
    p.add_argument("--window", type=int, default=d.window, help="hours of returns per correlation (the graph's)")
    p.add_argument("--block-days", type=int, default=d.block_days, dest="block_days",
                   help="days per bootstrap block")
    p.add_argument("--replicates", type=int, default=d.replicates)
    p.add_argument("--out", help="write every number as JSON to this file")
    p.add_argument("--no-progress", action="store_false", dest="progress")
    return p


def config_from_args(args: argparse.Namespace) -> DiagnoseConfig:
    """Parsed flags (of this parser or of ``train``'s) -> :class:`DiagnoseConfig`."""
    names = {f for f in DiagnoseConfig.__dataclass_fields__}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if isinstance(values.get("symbols"), str):
        values["symbols"] = parse_symbols(values["symbols"])
    return DiagnoseConfig(**values)


def main_from_train_args(args: argparse.Namespace) -> int:
    """``python -m gnn_market.train --diagnose ...``: this check on train's data flags, then exit.

    Reads ``--store/--data/--seed/--market/--symbols/--start/--end/--no-progress``;
    train's ``--out`` is a folder, so the JSON goes to ``OUT/diagnose.json``.
    ``--top`` would rank the universe on the very hours being measured, so it is refused.
    """
    if getattr(args, "top", None) is not None:
        raise DataError("--diagnose does not rank a universe (--top would pick pairs on the hours it measures): "
                        "drop --top, or name the pairs with --symbols")
    values = {k: getattr(args, k) for k in ("store", "data", "seed", "market", "symbols", "start", "end", "progress")
              if getattr(args, k, None) is not None}
    if isinstance(values.get("symbols"), str):
        values["symbols"] = parse_symbols(values["symbols"])
    if getattr(args, "out", None):
        values["out"] = str(Path(args.out) / "diagnose.json")
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the output folder {args.out}: {exc.strerror or exc}") from exc
    report = run(DiagnoseConfig(**values))
    print(report_text(report))
    return 0


def report_text(report: dict) -> str:
    """What the command prints: the table and the verdict paragraph."""
    t = report["timings"]["total_s"]
    return f"{format_table(report)}\n\n{report['verdict']}\n\n({t:.1f} s)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check and print the table and the verdict."""
    report = run(config_from_args(build_parser().parse_args(argv)))
    print(report_text(report))
    return 0


def cli() -> int:
    """Console entry point."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
