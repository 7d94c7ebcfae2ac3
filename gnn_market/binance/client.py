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
* **Weight pacing** per host (:mod:`.rate_limit`): every request reserves its
  documented weight (the tables below) before it is sent. Limits come from
  ``exchangeInfo.rateLimits`` when available (defaults: spot 6000, futures
  2400 per minute). ``fundingRate`` has its own budget (500 calls / 5 min).
* **-1121** (invalid symbol) raises :class:`UnknownSymbolError`, which callers
  report and skip.
* Failures that may pass (retries spent on timeouts, connection errors, 5xx,
  429) raise :class:`OutageError` and count in ``outages``; other HTTP errors
  (a 404 from a host that is not the Binance API) raise a plain
  :class:`BinanceError`, a bad URL too.

Answers become frames in :mod:`.parsers`; the ``*_rows``/``*_payload`` methods return
them decoded but unparsed, for a refresh that parses in its write processes
(:mod:`gnn_market.refresh_writes`). The universe rules and ranking live
in :mod:`.universe`. No API key is ever configured or logged.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

import pandas as pd
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from ..errors import BannedError, BinanceError, DataError, OutageError, UnknownSymbolError
from ..timeutil import HOUR_MS
from .config import ClientConfig  # defined there (light, for the data CLI's --help); still importable from here
from .parsers import book_frame, funding_frame, klines_frame, premium_frame, require, snapshot_ms
from .rate_limit import WeightLimiter, used_weight_header
from .universe import PERP, SPOT, Universe, build_universe

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds one premiumIndex answer (every perp's live funding) serves :meth:`BinanceClient.funding`.
LIVE_FUNDING_TTL = 60.0

# Documented request weights (reference §3.1).
_SPOT_WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 20, "ticker/24hr": 80, "klines": 2, "depth": 5}
_FUT_WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 1, "ticker/24hr": 40, "klines": 1, "depth": 2,
                "premiumIndex": 1, "fundingRate": 0}


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
        self._pass_ms: int | None = None  # the server clock last read by now_ms() (MarketSource use)
        self._live: tuple[float, dict[str, pd.DataFrame]] | None = None  # (monotonic read time, live funding)
        self._live_lock = threading.Lock()  # one premiumIndex request per pass, whatever the thread count
        self.requests = 0
        self.retries = 0
        self.outages = 0  # calls that gave up on an outage (OutageError), e.g. inside a per-symbol batch

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
                limiter.observe(used_weight_header(getattr(client.response, "headers", None)))
                return result
            except BinanceAPIException as exc:
                limiter.observe(used_weight_header(getattr(exc.response, "headers", None)))
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

    def _outage(self, message: str) -> OutageError:
        """Count a call given up on an outage (callers tell outages from configuration errors by it)."""
        with self._lock:
            self.outages += 1
        return OutageError(message)

    def _retry_delay(self, attempt: int, what: str, reason: str, final: str | None = None) -> float:
        """Backoff before retry ``attempt + 1``, or raise :class:`OutageError` when retries are spent."""
        if attempt >= self.config.max_retries:
            raise self._outage(f"{what}: {final or reason} after {attempt + 1} attempts")
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
                raise self._outage(f"{what}: rate limited (429) for {wait:.0f} s; giving up")
            if attempt >= self.config.max_retries:
                raise self._outage(f"{what}: still rate limited (429) after {attempt + 1} attempts")
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
        server = int(require(data, dict, "time")["serverTime"])
        self._clock_offset_ms = server - int(time.time() * 1000)
        return server

    def exchange_info(self, market: str) -> dict:
        """exchangeInfo; also adopts its REQUEST_WEIGHT limit for pacing."""
        if market == SPOT:
            info = self.call(SPOT, "exchangeInfo", "get_exchange_info")
        else:
            info = self.call(PERP, "exchangeInfo", "futures_exchange_info")
        info = require(info, dict, f"{market} exchangeInfo")
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
        return require(data, list, f"{market} ticker/24hr")

    def klines(self, symbol: str, market: str, start_ms: int, end_ms: int | None = None,
               now_ms: int | None = None) -> pd.DataFrame:
        """Closed 1 h candles with ``start_ms <= open_time <= end_ms``, paginated.

        The still-open candle (``open_time + 1h > server time``) is dropped.
        ``now_ms`` is the server time (fetched when None). Returns a frame in
        :data:`~gnn_market.store.KLINE_COLUMNS` indexed by UTC ``open_time``.
        """
        if now_ms is None:  # a range that closed before the clock now_ms() read needs no new reading
            known = self._pass_ms  # spot and futures share one clock (the reference path always used one)
            closed = known is not None and end_ms is not None and end_ms + HOUR_MS <= known
            now_ms = known if closed else self.server_time_ms(market)
        return klines_frame(self.klines_rows(symbol, market, start_ms, end_ms, now_ms), symbol, now_ms)

    def klines_rows(self, symbol: str, market: str, start_ms: int, end_ms: int | None, now_ms: int) -> list[list]:
        """The raw kline arrays :meth:`klines` parses (every page, in order), for a parser in another process.

        ``now_ms``: the server time that decides the last closed candle (no request is made for it).
        """
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
        return rows

    def _klines_page(self, symbol: str, market: str, start: int, end: int, limit: int) -> list:
        params = dict(symbol=symbol, interval="1h", startTime=start, endTime=end, limit=limit)
        if market == SPOT:
            data = self.call(SPOT, "klines", "get_klines", symbol=symbol, **_p(params))
        else:
            weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
            data = self.call(PERP, "klines", "futures_klines", weight=weight, symbol=symbol, **_p(params))
        return require(data, list, f"{market} klines {symbol}")

    def book(self, symbol: str, market: str, levels: int = 20) -> pd.DataFrame:
        """Top-``levels`` order book as one row of :data:`BOOK_COLUMNS`.

        ``snapshot_time`` is the true capture time, never rounded: the
        futures answer's event time ``E``, or for spot (no time in the answer)
        the receive time on the server's clock (local clock + the offset
        measured by the last :meth:`server_time_ms`, good to about one round trip).
        """
        data, received = self.book_payload(symbol, market, levels)
        return book_frame(data, symbol, snapshot_ms(data, received))

    def book_payload(self, symbol: str, market: str, levels: int = 20) -> tuple[dict, int]:
        """The depth answer :meth:`book` parses and its receive time on the server's clock (ms)."""
        if market == SPOT:
            data = self.call(SPOT, "depth", "get_order_book", symbol=symbol, limit=levels)
        else:
            data = self.call(PERP, "depth", "futures_order_book", symbol=symbol, limit=levels)
        received = self.server_now_ms()
        return require(data, dict, f"{market} depth {symbol}"), received

    def server_now_ms(self) -> int:
        """Local clock corrected by the last measured server offset."""
        return int(time.time() * 1000) + self._clock_offset_ms

    def funding_history(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        """Settled funding of perp ``symbol`` from ``start_ms`` (inclusive), paginated."""
        return funding_frame(self.funding_rows(symbol, start_ms, end_ms))

    def funding_rows(self, symbol: str, start_ms: int, end_ms: int | None = None) -> list[dict]:
        """The raw fundingRate objects :meth:`funding_history` parses (every page, in order)."""
        rows: list[dict] = []
        t = start_ms
        while True:
            params = _p(dict(startTime=t, endTime=end_ms, limit=1000))
            batch = require(self.call(PERP, "fundingRate", "futures_funding_rate", symbol=symbol,
                                       **params), list, f"fundingRate {symbol}")
            rows.extend(batch)
            if len(batch) < 1000:
                break
            t = int(batch[-1]["fundingTime"]) + 1
        return rows

    def current_funding(self, symbol: str | None = None) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Live funding rate (premiumIndex) as a row at ``nextFundingTime``.

        This is the running estimate for the next settlement; the settled value
        from :meth:`funding_history` replaces it in the store (same index).
        With ``symbol=None`` one request (weight 10) returns all perps.
        """
        if symbol is not None:
            data = self.call(PERP, "premiumIndex", "futures_mark_price", symbol=symbol)
            return premium_frame([require(data, dict, f"premiumIndex {symbol}")])
        return {sym: premium_frame([d]) for sym, d in self.premium_rows().items()}

    def premium_rows(self) -> dict[str, dict]:
        """Every perp's raw premiumIndex object by symbol (one request, weight 10); unparsed, see :meth:`current_funding`."""
        data = require(self.call(PERP, "premiumIndex", "futures_mark_price", weight=10), list, "premiumIndex")
        return {d["symbol"]: d for d in data if isinstance(d, dict) and "symbol" in d}

    # ------------------------------------------------------------- universe
    def universe(self, market: str = "both", top: int | None = None,
                 min_quote_volume: float | None = None) -> Universe:
        """Tradable USDT pairs ranked by 24 h quote volume (rules: :mod:`.universe`)."""
        return build_universe(self.exchange_info, self.tickers, market, top, min_quote_volume)

    # ------------------------------------------------------------- MarketSource
    # With :meth:`klines` and :meth:`book` above, these make the client a
    # :class:`gnn_market.market_source.MarketSource` (thin: the endpoints are above).
    def symbols(self, market: str) -> list[str]:
        """The universe of ``market`` (``"spot"``/``"perp"``), best first by 24 h quote volume."""
        return self.universe(market).symbols(market)

    def funding(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        """Settled funding from ``start_ms`` to ``end_ms``; with ``end_ms`` None also the live estimate.

        The estimate of the next settlement (premiumIndex, stamped at ``nextFundingTime``) is the
        last row; the settled value replaces it in the store later (same index). A ``start_ms`` after
        the server's time (a stored estimate still ahead) asks no history: nothing settled there yet.
        """
        ahead = start_ms > self.server_now_ms()
        settled = funding_frame([]) if ahead else self.funding_history(symbol, start_ms, end_ms)
        if end_ms is not None:
            return settled
        frames = [f for f in (settled, self._live_funding(symbol)) if len(f)]
        if not frames:
            return settled
        both = pd.concat(frames)
        return both[~both.index.duplicated(keep="last")]

    def now_ms(self, market: str) -> int:
        """The server's clock of ``market`` (one request): the time that decides which candle is closed.

        It starts a pass: :meth:`klines` of hours closed before it asks the clock no more, and the
        live funding estimates are read again (once, for every perp) by the next :meth:`funding`.
        """
        with self._live_lock:
            self._live = None
        self._pass_ms = self.server_time_ms(market)
        return self._pass_ms

    def _live_funding(self, symbol: str) -> pd.DataFrame:
        """This perp's live funding row from one premiumIndex request for every perp (weight 10) per pass.

        The answer is reused until the next :meth:`now_ms`, for at most :data:`LIVE_FUNDING_TTL` seconds
        (a caller that never starts a pass still sees estimates that move).
        """
        with self._live_lock:  # held during the request: the other threads wait for its answer
            if self._live is None or time.monotonic() - self._live[0] > LIVE_FUNDING_TTL:
                self._live = (time.monotonic(), self.current_funding())
            return self._live[1].get(symbol, funding_frame([]))


# --------------------------------------------------------------------------- helpers
def _p(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None and k != "symbol"}


def _parse_retry_after(value: Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0
