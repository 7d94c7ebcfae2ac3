"""Public-endpoint Binance client (spot ``/api/v3`` and USDT-M futures ``/fapi/v1``).

Built on python-binance's :class:`binance.client.Client` (no API key,
``ping=False``), which builds the URLs and parses the answers. python-binance
has no retries, pacing or thread safety (it keeps the last response in a
shared attribute), so this module adds them around it:

* **One python-binance ``Client`` per worker thread** (its ``requests.Session``
  and ``.response`` attribute are not shared), pointed at the configured
  host roots through the instance attributes ``API_URL`` / ``FUTURES_URL``.
* **Timeouts** on every request (``requests_params={"timeout": ...}``).
* **Retries** with exponential backoff and full jitter on timeouts, connection
  errors, HTTP 5xx/408 and malformed JSON bodies.
* **429** sleeps for ``Retry-After`` and pauses the whole host meanwhile.
* **418** raises :class:`BannedError` at once; afterwards the client refuses
  to send anything (continuing would extend the ban).
* **Weight pacing** per host: every request reserves its documented weight in
  a sliding window; the ``X-MBX-USED-WEIGHT-1M`` header (read
  case-insensitively) corrects the local count when other users share the IP.
  Requests wait rather than exceed ``limit * weight_safety``. Limits come from
  ``exchangeInfo.rateLimits`` when available (defaults: spot 6000, futures 2400
  per minute). ``fundingRate`` has its own budget (500 calls / 5 min).
* **-1121** (invalid symbol) raises :class:`UnknownSymbolError`, which callers
  report and skip.

No API key is ever configured or logged.
"""
from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from .errors import BannedError, BinanceError, DataError, UnknownSymbolError
from .store import BOOK_COLUMNS, FUNDING_COLUMNS, KLINE_COLUMNS, is_valid_symbol
from .timeutil import HOUR_MS, ms_to_utc_index

log = logging.getLogger(__name__)

SPOT, PERP = "spot", "perp"
T = TypeVar("T")

#: Base assets that are stablecoins, fiat or pegged to gold: a USDT pair on
#: them carries no market signal. Compiled from the reference (§6.6); exact
#: base-asset matches only (never substrings).
STABLE_BASES: frozenset[str] = frozenset(
    "USDT USDC FDUSD TUSD BUSD USDP PAX DAI USDS USDSB USD1 RLUSD XUSD AUSD SUSD USDN CUSD "
    "CUSDT VAI UST USTC U AEUR EURI EURT PAXG AXG "
    "EUR GBP AUD BRL TRY ARS BIDR IDRT JPY PLN RON RUB UAH ZAR NGN".split()
)
#: Perpetuals that are indexes, not coins (no spot counterpart, no own market).
INDEX_PERPS: frozenset[str] = frozenset({"BTCDOMUSDT", "DEFIUSDT", "USDCUSDT"})
#: Leveraged-token suffixes; a base is leveraged only if base minus suffix is
#: itself a listed base (so JUP or SUPER are kept).
LEVERAGED_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")
#: Multiplier prefixes of perpetual base assets (1000SHIB = 1000 SHIB).
PERP_MULTIPLIERS: dict[str, int] = {"1000000": 1_000_000, "1000": 1000, "1M": 1_000_000}
#: Known perp <-> spot renames that no string rule finds (perp base -> spot base).
PERP_BASE_OVERRIDES: dict[str, str] = {"LUNA2": "LUNA"}

# Documented request weights (reference §3.1).
_SPOT_WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 20, "ticker/24hr": 80, "klines": 2, "depth": 5}
_FUT_WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 1, "ticker/24hr": 40, "klines": 1, "depth": 2,
                "premiumIndex": 1, "fundingRate": 0}


@dataclass
class ClientConfig:
    """How to reach Binance and how politely.

    Attributes:
        spot_url / futures_url: host roots (``/api/v3`` and ``/fapi/v1`` are appended).
        timeout: seconds per request (connect and read).
        max_retries: retries after the first attempt for retryable failures.
        backoff_base / backoff_cap: exponential backoff ``base * 2**n`` (full
            jitter), capped at ``backoff_cap`` seconds.
        max_retry_after: a 429 asking to wait longer than this is an error.
        weight_safety: fraction of the weight limit this client may use.
        weight_window: length of the weight window in seconds (Binance: 60).
        spot_weight_limit / futures_weight_limit: None = read from exchangeInfo
            (fallback 6000 / 2400).
        funding_calls / funding_window: the shared fundingRate budget.
        max_workers: concurrent requests (threads).
        spot_kline_page / futures_kline_page: page sizes (server maxima).
        seed: seed of the jitter RNG (None = random).
    """

    spot_url: str = "https://api.binance.com"
    futures_url: str = "https://fapi.binance.com"
    timeout: float = 10.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 300.0
    weight_safety: float = 0.8
    weight_window: float = 60.0
    spot_weight_limit: int | None = None
    futures_weight_limit: int | None = None
    funding_calls: int = 500
    funding_window: float = 300.0
    max_workers: int = 8  # more threads only contend for the GIL on small machines (bench_refresh.py)
    spot_kline_page: int = 1000
    futures_kline_page: int = 1500
    seed: int | None = None

    def __post_init__(self) -> None:
        self.spot_url = _check_url(self.spot_url, "spot")
        self.futures_url = _check_url(self.futures_url, "futures")
        if self.timeout <= 0 or self.max_retries < 0 or self.max_workers < 1:
            raise DataError("timeout must be > 0, max_retries >= 0 and max_workers >= 1")
        if not 0 < self.weight_safety <= 1:
            raise DataError("weight_safety must be in (0, 1]")


def _check_url(url: str, what: str) -> str:
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DataError(f"bad {what} URL {url!r}: expected http(s)://host[:port]")
    return url.rstrip("/")


# --------------------------------------------------------------------------- pacing
class WeightLimiter:
    """Sliding-window budget of request weight for one host.

    A request reserves its weight before it is sent; reservations expire after
    ``window`` (+5% slack for network delay, so the server's fixed windows can
    never see more than the budget). The server's used-weight header, when
    higher than the local count (other clients on the IP), blocks until the
    server's window rolls over.
    """

    def __init__(self, limit: int, window: float, safety: float, name: str) -> None:
        self.name = name
        self.window = window
        self.safety = safety
        self.limit = limit
        self._ledger: deque[tuple[float, int]] = deque()
        self._server_used = 0
        self._server_window = -1
        self._paused_until = 0.0
        self._cond = threading.Condition()
        self.peak_reserved = 0

    @property
    def budget(self) -> int:
        return max(1, int(self.limit * self.safety))

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self.limit = int(limit)
            self._cond.notify_all()

    def _used(self, now: float) -> int:
        horizon = now - self.window * 1.05
        while self._ledger and self._ledger[0][0] <= horizon:
            self._ledger.popleft()
        local = sum(w for _, w in self._ledger)
        server = self._server_used if int(time.time() // self.window) == self._server_window else 0
        return max(local, server)

    def acquire(self, weight: int) -> None:
        """Block until ``weight`` fits in the budget, then reserve it."""
        weight = min(weight, self.budget)  # a single request larger than the budget still goes
        with self._cond:
            while True:
                now = time.monotonic()
                wait = self._paused_until - now
                if wait <= 0:
                    used = self._used(now)
                    if used + weight <= self.budget:
                        if weight:
                            self._ledger.append((now, weight))
                        self.peak_reserved = max(self.peak_reserved, used + weight)
                        return
                    wait = self._ledger[0][0] + self.window * 1.05 - now if self._ledger else 0.05
                    if self._server_used > self.budget:
                        wait = min(wait, self.window - time.time() % self.window) if self._ledger else \
                            self.window - time.time() % self.window
                self._cond.wait(max(0.005, min(wait, 1.0)))

    def observe(self, used: int | None) -> None:
        """Record the server's used weight from a response header."""
        if used is None:
            return
        with self._cond:
            window = int(time.time() // self.window)
            if window != self._server_window or used > self._server_used:
                self._server_window, self._server_used = window, used

    def pause(self, seconds: float) -> None:
        """Stop every request on this host for ``seconds`` (after a 429)."""
        with self._cond:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


def _used_weight_header(headers: Any) -> int | None:
    if headers is None:
        return None
    for key, value in headers.items():  # case-insensitive, any interval letter case
        if re.fullmatch(r"x-mbx-used-weight-1m", key, flags=re.IGNORECASE):
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


# --------------------------------------------------------------------------- results
@dataclass
class Universe:
    """Tradable USDT pairs, best first by 24 h quote volume.

    ``spot_to_perp``/``perp_to_spot`` map names of the same asset across
    markets (``SHIBUSDT`` <-> ``1000SHIBUSDT``, with ``multiplier`` 1000).
    ``skipped`` lists (symbol, reason) for excluded symbols worth reporting.
    """

    spot: list[str] = field(default_factory=list)
    perp: list[str] = field(default_factory=list)
    quote_volume: dict[tuple[str, str], float] = field(default_factory=dict)
    spot_to_perp: dict[str, str] = field(default_factory=dict)
    perp_to_spot: dict[str, str] = field(default_factory=dict)
    multiplier: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def symbols(self, market: str) -> list[str]:
        return list(self.spot if market == SPOT else self.perp)


@dataclass
class BatchResult:
    """Outcome of running one task per symbol: values, and per-symbol failures."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)


# --------------------------------------------------------------------------- client
class BinanceClient:
    """Thread-safe, paced, retrying public-data client for spot and USDT-M perps.

    Example::

        client = BinanceClient(ClientConfig(spot_url="http://127.0.0.1:8080",
                                            futures_url="http://127.0.0.1:8080"))
        uni = client.universe(top=50)
        df = client.klines("BTCUSDT", "spot", start_ms, None)
    """

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        c = self.config
        self.limiters = {
            SPOT: WeightLimiter(c.spot_weight_limit or 6000, c.weight_window, c.weight_safety, "spot"),
            PERP: WeightLimiter(c.futures_weight_limit or 2400, c.weight_window, c.weight_safety, "futures"),
        }
        self._funding_limiter = WeightLimiter(c.funding_calls, c.funding_window, c.weight_safety, "fundingRate")
        self._local = threading.local()
        self._rng = random.Random(c.seed)
        self._lock = threading.Lock()
        self._banned: BannedError | None = None
        self._clock_offset_ms = 0
        self.requests = 0
        self.retries = 0

    # ------------------------------------------------------------- transport
    def _binance(self) -> Client:
        """This thread's python-binance client (sessions are not shared)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = Client(api_key=None, api_secret=None, ping=False,
                            requests_params={"timeout": self.config.timeout})
            client.API_URL = f"{self.config.spot_url}/api"
            client.FUTURES_URL = f"{self.config.futures_url}/fapi"
            self._local.client = client
        return client

    def _host(self, market: str) -> str:
        return self.config.spot_url if market == SPOT else self.config.futures_url

    def call(self, market: str, endpoint: str, method: str, weight: int | None = None,
             symbol: str | None = None, **params: Any) -> Any:
        """Call python-binance ``method`` with retries, pacing and error mapping.

        Args:
            market: ``"spot"`` or ``"perp"`` (selects the host and weight budget).
            endpoint: path after the version prefix, used for weights and messages.
            method: name of the python-binance ``Client`` method.
            weight: request weight (default: the documented one for ``endpoint``).
            symbol: the symbol, for error messages.
        """
        table = _SPOT_WEIGHTS if market == SPOT else _FUT_WEIGHTS
        weight = table.get(endpoint, 1) if weight is None else weight
        limiter = self.limiters[market]
        what = f"{market} {endpoint}" + (f" {symbol}" if symbol else "")
        if symbol is not None:
            params["symbol"] = symbol
        attempt = 0
        while True:
            if self._banned is not None:
                raise self._banned
            if endpoint == "fundingRate":
                self._funding_limiter.acquire(1)
            limiter.acquire(weight)
            with self._lock:
                self.requests += 1
            client = self._binance()
            try:
                result = getattr(client, method)(**params)
                limiter.observe(_used_weight_header(getattr(client.response, "headers", None)))
                return result
            except BinanceAPIException as exc:
                limiter.observe(_used_weight_header(getattr(exc.response, "headers", None)))
                delay = self._api_error_delay(exc, market, what, attempt)
            except BinanceRequestException as exc:  # 2xx with a body that is not JSON
                delay = self._retry_delay(attempt, what, f"malformed response ({str(exc)[:80]})")
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema) as exc:
                raise BinanceError(f"bad URL {self._host(market)!r}: {exc}") from exc
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                kind = "timeout" if isinstance(exc, requests.exceptions.Timeout) else "connection error"
                delay = self._retry_delay(attempt, what, f"{kind} talking to {self._host(market)}",
                                          final=f"cannot reach {self._host(market)} ({kind})")
            attempt += 1
            with self._lock:
                self.retries += 1
            time.sleep(delay)

    def _retry_delay(self, attempt: int, what: str, reason: str, final: str | None = None) -> float:
        """Backoff before retry ``attempt + 1``, or raise when retries are spent."""
        if attempt >= self.config.max_retries:
            raise BinanceError(f"{what}: {final or reason} after {attempt + 1} attempts")
        cap = min(self.config.backoff_cap, self.config.backoff_base * 2 ** attempt)
        with self._lock:
            delay = self._rng.uniform(0, cap)  # full jitter: spreads retries of many threads
        log.debug("%s: %s; retry %d in %.2fs", what, reason, attempt + 1, delay)
        return delay

    def _api_error_delay(self, exc: BinanceAPIException, market: str, what: str, attempt: int) -> float:
        status = exc.status_code
        headers = getattr(exc.response, "headers", {}) or {}
        if status == 418:
            retry_after = headers.get("Retry-After")
            self._banned = BannedError(
                f"HTTP 418 from {self._host(market)}: IP banned by Binance"
                + (f" for {retry_after} s" if retry_after else "") + "; stopped all requests")
            raise self._banned
        if status == 429:
            wait = _parse_retry_after(headers.get("Retry-After"))
            if wait > self.config.max_retry_after:
                raise BinanceError(f"{what}: rate limited (429) for {wait:.0f} s; giving up")
            if attempt >= self.config.max_retries:
                raise BinanceError(f"{what}: still rate limited (429) after {attempt + 1} attempts")
            self.limiters[market].pause(wait)
            log.warning("%s: HTTP 429, pausing %s for %.1f s", what, market, wait)
            return wait
        if exc.code == -1121:
            raise UnknownSymbolError(f"{what}: unknown symbol (Binance -1121)") from None
        if status >= 500 or status == 408:
            return self._retry_delay(attempt, what, f"HTTP {status}")
        raise BinanceError(f"{what}: HTTP {status}, Binance code {exc.code}: {exc.message}")

    # ------------------------------------------------------------- concurrency
    def map_symbols(self, fn: Callable[[str], T], symbols: Iterable[str],
                    progress: Callable[[str], None] | None = None) -> BatchResult:
        """Run ``fn(symbol)`` on a bounded thread pool.

        Unknown symbols and other :class:`BinanceError`/:class:`DataError`
        failures are collected per symbol; a ban stops everything.
        """
        out = BatchResult()
        symbols = list(symbols)
        with ThreadPoolExecutor(max_workers=self.config.max_workers) as pool:
            futures = {pool.submit(fn, s): s for s in symbols}
            try:
                for fut in as_completed(futures):
                    sym = futures[fut]
                    try:
                        out.values[sym] = fut.result()
                    except BannedError:
                        raise
                    except (BinanceError, DataError) as exc:
                        out.errors[sym] = exc
                    if progress:
                        progress(sym)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return out

    # ------------------------------------------------------------- endpoints
    def server_time_ms(self, market: str = SPOT) -> int:
        """Server time in ms (the clock that decides which candle is still open)."""
        if market == SPOT:
            data = self.call(SPOT, "time", "get_server_time")
        else:
            data = self.call(PERP, "time", "futures_time")
        server = int(_require(data, dict, "time")["serverTime"])
        self._clock_offset_ms = server - int(time.time() * 1000)
        return server

    def exchange_info(self, market: str) -> dict:
        """exchangeInfo; also adopts its REQUEST_WEIGHT limit for pacing."""
        if market == SPOT:
            info = self.call(SPOT, "exchangeInfo", "get_exchange_info")
        else:
            info = self.call(PERP, "exchangeInfo", "futures_exchange_info")
        info = _require(info, dict, f"{market} exchangeInfo")
        configured = self.config.spot_weight_limit if market == SPOT else self.config.futures_weight_limit
        if configured is None:
            for rl in info.get("rateLimits", []):
                if (rl.get("rateLimitType") == "REQUEST_WEIGHT" and rl.get("interval") == "MINUTE"
                        and rl.get("intervalNum") == 1 and rl.get("limit")):
                    self.limiters[market].set_limit(int(rl["limit"]))
        return info

    def tickers(self, market: str) -> list[dict]:
        """24 h rolling tickers of all symbols."""
        if market == SPOT:
            data = self.call(SPOT, "ticker/24hr", "get_ticker")
        else:
            data = self.call(PERP, "ticker/24hr", "futures_ticker")
        return _require(data, list, f"{market} ticker/24hr")

    def klines(self, symbol: str, market: str, start_ms: int, end_ms: int | None = None,
               now_ms: int | None = None) -> pd.DataFrame:
        """Closed 1 h candles with ``start_ms <= open_time <= end_ms``, paginated.

        The still-open candle (``open_time + 1h > server time``) is dropped.
        ``now_ms`` is the server time (fetched when None). Returns a frame in
        :data:`~gnn_market.store.KLINE_COLUMNS` indexed by UTC ``open_time``.
        """
        now_ms = self.server_time_ms(market) if now_ms is None else now_ms
        last_closed = (now_ms // HOUR_MS - 1) * HOUR_MS
        end_ms = last_closed if end_ms is None else min(end_ms, last_closed)
        page = self.config.spot_kline_page if market == SPOT else self.config.futures_kline_page
        rows: list[list] = []
        t = start_ms
        while t <= end_ms:
            limit = int(min(page, (end_ms - t) // HOUR_MS + 1))
            batch = self._klines_page(symbol, market, t, end_ms, limit)
            rows.extend(batch)
            if len(batch) < limit:
                break
            t = int(batch[-1][0]) + HOUR_MS
        return klines_frame(rows, symbol, now_ms)

    def _klines_page(self, symbol: str, market: str, start: int, end: int, limit: int) -> list:
        params = dict(symbol=symbol, interval="1h", startTime=start, endTime=end, limit=limit)
        if market == SPOT:
            data = self.call(SPOT, "klines", "get_klines", symbol=symbol, **_p(params))
        else:
            weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
            data = self.call(PERP, "klines", "futures_klines", weight=weight, symbol=symbol, **_p(params))
        return _require(data, list, f"{market} klines {symbol}")

    def book(self, symbol: str, market: str, levels: int = 20,
             stamp_tolerance_s: float = 300.0) -> pd.DataFrame:
        """Top-``levels`` order book as one row of :data:`BOOK_COLUMNS`.

        ``snapshot_time`` is the receive time on the server's clock (local
        clock + the offset measured by the last :meth:`server_time_ms`; spot
        depth carries no timestamp), floored to the hour when it falls within
        ``stamp_tolerance_s`` after an hour (the hourly job's snapshot "at the
        close of hour t"), else floored to the second.
        """
        if market == SPOT:
            data = self.call(SPOT, "depth", "get_order_book", symbol=symbol, limit=levels)
        else:
            data = self.call(PERP, "depth", "futures_order_book", symbol=symbol, limit=levels)
        return book_frame(_require(data, dict, f"{market} depth {symbol}"), symbol,
                          stamp_ms(self.server_now_ms(), stamp_tolerance_s))

    def server_now_ms(self) -> int:
        """Local clock corrected by the last measured server offset."""
        return int(time.time() * 1000) + self._clock_offset_ms

    def funding_history(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        """Settled funding of perp ``symbol`` from ``start_ms`` (inclusive), paginated."""
        rows: list[dict] = []
        t = start_ms
        while True:
            params = _p(dict(startTime=t, endTime=end_ms, limit=1000))
            batch = _require(self.call(PERP, "fundingRate", "futures_funding_rate", symbol=symbol,
                                       **params), list, f"fundingRate {symbol}")
            rows.extend(batch)
            if len(batch) < 1000:
                break
            t = int(batch[-1]["fundingTime"]) + 1
        return funding_frame(rows)

    def current_funding(self, symbol: str | None = None) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Live funding rate (premiumIndex) as a row at ``nextFundingTime``.

        This is the running estimate for the next settlement; the settled value
        from :meth:`funding_history` replaces it in the store (same index).
        With ``symbol=None`` one request (weight 10) returns all perps.
        """
        if symbol is not None:
            data = self.call(PERP, "premiumIndex", "futures_mark_price", symbol=symbol)
            return premium_frame([_require(data, dict, f"premiumIndex {symbol}")])
        data = _require(self.call(PERP, "premiumIndex", "futures_mark_price", weight=10), list, "premiumIndex")
        return {d["symbol"]: premium_frame([d]) for d in data if isinstance(d, dict) and "symbol" in d}

    # ------------------------------------------------------------- universe
    def universe(self, market: str = "both", top: int | None = None,
                 min_quote_volume: float | None = None) -> Universe:
        """Tradable USDT pairs ranked by 24 h quote volume (see module docs for rules)."""
        uni = Universe()
        spot_info = self.exchange_info(SPOT)
        spot_ok, spot_bases = _spot_candidates(spot_info, uni.skipped)
        perp_ok: dict[str, str] = {}
        if market in (PERP, "both"):
            perp_ok = _perp_candidates(self.exchange_info(PERP), uni.skipped)
        markets = [SPOT, PERP] if market == "both" else [market]
        for m in markets:
            allowed = spot_ok if m == SPOT else perp_ok
            vols = {}
            for t in self.tickers(m):
                sym = t.get("symbol")
                if sym in allowed:
                    vols[sym] = _to_float(t.get("quoteVolume"))
            ranked = sorted(allowed, key=lambda s: (-vols.get(s, 0.0), s))
            if min_quote_volume is not None:
                ranked = [s for s in ranked if vols.get(s, 0.0) >= min_quote_volume]
            if top is not None:
                ranked = ranked[:top]
            for s in ranked:
                uni.quote_volume[(m, s)] = vols.get(s, 0.0)
            if m == SPOT:
                uni.spot = ranked
            else:
                uni.perp = ranked
        for perp_sym, perp_base in perp_ok.items():
            spot_base, mult = map_perp_base(perp_base, spot_bases)
            if spot_base is not None and f"{spot_base}USDT" in spot_ok:
                uni.perp_to_spot[perp_sym] = f"{spot_base}USDT"
                uni.spot_to_perp[f"{spot_base}USDT"] = perp_sym
                uni.multiplier[perp_sym] = mult
        return uni


# --------------------------------------------------------------------------- universe rules
def _spot_candidates(info: dict, skipped: list[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """TRADING USDT spot pairs minus stablecoins, leveraged tokens and invalid names."""
    symbols = [s for s in info.get("symbols", []) if isinstance(s, dict)]
    bases = {s.get("baseAsset") for s in symbols if s.get("status") == "TRADING"}
    out: dict[str, str] = {}
    for s in symbols:
        sym, base = s.get("symbol", ""), s.get("baseAsset", "")
        if s.get("status") != "TRADING" or s.get("quoteAsset") != "USDT":
            continue
        if not is_valid_symbol(sym):
            log.warning("skipping spot symbol %r: not ^[A-Z0-9]{2,30}$", sym)
            skipped.append((sym, "invalid name"))
            continue
        if base in STABLE_BASES:
            continue
        perms = set(s.get("permissions") or []) | {p for ps in s.get("permissionSets") or [] for p in ps}
        if "LEVERAGED" in perms or _is_leveraged_name(base, bases):
            continue
        out[sym] = base
    return out, {b for b in bases if b}


def _is_leveraged_name(base: str, bases: set[str]) -> bool:
    return any(base.endswith(sfx) and base[: -len(sfx)] in bases for sfx in LEVERAGED_SUFFIXES)


def _perp_candidates(info: dict, skipped: list[tuple[str, str]]) -> dict[str, str]:
    """TRADING USDT-M PERPETUAL contracts minus stablecoin and index contracts."""
    out: dict[str, str] = {}
    for s in info.get("symbols", []):
        if not isinstance(s, dict):
            continue
        sym, base = s.get("symbol", ""), s.get("baseAsset", "")
        if (s.get("contractType") != "PERPETUAL" or s.get("status") != "TRADING"
                or s.get("quoteAsset") != "USDT"):
            continue
        if not is_valid_symbol(sym):
            log.warning("skipping perp symbol %r: not ^[A-Z0-9]{2,30}$", sym)
            skipped.append((sym, "invalid name"))
            continue
        if sym in INDEX_PERPS or base in STABLE_BASES:
            continue
        out[sym] = base
    return out


def map_perp_base(perp_base: str, spot_bases: set[str]) -> tuple[str | None, int]:
    """Spot base asset of a perp base, and the perp's unit multiplier.

    Exact match first (``1INCH`` stays ``1INCH``), then the override table,
    then a multiplier prefix whose remainder is a listed spot base
    (``1000SHIB`` -> ``SHIB``, 1000). ``(None, 1)`` when there is no spot twin.
    """
    if perp_base in spot_bases:
        return perp_base, 1
    if perp_base in PERP_BASE_OVERRIDES and PERP_BASE_OVERRIDES[perp_base] in spot_bases:
        return PERP_BASE_OVERRIDES[perp_base], 1
    for prefix, mult in PERP_MULTIPLIERS.items():
        rest = perp_base[len(prefix):]
        if perp_base.startswith(prefix) and rest in spot_bases:
            return rest, mult
    return None, 1


# --------------------------------------------------------------------------- parsing
def klines_frame(rows: list, symbol: str = "", now_ms: int | None = None) -> pd.DataFrame:
    """Binance kline arrays -> store kline schema (closed, on-the-hour candles only)."""
    cols = list(KLINE_COLUMNS)
    if not rows:
        return _empty(cols, "open_time")
    try:
        arr = [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                float(r[7]), int(r[8]), float(r[9]), float(r[10])) for r in rows]
    except (TypeError, ValueError, IndexError) as exc:
        raise BinanceError(f"klines {symbol}: unexpected row shape: {exc}") from exc
    open_ms = np.array([a[0] for a in arr], dtype="int64")
    keep = open_ms % HOUR_MS == 0
    if not keep.all():
        log.warning("klines %s: dropped %d candles not on the hour", symbol, int((~keep).sum()))
    if now_ms is not None:
        keep &= open_ms + HOUR_MS <= now_ms  # still open: not final yet
    df = pd.DataFrame([a[1:] for a, k in zip(arr, keep) if k], columns=cols,
                      index=ms_to_utc_index(open_ms[keep], "open_time"))
    df["trades"] = df["trades"].astype("Int64")
    df = df[~df.index.duplicated(keep="last")].sort_index()
    return df


def book_frame(data: dict, symbol: str, snapshot_ms: int) -> pd.DataFrame:
    """A depth answer -> one row of :data:`BOOK_COLUMNS` at ``snapshot_ms``."""
    try:
        bids = np.array([[float(p), float(q)] for p, q, *_ in data.get("bids", [])], dtype="float64")
        asks = np.array([[float(p), float(q)] for p, q, *_ in data.get("asks", [])], dtype="float64")
    except (TypeError, ValueError) as exc:
        raise BinanceError(f"depth {symbol}: unexpected level shape: {exc}") from exc
    if len(bids) == 0 or len(asks) == 0:
        raise DataError(f"depth {symbol}: empty order book")
    row = {
        "best_bid": bids[0, 0], "best_ask": asks[0, 0],
        "best_bid_qty": bids[0, 1], "best_ask_qty": asks[0, 1],
        "bid_qty": bids[:, 1].sum(), "ask_qty": asks[:, 1].sum(),
        "bid_notional": float((bids[:, 0] * bids[:, 1]).sum()),
        "ask_notional": float((asks[:, 0] * asks[:, 1]).sum()),
        "spread": asks[0, 0] - bids[0, 0],
        "levels": int(min(len(bids), len(asks))),
    }
    columns = {c: np.array([row[c]], dtype=t) for c, t in BOOK_COLUMNS.items()}
    return pd.DataFrame(columns, index=ms_to_utc_index([snapshot_ms], "snapshot_time"))


def stamp_ms(received_ms: int, tolerance_s: float = 300.0) -> int:
    """Snapshot stamp: floored to the hour within ``tolerance_s`` after it, else to the second."""
    hour = received_ms // HOUR_MS * HOUR_MS
    if received_ms - hour <= tolerance_s * 1000:
        return hour
    return received_ms // 1000 * 1000


def round_funding_time(ms: int) -> int:
    """Settlement times carry ms jitter (``08:00:00.011``): round to the minute."""
    return int(round(ms / 60_000)) * 60_000


def funding_frame(rows: list[dict]) -> pd.DataFrame:
    """fundingRate rows -> :data:`FUNDING_COLUMNS` indexed by (rounded) ``funding_time``."""
    if not rows:
        return _empty(list(FUNDING_COLUMNS), "funding_time")
    try:
        times = [round_funding_time(int(r["fundingTime"])) for r in rows]
        rates = [float(r["fundingRate"]) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise BinanceError(f"fundingRate: unexpected row shape: {exc}") from exc
    marks = [_to_float(r.get("markPrice"), np.nan) for r in rows]
    df = pd.DataFrame({"funding_rate": rates, "mark_price": marks},
                      index=ms_to_utc_index(times, "funding_time"))
    return df[~df.index.duplicated(keep="last")].sort_index()


def premium_frame(rows: list[dict]) -> pd.DataFrame:
    """premiumIndex objects -> funding rows at ``nextFundingTime``."""
    out = [{"fundingTime": r["nextFundingTime"], "fundingRate": r["lastFundingRate"],
            "markPrice": r.get("markPrice")} for r in rows
           if r.get("nextFundingTime") and r.get("lastFundingRate") not in (None, "")]
    return funding_frame(out)


def _empty(cols: list[str], index: str) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    df.index = pd.DatetimeIndex([], tz="UTC", name=index).as_unit("ns")
    return df


def _require(data: Any, kind: type, what: str) -> Any:
    if not isinstance(data, kind):
        raise BinanceError(f"{what}: unexpected response type {type(data).__name__}")
    return data


def _p(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None and k != "symbol"}


def _to_float(value: Any, default: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _parse_retry_after(value: Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0
