"""A local Binance-compatible HTTP server for tests and benchmarks.

Serves the public endpoints the collector uses, with the real response shapes
(strings for prices, ints for times), deterministic generated data and
used-weight headers:

    /api/v3/{ping,time,exchangeInfo,ticker/24hr,klines,depth}
    /fapi/v1/{ping,time,exchangeInfo,ticker/24hr,klines,depth,fundingRate,premiumIndex}

Faults are injected by rules (``server.add_fault("klines", "500", times=2)``)
or periodically (``server.fault_every = 4`` cycles through ``fault_cycle``).
Kinds: ``429`` (with Retry-After), ``418``, ``500``, ``502`` (HTML body),
``malformed`` (truncated JSON, HTTP 200), ``slow`` (answers after
``slow_seconds``), ``drop`` (closes the connection without answering).
Unknown symbols get ``{"code": -1121, "msg": "Invalid symbol."}``.

Weight is counted per host family (``spot`` = /api, ``perp`` = /fapi) in
fixed windows of ``window_s`` seconds of the server's wall clock, for every
request received (like Binance); requests over the limit get 429.
"""
from __future__ import annotations

import json
import math
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOUR_MS = 3_600_000
FUNDING_MS = 8 * HOUR_MS
PERPETUAL_DELIVERY = 4133404800000


@dataclass
class FakeSymbol:
    """One listed symbol. ``market`` is ``"spot"`` or ``"perp"``."""

    symbol: str
    base: str
    market: str = "spot"
    quote: str = "USDT"
    status: str = "TRADING"
    contract_type: str = "PERPETUAL"
    permission_sets: list[list[str]] = field(default_factory=lambda: [["SPOT", "MARGIN"]])
    quote_volume: float = 1e6
    price: float = 100.0
    listed_hours: int = 24 * 120  # history length before "now"
    gaps: tuple[int, ...] = ()  # open times (ms) with no candle (maintenance)


def default_symbols() -> list[FakeSymbol]:
    """A small exchange exercising every universe rule."""
    s = [
        FakeSymbol("BTCUSDT", "BTC", quote_volume=9e9, price=60000),
        FakeSymbol("ETHUSDT", "ETH", quote_volume=5e9, price=3000),
        FakeSymbol("SOLUSDT", "SOL", quote_volume=2e9, price=150),
        FakeSymbol("XRPUSDT", "XRP", quote_volume=1e9, price=0.6),
        FakeSymbol("SHIBUSDT", "SHIB", quote_volume=5e8, price=0.00002),
        FakeSymbol("JUPUSDT", "JUP", quote_volume=3e8, price=1.0),  # ends in UP, not leveraged
        FakeSymbol("NEWUSDT", "NEW", quote_volume=2e8, price=5.0, listed_hours=30),
        FakeSymbol("USDCUSDT", "USDC", quote_volume=8e9, price=1.0),  # stablecoin
        FakeSymbol("EURUSDT", "EUR", quote_volume=1e8, price=1.1),  # fiat
        FakeSymbol("BTCUPUSDT", "BTCUP", quote_volume=7e7, permission_sets=[["LEVERAGED"]]),
        FakeSymbol("ETHDOWNUSDT", "ETHDOWN", quote_volume=6e7),  # leveraged by name
        FakeSymbol("LUNAUSDT", "LUNA", status="BREAK", quote_volume=9e7),
        FakeSymbol("ETHBTC", "ETH", quote="BTC", quote_volume=9e9, price=0.05),
        FakeSymbol("币安人生USDT", "币安人生", quote_volume=4e9, price=0.1),  # non-ASCII
        FakeSymbol("BTCUSDT", "BTC", market="perp", quote_volume=2e10, price=60000),
        FakeSymbol("ETHUSDT", "ETH", market="perp", quote_volume=1e10, price=3000),
        FakeSymbol("SOLUSDT", "SOL", market="perp", quote_volume=3e9, price=150),
        FakeSymbol("1000SHIBUSDT", "1000SHIB", market="perp", quote_volume=6e8, price=0.02),
        FakeSymbol("HYPEUSDT", "HYPE", market="perp", quote_volume=4e8, price=30),  # perp only
        FakeSymbol("BTCDOMUSDT", "BTCDOM", market="perp", quote_volume=5e7, price=1500),  # index
        FakeSymbol("BTCUSDT_240927", "BTC", market="perp", contract_type="CURRENT_QUARTER",
                   quote_volume=3e8, price=61000),
        FakeSymbol("TSLAUSDT", "TSLA", market="perp", contract_type="TRADIFI_PERPETUAL",
                   quote_volume=2e8, price=250),
        FakeSymbol("XYZUSDT", "XYZ", market="perp", status="SETTLING", quote_volume=1e8),
        FakeSymbol("我踏马来了USDT", "我踏马来了", market="perp", quote_volume=5e9, price=0.01),
    ]
    return s


def many_symbols(n: int, listed_hours: int = 24 * 30) -> list[FakeSymbol]:
    """``n`` plain coins listed on both spot and perp (for benchmarks)."""
    out = []
    for i in range(n):
        name = "C" + _letters(i)
        vol = 1e9 / (i + 1)
        out.append(FakeSymbol(f"{name}USDT", name, quote_volume=vol, price=1 + i, listed_hours=listed_hours))
        out.append(FakeSymbol(f"{name}USDT", name, market="perp", quote_volume=vol * 2, price=1 + i,
                              listed_hours=listed_hours))
    return out


def _letters(i: int) -> str:
    s = ""
    for _ in range(3):
        s = chr(ord("A") + i % 26) + s
        i //= 26
    return s


@dataclass
class Fault:
    kind: str
    endpoint: str | None = None  # substring of the path, None = any
    symbol: str | None = None
    times: int = 1


class FakeBinance:
    """The server. Use as a context manager or call :meth:`start`/:meth:`stop`.

    Args:
        symbols: the listed symbols (default :func:`default_symbols`).
        now_ms: fixed server clock in ms (None = real time). Default: an hour
            plus 30 s, so a "just after the close" snapshot is deterministic.
        spot_limit / perp_limit: REQUEST_WEIGHT per window (also reported in exchangeInfo).
        window_s: weight window length in seconds (Binance: 60).
        latency_s: added delay per request.
    """

    def __init__(self, symbols: list[FakeSymbol] | None = None, now_ms: int | None = 1_709_294_430_000,
                 spot_limit: int = 6000, perp_limit: int = 2400, window_s: float = 60.0,
                 latency_s: float = 0.0, retry_after_s: int = 0, slow_seconds: float = 1.0) -> None:
        self.symbols = symbols if symbols is not None else default_symbols()
        self.now_ms_fixed = now_ms
        self.limits = {"spot": spot_limit, "perp": perp_limit}
        self.window_s = window_s
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.slow_seconds = slow_seconds
        self.faults: list[Fault] = []
        self.fault_every = 0
        self.fault_cycle = ["500", "malformed", "drop", "429", "502", "slow"]
        self.lock = threading.Lock()
        self.requests: list[tuple[float, str, str, int]] = []  # (time, family, path, status)
        self.weight: dict[str, dict[int, int]] = {"spot": defaultdict(int), "perp": defaultdict(int),
                                                  "stats": defaultdict(int)}
        self.faults_served: list[str] = []
        self._counter = 0
        self._by_market = {m: {s.symbol: s for s in self.symbols if s.market == m} for m in ("spot", "perp")}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "FakeBinance":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "FakeBinance":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ------------------------------------------------------------ controls
    def add_fault(self, kind: str, endpoint: str | None = None, symbol: str | None = None,
                  times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(kind, endpoint, symbol, times))

    def add_used_weight(self, family: str, weight: int) -> None:
        """Count ``weight`` in the current window, as if another client on the same IP had used it."""
        with self.lock:
            self.weight[family][int(time.time() // self.window_s)] += weight

    def now_ms(self) -> int:
        return self.now_ms_fixed if self.now_ms_fixed is not None else int(time.time() * 1000)

    def count(self, path_part: str = "", status: int | None = None) -> int:
        with self.lock:
            return sum(1 for _, _, p, st in self.requests
                       if path_part in p and (status is None or st == status))

    def peak_weight(self, family: str) -> int:
        with self.lock:
            return max(self.weight[family].values(), default=0)

    def stats(self) -> dict:
        """Counters for a server running in another process (``GET /_stats``)."""
        return {"requests": self.count("/api/") + self.count("/fapi/"), "http_429": self.count(status=429),
                "peak_weight_spot": self.peak_weight("spot"), "peak_weight_perp": self.peak_weight("perp"),
                "limit_spot": self.limits["spot"], "limit_perp": self.limits["perp"]}

    def _take_fault(self, path: str, symbol: str | None) -> str | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and (f.endpoint is None or f.endpoint in path) \
                        and (f.symbol is None or f.symbol == symbol):
                    f.times -= 1
                    return f.kind
            if self.fault_every and not path.endswith(("/ping", "/time", "exchangeInfo")):
                self._counter += 1
                if self._counter % self.fault_every == 0:
                    return self.fault_cycle[(self._counter // self.fault_every) % len(self.fault_cycle)]
        return None

    # ------------------------------------------------------------ data
    def _sym(self, market: str, symbol: str | None) -> FakeSymbol | None:
        return self._by_market[market].get(symbol or "")

    def _first_open(self, s: FakeSymbol) -> int:
        return (self.now_ms() // HOUR_MS - s.listed_hours) * HOUR_MS

    def kline(self, s: FakeSymbol, t: int) -> list:
        """Deterministic candle of ``s`` opening at ``t`` (ms)."""
        h = t // HOUR_MS
        seed = zlib.crc32(f"{s.market}{s.symbol}".encode()) % 1000
        mid = s.price * (1 + 0.05 * math.sin((h + seed) / 17.0) + 0.01 * math.sin((h * 7 + seed) / 3.0))
        nxt = s.price * (1 + 0.05 * math.sin((h + 1 + seed) / 17.0) + 0.01 * math.sin(((h + 1) * 7 + seed) / 3.0))
        o, c = mid, nxt
        hi, lo = max(o, c) * 1.002, min(o, c) * 0.998
        vol = 1000 + (h * 31 + seed) % 977
        trades = 100 + (h * 13 + seed) % 500
        return [t, _f(o), _f(hi), _f(lo), _f(c), _f(vol), t + HOUR_MS - 1, _f(vol * mid), trades,
                _f(vol * 0.5), _f(vol * 0.5 * mid), "0"]

    def klines(self, s: FakeSymbol, start: int | None, end: int | None, limit: int) -> list:
        now = self.now_ms()
        first = self._first_open(s)
        last = now // HOUR_MS * HOUR_MS  # the still-open candle is served, like Binance
        lo = first if start is None else max(first, -(-start // HOUR_MS) * HOUR_MS)
        hi = last if end is None else min(last, end // HOUR_MS * HOUR_MS)
        if lo > hi:
            return []
        gaps = set(s.gaps)
        if start is None and end is not None:  # most recent up to endTime
            times = [t for t in range(hi, lo - 1, -HOUR_MS) if t not in gaps][:limit][::-1]
        elif start is None:
            times = [t for t in range(hi, lo - 1, -HOUR_MS) if t not in gaps][:limit][::-1]
        else:
            times = []
            t = lo
            while t <= hi and len(times) < limit:
                if t not in gaps:
                    times.append(t)
                t += HOUR_MS
        return [self.kline(s, t) for t in times]

    def funding(self, s: FakeSymbol, start: int | None, end: int | None, limit: int) -> list:
        now = self.now_ms()
        first = -(-self._first_open(s) // FUNDING_MS) * FUNDING_MS
        lo = first if start is None else max(first, start - 999)  # jitter may sit just before start
        hi = now if end is None else min(now, end)
        out = []
        t = lo // FUNDING_MS * FUNDING_MS
        while t <= hi:
            ft = t + (t // FUNDING_MS) % 17  # ms jitter like the real API
            if t >= first and ft <= hi and (start is None or ft >= start):
                rate = 0.0001 * math.sin(t / FUNDING_MS / 5 + len(s.symbol))
                out.append({"symbol": s.symbol, "fundingRate": f"{rate:.8f}", "fundingTime": ft,
                            "markPrice": _f(float(self.kline(s, t)[1]))})
            t += FUNDING_MS
        if start is None:
            return out[-limit:]
        return out[:limit]

    def premium(self, s: FakeSymbol) -> dict:
        now = self.now_ms()
        nxt = (now // FUNDING_MS + 1) * FUNDING_MS
        mark = float(self.kline(s, now // HOUR_MS * HOUR_MS)[4])
        return {"symbol": s.symbol, "markPrice": _f(mark), "indexPrice": _f(mark * 0.9999),
                "estimatedSettlePrice": _f(mark), "lastFundingRate": "0.00012345",
                "nextFundingTime": nxt, "interestRate": "0.00010000", "time": now}

    def depth(self, s: FakeSymbol, limit: int) -> dict:
        mark = float(self.kline(s, self.now_ms() // HOUR_MS * HOUR_MS)[1])
        tick = mark * 1e-4
        bids = [[_f(mark - tick * (i + 1)), _f(1.0 + i)] for i in range(limit)]
        asks = [[_f(mark + tick * (i + 1)), _f(2.0 + i)] for i in range(limit)]
        out = {"lastUpdateId": 1027024 + self.now_ms() // 1000, "bids": bids, "asks": asks}
        if s.market == "perp":
            out = {"lastUpdateId": out["lastUpdateId"], "E": self.now_ms(), "T": self.now_ms(), **out}
        return out

    def exchange_info(self, market: str) -> dict:
        now = self.now_ms()
        if market == "spot":
            syms = [{"symbol": s.symbol, "status": s.status, "baseAsset": s.base, "baseAssetPrecision": 8,
                     "quoteAsset": s.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                     "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True,
                     "isMarginTradingAllowed": False, "filters": [], "permissions": [],
                     "permissionSets": s.permission_sets, "defaultSelfTradePreventionMode": "NONE",
                     "allowedSelfTradePreventionModes": ["NONE"]}
                    for s in self._by_market["spot"].values()]
            return {"timezone": "UTC", "serverTime": now, "exchangeFilters": [], "symbols": syms,
                    "rateLimits": [
                        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                         "limit": self.limits["spot"]},
                        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 1, "limit": 10},
                        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}]}
        syms = [{"symbol": s.symbol, "pair": s.symbol.split("_")[0], "contractType": s.contract_type,
                 "deliveryDate": PERPETUAL_DELIVERY, "onboardDate": self._first_open(s), "status": s.status,
                 "baseAsset": s.base, "quoteAsset": s.quote, "marginAsset": "USDT", "pricePrecision": 5,
                 "quantityPrecision": 0, "underlyingType": "COIN", "underlyingSubType": [], "filters": []}
                for s in self._by_market["perp"].values()]
        return {"exchangeFilters": [], "serverTime": now, "assets": [], "symbols": syms,
                "rateLimits": [{"interval": "MINUTE", "intervalNum": 1, "limit": self.limits["perp"],
                                "rateLimitType": "REQUEST_WEIGHT"},
                               {"interval": "MINUTE", "intervalNum": 1, "limit": 1200, "rateLimitType": "ORDERS"}]}

    def ticker(self, s: FakeSymbol) -> dict:
        now = self.now_ms()
        d = {"symbol": s.symbol, "priceChange": "1.00000000", "priceChangePercent": "1.000",
             "weightedAvgPrice": _f(s.price), "prevClosePrice": _f(s.price), "lastPrice": _f(s.price),
             "lastQty": "1.00000000", "bidPrice": _f(s.price), "bidQty": "1.00000000",
             "askPrice": _f(s.price), "askQty": "1.00000000", "openPrice": _f(s.price),
             "highPrice": _f(s.price), "lowPrice": _f(s.price), "volume": _f(s.quote_volume / s.price),
             "quoteVolume": _f(s.quote_volume), "openTime": now - 86_400_000, "closeTime": now,
             "firstId": 1, "lastId": 2, "count": 2}
        if s.market == "perp":
            for k in ("prevClosePrice", "bidPrice", "bidQty", "askPrice", "askQty"):
                d.pop(k)
        return d


def _f(x: float) -> str:
    return f"{x:.8f}"


def _weight(family: str, endpoint: str, q: dict) -> int:
    if family == "spot":
        if endpoint == "depth":
            lim = int(q.get("limit", 100))
            return 5 if lim <= 100 else 25 if lim <= 500 else 50 if lim <= 1000 else 250
        if endpoint == "ticker/24hr":
            return 2 if "symbol" in q else 80
        return {"exchangeInfo": 20, "klines": 2}.get(endpoint, 1)
    if endpoint == "klines":
        lim = int(q.get("limit", 500))
        return 1 if lim < 100 else 2 if lim < 500 else 5 if lim <= 1000 else 10
    if endpoint == "depth":
        lim = int(q.get("limit", 500))
        return 2 if lim <= 50 else 5 if lim <= 100 else 10 if lim <= 500 else 20
    if endpoint == "ticker/24hr":
        return 1 if "symbol" in q else 40
    if endpoint == "premiumIndex":
        return 1 if "symbol" in q else 10
    if endpoint == "fundingRate":
        return 0
    return 1


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBinance
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body
    # then waits for the client's delayed ACK (~40 ms on Linux) on every
    # keep-alive request, a stall real Binance does not have.
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        fake = self.fake
        url = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/_stats":  # test hook (server in another process): counters, no weight
            return self._send(200, fake.stats(), family="stats", path=url.path)
        if url.path.startswith("/api/v3/"):
            family, endpoint = "spot", url.path[len("/api/v3/"):]
        elif url.path.startswith("/fapi/v1/"):
            family, endpoint = "perp", url.path[len("/fapi/v1/"):]
        else:
            return self._send(404, {"code": -1000, "msg": "Not found"}, family="spot", path=url.path)
        weight = _weight(family, endpoint, q)
        with fake.lock:
            window = int(time.time() // fake.window_s)
            fake.weight[family][window] += weight
            used = fake.weight[family][window]
        if fake.latency_s:
            time.sleep(fake.latency_s)
        if used > fake.limits[family]:
            retry = max(1, math.ceil(fake.window_s - time.time() % fake.window_s))
            return self._send(429, {"code": -1003, "msg": "Too much request weight used"}, family, url.path,
                              used, {"Retry-After": str(retry)})
        fault = fake._take_fault(url.path, q.get("symbol"))
        if fault:
            with fake.lock:
                fake.faults_served.append(fault)
            if self._fault(fault, family, url.path, used):
                return
        try:
            status, body = self._route(family, endpoint, q)
        except (ValueError, KeyError) as exc:
            status, body = 400, {"code": -1102, "msg": f"Malformed parameter: {exc}"}
        self._send(status, body, family, url.path, used)

    def _fault(self, kind: str, family: str, path: str, used: int) -> bool:
        """Serve fault ``kind``; True if the request is answered (or dropped)."""
        fake = self.fake
        if kind == "429":
            self._send(429, {"code": -1003, "msg": "Too many requests"}, family, path, used,
                       {"Retry-After": str(fake.retry_after_s)})
        elif kind == "418":
            self._send(418, {"code": -1003, "msg": "Way too much request weight used; IP banned until 1"},
                       family, path, used, {"Retry-After": "120"})
        elif kind == "500":
            self._send(500, {"code": -1001, "msg": "Internal error; unable to process your request."},
                       family, path, used)
        elif kind == "502":
            self._send_raw(502, b"<html><body>502 Bad Gateway</body></html>", "text/html", family, path, used)
        elif kind == "malformed":
            self._send_raw(200, b'[[1, "2", ', "application/json", family, path, used)
        elif kind == "slow":
            time.sleep(fake.slow_seconds)
            return False  # then answers normally (the client has timed out by then)
        elif kind == "drop":
            self._record(family, path, 0)
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        else:
            raise ValueError(f"unknown fault {kind!r}")
        return True

    def _route(self, family: str, endpoint: str, q: dict) -> tuple[int, object]:
        fake = self.fake
        if endpoint == "ping":
            return 200, {}
        if endpoint == "time":
            return 200, {"serverTime": fake.now_ms()}
        if endpoint == "exchangeInfo":
            return 200, fake.exchange_info(family)
        listed = fake._by_market[family]
        if endpoint == "ticker/24hr" and "symbol" not in q:
            return 200, [fake.ticker(s) for s in listed.values()]
        if endpoint == "premiumIndex" and family == "perp" and "symbol" not in q:
            return 200, [fake.premium(s) for s in listed.values() if s.contract_type == "PERPETUAL"]
        s = fake._sym(family, q.get("symbol"))
        if s is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        if endpoint == "ticker/24hr":
            return 200, fake.ticker(s)
        if endpoint == "klines":
            if q.get("interval") != "1h":
                return 400, {"code": -1120, "msg": "Invalid interval."}
            cap = 1000 if family == "spot" else 1500
            return 200, fake.klines(s, start, end, min(int(q.get("limit", 500)), cap))
        if endpoint == "depth":
            lim = int(q.get("limit", 100 if family == "spot" else 500))
            if family == "perp" and lim not in (5, 10, 20, 50, 100, 500, 1000):
                return 400, {"code": -1102, "msg": "Invalid limit."}
            return 200, fake.depth(s, min(lim, 5000))
        if family == "perp" and endpoint == "fundingRate":
            return 200, fake.funding(s, start, end, min(int(q.get("limit", 100)), 1000))
        if family == "perp" and endpoint == "premiumIndex":
            return 200, fake.premium(s)
        return 404, {"code": -1000, "msg": f"unknown endpoint {endpoint}"}

    def _record(self, family: str, path: str, status: int) -> None:
        with self.fake.lock:
            self.fake.requests.append((time.time(), family, path, status))

    def _send(self, status: int, body: object, family: str, path: str, used: int = 0,
              headers: dict | None = None) -> None:
        self._send_raw(status, json.dumps(body, ensure_ascii=False).encode(), "application/json",
                       family, path, used, headers)

    def _send_raw(self, status: int, data: bytes, ctype: str, family: str, path: str, used: int,
                  headers: dict | None = None) -> None:
        self._record(family, path, status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            # Binance spot spells it -1M; the futures connector shows lower case.
            self.send_header("X-MBX-USED-WEIGHT-1M" if family == "spot" else "x-mbx-used-weight-1m", str(used))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def serve_forever_in_process(port_queue, symbols: int, now_ms: int, latency_s: float, listed_hours: int = 48) -> None:
    """Target of a ``multiprocessing.Process``: serve :func:`many_symbols` (``listed_hours`` of history) until killed.

    Benchmarks use it so the server does not share the client's GIL.
    """
    server = FakeBinance(many_symbols(symbols, listed_hours=listed_hours), now_ms=now_ms, latency_s=latency_s).start()
    port_queue.put(server.url)
    threading.Event().wait()
