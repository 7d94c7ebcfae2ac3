"""Seeded simulator of an hourly multi-asset market with planted cross-asset structure.

The simulator writes the same schema as real data (spot and perp klines,
funding every 8 h, hourly book snapshots), so every downstream module can be
tested on a market whose structure is *known*. The structure is chosen so that
the package's thesis has a fair test: a follower's next-hour return is
predictable from its sector's leaders' current returns (which a graph model
can aggregate from neighbours) but not from its own past.

Model (hour t, symbol i in sector s; all shocks are independent, unit-variance
Student-t with ``tail_df`` degrees of freedom, scaled by the regime volatility
multiplier v_t)::

    m_t     = market_vol * v_t * z            market factor          [T]
    g_{s,t} = sector_vol * v_t * z            sector factor          [T, S]
    f_{s,t} = lead_vol   * v_t * z            sector lead factor     [T, S]
    e_{i,t} = idio_vol_i * v_t * z            idiosyncratic noise    [T, N]

    leader:   r_{i,t} = beta_i m_t + g_{s,t} +             f_{s,t}   + e_{i,t}
    follower: r_{i,t} = beta_i m_t + g_{s,t} + lead_beta * f_{s,t-1} + e_{i,t}

``r`` is the close-to-close log return of the spot candle opening at t. Every
shock is serially independent, so no symbol's return is predictable from its
own past, while ``corr(leader r_t, follower r_{t+1}) = lead_beta lead_vol^2 /
(sd_leader sd_follower)`` (see :meth:`SyntheticMarket.expected_lead_corr`).
v_t follows a seeded Markov chain over ``regime_vols`` with mean stay
``regime_mean_hours``. See ``docs/synthetic.md`` for the remaining parts
(OHLC, volumes, perp basis, funding, book).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from .errors import DataError, StoreError
from .store import Store
from .store_schema import BOOK_COLUMNS, FUNDING_COLUMNS, KLINE_COLUMNS, validate_symbol
from .timeutil import HOUR

#: Bump when the simulator's output for a given config changes, so cached
#: stores keyed by :meth:`SyntheticConfig.fingerprint` are regenerated.
MODEL_VERSION = 1

BOOK_LEVELS = 20

# Independent random streams: turning a part off (funding, book) or changing
# how one part is drawn never changes the prices of another.
_STREAMS = ("regime", "factors", "symbols", "ohlc", "volume", "perp", "funding", "book_spot", "book_perp")


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the simulated market. Volatilities are per hour, in log-return units.

    Symbol i (``SYN00USDT``, ``SYN01USDT``, ...; three digits beyond 100 symbols) belongs to sector ``i % n_sectors``;
    the first ``leaders_per_sector`` members of every sector are its leaders,
    all other members are followers.
    """

    n_symbols: int = 24
    hours: int = 24 * 120
    seed: int = 0
    start: str = "2024-01-01"
    n_sectors: int = 4
    leaders_per_sector: int = 2
    lead_beta: float = 1.0          # follower r_{t+1} loading on the sector lead factor f_t
    lead_vol: float = 0.013         # sd of the lead factor f (calm regime = 1)
    sector_vol: float = 0.008       # sd of the contemporaneous sector factor g
    market_vol: float = 0.004       # sd of the market factor m
    idio_vol: float = 0.005         # sd of idiosyncratic noise (per-symbol scale in [0.8, 1.25])
    tail_df: float = 4.0            # Student-t degrees of freedom of every shock (> 2)
    regime_vols: tuple[float, ...] = (0.7, 1.0, 1.6)   # volatility multiplier per regime
    regime_mean_hours: float = 120.0                   # mean stay in a regime
    funding_interval_hours: int = 8
    with_funding: bool = True
    with_book: bool = True

    def __post_init__(self) -> None:
        if self.n_sectors < 1 or self.leaders_per_sector < 1:
            raise DataError("synthetic: need n_sectors >= 1 and leaders_per_sector >= 1")
        if self.n_symbols < self.n_sectors * (self.leaders_per_sector + 1):
            raise DataError(
                f"synthetic: n_symbols={self.n_symbols} too small for {self.n_sectors} sectors with "
                f"{self.leaders_per_sector} leaders and at least one follower each")
        if self.n_symbols > 1000:
            raise DataError("synthetic: at most 1000 symbols (names SYN000USDT..SYN999USDT)")
        if self.hours < 2:
            raise DataError("synthetic: hours must be at least 2")
        if self.tail_df <= 2:
            raise DataError("synthetic: tail_df must be > 2 (finite variance)")
        if not self.regime_vols or min(self.regime_vols) <= 0 or self.regime_mean_hours < 1:
            raise DataError("synthetic: regime_vols must be positive and regime_mean_hours >= 1")
        if min(self.lead_vol, self.sector_vol, self.market_vol, self.idio_vol) < 0:
            raise DataError("synthetic: volatilities must be >= 0")
        if self.funding_interval_hours < 1 or 24 % self.funding_interval_hours:
            raise DataError("synthetic: funding_interval_hours must divide 24")
        start = pd.Timestamp(self.start)
        if start.tzinfo is not None:
            start = start.tz_convert("UTC").tz_localize(None)
        if start != start.floor("h"):
            raise DataError(f"synthetic: start {self.start!r} is not on the hour")

    def fingerprint(self) -> str:
        """Short stable hash of every field and :data:`MODEL_VERSION` (12 hex characters)."""
        payload = json.dumps({"model_version": MODEL_VERSION, **asdict(self)}, sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def symbols(self) -> list[str]:
        width = 2 if self.n_symbols <= 100 else 3  # two digits up to 100 keeps every earlier market's names
        return [f"SYN{i:0{width}d}USDT" for i in range(self.n_symbols)]

    @property
    def sector_index(self) -> np.ndarray:
        """[N] int: sector of every symbol."""
        return np.arange(self.n_symbols) % self.n_sectors

    @property
    def leader_mask(self) -> np.ndarray:
        """[N] bool: True for leaders (the first members of each sector)."""
        return np.arange(self.n_symbols) // self.n_sectors < self.leaders_per_sector


@dataclass
class SyntheticMarket:
    """A simulated market in memory, with its ground truth.

    Frames follow the store's schemas (``store.KLINE_COLUMNS`` indexed by
    ``open_time``, ``FUNDING_COLUMNS`` by ``funding_time``, ``BOOK_COLUMNS`` by
    ``snapshot_time``). ``klines`` and ``book`` are keyed by market
    (``"spot"``, ``"perp"``) then symbol; ``funding`` by (perp) symbol.
    """

    config: SyntheticConfig
    times: pd.DatetimeIndex                 # [T] candle open times, hourly UTC
    symbols: list[str]                      # [N]
    sectors: dict[str, int]                 # symbol -> sector index
    leaders: tuple[str, ...]
    followers: tuple[str, ...]
    lead_beta: float
    regimes: np.ndarray                     # [T] int regime state
    regime_vol: np.ndarray                  # [T] float volatility multiplier v_t
    log_returns: np.ndarray                 # [T, N] spot close-to-close log returns (r_0 from the first open)
    lead_factor: np.ndarray                 # [T, S] f_{s,t}: moves leaders at t, followers at t+1
    klines: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    funding: dict[str, pd.DataFrame] = field(default_factory=dict)
    book: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)

    def sector_members(self, sector: int) -> list[str]:
        return [s for s in self.symbols if self.sectors[s] == sector]

    def leaders_of(self, symbol: str) -> list[str]:
        """The leaders of ``symbol``'s sector (for a leader: the other leaders)."""
        sector = self.sectors[symbol]
        return [s for s in self.leaders if self.sectors[s] == sector and s != symbol]

    def expected_lead_corr(self) -> float:
        """Population corr(leader r_t, follower r_{t+1}) for a symbol with beta 1, idio scale 1.

        The regime multiplier cancels: every term of the covariance and of both
        variances carries the same E[v^2].
        """
        c = self.config
        common = c.market_vol ** 2 + c.sector_vol ** 2 + c.idio_vol ** 2
        var_leader = common + c.lead_vol ** 2
        var_follower = common + (c.lead_beta * c.lead_vol) ** 2
        return float(c.lead_beta * c.lead_vol ** 2 / np.sqrt(var_leader * var_follower))


# --------------------------------------------------------------------- shocks
def _student_t(rng: np.random.Generator, df: float, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance (fat tails, same second moment)."""
    return rng.standard_t(df, size=shape) / np.sqrt(df / (df - 2.0))


def _regime_path(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """[T] int regime states of a Markov chain, fully vectorised.

    Stays are geometric with mean ``regime_mean_hours``; at a switch the next
    state is drawn uniformly among the others (so states are equally likely in
    the long run). Built as run lengths + ``np.repeat`` instead of a loop.
    """
    k, hours = len(config.regime_vols), config.hours
    if k == 1:
        return np.zeros(hours, dtype=np.int64)
    p_switch = 1.0 / config.regime_mean_hours
    n_runs = int(hours * p_switch * 3) + 16  # enough runs with overwhelming probability
    lengths = rng.geometric(p_switch, size=n_runs)
    while lengths.sum() < hours:  # only if the draw was extraordinarily short
        lengths = np.concatenate([lengths, rng.geometric(p_switch, size=n_runs)])
    steps = rng.integers(1, k, size=len(lengths))  # move to a different state
    steps[0] = rng.integers(0, k)                  # initial state
    states = np.cumsum(steps) % k
    return np.repeat(states, lengths)[:hours].astype(np.int64)


@dataclass(frozen=True)
class _Returns:
    log_ret: np.ndarray      # [T, N]
    sigma: np.ndarray        # [T, N] conditional sd of log_ret (regime-scaled)
    regimes: np.ndarray      # [T]
    vol: np.ndarray          # [T]
    lead: np.ndarray         # [T, S]


def _simulate_returns(config: SyntheticConfig, rngs: dict[str, np.random.Generator]) -> _Returns:
    """Factor model of hourly log returns (see module docstring). All arrays [T, ...]."""
    c, T, N, S = config, config.hours, config.n_symbols, config.n_sectors
    regimes = _regime_path(rngs["regime"], c)
    vol = np.asarray(c.regime_vols, dtype=np.float64)[regimes]          # [T]
    rng = rngs["factors"]
    market = c.market_vol * vol * _student_t(rng, c.tail_df, (T,))        # [T]
    sector = c.sector_vol * vol[:, None] * _student_t(rng, c.tail_df, (T, S))
    # One extra leading row: the lead factor of the hour before the sample,
    # which the followers' first candle responds to.
    vol_ext = np.concatenate([vol[:1], vol])
    lead_ext = c.lead_vol * vol_ext[:, None] * _student_t(rng, c.tail_df, (T + 1, S))
    lead, lead_prev = lead_ext[1:], lead_ext[:-1]                         # f_t and f_{t-1}

    srng = rngs["symbols"]
    beta = srng.uniform(0.7, 1.3, size=N)                                  # market betas
    idio_scale = srng.uniform(0.8, 1.25, size=N)
    idio = c.idio_vol * idio_scale * vol[:, None] * _student_t(rng, c.tail_df, (T, N))

    sec = c.sector_index
    is_leader = c.leader_mask
    lead_part = np.where(is_leader, lead[:, sec], c.lead_beta * lead_prev[:, sec])
    log_ret = beta * market[:, None] + sector[:, sec] + lead_part + idio

    lead_load = np.where(is_leader, c.lead_vol, c.lead_beta * c.lead_vol)
    base_sd = np.sqrt((beta * c.market_vol) ** 2 + c.sector_vol ** 2 + lead_load ** 2
                      + (c.idio_vol * idio_scale) ** 2)                   # [N]
    return _Returns(log_ret, vol[:, None] * base_sd, regimes, vol, lead)


# ----------------------------------------------------------------- candles
#: Largest simulated hourly quote volume (USDT): 5,000x a typical leader's, a tenth of the store's
#: ``MAX_NOTIONAL``; only Student-t shocks of ~28 sd reach it (a 450-pair market of 1,200 hours drew one
#: above the store's limit, which the store then refused).
MAX_QUOTE_VOLUME = 1e11
#: Most trades in one simulated candle (half the store's ``MAX_TRADES``).
MAX_TRADES = 500_000_000


def _candles(open_: np.ndarray, close: np.ndarray, sigma: np.ndarray, quote_volume: np.ndarray,
             rng: np.random.Generator, trade_size: np.ndarray) -> dict[str, np.ndarray]:
    """OHLC + volume columns from open/close prices; every array [T, N].

    High/low extend beyond max/min(open, close) by a half-normal multiple of
    the hour's volatility (a crude Brownian-range stand-in), which keeps
    ``high >= max(open, close)`` and ``low <= min(open, close)`` by construction.
    """
    up = np.abs(rng.standard_normal(open_.shape))
    down = np.abs(rng.standard_normal(open_.shape))
    high = np.maximum(open_, close) * np.exp(0.4 * sigma * up)
    low = np.minimum(open_, close) * np.exp(-0.4 * sigma * down)
    vwap = (open_ + high + low + close) / 4.0
    volume = quote_volume / vwap
    # capped like the volume (MAX_QUOTE_VOLUME): a tail shock's perp candle drew 1.7e9 trades, over the store's limit
    trades = np.clip(np.rint(quote_volume / trade_size), 1, MAX_TRADES).astype(np.int64)
    # Takers buy more in up-hours: a contemporaneous relation only (no look-ahead).
    z = np.log(close / open_) / sigma
    taker_share = np.clip(0.5 + 0.2 * np.tanh(z) + 0.03 * rng.standard_normal(open_.shape), 0.05, 0.95)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "quote_volume": quote_volume, "trades": trades,
            "taker_buy_volume": taker_share * volume, "taker_buy_quote_volume": taker_share * quote_volume}


def _symbol_levels(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-symbol starting price, typical hourly quote volume (USDT) and trade size, each [N].

    Leaders are the big liquid coins (10x the quote volume, higher prices):
    liquidity is a realistic, observable cue of who leads.
    """
    n, leader = config.n_symbols, config.leader_mask
    price0 = np.exp(np.where(leader, rng.uniform(np.log(50), np.log(50_000), n),
                             rng.uniform(np.log(0.05), np.log(500), n)))
    quote_volume = np.where(leader, 2e7, 2e6) * np.exp(rng.normal(0.0, 0.4, n))
    trade_size = rng.uniform(300, 2_000, n)
    return price0, quote_volume, trade_size


def _quote_volume(level: np.ndarray, vol: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[T, N] hourly quote volume: more trading in big moves and turbulent regimes; always > 0."""
    noise = rng.normal(0.0, 0.25, z.shape)
    return np.minimum(level * np.sqrt(vol)[:, None] * np.exp(0.3 * np.abs(z) + noise - 0.3), MAX_QUOTE_VOLUME)


#: Widest simulated quote, relative to the price (only ever reached by extreme tail shocks of large markets).
MAX_REL_SPREAD = 1.0


def _book(close: np.ndarray, z: np.ndarray, vol: np.ndarray, taker_share: np.ndarray, level: np.ndarray,
          spread_scale: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Top-20 book summary at each candle's close; every array [T, N].

    Relative spread widens with the regime volatility and the size of the
    hour's move and is tighter for liquid symbols; depth (notional per side)
    scales with the symbol's volume and thins in turbulent regimes; the
    bid/ask imbalance leans with the hour's taker flow (contemporaneous only).
    """
    shape = close.shape
    base_spread = spread_scale * 1e-4 * np.sqrt(2e7 / level)                      # [N]
    rel_spread = base_spread * vol[:, None] * np.exp(0.25 * np.abs(z) + rng.normal(0.0, 0.2, shape))
    # a Student-t shock far in the tail could otherwise quote a spread wider than the price (a negative bid)
    rel_spread = np.minimum(rel_spread, MAX_REL_SPREAD)
    depth = 0.05 * level / vol[:, None] * np.exp(rng.normal(0.0, 0.3, shape))      # notional per side
    imbalance = 0.8 * np.tanh(1.5 * (2.0 * taker_share - 1.0) + 0.3 * rng.standard_normal(shape))
    best_bid = close * (1.0 - rel_spread / 2.0)
    best_ask = close * (1.0 + rel_spread / 2.0)
    bid_notional = depth * (1.0 + imbalance)
    ask_notional = depth * (1.0 - imbalance)
    # Deeper levels sit away from the touch: average level price ~ 5 spreads out.
    bid_qty = bid_notional / (close * np.maximum(0.5, 1.0 - 5.0 * rel_spread))
    ask_qty = ask_notional / (close * (1.0 + 5.0 * rel_spread))
    return {
        "best_bid": best_bid, "best_ask": best_ask,
        "best_bid_qty": bid_qty * rng.uniform(0.03, 0.15, shape),
        "best_ask_qty": ask_qty * rng.uniform(0.03, 0.15, shape),
        "bid_qty": bid_qty, "ask_qty": ask_qty,
        "bid_notional": bid_notional, "ask_notional": ask_notional,
        "spread": best_ask - best_bid,
        "levels": np.full(shape, BOOK_LEVELS, dtype=np.int64),
    }


def _funding(times: pd.DatetimeIndex, basis: np.ndarray, perp_close: np.ndarray, interval: int,
             rng: np.random.Generator) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    """Funding settlements every ``interval`` hours; arrays [K, N].

    The rate is a base 0.01% plus a share of the mean perp premium (basis)
    over the interval before settlement; the basis follows recent returns, so
    funding is positive after rallies and negative after sell-offs, as on
    Binance. A settlement at time tau only uses candles that closed by tau.
    """
    close_times = times + HOUR                                    # candle k closes at times[k] + 1h
    k = np.nonzero(close_times.hour % interval == 0)[0]           # settlement after candle k closes
    csum = np.vstack([np.zeros((1, basis.shape[1])), np.cumsum(basis, axis=0)])
    first = np.maximum(0, k + 1 - interval)
    premium = (csum[k + 1] - csum[first]) / (k + 1 - first)[:, None]
    rate = 1e-4 + 0.3 * premium + 2e-5 * rng.standard_normal(premium.shape)
    return close_times[k].rename("funding_time"), {
        "funding_rate": np.clip(rate, -3e-3, 3e-3),  # Binance caps funding per interval
        "mark_price": perp_close[k],
    }


def _frames(columns: dict[str, np.ndarray], index: pd.DatetimeIndex, symbols: list[str],
            schema: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Split [T, N] column arrays into one DataFrame per symbol, in the store's column order and dtypes."""
    return {sym: pd.DataFrame({name: arr[:, i] for name, arr in columns.items()}, index=index)[list(schema)]
            .astype(schema) for i, sym in enumerate(symbols)}


def simulate_market(config: SyntheticConfig | None = None) -> SyntheticMarket:
    """Simulate the market described by ``config`` (deterministic given ``config.seed``).

    Returns frames per market and symbol in the store's schemas plus the
    ground truth (sectors, leaders, followers, lead factor, regimes).
    """
    c = config or SyntheticConfig()
    streams = np.random.SeedSequence(c.seed).spawn(len(_STREAMS))
    rngs = {name: np.random.default_rng(seq) for name, seq in zip(_STREAMS, streams)}
    symbols = c.symbols
    for sym in symbols:
        validate_symbol(sym)
    start = pd.Timestamp(c.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    times = pd.date_range(start, periods=c.hours, freq="h", name="open_time").as_unit("ns")

    ret = _simulate_returns(c, rngs)
    price0, level, trade_size = _symbol_levels(c, rngs["symbols"])
    z = ret.log_ret / ret.sigma                                       # standardised move [T, N]

    # Spot: continuous trading, so each candle opens at the previous close.
    log_close = np.log(price0) + np.cumsum(ret.log_ret, axis=0)
    close = np.exp(log_close)
    open_ = np.vstack([price0[None, :], close[:-1]])
    spot_qv = _quote_volume(level, ret.vol, z, rngs["volume"])
    spot = _candles(open_, close, ret.sigma, spot_qv, rngs["ohlc"], trade_size)

    # Perp: spot price times exp(basis); the basis is an AR(1) premium pushed
    # by recent returns (longs pay up after rallies). lfilter runs the
    # recursion b_t = 0.95 b_{t-1} + u_t over all symbols at once.
    prng = rngs["perp"]
    shock = 0.02 * ret.log_ret + 2e-4 * prng.standard_normal(ret.log_ret.shape)
    basis = lfilter([1.0], [1.0, -0.95], shock, axis=0)
    perp_close = close * np.exp(basis)
    perp_open = np.vstack([price0[None, :], perp_close[:-1]])
    perp_qv = spot_qv * 2.5 * np.exp(prng.normal(0.0, 0.2, spot_qv.shape))
    perp = _candles(perp_open, perp_close, ret.sigma, perp_qv, prng, trade_size * 0.5)

    market = SyntheticMarket(
        config=c, times=times, symbols=symbols,
        sectors={s: int(k) for s, k in zip(symbols, c.sector_index)},
        leaders=tuple(s for s, lead in zip(symbols, c.leader_mask) if lead),
        followers=tuple(s for s, lead in zip(symbols, c.leader_mask) if not lead),
        lead_beta=c.lead_beta, regimes=ret.regimes, regime_vol=ret.vol,
        log_returns=ret.log_ret, lead_factor=ret.lead,
        klines={"spot": _frames(spot, times, symbols, KLINE_COLUMNS),
                "perp": _frames(perp, times, symbols, KLINE_COLUMNS)},
    )
    if c.with_funding:
        ftimes, fcols = _funding(times, basis, perp_close, c.funding_interval_hours, rngs["funding"])
        market.funding = _frames(fcols, ftimes, symbols, FUNDING_COLUMNS)
    if c.with_book:
        snap = (times + HOUR).rename("snapshot_time")  # taken when the candle closes
        market.book = {}
        for name, cols, scale, qv in (("spot", spot, 1.0, spot_qv), ("perp", perp, 0.5, perp_qv)):
            share = cols["taker_buy_quote_volume"] / cols["quote_volume"]
            book = _book(cols["close"], z, ret.vol, share, qv.mean(axis=0), scale, rngs[f"book_{name}"])
            market.book[name] = _frames(book, snap, symbols, BOOK_COLUMNS)
    return market


def write_market(store: Store, market: SyntheticMarket) -> Store:
    """Upsert every frame of ``market`` into ``store`` (idempotent)."""
    for name, frames in market.klines.items():
        for sym, df in frames.items():
            store.write_klines(sym, df, market=name)
    for sym, df in market.funding.items():
        store.write_funding(sym, df)
    for name, frames in market.book.items():
        for sym, df in frames.items():
            store.write_book(sym, df, market=name)
    return store


def write_synthetic_store(path: str | os.PathLike, config: SyntheticConfig | None = None) -> Store:
    """Simulate ``config`` and write it as a store at ``path``; returns the :class:`Store`.

    A new store is built in a temporary sibling folder and renamed into place,
    so an interrupted run never leaves a half-written store that looks
    complete (``open_store`` trusts a folder with ``STORE.json``). If ``path``
    already holds files, the market is upserted into it instead.
    """
    market = simulate_market(config)
    path = Path(path).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not path.is_dir():
            raise StoreError(f"store path is not a folder: {path}")
        return write_market(Store(path), market)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise StoreError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    try:
        write_market(Store(tmp), market)
        try:
            os.replace(tmp, path)  # atomic; fails if another process filled path meanwhile
        except OSError:
            if not (path / "STORE.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer won with identical data
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Store(path)
